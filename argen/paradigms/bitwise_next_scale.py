"""Bitwise next-scale generation (Infinity): a residual pyramid of d-bit maps, each scale drawn
at once, every token's bits predicted in groups of k by one output layer (``group_bits: 1`` is
Infinity's bitwise head, two logits per bit), so no 2^d softmax is built. The inputs are the
tokenizer's ``f_hat`` resized to the next scale.

``options.self_correction_layers: n`` trains with Infinity's bitwise self-correction on the first
n scales (a share of their bits up to ``self_correction_strength`` flipped, the later scales
re-quantised from the latent): the run caches the tokenizer's latents instead of bits.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from argen.checkpoint import CheckpointError
from argen.models import register_generator
from argen.models.llama import Llama
from argen.models.next_scale import ScaleFields, ScaleSequence, scale_parts
from argen.paradigms.base import Paradigm, SamplingExtras, model_args, unwrapped
from argen.paradigms.bitwise import BitwiseConfig, BitwiseOptions, to_bits, to_groups
from argen.paradigms.next_scale import check_scales
from argen.paradigms.registry import register_paradigm
from argen.sampling.logits import GroupedTokens
from argen.sampling.next_scale import NextScaleOptions, sample_next_scale
from argen.tokenizers.binary_pyramid import BitScaleLayout, BitScaleTokenizer


@dataclass
class BitwiseScaleOptions(BitwiseOptions):
    self_correction_layers: int = 0  # scales whose bits are flipped in training (Infinity's BSC)
    self_correction_strength: float = 0.3  # the largest share flipped (Infinity's train.sh)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.self_correction_layers < 0 or not 0 <= self.self_correction_strength <= 1:
            raise ValueError("options.self_correction_layers must be >= 0 and _strength in [0, 1]")


@dataclass
class BitwiseScaleConfig(ScaleFields, BitwiseConfig):
    """A next-scale Llama whose token is ``bits`` bits in groups of ``group_bits``; the
    self-correction fields are its training's (sampling ignores them)."""

    self_correction_layers: int = 0
    self_correction_strength: float = 0.3


class BitwiseScaleLlama(ScaleSequence, Llama):
    """The next-scale Llama with a head of groups x 2^k logits per token."""

    Config = BitwiseScaleConfig

    def __init__(self, config: BitwiseScaleConfig):
        super().__init__(config, scale_parts(config, config.vocab_size))
        self.add_scale_inputs(config)

    def forward(self, inputs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Teacher forcing -> logits (B, L, groups * classes) for every scale's tokens."""
        return self.scale_outputs(inputs, labels)


register_generator(BitwiseScaleLlama)


class BitPick(GroupedTokens):
    """Guided logits (B, n, groups * classes) -> bits (B, n, d), each group drawn on its own."""

    def __init__(self, config, generator, groups: int, group_bits: int):
        super().__init__(config, generator, groups)
        self.group_bits = group_bits

    def __call__(self, logits: torch.Tensor, start: int) -> torch.Tensor:
        return to_bits(super().__call__(logits, start), self.group_bits)


def split_bit_scales(tokens: torch.Tensor, layout: BitScaleLayout) -> list[torch.Tensor]:
    """Stored bits (B, sum(pn**2) * d) -> per-scale maps [(B, pn, pn, d), ...]."""
    tokens = tokens.view(len(tokens), -1, layout.bits)  # (B, L, d)
    parts = tokens.split([pn * pn for pn in layout.scales], dim=1)
    return [p.unflatten(1, (pn, pn)) for p, pn in zip(parts, layout.scales)]


class BitwiseNextScale(Paradigm):
    name = "bitwise_next_scale"
    layout = BitScaleLayout
    default = True
    Options = BitwiseScaleOptions
    generators = (BitwiseScaleLlama,)
    requirement = "bitwise_next_scale needs a multi-scale binary tokenizer (tokenizer: binary_pyramid)"
    tokenizer_in_loss = True

    def sizes(self, layout: BitScaleLayout) -> dict:
        side = layout.scales[-1]
        return dict(grid_size=(side, side), bits=layout.bits)

    def prepare_tokenizer(self, tokenizer, options: BitwiseScaleOptions, seed: int):
        """With self-correction, a copy that encodes to latents (the token cache keeps them)."""
        if not options.self_correction_layers:
            return tokenizer
        return tokenizer.encoding_to("latent")

    def build(self, model, options: BitwiseScaleOptions, tokenizer: BitScaleTokenizer, sizes):
        groups = sizes["bits"] // options.group_bits
        layout = tokenizer.layout
        args = model_args(model) | sizes | dict(vocab_size=groups * 2**options.group_bits)
        scales = dict(patch_nums=layout.scales, token_dim=layout.bits, group_bits=options.group_bits)
        correction = dict(
            self_correction_layers=options.self_correction_layers,
            self_correction_strength=options.self_correction_strength,
        )
        return BitwiseScaleLlama(BitwiseScaleConfig(**args, **scales, **correction))

    def targets(self, config: BitwiseScaleConfig, tokenizer, tokens: torch.Tensor):
        """Cached tokens -> (target bits per scale, generator inputs): teacher forcing on bits,
        or self-correction on latents (B, h, w, d)."""
        if tokens.is_floating_point() != bool(config.self_correction_layers):
            holds, needs = ("latents", "bits") if tokens.is_floating_point() else ("bits", "latents")
            raise ValueError(
                f"the token cache holds {holds}, this generator trains on {needs} "
                "(options.self_correction_layers): point data.token_cache elsewhere"
            )
        if config.self_correction_layers:
            f = tokens.permute(0, 3, 1, 2)  # (B, h, w, d) -> (B, d, h, w)
            return tokenizer.self_corrected(f, config.self_correction_layers, config.self_correction_strength)
        bits = split_bit_scales(tokens, tokenizer.layout)
        return bits, tokenizer.teacher_inputs(bits)

    def loss(self, model, tokenizer: BitScaleTokenizer, tokens, condition):
        c = unwrapped(model).config
        bits, inputs = self.targets(c, tokenizer, tokens)
        ids = to_groups(torch.cat([b.flatten(1, 2) for b in bits], 1), c.group_bits)  # (B, L, groups)
        logits = model(inputs, condition).unflatten(-1, (c.groups, c.classes))
        loss = F.cross_entropy(logits.flatten(0, 2), ids.flatten())  # logits (B, L, groups, classes)
        return loss, {"loss": loss.item(), "bits_loss": loss.item() / c.group_bits}

    def check_pair(self, model, layout: BitScaleLayout, model_dir, tokenizer_dir):
        check_scales(model, layout, model_dir, tokenizer_dir)
        if layout.bits != model.config.bits:
            raise CheckpointError(
                f"tokenizer {tokenizer_dir} has {layout.bits}-bit tokens, generator {model_dir} "
                f"{model.config.bits}-bit ones"
            )

    def sample(self, model, tokenizer, condition, config, generator, extras: SamplingExtras, given=None):
        c = model.config
        pick = BitPick(config, generator, c.groups, c.group_bits)
        options = NextScaleOptions(pick=pick, compile=extras.compile)
        return sample_next_scale(model, tokenizer, condition, config, generator, options)


register_paradigm(BitwiseNextScale())
