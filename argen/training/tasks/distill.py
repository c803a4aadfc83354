"""Distilled Decoding: the teacher's deterministic sampler writes (noise, tokens) pairs once
(resumable, shared across processes); the student, initialised from the teacher, learns to map
the noise to the tokens in one or two passes (the paradigm of the tokenizer's layout gives the
student and its loss)."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import torch

from argen import paradigms
from argen.checkpoint import save_model
from argen.models.distilled import TeacherSampling
from argen.paradigms.distilled import sampling_config
from argen.training.conditions import CONDITION_KINDS
from argen.training.recipes import DistillRecipe
from argen.training.tasks.base import Task, model_digest
from argen.training.tasks.generator import TOKENIZER_DIR, load_run
from argen.training.teacher_pairs import PairDataset, PairPlan, draw_pairs, prepare_pairs


def teacher_sampling(recipe: DistillRecipe) -> TeacherSampling:
    """The recipe's settings of the teacher's deterministic sampler."""
    r = recipe
    return TeacherSampling(r.cfg_scale, r.cfg_schedule, r.temperature, r.top_k, r.top_p, r.flow_steps)


class DistillTask(Task):
    def __init__(self, recipe: DistillRecipe, accelerator) -> None:
        super().__init__(recipe)
        self.teacher_dir, teacher, self.tokenizer = load_run(recipe.teacher, "teacher")
        self.paradigm = paradigms.for_recipe(recipe, self.tokenizer.layout)
        self.model_records = {paradigms.PARADIGM_KEY: self.paradigm.name}
        self.model = self.paradigm.build_student(
            teacher, self.tokenizer, recipe.sampling_steps, recipe.second_step_from, teacher_sampling(recipe)
        )
        self.tokenizer = self.tokenizer.to(accelerator.device).eval()
        self.device = accelerator.device
        self.conditions = CONDITION_KINDS[teacher.config.condition].teacher(
            teacher, Path(recipe.teacher), recipe, accelerator
        )
        self.dataset = self.teacher_pairs(teacher.to(accelerator.device).eval(), accelerator)
        if accelerator.is_main_process:
            save_model(self.tokenizer, Path(recipe.output_dir) / TOKENIZER_DIR)

    def teacher_pairs(self, teacher: torch.nn.Module, accelerator) -> PairDataset:
        """The teacher's pairs, drawn where missing (every process its share)."""
        r = self.recipe
        config = sampling_config(teacher_sampling(r))
        c = teacher.config
        plan = PairPlan(r.num_pairs, self.conditions.count, c.num_tokens, self.model.config.noise_dim, r.seed)
        key = self.conditions.key | {
            "teacher_sha256": model_digest(self.teacher_dir),
            "tokenizer_sha256": model_digest(Path(r.teacher) / TOKENIZER_DIR),
            "sampling": asdict(config),
            "flow_steps": r.flow_steps,
            "plan": asdict(plan),
        }
        directory = Path(r.pairs_dir or Path(r.output_dir) / "pairs")
        if accelerator.is_main_process:
            prepare_pairs(directory, key)
        accelerator.wait_for_everyone()

        def teacher_map(ids: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
            condition = self.conditions.condition(ids, noise.device)
            return self.paradigm.teacher_tokens(
                teacher, self.tokenizer, condition, noise, config, r.flow_steps
            )

        draw_pairs(
            teacher_map,
            plan,
            directory,
            accelerator.device,
            accelerator.process_index,
            accelerator.num_processes,
        )
        accelerator.wait_for_everyone()
        return PairDataset(directory, plan.num_shards)

    def compute_losses(self, modules, batch, step):
        tokens, noise, ids = batch
        condition = self.conditions.condition(ids, self.device)
        loss, logs = self.paradigm.distill_loss(modules["model"], self.tokenizer, tokens, noise, condition)
        return {"model": loss}, logs
