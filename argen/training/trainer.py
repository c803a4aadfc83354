"""The training loop shared by every task, on Hugging Face Accelerate.

A task supplies the modules to train (``model`` is the one exported; others, such as a
discriminator, get optimisers too), a dataset, and ``compute_losses``. The loop owns the
batch order, gradient accumulation, clipping, schedules, EMA, atomic checkpoints, exact
resume and logging.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.utils import DistributedType, set_seed
from timm.utils.model_ema import ModelEmaV3
from torch.utils.data import DataLoader
from tqdm import tqdm

from argen.checkpoint import replace_directory, save_model
from argen.config import to_dict
from argen.data.batches import ShardedBatches
from argen.training.codec import build_codec_tokenizer
from argen.training.optim import build_optimizer, warmup_cosine
from argen.training.recipes import JPEGTokenizerRecipe, Recipe

logger = logging.getLogger(__name__)

CHECKPOINT = "checkpoint"  # training state (optimizer, schedule, RNG, EMA, step)
RECIPE_FILE = "recipe.json"
LOG_FILE = "log.jsonl"  # one line of process-averaged metrics per log_every steps


class TrainingError(RuntimeError):
    """Training cannot start or go on (a diverged loss, a clashing output directory...)."""


class Progress:
    """The optimizer-step counter, saved with the training state."""

    def __init__(self) -> None:
        self.step = 0

    def state_dict(self) -> dict:
        return {"step": self.step}

    def load_state_dict(self, state: dict) -> None:
        self.step = int(state["step"])


def check_world(accelerator: Accelerator) -> None:
    """Fail when a launcher started several processes that Accelerate does not join (they
    would each train alone and overwrite one another's checkpoints)."""
    launched = int(os.environ.get("WORLD_SIZE", "1"))
    if launched != accelerator.num_processes:
        raise TrainingError(
            f"{launched} processes were launched but Accelerate sees {accelerator.num_processes}; "
            f"on a machine without GPUs set ACCELERATE_USE_CPU=1 (e.g. `ACCELERATE_USE_CPU=1 "
            f"accelerate launch --multi_gpu --num_processes 2 train.py ...`)"
        )


def configure_model(model: torch.nn.Module, tc, accelerator: Accelerator) -> None:
    """Apply the training-only model options of the recipe."""
    if tc.activation_checkpointing:
        if not hasattr(model, "activation_checkpointing"):
            raise TrainingError(f"{type(model).__name__} has no activation checkpointing option")
        model.activation_checkpointing = True
    if tc.compile:
        model.compile()  # in place: parameter names and checkpoints stay unchanged
    if tc.ema_decay > 0 and accelerator.distributed_type == DistributedType.FSDP:
        raise TrainingError("EMA weights are not supported with FSDP yet; set train.ema_decay=0")


def check_output_dir(out: Path, recipe: Recipe, resume: bool) -> None:
    """Refuse to overwrite another run; refuse to resume a run with a different recipe."""
    saved = out / RECIPE_FILE
    has_state = (out / CHECKPOINT).is_dir()
    if not resume:
        if has_state:
            raise TrainingError(
                f"{out} already holds a training run; pass --resume to continue it or choose "
                f"another output_dir"
            )
        return
    if not has_state:
        raise TrainingError(f"--resume: {out} has no {CHECKPOINT}/ to resume from")
    previous = json.loads(saved.read_text()) if saved.is_file() else {}
    current = to_dict(recipe)
    changed = {
        key
        for key in set(previous) | set(current)
        if previous.get(key) != current.get(key) and key != "train"
    }
    if changed:
        raise TrainingError(f"--resume: the recipe differs from the saved run in {sorted(changed)}")


def train(recipe: Recipe, resume: bool = False) -> Path:
    """Run (or resume) ``recipe``; returns the output directory."""
    from argen.training.tasks import build_task

    out = Path(recipe.output_dir)
    tc = recipe.train
    accelerator = Accelerator(
        mixed_precision=tc.mixed_precision,
        log_with="tensorboard",
        project_dir=str(out),
        step_scheduler_with_optimizer=False,  # one schedule step per optimizer step, any world size
    )
    check_world(accelerator)
    check_output_dir(out, recipe, resume)
    if accelerator.is_main_process:
        out.mkdir(parents=True, exist_ok=True)
        (out / RECIPE_FILE).write_text(json.dumps(to_dict(recipe), indent=2) + "\n")
    if isinstance(recipe, JPEGTokenizerRecipe):  # a codec (JPEG, AVC): nothing to optimise
        if accelerator.is_main_process:
            build_codec_tokenizer(recipe, out)
        accelerator.wait_for_everyone()
        return out

    set_seed(recipe.seed)  # identical initial weights on every process
    task = build_task(recipe, accelerator)
    set_seed(recipe.seed, device_specific=True)  # distinct dropout / augmentation per process
    configure_model(task.model, tc, accelerator)

    names = ["model", *task.extra_modules]
    modules = [task.model, *task.extra_modules.values()]
    optimizers = [
        build_optimizer(m, task.lr(name), tc.weight_decay, tc.betas) for name, m in zip(names, modules)
    ]
    schedule = warmup_cosine(tc.warmup_steps, tc.max_steps, tc.min_lr_ratio)
    schedulers = [torch.optim.lr_scheduler.LambdaLR(opt, schedule) for opt in optimizers]
    prepared = accelerator.prepare(*modules, *optimizers, *schedulers)
    n = len(modules)
    modules, optimizers, schedulers = prepared[:n], prepared[n : 2 * n], prepared[2 * n :]
    wrapped = dict(zip(names, modules))

    progress = Progress()
    accelerator.register_for_checkpointing(progress)
    ema = None
    if tc.ema_decay > 0:
        ema = ModelEmaV3(accelerator.unwrap_model(modules[0]), decay=tc.ema_decay, use_warmup=True)
        accelerator.register_for_checkpointing(ema)
    if resume:
        accelerator.load_state(str(out / CHECKPOINT))
        logger.info("resumed %s at step %d", out, progress.step)

    batches = ShardedBatches(
        len(task.dataset),
        recipe.data.batch_size,
        recipe.seed,
        accelerator.process_index,
        accelerator.num_processes,
    )
    loader = DataLoader(
        task.dataset,
        batch_sampler=batches.iterate(progress.step * tc.grad_accum),
        num_workers=recipe.data.num_workers,
        generator=torch.Generator(),  # keeps the global RNG untouched, so resume is exact
    )
    batch_iter = iter(loader)
    accelerator.init_trackers("logs", config=_flat_scalars(to_dict(recipe)))

    def save() -> None:
        _save_checkpoint(accelerator, out, modules[0], ema)
        if accelerator.is_main_process:
            task.export(out)

    bar = tqdm(
        total=tc.max_steps,
        initial=progress.step,
        disable=not accelerator.is_main_process,
        desc=recipe.task,
    )
    logs: dict[str, float] = {}
    logged_steps = 0
    while progress.step < tc.max_steps:
        for m in modules:
            m.train()
        for micro in range(tc.grad_accum):
            batch = [t.to(accelerator.device) for t in next(batch_iter)]
            with contextlib.ExitStack() as stack:
                if micro < tc.grad_accum - 1:
                    for m in modules:
                        stack.enter_context(accelerator.no_sync(m))
                losses, step_logs = task.compute_losses(wrapped, batch, progress.step)
                for loss in losses.values():
                    accelerator.backward(loss / tc.grad_accum)
            for key, value in step_logs.items():
                logs[key] = logs.get(key, 0.0) + float(value) / tc.grad_accum
        loss_values = accelerator.reduce(torch.stack([l.detach().float() for l in losses.values()]), "mean")
        if not torch.isfinite(loss_values).all():
            raise TrainingError(
                f"non-finite loss ({dict(zip(losses, loss_values.tolist()))}) at step "
                f"{progress.step}; training stopped. The last good checkpoint is kept in {out / CHECKPOINT}"
                f" (resume with --resume after lowering the learning rate)"
            )
        for name, module, opt, sched in zip(names, modules, optimizers, schedulers):
            if name in losses:
                if tc.grad_clip > 0:
                    accelerator.clip_grad_norm_(module.parameters(), tc.grad_clip)
                opt.step()
                sched.step()
            opt.zero_grad(set_to_none=True)
        progress.step += 1
        logged_steps += 1
        if ema is not None:
            ema.update(accelerator.unwrap_model(modules[0]), step=progress.step)
        bar.update(1)
        if progress.step % tc.log_every == 0 or progress.step == tc.max_steps:
            means = torch.tensor(list(logs.values()), device=accelerator.device) / logged_steps
            logs = dict(zip(logs, accelerator.reduce(means, "mean").tolist()))  # all processes
            logs["lr"] = schedulers[0].get_last_lr()[0]
            accelerator.log(logs, step=progress.step)
            if accelerator.is_main_process:
                with open(out / LOG_FILE, "a") as f:
                    f.write(json.dumps({"step": progress.step, **logs}) + "\n")
            bar.set_postfix({k: f"{v:.4g}" for k, v in logs.items() if k != "lr"})
            logs, logged_steps = {}, 0
        if progress.step % tc.save_every == 0 or progress.step == tc.max_steps:
            save()
    bar.close()
    accelerator.end_training()
    return out


def _save_checkpoint(accelerator: Accelerator, out: Path, model, ema) -> None:
    """Write the training state to a temporary directory, then swap it in (atomic)."""
    tmp, final = out / f".{CHECKPOINT}-tmp", out / CHECKPOINT
    accelerator.wait_for_everyone()
    if accelerator.is_main_process and tmp.exists():
        shutil.rmtree(tmp)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp))
    state = accelerator.get_state_dict(model)  # consolidated (a collective under FSDP)
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        replace_directory(tmp, final)
        save_model(accelerator.unwrap_model(model), out / "model", state)
        if ema is not None:
            save_model(ema.module, out / "ema")
    accelerator.wait_for_everyone()


def _flat_scalars(tree: dict, prefix: str = "") -> dict:
    flat = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(_flat_scalars(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value if isinstance(value, (int, float, str, bool)) else str(value)
    return flat
