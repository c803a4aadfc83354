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
import shutil
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.utils import DistributedType, set_seed
from torch.utils.data import DataLoader
from tqdm import tqdm

from argen.checkpoint import replace_directory, save_model, write_text_atomic
from argen.config import to_dict
from argen.data.batches import ShardedBatches
from argen.launch import RunError, check_world, configure_threads
from argen.training.curves import write_curves
from argen.training.ema import Ema
from argen.training.optim import build_optimizer, warmup_cosine
from argen.training.recipes import Recipe

logger = logging.getLogger(__name__)

CHECKPOINT = "checkpoint"  # training state (optimizer, schedule, RNG, EMA, step)
RECIPE_FILE = "recipe.json"
LOG_FILE = "log.jsonl"  # one line of process-averaged metrics per log_every steps


class TrainingError(RunError):
    """Training cannot start or go on (a diverged loss, a clashing output directory...)."""


class Progress:
    """The optimizer-step counter, saved with the training state."""

    def __init__(self) -> None:
        self.step = 0

    def state_dict(self) -> dict:
        return {"step": self.step}

    def load_state_dict(self, state: dict) -> None:
        self.step = int(state["step"])


def configure_model(model: torch.nn.Module, tc, accelerator: Accelerator) -> None:
    """Apply the training-only model options of the recipe."""
    if tc.activation_checkpointing:
        if not hasattr(model, "activation_checkpointing"):
            raise TrainingError(f"{type(model).__name__} has no activation checkpointing option")
        model.activation_checkpointing = True
    if tc.compile:
        model.compile()  # in place: parameter names and checkpoints stay unchanged
    if tc.ema_decay > 0 and accelerator.distributed_type == DistributedType.FSDP:
        if accelerator.state.fsdp_plugin.fsdp_version != 2:
            raise TrainingError(
                "EMA weights under FSDP need FSDP2 (configs/accelerate/fsdp2_*.yaml); set train.ema_decay=0 "
                "or fsdp_version: 2"
            )


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
        if previous.get(key) != current.get(key) and key not in ("train", "output_dir")  # a run may move
    }
    if changed:
        raise TrainingError(f"--resume: the recipe differs from the saved run in {sorted(changed)}")


def start_run(recipe: Recipe, resume: bool) -> Accelerator:
    """The accelerator of a run whose output directory is checked and holds the recipe."""
    out, tc = Path(recipe.output_dir), recipe.train
    accelerator = Accelerator(
        mixed_precision=tc.mixed_precision,
        log_with="tensorboard",
        project_dir=str(out),
        step_scheduler_with_optimizer=False,  # one schedule step per optimizer step, any world size
    )
    check_world(accelerator)
    logger.info("%d CPU thread(s) per process", configure_threads(tc.threads))
    check_output_dir(out, recipe, resume)
    if accelerator.is_main_process:
        out.mkdir(parents=True, exist_ok=True)
        write_text_atomic(out / RECIPE_FILE, json.dumps(to_dict(recipe), indent=2) + "\n")
    return accelerator


class Trained:
    """A task's modules, optimisers and schedules prepared by Accelerate, with the step counter
    and the EMA weights registered for checkpointing."""

    def __init__(self, task, tc, accelerator: Accelerator) -> None:
        self.names = ["model", *task.extra_modules]
        modules = [task.model, *task.extra_modules.values()]
        optimizers = [
            build_optimizer(m, task.lr(name), tc.weight_decay, tc.betas)
            for name, m in zip(self.names, modules)
        ]
        schedule = warmup_cosine(tc.warmup_steps, tc.max_steps, tc.min_lr_ratio)
        schedulers = [torch.optim.lr_scheduler.LambdaLR(opt, schedule) for opt in optimizers]
        prepared = accelerator.prepare(*modules, *optimizers, *schedulers)
        n = len(modules)
        self.modules, self.optimizers, self.schedulers = prepared[:n], prepared[n : 2 * n], prepared[2 * n :]
        self.wrapped = dict(zip(self.names, self.modules))
        self.progress = Progress()
        accelerator.register_for_checkpointing(self.progress)
        self.ema = None
        if tc.ema_decay > 0:
            self.ema = Ema(accelerator.unwrap_model(self.modules[0]), decay=tc.ema_decay, use_warmup=True)
            accelerator.register_for_checkpointing(self.ema)
        for stateful in task.checkpointed:
            accelerator.register_for_checkpointing(stateful)


def train(recipe: Recipe, resume: bool = False) -> Path:
    """Run (or resume) ``recipe``; returns the output directory."""
    from argen.training.tasks import build_task

    out, tc = Path(recipe.output_dir), recipe.train
    accelerator = start_run(recipe, resume)
    set_seed(recipe.seed)  # identical initial weights on every process
    task = build_task(recipe, accelerator)
    if task.model is None:  # nothing to optimise (codec tokenizers): the run is its export
        if accelerator.is_main_process:
            task.export(out)
        accelerator.wait_for_everyone()
        return out
    set_seed(recipe.seed, device_specific=True)  # distinct dropout / augmentation per process
    configure_model(task.model, tc, accelerator)
    state = Trained(task, tc, accelerator)
    if resume:
        accelerator.load_state(str(out / CHECKPOINT))
        logger.info("resumed %s at step %d", out, state.progress.step)
    batch_iter = iter(batch_loader(task, recipe, accelerator, state.progress.step))
    accelerator.init_trackers("logs", config=_flat_scalars(to_dict(recipe)))
    bar = tqdm(
        total=tc.max_steps,
        initial=state.progress.step,
        disable=not accelerator.is_main_process,
        desc=recipe.task,
    )
    log = StepLog(out, accelerator)
    while state.progress.step < tc.max_steps:
        step_logs = optimizer_step(task, state, batch_iter, tc, accelerator, out)
        state.progress.step += 1
        step_logs.update(task.after_step(state.progress.step, accelerator))
        if state.ema is not None:
            state.ema.update(accelerator.unwrap_model(state.modules[0]), step=state.progress.step)
        bar.update(1)
        log.add(step_logs)
        if state.progress.step % tc.log_every == 0 or state.progress.step == tc.max_steps:
            bar.set_postfix(log.write(state.progress.step, state.schedulers[0].get_last_lr()[0]))
        if state.progress.step % tc.save_every == 0 or state.progress.step == tc.max_steps:
            _save_checkpoint(accelerator, out, state.modules[0], state.ema, task)
            if accelerator.is_main_process:
                task.export(out)
    bar.close()
    accelerator.end_training()
    if accelerator.is_main_process:
        write_curves(out)  # curves.png: the logged values against the step
    return out


def batch_loader(task, recipe: Recipe, accelerator: Accelerator, step: int) -> DataLoader:
    """This process's slice of every global batch, from the batch after ``step``'s."""
    batches = ShardedBatches(
        len(task.dataset),
        recipe.data.batch_size,
        recipe.seed,
        accelerator.process_index,
        accelerator.num_processes,
    )
    return DataLoader(
        task.dataset,
        batch_sampler=batches.iterate(step * recipe.train.grad_accum),
        num_workers=recipe.data.num_workers,
        generator=torch.Generator(),  # keeps the global RNG untouched, so resume is exact
    )


def optimizer_step(task, state: Trained, batch_iter, tc, accelerator: Accelerator, out: Path) -> dict:
    """Accumulate ``grad_accum`` micro-batches (all-reduce on the last only), stop on a
    non-finite loss, clip and step -> the step's scalars, averaged over micro-batches."""
    for m in state.modules:
        m.train()
    logs: dict[str, float] = {}
    for micro in range(tc.grad_accum):
        batch = [t.to(accelerator.device) for t in next(batch_iter)]
        with contextlib.ExitStack() as stack:
            if micro < tc.grad_accum - 1:
                for m in state.modules:
                    stack.enter_context(accelerator.no_sync(m))
            losses, step_logs = task.compute_losses(state.wrapped, batch, state.progress.step)
            for loss in losses.values():
                accelerator.backward(loss / tc.grad_accum)
        for key, value in step_logs.items():
            logs[key] = logs.get(key, 0.0) + float(value) / tc.grad_accum
    loss_values = accelerator.reduce(torch.stack([l.detach().float() for l in losses.values()]), "mean")
    if not torch.isfinite(loss_values).all():
        raise TrainingError(
            f"non-finite loss ({dict(zip(losses, loss_values.tolist()))}) at step "
            f"{state.progress.step}; training stopped. "
            + (
                f"The last good checkpoint is kept in {out / CHECKPOINT} (resume with --resume after "
                "lowering the learning rate)"
                if (out / CHECKPOINT).is_dir()
                else "No checkpoint was saved before it: lower the learning rate and start again"
            )
        )
    for name, module, opt, sched in zip(state.names, state.modules, state.optimizers, state.schedulers):
        if name in losses or name in task.joint_modules:
            if tc.grad_clip > 0:
                accelerator.clip_grad_norm_(module.parameters(), tc.grad_clip)
            opt.step()
            sched.step()
        opt.zero_grad(set_to_none=True)
    return logs


class StepLog:
    """Scalars summed over the steps since the last log line (each over the steps that reported
    it); written process-averaged to the trackers and ``log.jsonl``."""

    def __init__(self, out: Path, accelerator: Accelerator) -> None:
        self.out, self.accelerator = out, accelerator
        self.sums: dict[str, float] = {}
        self.counts: dict[str, int] = {}

    def add(self, logs: dict[str, float]) -> None:
        for key, value in logs.items():
            self.sums[key] = self.sums.get(key, 0.0) + value
            self.counts[key] = self.counts.get(key, 0) + 1

    def write(self, step: int, lr: float) -> dict[str, str]:
        """Log the means at ``step``; returns them formatted for the progress bar."""
        acc = self.accelerator
        means = torch.tensor([self.sums[k] / self.counts[k] for k in self.sums], device=acc.device)
        logs = dict(zip(self.sums, acc.reduce(means, "mean").tolist()))  # all processes
        logs["lr"] = lr
        acc.log(logs, step=step)
        if acc.is_main_process:
            with open(self.out / LOG_FILE, "a") as f:
                f.write(json.dumps({"step": step, **logs}) + "\n")
        self.sums, self.counts = {}, {}
        return {k: f"{v:.4g}" for k, v in logs.items() if k != "lr" and "/" not in k}  # groups: logs only


def _save_checkpoint(accelerator: Accelerator, out: Path, model, ema, task) -> None:
    """Write the training state to a temporary directory, then swap it in (atomic); the weights
    exported (model/, ema/) pass through the task's ``exported_weights`` (LoRA runs merge their
    adapters) and their config.json carries its ``model_records`` (a generator's paradigm)."""
    exported, records = task.exported_weights, task.model_records
    tmp, final = out / f".{CHECKPOINT}-tmp", out / CHECKPOINT
    accelerator.wait_for_everyone()
    if accelerator.is_main_process and tmp.exists():
        shutil.rmtree(tmp)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp))
    state = accelerator.get_state_dict(model)  # consolidated (a collective under FSDP)
    ema_state = ema.weights() if ema is not None else None  # full tensors (a collective too)
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        replace_directory(tmp, final)
        save_model(accelerator.unwrap_model(model), out / "model", exported(state), records)
        if ema is not None:
            save_model(accelerator.unwrap_model(model), out / "ema", exported(ema_state), records)
    accelerator.wait_for_everyone()


def _flat_scalars(tree: dict, prefix: str = "") -> dict:
    flat = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(_flat_scalars(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value if isinstance(value, (int, float, str, bool)) else str(value)
    return flat
