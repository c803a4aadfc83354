"""Byte streams as token ids: the 256 byte values (or a byte-level BPE over them) plus
BOS, EOS and PAD, and what the codec tokenizers (JPEG, AVC) share."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import torch
from tokenizers import Tokenizer, models, trainers
from torch import nn

from argen.images import from_uint8
from argen.tokenizers.layout import ByteLayout


def train_bpe(streams: Iterable[bytes], vocab_size: int) -> str:
    """A byte-level BPE (Hugging Face ``tokenizers``) fitted on ``streams`` -> its JSON. Every
    byte stays a token (the 256 base symbols are the initial alphabet), so any stream encodes."""
    if vocab_size <= 256:
        raise ValueError(f"a BPE needs more than the 256 byte symbols, got vocab_size {vocab_size}")
    bpe = Tokenizer(models.BPE())
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, initial_alphabet=[chr(b) for b in range(256)], show_progress=False
    )
    bpe.train_from_iterator((s.decode("latin-1") for s in streams), trainer)  # one symbol per byte
    return bpe.to_str()


class ByteVocabulary:
    """ids <-> bytes: bytes (or BPE merges) first, then BOS, EOS, PAD."""

    def __init__(self, bpe_json: str = ""):
        self.bpe = Tokenizer.from_str(bpe_json) if bpe_json else None
        base = self.bpe.get_vocab_size() if self.bpe else 256
        self.bos, self.eos, self.pad = base, base + 1, base + 2
        self.size = base + 3

    def encode(self, stream: bytes) -> list[int]:
        if self.bpe is None:
            return list(stream)
        return self.bpe.encode(stream.decode("latin-1")).ids

    def decode(self, ids: Iterable[int]) -> bytes:
        """ids up to the first EOS -> bytes; BOS, PAD and out-of-range ids are dropped."""
        kept = []
        for i in ids:
            if i == self.eos:
                break
            if 0 <= i < self.bos:
                kept.append(i)
        return b"".join(self.token_bytes(i) for i in kept)

    def token_bytes(self, token: int) -> bytes:
        """The bytes of one stream id (below ``bos``)."""
        return bytes([token]) if self.bpe is None else self.bpe.id_to_token(token).encode("latin-1")

    def pack(self, streams: list[bytes], max_len: int) -> torch.Tensor:
        """Streams -> ids (B, max_len): each stream's ids, EOS, then PAD. A stream that does
        not fit is an error naming its length."""
        rows = [self.encode(s) + [self.eos] for s in streams]
        longest = max(len(r) for r in rows)
        if longest > max_len:
            raise ValueError(f"a stream takes {longest} tokens with EOS; max_len is {max_len}: raise it")
        return torch.tensor([r + [self.pad] * (max_len - len(r)) for r in rows])


def split_header(stream: bytes, header: bytes, what: str) -> bytes:
    """The part of ``stream`` after the fixed ``header`` (which it must start with)."""
    if not stream.startswith(header):
        raise ValueError(f"this {what} stream does not start with the tokenizer's fixed header")
    return stream[len(header) :]


class ByteStreamTokenizer(nn.Module):
    """pixels <-> a codec's bytes as ids. No weights: the config (with its BPE) is the
    tokenizer. Subclasses turn pixels into header-less ``streams`` and ``render`` a stream."""

    codec = True  # nothing to optimise: a recipe's run writes it (and fits its BPE)

    def __init__(self, config):
        super().__init__()
        self.config = config
        self.vocab = ByteVocabulary(config.bpe)

    @property
    def layout(self) -> ByteLayout:
        return ByteLayout(self.config.max_len, self.vocab.size, self.vocab.eos, self.vocab.pad)

    def streams(self, pixels: torch.Tensor) -> list[bytes]:
        raise NotImplementedError

    def render(self, stream: bytes) -> tuple[np.ndarray, bool]:
        """One header-less stream -> (uint8 (..., H, W, 3), whether it is valid). Never raises."""
        raise NotImplementedError

    def syntax(self):
        """A :class:`~argen.tokenizers.stream_constraint.StreamConstraint` that admits only
        valid streams, or None where the codec's syntax is not modelled byte-wise."""
        return None

    @torch.no_grad()
    def encode(self, pixels: torch.Tensor) -> torch.Tensor:
        """pixels -> ids (B, max_len): stream tokens, EOS, PAD."""
        return self.vocab.pack(self.streams(pixels), self.config.max_len)

    @torch.no_grad()
    def decode(self, ids: torch.Tensor) -> torch.Tensor:
        """ids (B, L) -> pixels in [-1, 1]; see :meth:`decode_checked`."""
        return self.decode_checked(ids)[0]

    @torch.no_grad()
    def decode_checked(self, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """ids (B, L) -> (pixels (B, [T,] 3, H, W) in [-1, 1], valid (B,) bool). Never raises
        on model output: ids are cut at EOS and specials dropped before rendering."""
        rendered = [self.render(self.vocab.decode(row)) for row in ids.tolist()]
        arrays = np.stack([array for array, _ in rendered])  # (B, [T,] H, W, 3)
        pixels = from_uint8(arrays.reshape(-1, *arrays.shape[-3:]))  # (B*[T], 3, H, W)
        pixels = pixels.view(*arrays.shape[:-3], *pixels.shape[1:])
        return pixels.to(ids.device), torch.tensor([ok for _, ok in rendered], device=ids.device)
