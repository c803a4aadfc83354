"""Continuous tokens with a flow-matching head: a KL autoencoder's latent grid generated token
by token (MAR's per-token head) or scale by scale (FlowAR's per-scale head); the raster form
also decodes speculatively (CSpD: whole SDE sampling paths accepted or redrawn)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from argen.checkpoint import CheckpointError
from argen.models.continuous import (
    ContinuousLlama,
    ContinuousLlamaConfig,
    ContinuousNextScaleConfig,
    ContinuousNextScaleLlama,
)
from argen.models.heads import FlowHeadConfig, flow_matching_loss
from argen.paradigms.base import Paradigm, SamplingExtras, model_args, unwrapped
from argen.paradigms.next_scale import check_scales
from argen.paradigms.options import SPECULATIVE, SpeculationOptions
from argen.paradigms.raster import check_draft
from argen.sampling.continuous import sample_continuous_next_scale, sample_continuous_next_token
from argen.sampling.continuous_speculative import ContinuousSpeculation, ContinuousSpeculativeConfig
from argen.tokenizers.layout import ContinuousLayout
from argen.tokenizers.protocols import ContinuousTokenizer


class ContinuousTokens(Paradigm):
    """What both continuous paradigms share: sizes and the tokenizer check."""

    layout = ContinuousLayout

    def sizes(self, layout: ContinuousLayout) -> dict:
        return dict(vocab_size=0, grid_size=(layout.height, layout.width), token_dim=layout.token_dim)

    def check_pair(self, model, layout, model_dir, tokenizer_dir):
        c = model.config
        if (layout.token_dim, (layout.height, layout.width)) != (c.token_dim, tuple(c.grid_size)):
            raise CheckpointError(
                f"tokenizer {tokenizer_dir} ({layout}) does not match generator {model_dir} "
                f"(token_dim {c.token_dim}, grid {c.grid_size})"
            )


@dataclass
class RasterHeadOptions:
    head: FlowHeadConfig | None = None  # the flow-matching head (default: MAR's MLP)


@dataclass
class ScaleOptions:
    # the scales generated (tokens per side, ending at the grid side; FlowAR) instead of the
    # raster grid; the run's tokenizer/ records them. Empty: the tokenizer's own (a run's tokenizer/)
    scales: tuple[int, ...] = ()
    # how a scale becomes the next one's input: bilinear, or flowar (FlowAR's bicubic up to the
    # grid, then area down)
    resample: Literal["bilinear", "flowar"] = "bilinear"
    head: FlowHeadConfig | None = None  # the flow-matching head (default: FlowAR's per-scale transformer)


class ContinuousRaster(ContinuousTokens):
    name = "continuous_raster"
    generators = (ContinuousLlama,)
    default = True
    Options = RasterHeadOptions
    sample_options = (SPECULATIVE,)

    def serves(self, layout) -> bool:
        return super().serves(layout) and not layout.scales

    def build(self, model, options: RasterHeadOptions, tokenizer: ContinuousTokenizer, sizes):
        args = model_args(model) | sizes
        return ContinuousLlama(ContinuousLlamaConfig(**args, head=options.head or FlowHeadConfig()))

    def loss(self, model, tokenizer: ContinuousTokenizer, tokens, condition):
        head = unwrapped(model).head
        loss = flow_matching_loss(head, tokens, model(tokens, condition))  # every token (B, L, d)
        return loss, {"flow_loss": loss.item()}

    def sample(self, model, tokenizer, condition, config, generator, extras: SamplingExtras, given=None):
        if extras.grid_sampler is not None:  # continuous speculative decoding
            return extras.grid_sampler(model, condition, config, generator)
        return sample_continuous_next_token(model, condition, config, generator)  # (B, L, d)

    def speculation(self, target, tokenizer: ContinuousTokenizer, draft, options: SpeculationOptions, config):
        if not isinstance(draft, ContinuousLlama) or options.relaxed_delta > 0:
            raise ValueError(
                "continuous targets take a continuous next-token draft and no relaxed acceptance"
            )
        if config.flow_solver != "sde" or config.flow_noise <= 0 or config.temperature <= 0:
            raise ValueError(
                "continuous speculative decoding needs --flow-solver sde, --flow-noise > 0 "
                "and --temperature > 0"
            )
        check_draft(draft, target, ("token_dim", "grid_size", "condition", "num_classes"), options.source)
        return ContinuousSpeculation(
            draft, ContinuousSpeculativeConfig(options.draft_length, options.residual_tries)
        )


class ContinuousScales(ContinuousTokens):
    name = "continuous_scales"
    generators = (ContinuousNextScaleLlama,)
    Options = ScaleOptions
    tokenizer_in_loss = True
    requirement = "continuous_scales needs a continuous tokenizer and options.scales"

    def serves(self, layout) -> bool:
        return super().serves(layout) and bool(layout.scales)

    def prepare_tokenizer(self, tokenizer: ContinuousTokenizer, options: ScaleOptions, seed: int):
        if not options.scales:
            return tokenizer
        with_scales = getattr(tokenizer, "with_scales", None)
        if with_scales is None:
            raise ValueError(f"options.scales is for continuous tokenizers, not {type(tokenizer).__name__}")
        return with_scales(tuple(options.scales), options.resample)

    def build(self, model, options: ScaleOptions, tokenizer: ContinuousTokenizer, sizes):
        args = model_args(model) | sizes
        head = options.head or FlowHeadConfig(attention=True)
        return ContinuousNextScaleLlama(
            ContinuousNextScaleConfig(**args, patch_nums=tokenizer.layout.scales, head=head)
        )

    def loss(self, model, tokenizer: ContinuousTokenizer, tokens, condition):
        maps = tokenizer.scale_maps(tokens)  # [(B, pn**2, d), ...]
        z = model(tokenizer.teacher_inputs(maps), condition)  # (B, L, D)
        head, start = unwrapped(model).head, 0
        losses = []
        for scale in maps:  # one noise level per scale (FlowAR), weighted by its tokens
            end = start + scale.shape[1]
            losses.append(flow_matching_loss(head, scale, z[:, start:end]) * (end - start))
            start = end
        loss = sum(losses) / start
        return loss, {"flow_loss": loss.item()}

    def check_pair(self, model, layout, model_dir, tokenizer_dir):
        super().check_pair(model, layout, model_dir, tokenizer_dir)
        check_scales(model, layout, model_dir, tokenizer_dir)

    def sample(self, model, tokenizer, condition, config, generator, extras: SamplingExtras, given=None):
        return sample_continuous_next_scale(model, tokenizer, condition, config, generator)  # (B, L, d)
