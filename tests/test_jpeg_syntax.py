"""JPEG-syntax-constrained sampling: the scan automaton agrees with the scan checker, streams
drawn under the mask from any logits are valid and decode, they end within max_len, speculative
decoding under the mask draws the masked target exactly, and unsupported headers or paradigms
are refused."""

import io
import random

import pytest
import simplejpeg
import torch
from PIL import Image

from argen.cli.sample_args import parse_args
from argen.models.llama import Llama, LlamaConfig
from argen.paradigms import refuse_unoffered, sample_options
from argen.paradigms.base import SamplingExtras
from argen.paradigms.byte_stream import ByteStreams
from argen.paradigms.options import SpeculationOptions
from argen.paradigms.raster import RasterIds
from argen.sampling import SamplingConfig, guide
from argen.sampling.next_token import NextTokenOptions, pad_after_stop, sample_next_token
from argen.sampling.speculative import DraftRules, SpeculativeConfig, sample_speculative
from argen.tokenizers import JPEGConfig, JPEGTokenizer
from argen.tokenizers.byte_vocab import ByteVocabulary, train_bpe
from argen.tokenizers.jpeg import EOI
from argen.tokenizers.jpeg_scan import parse_header, scan_is_valid
from argen.tokenizers.jpeg_syntax import ScanAutomaton
from argen.tokenizers.stream_constraint import StreamConstraint
from tests.test_jpeg import digits
from tests.test_speculative import pair


def accepts(automaton: ScanAutomaton, stream: bytes) -> bool:
    state = automaton.start
    for byte in stream:
        state = automaton.step(state, byte)
        if state is None:
            return False
    return automaton.finished(state)


def libjpeg_decodes(data: bytes) -> bool:
    """libjpeg-turbo's verdict with its warnings (corrupt data) as errors: simplejpeg's strict
    decode, an oracle independent of argen's scan checker."""
    try:
        simplejpeg.decode_jpeg(data, strict=True)
    except ValueError:
        return False
    return True


def mutations(stream: bytes, rng: random.Random, n: int):
    for _ in range(n):
        data, i = bytearray(stream), rng.randrange(len(stream))
        kind = rng.randrange(3)
        if kind == 0:
            data[i] = rng.randrange(256)
        elif kind == 1:
            del data[i:]
        else:
            data.insert(i, rng.randrange(256))
        yield bytes(data)


@pytest.mark.parametrize("resolution,restart", [(16, 0), (32, 1)])
def test_automaton_accepts_exactly_the_valid_scans(resolution, restart):
    tok = JPEGTokenizer(JPEGConfig(resolution=resolution, restart_interval=restart, max_len=512))
    automaton, rng = ScanAutomaton(tok.scan_format), random.Random(0)
    images = torch.rand(3, 3, resolution, resolution, generator=torch.Generator().manual_seed(0))
    streams = tok.streams(images * 2 - 1)
    assert all(accepts(automaton, s) for s in streams)
    verdicts = [
        (accepts(automaton, m), scan_is_valid(m, tok.scan_format), libjpeg_decodes(tok.header + m + EOI))
        for s in streams
        for m in mutations(s, rng, 150)
    ]
    assert all(a == b for a, b, _ in verdicts)
    assert 0 < sum(b for _, b, _ in verdicts) < len(verdicts)  # both kinds of verdict were tested
    # every scan the checker accepts, libjpeg decodes without a warning; of those it rejects,
    # libjpeg rejects most of the rest too (6-16% pass it over seeds: libjpeg stops reading
    # after the last block, so it checks neither the padding bits nor what follows, and it
    # bounds no DC value; PIL's lenient decode passes 99%)
    assert all(libjpeg for _, valid, libjpeg in verdicts if valid)
    rejected = [libjpeg for _, valid, libjpeg in verdicts if not valid]
    assert sum(rejected) <= 0.2 * len(rejected)


def draw_constrained(tok: JPEGTokenizer, rows: int, seed: int) -> list[bytes]:
    """Streams drawn under the mask from random logits (no model): each step masks, samples
    with top-k and advances, as the sampler does."""
    generator = torch.Generator().manual_seed(seed)
    syntax = tok.syntax().begin(rows)
    ids = torch.full((rows, tok.config.max_len), tok.vocab.pad)
    for i in range(tok.config.max_len):
        logits = torch.randn(rows, tok.vocab.size, generator=generator) * 3
        logits[:, tok.vocab.eos] += 2  # a model that wants to stop early
        logits = logits.masked_fill(~syntax.allowed(tok.config.max_len - i - 1), float("-inf"))
        logits[:, :] = torch.where(logits >= logits.topk(8).values[:, -1:], logits, float("-inf"))
        ids[:, i] = torch.multinomial(logits.softmax(-1), 1, generator=generator)[:, 0]
        syntax.advance(ids[:, i])
    return [tok.vocab.decode(row) for row in ids.tolist()], ids


@pytest.mark.parametrize(
    "restart,bpe,max_len", [(0, False, 64), (1, False, 160), (0, True, 48), (2, True, 96)]
)
def test_masked_streams_from_random_logits_are_valid_and_decode(restart, bpe, max_len):
    resolution = 16 if restart < 2 else 32
    config = JPEGConfig(resolution=resolution, restart_interval=restart, max_len=max_len)
    if bpe:
        plain = JPEGTokenizer(config)
        config.bpe = train_bpe(plain.streams(digits(100, resolution)), 320)
    tok = JPEGTokenizer(config)
    streams, ids = draw_constrained(tok, 12, seed=restart)
    assert (ids == tok.vocab.eos).any(1).all()  # every row ended within max_len
    for stream in streams:
        assert scan_is_valid(stream, tok.scan_format)
        image = simplejpeg.decode_jpeg(tok.header + stream + EOI, strict=True)  # libjpeg: no warning
        assert image.shape == (resolution, resolution, 3)
    assert tok.decode_checked(ids)[1].all()


def test_sampler_with_constraint_keeps_every_stream_valid():
    tok = JPEGTokenizer(JPEGConfig(resolution=16, max_len=64))
    torch.manual_seed(0)
    model = Llama(
        LlamaConfig(
            vocab_size=tok.vocab.size,
            grid_size=(1, 64),
            num_classes=10,
            dim=32,
            n_layer=1,
            n_head=2,
            rope="1d",
        )
    ).eval()
    labels = torch.arange(10)
    config = SamplingConfig(cfg_scale=2.0, top_k=50)

    def draw(constraint):
        options = NextTokenOptions(stop_token=tok.vocab.eos, pad_token=tok.vocab.pad, constraint=constraint)
        return sample_next_token(model, labels, config, torch.Generator().manual_seed(0), options)

    free, masked = draw(None), draw(tok.syntax())
    assert tok.decode_checked(free)[1].sum() <= 2  # an untrained model rarely writes a valid scan
    assert tok.decode_checked(masked)[1].all()
    assert torch.equal(masked, draw(tok.syntax()))  # deterministic under a seed


def sample_args(flags: list[str]):
    return parse_args(["--ckpt", "run", *flags])


def test_unsupported_headers_and_paradigms_are_refused():
    buffer = io.BytesIO()
    Image.new("RGB", (16, 16)).save(buffer, "JPEG", progressive=True)
    with pytest.raises(ValueError, match="progressive"):
        parse_header(buffer.getvalue())
    with pytest.raises(ValueError, match="max_len"):
        JPEGTokenizer(JPEGConfig(resolution=32, max_len=8)).syntax()
    with pytest.raises(ValueError, match="byte-stream"):
        refuse_unoffered(RasterIds(), sample_args(["--constrained"]), sample_options())
    refuse_unoffered(RasterIds(), sample_args([]), sample_options())  # not asked: nothing to refuse
    refuse_unoffered(RasterIds(), sample_args(["--no-constrained"]), sample_options())
    assert ByteStreams().syntax_constraint(JPEGTokenizer(JPEGConfig(resolution=16)), False) is None


class OneOrTwoBits:
    """A toy syntax: one or two bytes, each 0 or 1, then EOS (six streams in all)."""

    start = 0

    def successors(self, count: int) -> dict:
        return {0: count + 1, 1: count + 1} if count < 2 else {}

    def min_bytes(self, count: int) -> int:
        return 0 if count else 1

    def finished(self, count: int) -> bool:
        return count >= 1


def test_speculative_decoding_under_the_mask_draws_the_masked_target():
    vocab = ByteVocabulary()
    constraint, eos = StreamConstraint(OneOrTwoBits(), vocab, max_len=3), vocab.eos
    target, draft = pair(vocab_size=vocab.size, grid_size=(1, 3))
    streams = torch.tensor([[a, eos, eos] for a in (0, 1)] + [[a, b, eos] for a in (0, 1) for b in (0, 1)])
    labels, config = torch.full((6000,), 1), SamplingConfig(cfg_scale=2.0)
    with torch.no_grad():  # the masked target's probability of each stream, by teacher forcing
        both = torch.cat([labels[:6], torch.full((6,), target.null_class)])
        logits = guide(target(streams.repeat(2, 1), both), 2.0)  # (6, 3, V)
    rows, logp = constraint.begin(6), torch.zeros(6)
    for i in range(3):
        masked = logits[:, i].masked_fill(~rows.allowed(2 - i), float("-inf")).log_softmax(-1)
        logp += masked.gather(1, streams[:, i : i + 1])[:, 0]
        rows.advance(streams[:, i])
    exact = logp.exp()
    ids, stats = sample_speculative(
        target, draft, labels, config, SpeculativeConfig(2), torch.Generator().manual_seed(0),
        DraftRules(syntax=constraint, stop_token=eos),
    )  # fmt: skip
    ids = pad_after_stop(ids, eos, eos)  # what follows EOS is unspecified: EOS, as in `streams`
    hits = (ids[:, None] == streams[None]).all(-1)  # (N, 6)
    assert hits.sum(1).eq(1).all()  # every row is one of the six valid streams
    assert stats["tokens_per_call"] < 2.9  # the draft was rejected at times
    assert 0.5 * (hits.float().mean(0) - exact).abs().sum() < 0.04


def test_speculative_byte_streams_are_valid_deterministic_and_padded():
    tok = JPEGTokenizer(JPEGConfig(resolution=16, max_len=64))
    target, draft = pair(vocab_size=tok.vocab.size, grid_size=(1, 64), num_classes=10)
    paradigm, labels = ByteStreams(), torch.arange(10)
    speculation = paradigm.speculation(target, tok, draft, SpeculationOptions(draft_length=3), None)
    config = SamplingConfig(cfg_scale=2.0, top_k=50)

    def draw(constrained: bool) -> torch.Tensor:
        extras = SamplingExtras(grid_sampler=speculation, constraint=tok.syntax() if constrained else None)
        return paradigm.sample(target, tok, labels, config, torch.Generator().manual_seed(0), extras)

    masked, free = draw(True), draw(False)
    assert tok.decode_checked(masked)[1].all() and torch.equal(masked, draw(True))
    assert tok.decode_checked(free)[1].sum() <= 2  # an untrained pair rarely writes a valid scan
    for ids in (masked, free):  # padding is never drawn, only filled in after EOS
        stops = (ids == tok.vocab.eos).long()
        assert torch.equal(ids == tok.vocab.pad, stops.cumsum(1) - stops > 0)
    with pytest.raises(ValueError, match="no codebook"):
        paradigm.speculation(target, tok, draft, SpeculationOptions(relaxed_k=2, relaxed_delta=0.1), None)
