"""Distilled Decoding (DD1): a student that turns noise into a whole token sequence in one or
two passes, trained on the pairs (noise, tokens) of its teacher's deterministic sampler.

The teacher (a next-token model over a VQ grid, or a next-scale model) samples as usual, with
its guidance, except that every token is the end of the flow from that position's noise to the
teacher's distribution over the codes (:mod:`argen.sampling.token_flow`): the tokens are a
function of the noise. The student (:mod:`argen.models.distilled`) learns that function with
cross-entropy. One step: all noise -> all tokens. Two steps: keep the first
``second_step_from`` tokens of the first step, give the rest their noise back, predict again.

Sampling is DD's deterministic map by default (``--student-draw map``): each pass takes the
student's likeliest token for every unknown position, so the image is a function of the noise
alone. DD regresses the code embedding of the later positions with a second head; argen keeps
the one cross-entropy head and takes its likeliest code (the same map wherever the student
is sure). ``--student-draw sample`` draws every unknown token from the student's softmax
instead (``--temperature``, ``--top-k``, ``--top-p``). ``--teacher-span N`` is DD's
teacher-intermediate trade-off (raster students): after the first pass the teacher redraws the
N tokens before the second pass's split point with its deterministic sampler and the same
noise, then the second pass runs. The guidance is distilled: students sample without
``--cfg-scale``.
"""

from __future__ import annotations

import argparse
from dataclasses import asdict, dataclass
from typing import Literal

import torch

from argen.checkpoint import CheckpointError
from argen.models.distilled import DistilledLlama, DistilledNextScale, TeacherSampling
from argen.models.llama import Condition, Llama
from argen.models.next_scale import NextScaleLlama, split_scales
from argen.paradigms.base import Paradigm, SamplingExtras, cross_entropy
from argen.paradigms.next_scale import check_scales
from argen.paradigms.options import STEPS, OptionRun, SampleOption
from argen.sampling.config import SamplingConfig
from argen.sampling.logits import RandomTokens
from argen.sampling.next_scale import NextScaleOptions, sample_next_scale
from argen.sampling.next_token import NextTokenOptions, sample_next_token
from argen.sampling.token_flow import NoiseTokens, standardised_codes
from argen.tokenizers.layout import GridLayout, ScaleLayout, flat_ids


def sampling_config(teacher: TeacherSampling) -> SamplingConfig:
    """The teacher's deterministic sampler's settings as a :class:`SamplingConfig`."""
    settings = asdict(teacher)
    settings.pop("flow_steps")
    return SamplingConfig(**settings)


@dataclass
class StudentPlan:
    """How a student samples: its likeliest tokens (``map``, DD's deterministic map) or draws
    from its softmax (``sample``); a teacher and the span it redraws before the second pass."""

    draw: Literal["map", "sample"] = "map"
    teacher: torch.nn.Module | None = None
    teacher_span: int = 0


class StudentSampling(SampleOption):
    needs = "--student-draw, --teacher-span and --teacher are for distilled students (task: distill)"
    key = "distilled"

    def add_arguments(self, p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--student-draw",
            choices=("map", "sample"),
            help="distilled students: the likeliest token of each pass, DD's deterministic map (default), "
            "or a draw from the student's softmax (--temperature, --top-k, --top-p)",
        )
        p.add_argument(
            "--teacher-span",
            type=int,
            help="distilled raster students, 2 steps: the teacher redraws these tokens before the second "
            "pass (DD's teacher-intermediate sampling; needs --teacher)",
        )
        p.add_argument("--teacher", metavar="RUN", help="--teacher-span: the student's teacher run")

    def requested(self, args: argparse.Namespace) -> bool:
        if bool(args.teacher_span) != bool(args.teacher):
            raise ValueError("--teacher-span and --teacher go together")
        return bool(args.student_draw or args.teacher)

    def build(self, args: argparse.Namespace, run: OptionRun, extras: SamplingExtras) -> None:
        plan = StudentPlan(args.student_draw or "map")
        c = run.config
        if plan.draw == "map" and (c.temperature != 1.0 or c.top_k or c.top_p != 1.0):
            raise ValueError("--temperature, --top-k and --top-p shape --student-draw sample, not the map")
        if args.teacher:
            cut = run.model.config.second_step_from
            if extras.steps != 2 or not 0 < args.teacher_span <= cut:
                raise ValueError(f"--teacher-span needs --steps 2 and a span in [1, {cut}] (the split point)")
            plan.teacher, plan.teacher_span = run.inputs.second_model(args.teacher), args.teacher_span
        extras.by_option[self.key] = plan

    def metrics(self, args: argparse.Namespace, extras: SamplingExtras) -> dict:
        plan = extras.by_option[self.key]
        return {"student_draw": plan.draw} | ({"teacher_span": plan.teacher_span} if plan.teacher else {})


STUDENT_SAMPLING = StudentSampling()


class DistilledTokens(Paradigm):
    """What raster and next-scale students share: the teacher's pairs, the loss, the sampler."""

    task = "distill"
    default = True
    sample_options = (STEPS, STUDENT_SAMPLING)
    requirement = "distillation needs a next-token teacher over a VQ grid or a next-scale teacher"
    teacher_class: type
    student_class: type
    conditions: tuple[str, ...] = ("class",)  # the teachers' conditions it distils

    # --- the teacher ----------------------------------------------------------------------
    def code_vectors(self, tokenizer) -> torch.Tensor:
        """The codes the noise flows to, one codebook per scale (S, V, d), standardised."""
        raise NotImplementedError

    def scale_of(self, model) -> torch.Tensor:
        """The scale (codebook) of every sequence position (L,)."""
        return torch.zeros(model.config.num_tokens, dtype=torch.long)

    def teacher_pick(self, teacher, tokenizer, noise, config: SamplingConfig, flow_steps: int) -> NoiseTokens:
        codes = self.code_vectors(tokenizer).detach()
        return NoiseTokens(noise, codes, self.scale_of(teacher), config, flow_steps)

    def teacher_tokens(
        self,
        teacher,
        tokenizer,
        condition: Condition,
        noise: torch.Tensor,
        config: SamplingConfig,
        flow_steps: int,
    ) -> torch.Tensor:
        """The teacher's tokens (B, L) for conditions (B rows) and noise (B, L, d)."""
        raise NotImplementedError

    def check_teacher(self, teacher) -> None:
        if type(teacher) is not self.teacher_class or teacher.config.condition not in self.conditions:
            raise ValueError(
                f"{self.name} distils a {'-conditional or '.join(self.conditions)}-conditional "
                f"{self.teacher_class.__name__}, not a {type(teacher).__name__} "
                f"({teacher.config.condition}-conditional)"
            )

    # --- the student ----------------------------------------------------------------------
    def second_step_start(self, teacher, fraction: float) -> int:
        """Tokens kept after the first of two steps: ``fraction`` of the sequence."""
        return max(1, min(teacher.config.num_tokens - 1, round(fraction * teacher.config.num_tokens)))

    def build_student(
        self,
        teacher,
        tokenizer,
        sampling_steps: tuple[int, ...],
        second_fraction: float,
        teacher_sampling: TeacherSampling | None = None,
    ) -> torch.nn.Module:
        """A student initialised from the teacher's weights (its noise inputs start at zero);
        its config records ``teacher_sampling``, the sampler that drew its pairs."""
        self.check_teacher(teacher)
        if not sampling_steps or not set(sampling_steps) <= {1, 2}:
            raise ValueError(f"sampling_steps must be a non-empty subset of (1, 2), got {sampling_steps}")
        config = self.student_class.Config(
            **asdict(teacher.config)
            | dict(
                noise_dim=self.code_vectors(tokenizer).shape[-1],
                sampling_steps=tuple(sorted(sampling_steps)),
                second_step_from=self.second_step_start(teacher, second_fraction),
                class_dropout=0.0,  # the guidance is distilled
                teacher_sampling=teacher_sampling or TeacherSampling(),
            )
        )
        student = self.student_class(config)
        missing, unexpected = student.load_state_dict(teacher.state_dict(), strict=False)
        if unexpected or any(not k.startswith("noise_reader.") for k in missing):
            raise CheckpointError(f"the teacher's weights do not fit its student: {missing + unexpected}")
        return student

    def starts(self, student) -> list[int]:
        """The known-token counts the student reads: 0 for the first step, then the second's."""
        return [0, student.config.second_step_from][: max(student.config.sampling_steps)]

    def student_logits(self, student, tokenizer, tokens, noise, known, condition) -> torch.Tensor:
        """Logits (B, L, V) from the state (first ``known`` tokens, noise for the rest)."""
        raise NotImplementedError

    def distill_loss(
        self, student, tokenizer, tokens: torch.Tensor, noise: torch.Tensor, condition: Condition
    ) -> tuple[torch.Tensor, dict]:
        """Cross-entropy to the teacher's tokens (B, L) at the unknown positions of a state
        drawn per row among the student's steps."""
        starts = torch.tensor(self.starts(student), device=tokens.device)
        known = starts[torch.randint(len(starts), (len(tokens),), device=tokens.device)]  # (B,)
        logits = self.student_logits(student, tokenizer, tokens, noise, known, condition)  # (B, L, V)
        unknown = torch.arange(tokens.shape[1], device=tokens.device)[None] >= known[:, None]  # (B, L)
        loss, logs = cross_entropy(logits, tokens.masked_fill(~unknown, -100))
        match = (logits.argmax(-1) == tokens)[unknown].float().mean()
        return loss, logs | {"token_match": match.item()}

    # --- sampling -------------------------------------------------------------------------
    def sampling_steps(self, model, requested: int | None, config: SamplingConfig) -> int:
        trained = tuple(model.config.sampling_steps)
        steps = min(trained) if requested is None else requested
        if steps not in trained:
            raise ValueError(f"--steps {steps}: this student was trained for {', '.join(map(str, trained))}")
        if config.guided:
            raise ValueError(
                "distilled students sample without --cfg-scale: the teacher's guidance is distilled"
            )
        return steps

    @torch.no_grad()
    def sample(self, model, tokenizer, condition, config, generator, extras: SamplingExtras, given=None):
        c = model.config
        plan = extras.by_option.get(STUDENT_SAMPLING.key) or StudentPlan()
        noise = torch.randn(
            len(condition), c.num_tokens, c.noise_dim, generator=generator, device=generator.device
        )  # (B, L, d)
        pick = RandomTokens(config if plan.draw == "sample" else SamplingConfig(temperature=0), generator)
        steps = extras.steps or min(c.sampling_steps)
        return self.as_tokenizer_ids(
            tokenizer, self.from_noise(model, tokenizer, condition, noise, steps, pick, plan)
        )

    def from_noise(
        self, model, tokenizer, condition, noise, steps: int, pick, plan: StudentPlan
    ) -> torch.Tensor:
        """The student's passes over noise (B, L, d) -> tokens (B, L); with a teacher span, the
        teacher redraws the span before the second pass."""
        c = model.config
        tokens = torch.zeros(len(condition), c.num_tokens, dtype=torch.long, device=noise.device)
        positions = torch.arange(c.num_tokens, device=noise.device)
        for known in self.starts(model)[:steps]:
            if known and plan.teacher is not None:
                tokens = self.teacher_span(plan, model, tokenizer, condition, tokens, noise)
            logits = self.student_logits(model, tokenizer, tokens, noise, known, condition)
            tokens = torch.where(positions < known, tokens, pick(logits, 0))  # (B, L)
        return tokens

    def teacher_span(self, plan: StudentPlan, student, tokenizer, condition, tokens, noise) -> torch.Tensor:
        raise ValueError("--teacher-span is for raster students (paradigm distilled_raster)")

    def as_tokenizer_ids(self, tokenizer, tokens: torch.Tensor):
        return tokens


class DistilledRaster(DistilledTokens):
    name = "distilled_raster"
    layout = GridLayout
    generators = (DistilledLlama,)
    teacher_class = Llama
    student_class = DistilledLlama
    conditions = ("class", "text")

    def code_vectors(self, tokenizer):
        return standardised_codes(tokenizer.quantize.codebook())[None]  # (1, V, d)

    def teacher_tokens(self, teacher, tokenizer, condition, noise, config, flow_steps):
        pick = self.teacher_pick(teacher, tokenizer, noise, config, flow_steps)
        return sample_next_token(teacher, condition, config, None, NextTokenOptions(pick=pick))

    def student_logits(self, student, tokenizer, tokens, noise, known, condition):
        return student(tokens, noise, known, condition)

    def as_tokenizer_ids(self, tokenizer, tokens):
        return tokens.view(-1, tokenizer.layout.height, tokenizer.layout.width)  # (B, h, w)

    def teacher_span(self, plan, student, tokenizer, condition, tokens, noise):
        """Tokens (B, L) of the first pass with positions [cut - span, cut) redrawn by the
        teacher's deterministic sampler from the same noise (cut: the second pass's split)."""
        cut = student.config.second_step_from
        keep = cut - plan.teacher_span
        teacher_config = sampling_config(student.config.teacher_sampling)
        pick = self.teacher_pick(
            plan.teacher, tokenizer, noise, teacher_config, student.config.teacher_sampling.flow_steps
        )
        options = NextTokenOptions(given=tokens[:, :keep] if keep else None, pick=pick, until=cut)
        drawn = sample_next_token(plan.teacher, condition, teacher_config, None, options)  # (B, L)
        return torch.cat([drawn[:, :cut], tokens[:, cut:]], dim=1)


class DistilledScales(DistilledTokens):
    name = "distilled_scales"
    layout = ScaleLayout
    generators = (DistilledNextScale,)
    teacher_class = NextScaleLlama
    student_class = DistilledNextScale
    tokenizer_in_loss = True

    def code_vectors(self, tokenizer):
        scales = range(len(tokenizer.layout.scales))
        return standardised_codes(torch.stack([tokenizer.quantizer(k).codebook() for k in scales]))

    def scale_of(self, model):
        return model.levels.cpu()

    def teacher_tokens(self, teacher, tokenizer, labels, noise, config, flow_steps):
        pick = self.teacher_pick(teacher, tokenizer, noise, config, flow_steps)
        return flat_ids(
            sample_next_scale(teacher, tokenizer, labels, config, None, NextScaleOptions(pick=pick))
        )  # (B, L)

    def second_step_start(self, teacher, fraction):
        """The scale boundary nearest to ``fraction`` of the sequence (never 0 or the end)."""
        ends = [end for _, end in teacher.config.scale_bounds[:-1]]
        return min(ends, key=lambda end: abs(end - fraction * teacher.config.num_tokens))

    def student_logits(self, student, tokenizer, tokens, noise, known, condition):
        if torch.as_tensor(known).max() == 0:  # no scale known: the inputs are never read
            c = student.config
            inputs = noise.new_zeros(len(tokens), c.num_tokens - student.prefix_len, c.token_dim)
        else:
            inputs = tokenizer.teacher_inputs(split_scales(tokens, tokenizer.layout.scales))  # (B, L - P, C)
        return student(inputs, noise, known, condition)

    def check_pair(self, model, layout, model_dir, tokenizer_dir):
        super().check_pair(model, layout, model_dir, tokenizer_dir)
        check_scales(model, layout, model_dir, tokenizer_dir)

    def as_tokenizer_ids(self, tokenizer, tokens):
        return split_scales(tokens, tokenizer.layout.scales)
