"""JPEG byte streams (JPEG-LM): header strip/restore, round trips, BPE, robust decoding, scan
validation, EOS-stopping sampling and the pipeline through train.py and sample.py."""

import json

import numpy as np
import pytest
import torch

from argen import tokenizers
from argen.checkpoint import save_model
from argen.cli import sample as sample_cli
from argen.data import build_dataset
from argen.models.llama import Llama, LlamaConfig
from argen.models.rope import rope_1d
from argen.sampling import SamplingConfig
from argen.sampling.next_token import NextTokenOptions, sample_next_token
from argen.tokenizers import ByteLayout, JPEGConfig, JPEGTokenizer
from argen.tokenizers.byte_vocab import ByteVocabulary, train_bpe
from argen.tokenizers.jpeg import EOI
from argen.tokenizers.jpeg_scan import scan_is_valid
from argen.training.recipes import recipe_from_dict
from argen.training.trainer import train
from tests.conftest import gpt_recipe


def digits(n: int = 20, resolution: int = 16) -> torch.Tensor:
    data = build_dataset("digits", resolution)
    return torch.stack([data[i][0] for i in range(n)])


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((10 * torch.log10(1 / ((a - b) / 2).pow(2).flatten(1).mean(1))).mean())


def test_header_is_stripped_and_restored_losslessly():
    tok = JPEGTokenizer(JPEGConfig(resolution=16, quality=25, max_len=64))
    pixels = digits()
    files = [
        tok.jpeg_bytes(image)
        for image in (pixels.permute(0, 2, 3, 1).add(1).mul(127.5).round().byte().numpy())
    ]
    streams = tok.streams(pixels)
    assert all(tok.header + s + EOI == f for s, f in zip(streams, files))
    assert (
        tok.header.startswith(b"\xff\xd8")
        and len(tok.header) == 623
        and not any(s.startswith(b"\xff\xd8") for s in streams)
    )
    ids = tok.encode(pixels)
    assert ids.shape == (20, 64) and tok.layout == ByteLayout(64, 259, 257, 258)
    assert all(tok.vocab.decode(row) == s for row, s in zip(ids.tolist(), streams))
    assert (ids == tok.vocab.eos).sum(1).eq(1).all()  # one EOS per row, then padding


@pytest.mark.parametrize("quality,bound", [(25, 28.0), (75, 34.0)])
def test_round_trip_quality(quality, bound):
    tok = JPEGTokenizer(JPEGConfig(resolution=16, quality=quality, max_len=128, restart_interval=1))
    pixels = digits()
    recon, valid = tok.decode_checked(tok.encode(pixels))
    assert valid.all() and psnr(recon, pixels) > bound


def test_bpe_round_trip_is_exact_and_shorter(tmp_path):
    plain = JPEGTokenizer(JPEGConfig(resolution=16, max_len=64))
    streams = plain.streams(digits(200))
    config = JPEGConfig(resolution=16, max_len=64, bpe=train_bpe(streams, 300))
    tok = JPEGTokenizer(config)
    assert tok.vocab.size == 303
    ids = tok.encode(digits(200))
    assert all(tok.vocab.decode(row) == s for row, s in zip(ids.tolist(), streams))
    assert (ids < tok.vocab.bos).sum() < sum(len(s) for s in streams)  # merges shorten the streams
    loaded = tokenizers.load(save_model(tok, tmp_path / "jpeg"))
    assert torch.equal(loaded.encode(digits(5)), ids[:5])
    with pytest.raises(ValueError, match="max_len"):
        ByteVocabulary().pack([bytes(70)], 64)


def test_decoding_model_output_never_raises_and_reports_invalid():
    tok = JPEGTokenizer(JPEGConfig(resolution=32, max_len=512, restart_interval=1))
    pixels = torch.rand(4, 3, 32, 32) * 2 - 1
    ids = tok.encode(pixels)
    _, valid = tok.decode_checked(ids)
    assert valid.all()
    torch.manual_seed(0)
    junk = torch.randint(0, tok.vocab.size, (16, 100))
    truncated = ids[:, :20]
    for bad in (junk, truncated, torch.full((2, 5), tok.vocab.eos), torch.full((2, 5), 255)):
        images, flags = tok.decode_checked(bad)
        assert images.shape == (len(bad), 3, 32, 32) and images.abs().max() <= 1 and not flags.any()
    short = tok.vocab.decode(ids[0].tolist())[:-2]  # a scan two bytes short of its last block
    assert not scan_is_valid(short, tok.scan_format)


def test_one_d_rope_and_eos_stopping_sampler():
    table = rope_1d(5, 8, 10000.0, prefix_len=1)
    assert table.shape == (6, 4, 2) and torch.equal(table[0], torch.tensor([[1.0, 0.0]] * 4))
    torch.testing.assert_close(table[3, 0], torch.tensor([np.cos(2.0), np.sin(2.0)], dtype=torch.float32))
    torch.manual_seed(0)
    model = Llama(
        LlamaConfig(vocab_size=6, grid_size=(1, 12), num_classes=2, dim=32, n_layer=1, n_head=2, rope="1d")
    ).eval()
    for p in model.parameters():
        torch.nn.init.normal_(p, std=0.5)
    labels = torch.arange(2).repeat(8)
    out = sample_next_token(
        model,
        labels,
        SamplingConfig(),
        torch.Generator().manual_seed(0),
        NextTokenOptions(stop_token=4, pad_token=5),
    )
    for row in out.tolist():
        if 4 in row:
            end = row.index(4)
            assert all(t == 5 for t in row[end + 1 :]) and 5 not in row[:end]
    assert (out == 4).any(1).any()  # some rows stopped early, others ran to the maximum length


def test_jpeg_pipeline_through_train_and_sample(tmp_path):
    recipe = dict(
        task="tokenizer",
        tokenizer="jpeg",
        output_dir=str(tmp_path / "jpeg"),
        data=dict(dataset="digits", resolution=8),
        model=dict(resolution=8, max_len=48),
        bpe_vocab_size=280,
        bpe_images=100,
    )
    jpeg = train(recipe_from_dict(recipe))
    tok = tokenizers.load(jpeg / "model")
    assert isinstance(tok, JPEGTokenizer) and tok.vocab.size == 283
    run = train(recipe_from_dict(gpt_recipe(tmp_path / "lm", jpeg / "model")))
    assert json.loads((run / "model" / "config.json").read_text())["rope"] == "1d"
    out = tmp_path / "samples"
    assert (
        sample_cli.main(["--ckpt", str(run), "--num-samples", "6", "--cfg-scale", "2", "--out", str(out)])
        == 0
    )
    assert np.load(out / "samples.npz")["arr_0"].shape == (6, 8, 8, 3)
    streams = json.loads((out / "metrics.json").read_text())["streams"]
    assert streams["valid"] == 6 and streams["invalid"] == 0  # syntax-constrained by default
    assert np.load(out / "samples.npz")["valid"].sum() == streams["valid"]
    spec = tmp_path / "speculative"  # the target as its own draft: every draft is accepted
    args = ["--ckpt", str(run), "--num-samples", "6", "--speculative", str(run), "--out", str(spec)]
    assert sample_cli.main(args) == 0
    metrics = json.loads((spec / "metrics.json").read_text())
    assert metrics["streams"] == {"valid": 6, "invalid": 0}
    assert metrics["speculative"]["tokens_per_target_call"] > 3
