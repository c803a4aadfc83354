"""The cached decode skeleton every sampler shares (gpt-fast's split): the rows a generator
runs (the condition rows, followed by their unconditional twins under guidance), its static KV
cache over them, a prefill of the condition prefix, and a loop of cached steps that reads the
outputs predicting the next block of tokens (one token, one frame or one scale), draws them
and feeds them back.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch

from argen.models.llama import Condition
from argen.sampling.config import SamplingConfig


def model_device(model: torch.nn.Module) -> torch.device:
    """Where a model's weights live."""
    return next(model.parameters()).device


def compiled_step(model: torch.nn.Module, cuda: bool):
    """``model.forward_cached`` compiled with static shapes: one graph for one-token steps, one
    per block size for samplers whose blocks differ (next-scale: one per scale)."""
    mode = "reduce-overhead" if cuda else "default"
    return torch.compile(model.forward_cached, mode=mode, fullgraph=True, dynamic=False)


STEP_GRAPHS = 64  # static-shape graphs a compiled step may hold (next-scale: one per scale)


class GuidedRows:
    """A generator's KV cache over the rows it runs for ``condition``: (B) rows, or (2B)
    [conditional; unconditional] rows under guidance. Use it as a context manager: the cache
    lives inside the ``with`` block. ``extra`` positions past the sequence are scratch space
    (speculative drafts); ``compile`` compiles the one-token step."""

    def __init__(
        self,
        model: torch.nn.Module,
        condition: Condition,
        config: SamplingConfig,
        extra: int = 0,
        compile: bool = False,
    ):
        self.model, self.guided, self.batch, self.extra = model, config.guided, len(condition), extra
        self.rows = model.with_null(condition) if config.guided else condition
        self.compile = compile

    def __enter__(self) -> GuidedRows:
        self.model.setup_cache(self.rows, self.extra)
        step = self.model.forward_cached
        cuda = model_device(self.model).type == "cuda"
        self.step = compiled_step(self.model, cuda) if self.compile else step
        self.graphs = torch._dynamo.config.patch(recompile_limit=STEP_GRAPHS) if self.compile else None
        if self.graphs is not None:
            self.graphs.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        if self.graphs is not None:
            self.graphs.__exit__(*exc)
        self.model.clear_cache()

    def double(self, t: torch.Tensor) -> torch.Tensor:
        """Inputs of the B rows (B, ...) -> the same for every run row (B', ...)."""
        return torch.cat([t, t]) if self.guided else t

    def read(self, x: torch.Tensor, pos: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Embeddings x (B', Lq, D) at positions ``pos`` (Lq,) or per row (B', Lq) -> (the
        model's outputs (B', Lq, V or D) in float32, the last block's features (B', Lq, D))."""
        features = self.model.features_cached(x, pos)
        return self.model.output(self.model.norm(features)).float(), features

    def prefill(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The condition prefix -> outputs and features at its last position, (B', 1, ...)."""
        x = self.model.embed_condition(self.rows)
        outputs, features = self.read(x, torch.arange(x.shape[1], device=x.device))
        return outputs[:, -1:], features[:, -1:]

    def advance(self, tokens: torch.Tensor, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Tokens (B, Lq, ...) at token indices ``index`` (B, Lq), each row at its own place ->
        outputs and features (B', Lq, ...) at the positions that predict the tokens after them."""
        pos = self.double(index + self.model.prefix_len)
        return self.read(self.model.embed_tokens(self.double(tokens)), pos)


@dataclass
class Block:
    """One step of a decode loop: the sequence positions of its inputs, how many of the last
    outputs predict its tokens, and their guidance weight."""

    positions: torch.Tensor
    outputs: int
    weight: float


def cached_decode(
    rows: GuidedRows,
    x: torch.Tensor,
    blocks: Iterable[Block],
    draw: Callable[[torch.Tensor, float, int], torch.Tensor],
    feed: Callable[[torch.Tensor, int], torch.Tensor],
    finished: Callable[[], bool] = lambda: False,
) -> None:
    """Run the blocks inside ``rows``' cache: block k reads ``x`` at its positions (the
    prefill eagerly, later blocks through ``rows.step``), hands the outputs that predict its
    tokens (B', n, ...) and its weight to ``draw(outputs, weight, k)`` (which guides, draws and
    keeps the tokens), and ``feed(tokens, k)`` turns them into the next block's inputs. The
    loop ends after the last block, or once ``finished()``."""
    blocks = list(blocks)
    for k, block in enumerate(blocks):
        forward = rows.model.forward_cached if k == 0 else rows.step
        tokens = draw(forward(x, block.positions)[:, -block.outputs :], block.weight, k)
        if k + 1 == len(blocks) or finished():
            return
        x = feed(tokens, k)


def token_blocks(config: SamplingConfig, prefix: int, first: int, length: int, device) -> Iterable[Block]:
    """One block per token ``first``..``length - 1`` after ``prefix`` input positions: the
    prefill reads them all, then one position per token."""
    for i in range(first, length):
        k = i - first
        pos = torch.arange(prefix, device=device) if k == 0 else torch.tensor([prefix + k - 1], device=device)
        yield Block(pos, 1, config.scale_at(i, length) if config.guided else 1.0)
