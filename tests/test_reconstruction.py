"""The reconstruction protocol: its metrics, its report, its refusals."""

import json

import pytest
import torch

from argen import tokenizers
from argen.data import build_dataset
from argen.eval import reconstruction
from argen.eval.reconstruction import code_statistics, psnr, ssim


def test_metrics_on_known_inputs():
    images = torch.rand(2, 3, 16, 16) * 2 - 1
    noisy = images + 0.2  # pixels in [0, 1] off by 0.1 -> MSE 0.01 -> 20 dB
    torch.testing.assert_close(psnr(noisy, images), torch.full((2,), 20.0), rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(ssim(images, images), torch.ones(2))
    assert (ssim(noisy.clamp(-1, 1), images) < 1).all()
    stats = code_statistics([torch.tensor([0, 0, 1, 1]), torch.tensor([[1, 0]])], vocab_size=4)
    assert stats["codebook_usage"] == 0.5 and abs(stats["perplexity"] - 2.0) < 1e-9


def test_report_on_a_trained_tokenizer(trained, tmp_path, capsys):
    tokenizer, classifier = trained["vq"] / "model", trained["classifier"] / "model"
    out = tmp_path / "rec.json"
    args = ["--tokenizer", str(tokenizer), "--num-images", "40", "--no-lpips", "--out", str(out)]
    assert reconstruction.main([*args, "--classifier", str(classifier)]) == 0
    report = json.loads(out.read_text())
    assert report["protocol"]["fid_features"] == f"classifier {classifier}"
    result = report["results"][0]
    assert result["num_images"] == 40 and result["tokens_per_image"] == 16
    assert 0 < result["codebook_usage"] <= 1 and 1 <= result["perplexity"] <= 32
    assert result["rfid_classifier"] > 0 and result["lpips_note"].startswith("not asked")
    tok = tokenizers.load(tokenizer).eval()
    images = torch.stack([build_dataset("digits", 8)[i][0] for i in range(40)])
    with torch.no_grad():
        expected = psnr(tok.decode(tok.encode(images)), images).mean()
    assert abs(result["psnr"] - float(expected)) < 1e-4
    assert "| tokenizer | psnr | ssim | rfid_classifier | codebook_usage |" in capsys.readouterr().out


def test_refuses_a_classifier_metric_without_a_classifier(trained, capsys):
    args = ["--tokenizer", str(trained["vq"] / "model"), "--fid-features", "classifier", "--no-lpips"]
    assert reconstruction.main(args) == 2
    assert "needs --classifier" in capsys.readouterr().err


def test_fid_references_that_are_missing_or_not_datasets_are_named(tmp_path):
    from argen.eval.evaluation import reference_images

    with pytest.raises(ValueError, match="reference .*nope.npz does not exist"):
        reference_images(str(tmp_path / "nope.npz"), 8)
    (tmp_path / "notes.md").write_text("text")
    with pytest.raises(ValueError, match="notes.md is a file: give an .npz"):
        reference_images(str(tmp_path / "notes.md"), 8)
