"""Distilled Decoding students: a teacher's network that also reads the noise its deterministic
sampler maps to tokens, and predicts every token of the sequence in one pass.

A state of the teacher's trajectory holds the first ``known`` tokens and, for every later
position, the noise vector (R^d, d = the codebook's width) that the teacher would map to that
token. The student keeps the teacher's inputs where they are known (the previous token's
embedding, or the next-scale input built from known scales); an input that depends on an
unknown token becomes one learned vector; every position from ``known`` on adds its noise
through a zero-initialised projection, so the student starts as the teacher's next-token
predictor. It predicts token j at the position where the teacher does.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from argen.models.llama import Condition, Llama, LlamaConfig
from argen.models.next_scale import ScaleFields, ScaleSequence, scale_parts


@dataclass
class TeacherSampling:
    """The teacher's deterministic sampler that drew the student's pairs: its guidance, logit
    filters and Heun steps of the noise-to-token flow (a teacher-intermediate pass repeats it)."""

    cfg_scale: float = 1.0
    cfg_schedule: str = "constant"
    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    flow_steps: int = 16


@dataclass
class DistilledFields:
    noise_dim: int = 8  # width of the noise vectors (the tokenizer's code vectors)
    sampling_steps: tuple[int, ...] = (1, 2)  # the step counts it was trained for
    second_step_from: int = 8  # tokens kept from the first step when sampling in two
    teacher_sampling: TeacherSampling = field(default_factory=TeacherSampling)


@dataclass
class DistilledConfig(LlamaConfig, DistilledFields):
    pass


@dataclass
class DistilledNextScaleConfig(ScaleFields, LlamaConfig, DistilledFields):
    pass


class NoiseReader(nn.Module):
    """The student's extra inputs: the noise projection and the unknown-input vector."""

    def __init__(self, noise_dim: int, dim: int):
        super().__init__()
        self.proj = nn.Linear(noise_dim, dim, bias=False)
        self.unknown = nn.Parameter(torch.zeros(dim))
        nn.init.zeros_(self.proj.weight)

    def noise_term(self, noise: torch.Tensor, known: torch.Tensor) -> torch.Tensor:
        """noise (B, L, d), known (B,) -> the noise's input (B, L, D) at positions >= known."""
        is_noise = torch.arange(noise.shape[1], device=noise.device)[None] >= known[:, None]  # (B, L)
        return self.proj(noise.to(self.proj.weight.dtype)) * is_noise[..., None]


def known_counts(known: torch.Tensor | int, batch: int, device: torch.device) -> torch.Tensor:
    """Known-token counts as a (B,) tensor."""
    return torch.as_tensor(known, device=device).expand(batch)


class DistilledLlama(Llama):
    """A raster student: position j reads token j-1 (or the unknown vector) and noise j."""

    Config = DistilledConfig

    def __init__(self, config: DistilledConfig):
        super().__init__(config)
        self.noise_reader = NoiseReader(config.noise_dim, config.dim)

    def forward(
        self, tokens: torch.Tensor, noise: torch.Tensor, known: torch.Tensor | int, condition: Condition
    ) -> torch.Tensor:
        """tokens (B, L) (only the first ``known`` per row are read), noise (B, L, d) and
        known (B,) or an int -> logits (B, L, V) for every token, float32."""
        b, length = tokens.shape
        known = known_counts(known, b, tokens.device)
        previous = self.embed_tokens(tokens[:, :-1])  # (B, L-1, D): the inputs of positions 1..
        unknown = torch.arange(length - 1, device=tokens.device)[None] >= known[:, None]  # (B, L-1)
        previous = torch.where(unknown[..., None], self.noise_reader.unknown.to(previous.dtype), previous)
        x = torch.cat([self.embed_condition(condition), previous], dim=1)  # (B, P + L - 1, D)
        noise_term = self.noise_reader.noise_term(noise, known)  # (B, L, D)
        x = x + torch.cat([x.new_zeros(b, self.prefix_len - 1, x.shape[-1]), noise_term], dim=1)
        return self.output(self.norm(self.sequence_features(x, condition))).float()


class DistilledNextScale(ScaleSequence, Llama):
    """A next-scale student: scale k reads the teacher's input (f_hat of scales < k) when those
    scales are known, the unknown vector otherwise, and its positions' noise."""

    Config = DistilledNextScaleConfig

    def __init__(self, config: DistilledNextScaleConfig):
        super().__init__(config, scale_parts(config, config.vocab_size))
        self.add_scale_inputs(config)
        self.noise_reader = NoiseReader(config.noise_dim, config.dim)
        starts = torch.tensor([start for start, _ in config.scale_bounds])[self.levels]  # (L,)
        self.register_buffer("scale_starts", starts, persistent=False)  # where each position's scale starts

    def forward(
        self, inputs: torch.Tensor, noise: torch.Tensor, known: torch.Tensor | int, labels: torch.Tensor
    ) -> torch.Tensor:
        """Teacher inputs of scales 1.. (B, L - pn_0**2, token_dim) (read where the scales before
        are known), noise (B, L, d), known (B,) at scale boundaries, class ids (B,) -> logits
        (B, L, V), float32."""
        b, p = len(labels), self.prefix_len
        known = known_counts(known, b, noise.device)
        features = self.word_embed(inputs.to(self.word_embed.weight.dtype))  # (B, L - P, D)
        unknown = self.scale_starts[None, p:] > known[:, None]  # (B, L - P): an earlier scale is unknown
        features = torch.where(unknown[..., None], self.noise_reader.unknown.to(features.dtype), features)
        later = features + self.pos_emb[p:] + self.level_emb(self.levels[p:])
        x = torch.cat([self.embed_start(labels), later], 1) + self.noise_reader.noise_term(noise, known)
        x = self.run_layers(x, self.rope, self.attention_mask(labels, self.max_len))
        return self.output(self.norm(x)).float()
