"""Distilled Decoding (DD1): a student that turns noise into a whole token sequence in one or
two passes, trained on the pairs (noise, tokens) of its teacher's deterministic sampler.

The teacher (a next-token model over a VQ grid, or a next-scale model) samples as usual, with
its guidance, except that every token is the end of the flow from that position's noise to the
teacher's distribution over the codes (:mod:`argen.sampling.token_flow`): the tokens are a
function of the noise. The student (:mod:`argen.models.distilled`) learns that function with
cross-entropy. One step: all noise -> all tokens. Two steps: keep the first
``second_step_from`` tokens of the first step, give the rest their noise back, predict again.
Each pass draws every unknown token from the student's distribution for it (``--temperature``,
``--top-k``, ``--top-p`` as usual; temperature 0 takes the likeliest token, the purely
deterministic map). The guidance is distilled: students sample without ``--cfg-scale``.
"""

from __future__ import annotations

from dataclasses import asdict

import torch

from argen.checkpoint import CheckpointError
from argen.models.distilled import DistilledLlama, DistilledNextScale
from argen.models.llama import Condition, Llama
from argen.models.next_scale import NextScaleLlama, split_scales
from argen.paradigms.base import Paradigm, SamplingExtras, cross_entropy
from argen.paradigms.next_scale import check_scales
from argen.paradigms.options import STEPS
from argen.sampling.config import SamplingConfig
from argen.sampling.logits import RandomTokens
from argen.sampling.next_scale import NextScaleOptions, sample_next_scale
from argen.sampling.next_token import NextTokenOptions, sample_next_token
from argen.sampling.token_flow import NoiseTokens, standardised_codes
from argen.tokenizers.layout import GridLayout, ScaleLayout, flat_ids


class DistilledTokens(Paradigm):
    """What raster and next-scale students share: the teacher's pairs, the loss, the sampler."""

    task = "distill"
    default = True
    sample_options = (STEPS,)
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
        self, teacher, tokenizer, sampling_steps: tuple[int, ...], second_fraction: float
    ) -> torch.nn.Module:
        """A student initialised from the teacher's weights (its noise inputs start at zero)."""
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
        noise = torch.randn(
            len(condition), c.num_tokens, c.noise_dim, generator=generator, device=generator.device
        )  # (B, L, d)
        tokens = torch.zeros(len(condition), c.num_tokens, dtype=torch.long, device=noise.device)
        positions, pick = torch.arange(c.num_tokens, device=noise.device), RandomTokens(config, generator)
        for known in self.starts(model)[: extras.steps or min(c.sampling_steps)]:
            logits = self.student_logits(model, tokenizer, tokens, noise, known, condition)
            tokens = torch.where(positions < known, tokens, pick(logits, 0))  # (B, L)
        return self.as_tokenizer_ids(tokenizer, tokens)

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
