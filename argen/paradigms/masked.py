"""Masked parallel decoding over raster ids (MaskGIT, with MAR's masking): the Llama blocks with
full (bidirectional) attention predict the masked ids of a grid from the visible ones and the
condition prefix; sampling reveals the grid in S passes.

Training masks a share of every row's ids in a random order, the share drawn from MAR's
truncated normal (mean 1, std 0.25, cut to [``min_mask_ratio``, 1]; one share per batch, as
MAR) or MaskGIT's cosine law (cos(pi/2 u), u uniform, one per row); the loss is the cross-entropy
of the masked ids. A learned mask embedding (one row past the codebook) stands for a masked id.

Sampling follows MaskGIT: every pass draws all masked ids (guided, with the run's temperature,
top-k and top-p), then keeps the cosine schedule's share masked for the next pass: the ids of
lowest confidence (log-probability of the drawn id plus Gumbel noise scaled by a choice
temperature that anneals to 0; ``--mask-order confidence``) or, as MAR, the next ones in a
random order per sample (``--mask-order random``). Guidance is constant or MAR's linear ramp in
the share revealed (``--cfg-schedule linear``). Editing (``--edit IMAGE --mask MASK``) keeps the
source image's tokens where the mask is below one half over a token and decodes only the others:
the schedule then runs over the regenerated tokens (at most one pass per token).

``paradigm: masked_flow`` is MAR proper, the same over continuous tokens: a masked token's input
is a learned mask embedding, the generator's output at every position conditions argen's flow
head, the loss is flow matching on the masked tokens, and each pass draws the tokens the schedule
reveals with the head (MAR's random order; guidance on the head's velocity, temperature on its
noise as for the other continuous paradigms).
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from argen.models import register_generator
from argen.models.continuous import ContinuousLlamaConfig
from argen.models.heads import FlowHead, FlowHeadConfig, flow_matching_loss
from argen.models.llama import Condition, Llama, LlamaConfig
from argen.models.parts import Bidirectional, Parts
from argen.paradigms.base import Paradigm, SamplingExtras, model_args, unwrapped
from argen.paradigms.continuous import ContinuousTokens
from argen.paradigms.options import EDIT, OptionRun, SampleOption
from argen.paradigms.registry import register_paradigm
from argen.sampling.config import SamplingConfig
from argen.sampling.continuous import draw_tokens
from argen.sampling.guidance import guide
from argen.sampling.logits import sample_logits
from argen.tokenizers.layout import GridLayout
from argen.tokenizers.protocols import GridTokenizer


@dataclass
class MaskedOptions:
    mask_ratio: Literal["truncnorm", "cosine"] = (
        "truncnorm"  # MAR's law of the masked share; cosine: MaskGIT's
    )
    min_mask_ratio: float = 0.7  # truncnorm: the smallest share (MAR)


@dataclass
class MaskedConfig(LlamaConfig):
    """The bidirectional Llama over a grid; ``vocab_size`` ids, id ``vocab_size`` is the mask."""

    mask_ratio: Literal["truncnorm", "cosine"] = "truncnorm"
    min_mask_ratio: float = 0.7

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.mask_ratio not in ("truncnorm", "cosine") or not 0 <= self.min_mask_ratio < 1:
            raise ValueError(
                f"mask_ratio must be truncnorm or cosine and min_mask_ratio in [0, 1), got "
                f"{self.mask_ratio!r}, {self.min_mask_ratio}"
            )


class MaskedLlama(Llama):
    """The bidirectional Llama over ids with masks (B, L) -> logits of every position (B, L, V)."""

    Config = MaskedConfig

    def __init__(self, config: MaskedConfig):
        c = config
        embedding = nn.Embedding(c.vocab_size + 1, c.dim)  # the last row: the mask
        super().__init__(c, Parts(embedding, nn.Linear(c.dim, c.vocab_size, bias=False), Bidirectional()))

    @property
    def mask_id(self) -> int:
        return self.config.vocab_size


register_generator(MaskedLlama)


@dataclass
class MaskedFlowConfig(ContinuousLlamaConfig):
    """The bidirectional Llama over continuous tokens with a flow head (MAR)."""

    mask_ratio: Literal["truncnorm", "cosine"] = "truncnorm"
    min_mask_ratio: float = 0.7


class MaskedInput(nn.Linear):
    """Continuous tokens with a mask channel (..., d + 1) -> (..., D): a projection of the
    token, or the learned mask embedding where the last channel is 1."""

    def __init__(self, token_dim: int, dim: int, init_std: float):
        super().__init__(token_dim, dim)
        self.mask_emb = nn.Parameter(torch.randn(dim) * init_std)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        x = super().forward(inputs[..., :-1])  # (..., D)
        return torch.where(inputs[..., -1:] > 0.5, self.mask_emb.to(x.dtype), x)


class MaskedFlowLlama(Llama):
    """Inputs (B, L, d + 1): the tokens and a last channel that is 1 where a token is masked;
    ``forward`` gives z (B, L, D) at every position, the flow head's condition."""

    Config = MaskedFlowConfig
    moved_keys = {"mask_emb": "tok_emb.mask_emb"}  # saved before the mask joined the input part

    def __init__(self, config: MaskedFlowConfig):
        c = config
        head = nn.Linear(c.dim, c.dim, bias=False)  # final hidden state -> z, the head's condition
        super().__init__(c, Parts(MaskedInput(c.token_dim, c.dim, c.init_std), head, Bidirectional()))
        self.head = FlowHead(c.head, c.token_dim, c.dim)


register_generator(MaskedFlowLlama)


def with_mask_channel(tokens: torch.Tensor, masked: torch.Tensor) -> torch.Tensor:
    """Tokens (B, L, d) and masks (B, L) -> inputs (B, L, d + 1), masked tokens zeroed."""
    return torch.cat([tokens.masked_fill(masked[..., None], 0.0), masked[..., None].to(tokens.dtype)], -1)


def truncated_normal(n: int, low: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """n draws of N(1, 0.25^2) cut to [low, 1] (MAR's mask ratio), by the inverse CDF."""
    normal = torch.distributions.Normal(1.0, 0.25)
    lo, hi = normal.cdf(torch.tensor(low)), normal.cdf(torch.tensor(1.0))
    u = lo + (hi - lo) * torch.rand(n, generator=generator)
    return normal.icdf(u).clamp(low, 1.0)


def mask_shares(c: MaskedConfig, rows: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """The share of each row's ids to mask (rows,): one truncated-normal draw for the batch (MAR)
    or one cosine draw per row (MaskGIT)."""
    if c.mask_ratio == "truncnorm":
        return truncated_normal(1, c.min_mask_ratio, generator).expand(rows)
    return torch.cos(math.pi / 2 * torch.rand(rows, generator=generator))


def random_mask(shares: torch.Tensor, length: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Masks (rows, length), True where masked: ceil(share * length) ids (at least one) in a
    random order per row."""
    ranks = torch.rand(len(shares), length, generator=generator).argsort(-1).argsort(-1)
    return first_in_order(shares, ranks)


def first_in_order(shares: torch.Tensor, ranks: torch.Tensor) -> torch.Tensor:
    """Masks (rows, L) of the ceil(share * L) ids (at least one) that come first in each row's
    order; ``ranks`` (rows, L) is each id's place in its row's order (MAR's ``random_masking``)."""
    length = ranks.shape[1]
    counts = (shares * length).ceil().clamp(1, length).long()  # (rows,)
    return ranks < counts[:, None]


def linear_guidance(cfg_scale: float, total: int, keep: int) -> float:
    """MAR's (Muse's) linear ramp: 1 + (cfg - 1) * the share revealed after this pass, counting
    one token still masked at the last pass as MAR's schedule does."""
    return 1 + (cfg_scale - 1) * (total - max(keep, 1)) / total


@dataclass
class MaskSchedule:
    """Sampling settings of masked decoding (``sample.py --mask-steps/--mask-order/--choice-temperature``)."""

    steps: int = 8
    order: Literal["confidence", "random"] = "confidence"
    choice_temperature: float = 4.5  # MaskGIT's


def masked_next(step: int, steps: int, length: int, unknown: int) -> int:
    """How many ids stay masked after pass ``step`` of ``steps`` (MaskGIT's cosine schedule: at
    least one revealed per pass, at least one kept until the last)."""
    if step == steps - 1:
        return 0
    share = math.cos(math.pi / 2 * (step + 1) / steps)
    return max(1, min(unknown - 1, math.floor(length * share)))


def still_masked(scores: torch.Tensor, count: int) -> torch.Tensor:
    """The ``count`` positions of lowest score per row (B, L) -> mask (B, L)."""
    lowest = scores.argsort(-1)[:, :count]
    return torch.zeros_like(scores, dtype=torch.bool).scatter_(1, lowest, True)


def masked_passes(extras: SamplingExtras) -> int:
    """Passes per image: the schedule's, at most one per token an edit regenerates."""
    steps = extras.by_option.get("masked", MaskSchedule()).steps
    return min(steps, int((~extras.edit[1][0]).sum())) if extras.edit else steps


Kept = tuple[torch.Tensor, torch.Tensor]  # a source's tokens (1, L, ...) and where they stay (L,)


def kept_tokens(layout, regenerate: torch.Tensor) -> torch.Tensor:
    """``--mask``: where to regenerate the image (R, R) in [0, 1] -> the tokens kept (L,): those
    over which the mask's mean is below one half."""
    area = F.interpolate(regenerate.float()[None, None], size=(layout.height, layout.width), mode="area")
    kept = (area[0, 0] < 0.5).flatten()  # (L,)
    if kept.all():
        raise ValueError(f"--mask regenerates no token of the {layout.height}x{layout.width} grid")
    return kept


def start_from(kept: Kept | None, blank: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The first pass's tokens (B, L, ...) and which are unknown (B, L): ``blank`` and all, or
    the source's tokens where kept."""
    unknown = torch.ones(blank.shape[:2], dtype=torch.bool, device=blank.device)
    if kept is None:
        return blank, unknown
    source, keep = (t.to(blank.device) for t in kept)
    where = keep.view(1, -1, *[1] * (blank.ndim - 2))
    return torch.where(where, source.to(blank.dtype), blank), unknown & ~keep


@torch.no_grad()
def sample_masked(
    model: MaskedLlama,
    condition: Condition,
    config: SamplingConfig,
    generator: torch.Generator | None,
    schedule: MaskSchedule,
    kept: Kept | None = None,
) -> torch.Tensor:
    """Masked decoding of ``model.config.num_tokens`` ids per condition row -> (B, L)."""
    length, device = model.config.num_tokens, model.output.weight.device
    rows = model.with_null(condition) if config.guided else condition
    blank = torch.full((len(condition), length), model.mask_id, dtype=torch.long, device=device)
    ids, unknown = start_from(kept, blank)
    total = int(unknown[0].sum())  # the tokens decoded: all, or those an edit regenerates
    steps = min(schedule.steps, total)
    order = torch.rand(ids.shape, generator=generator, device=device)  # random order: low first revealed last
    for step in range(steps):
        unknown = ids == model.mask_id
        keep = masked_next(step, steps, total, int(unknown[0].sum()))
        logits = model(torch.cat([ids, ids]) if config.guided else ids, rows)  # (B', L, V)
        if config.guided:
            linear = config.cfg_schedule == "linear"
            logits = guide(
                logits, linear_guidance(config.cfg_scale, total, keep) if linear else config.cfg_scale
            )
        drawn = sample_logits(logits.flatten(0, 1), config.temperature, config.top_k, config.top_p, generator)
        drawn = torch.where(unknown, drawn.view_as(ids), ids)
        if schedule.order == "random":
            scores = torch.where(unknown, order, torch.inf)
        else:
            chosen = logits.log_softmax(-1).gather(-1, drawn[..., None])[..., 0]  # (B, L)
            u = torch.rand(ids.shape, generator=generator, device=device).clamp(1e-20, 1.0)
            noise = -torch.log(-torch.log(u))  # Gumbel
            annealed = schedule.choice_temperature * (1 - (step + 1) / steps)
            scores = torch.where(unknown, chosen + annealed * noise, torch.inf)
        ids = drawn.masked_fill(still_masked(scores, keep), model.mask_id)
    return ids


@torch.no_grad()
def sample_masked_flow(
    model: MaskedFlowLlama,
    condition: Condition,
    config: SamplingConfig,
    generator: torch.Generator | None,
    schedule: MaskSchedule,
    kept: Kept | None = None,
) -> torch.Tensor:
    """MAR's sampling of ``model.config.num_tokens`` continuous tokens per row -> (B, L, d): each
    pass draws, with the flow head, the tokens that come next in a random order per row."""
    c, device = model.config, model.output.weight.device
    rows = model.with_null(condition) if config.guided else condition
    blank = torch.zeros(len(condition), c.num_tokens, c.token_dim, device=device)
    tokens, unknown = start_from(kept, blank)
    total = int(unknown[0].sum())
    steps = min(schedule.steps, total)
    order = torch.rand(unknown.shape, generator=generator, device=device)  # low: revealed last
    for step in range(steps):
        keep = masked_next(step, steps, total, int(unknown[0].sum()))
        inputs = with_mask_channel(tokens, unknown)
        z = model(torch.cat([inputs, inputs]) if config.guided else inputs, rows)  # (B', L, D)
        later = still_masked(torch.where(unknown, order, torch.inf), keep)
        now = (unknown & ~later).float().argsort(-1, descending=True)[:, : int(unknown[0].sum()) - keep]
        index = torch.cat([now, now]) if config.guided else now  # (B', n)
        picked = z.gather(1, index[..., None].expand(-1, -1, z.shape[-1]))  # (B', n, D)
        linear = config.cfg_schedule == "linear"
        weight = linear_guidance(config.cfg_scale, total, keep) if linear else config.cfg_scale
        drawn = draw_tokens(model, picked, weight if config.guided else 1.0, config, generator)  # (B, n, d)
        tokens.scatter_(1, now[..., None].expand(-1, -1, c.token_dim), drawn.to(tokens.dtype))
        unknown = later
    return tokens


class MaskedDecoding(SampleOption):
    needs = (
        "--mask-steps, --mask-order and --choice-temperature are for masked generators (masked, masked_flow)"
    )

    def add_arguments(self, p: argparse.ArgumentParser) -> None:
        p.add_argument("--mask-steps", type=int, help="masked: passes per image (default 8)")
        p.add_argument(
            "--mask-order",
            choices=("confidence", "random"),
            help="masked: keep the least confident ids masked (MaskGIT, default) or a random order's (MAR)",
        )
        p.add_argument(
            "--choice-temperature", type=float, help="masked: Gumbel scale of the confidence (4.5)"
        )

    def requested(self, args: argparse.Namespace) -> bool:
        return any(getattr(args, k) is not None for k in ("mask_steps", "mask_order", "choice_temperature"))

    def build(self, args: argparse.Namespace, run: OptionRun, extras: SamplingExtras) -> None:
        given = dict(steps=args.mask_steps, order=args.mask_order, choice_temperature=args.choice_temperature)
        schedule = MaskSchedule(**{k: v for k, v in given.items() if v is not None})
        if not 1 <= schedule.steps <= run.model.config.num_tokens:
            raise ValueError(
                f"--mask-steps must lie in [1, {run.model.config.num_tokens}], got {schedule.steps}"
            )
        extras.by_option["masked"] = schedule

    def metrics(self, args: argparse.Namespace, extras: SamplingExtras) -> dict:
        schedule = extras.by_option["masked"]
        return {"mask_steps": schedule.steps, "mask_order": schedule.order}


MASKED_DECODING = MaskedDecoding()


class MaskedIds(Paradigm):
    name = "masked"
    layout = GridLayout
    Options = MaskedOptions
    generators = (MaskedLlama,)
    sample_options = (MASKED_DECODING, EDIT)

    def build(self, model: LlamaConfig, options: MaskedOptions, tokenizer: GridTokenizer, sizes):
        args = model_args(model) | sizes
        return MaskedLlama(
            MaskedConfig(**args, mask_ratio=options.mask_ratio, min_mask_ratio=options.min_mask_ratio)
        )

    def loss(self, model, tokenizer: GridTokenizer, tokens, condition):
        c, ids = unwrapped(model).config, tokens.flatten(1)  # (B, L)
        masked = random_mask(mask_shares(c, len(ids)).to(ids.device), ids.shape[1]).to(ids.device)
        logits = model(ids.masked_fill(masked, c.vocab_size), condition)  # (B, L, V)
        loss = F.cross_entropy(logits[masked], ids[masked])
        return loss, {"loss": loss.item(), "masked_share": masked.float().mean().item()}

    def sample(self, model, tokenizer, condition, config, generator, extras: SamplingExtras, given=None):
        schedule = extras.by_option.get("masked", MaskSchedule())
        kept = (extras.edit[0][0], extras.edit[1][0]) if extras.edit else None
        return sample_masked(model, condition, config, generator, schedule, kept)  # (B, L)

    def edit_source(self, tokenizer: GridTokenizer, image: torch.Tensor, regenerate: torch.Tensor):
        """``--edit``: ([source ids (1, L)], [kept (L,)])."""
        return [tokenizer.encode(image).flatten(1)], [kept_tokens(tokenizer.layout, regenerate)]

    def passes(self, extras: SamplingExtras) -> int:
        return masked_passes(extras)

    def decode(self, tokenizer: GridTokenizer, ids: torch.Tensor):
        layout = tokenizer.layout
        return super().decode(tokenizer, ids.view(-1, layout.height, layout.width))


register_paradigm(MaskedIds())


@dataclass
class MaskedFlowOptions:
    mask_ratio: Literal["truncnorm", "cosine"] = "truncnorm"  # MAR's law of the masked share
    min_mask_ratio: float = 0.7
    head: FlowHeadConfig | None = None  # the flow-matching head (default: MAR's MLP)


class MaskedFlow(ContinuousTokens):
    name = "masked_flow"
    Options = MaskedFlowOptions
    generators = (MaskedFlowLlama,)
    sample_options = (MASKED_DECODING, EDIT)
    requirement = "masked_flow needs a continuous tokenizer without scales (tokenizer: continuous)"

    def serves(self, layout) -> bool:
        return super().serves(layout) and not layout.scales

    def build(self, model: LlamaConfig, options: MaskedFlowOptions, tokenizer, sizes):
        settings = dict(mask_ratio=options.mask_ratio, min_mask_ratio=options.min_mask_ratio)
        head = options.head or FlowHeadConfig()
        return MaskedFlowLlama(MaskedFlowConfig(**(model_args(model) | sizes | settings), head=head))

    def loss(self, model, tokenizer, tokens, condition):
        inner = unwrapped(model)
        masked = random_mask(mask_shares(inner.config, len(tokens)), tokens.shape[1]).to(tokens.device)
        z = model(with_mask_channel(tokens, masked), condition)  # (B, L, D)
        loss = flow_matching_loss(inner.head, tokens[masked][None], z[masked][None])  # masked tokens only
        return loss, {"flow_loss": loss.item(), "masked_share": masked.float().mean().item()}

    def sample(self, model, tokenizer, condition, config, generator, extras: SamplingExtras, given=None):
        schedule = extras.by_option.get("masked", MaskSchedule())
        kept = (extras.edit[0][0], extras.edit[1][0]) if extras.edit else None
        return sample_masked_flow(model, condition, config, generator, schedule, kept)  # (B, L, d)

    def edit_source(self, tokenizer, image: torch.Tensor, regenerate: torch.Tensor):
        """``--edit``: ([source tokens (1, L, d)], [kept (L,)])."""
        return [tokenizer.encode(image)], [kept_tokens(tokenizer.layout, regenerate)]

    def passes(self, extras: SamplingExtras) -> int:
        return masked_passes(extras)


register_paradigm(MaskedFlow())
