"""One reconstruction protocol for every learned tokenizer: encode -> decode the first N images
of a dataset and report PSNR, SSIM, LPIPS, reconstruction FID, codebook usage, perplexity and
tokens per image, with the protocol written beside the numbers.

    python -m argen.eval.reconstruction --tokenizer runs/cifar10/vq/model --dataset data/train \\
        --num-images 2000 [--resolution 32] [--fid-features classifier --classifier DIR] [--out F.json]

PSNR and SSIM are over pixels in [0, 1], averaged per image (clips: per frame). SSIM uses a
Gaussian window of 11 px (smaller, odd, on images under 11 px). LPIPS (VGG) needs torchvision's
VGG16 weights on disk; without them it is reported as unavailable, with the reason. The
reconstruction FID compares the reconstructions with their originals on named features:
``inception`` (torch-fidelity's Inception-v3, local weights) or ``classifier`` (a dataset
classifier's penultimate features, reported as ``rfid_classifier``). Usage and perplexity are
those of the codebook ids of all N images (discrete tokenizers only).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Subset

from argen.data import build_dataset
from argen.eval.classifier import load_classifier
from argen.eval.fid import FeaturesUnavailable, classifier_features, frechet_distance, inception_features
from argen.images import to_uint8
from argen.tokenizers.quantizer import code_usage


def psnr(recon: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
    """Per-image PSNR (B,) of batches (B, C, H, W) in [-1, 1], over pixels in [0, 1]."""
    mse = ((recon - images) / 2).pow(2).flatten(1).mean(1)
    return 10 * torch.log10(1 / mse.clamp_min(1e-10))


def ssim(recon: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
    """Per-image SSIM (B,) of batches (B, C, H, W) in [-1, 1], over pixels in [0, 1]."""
    from torchmetrics.functional.image import structural_similarity_index_measure

    side = min(images.shape[-2:])
    window = min(11, side if side % 2 else side - 1)
    return structural_similarity_index_measure(
        (recon + 1) / 2, (images + 1) / 2, kernel_size=window, data_range=1.0, reduction="none"
    )


def lpips_metric() -> tuple[torch.nn.Module | None, str | None]:
    """torchmetrics' LPIPS (VGG), or None and why it cannot be built here."""
    from torchmetrics.image.lpip import LearnedPerceptualImagePatchSimilarity

    try:
        return LearnedPerceptualImagePatchSimilarity(net_type="vgg", reduction="sum").eval(), None
    except Exception as err:
        return None, (
            f"LPIPS needs torchvision's VGG16 weights in $TORCH_HOME/hub/checkpoints/ "
            f"({type(err).__name__}: {str(err)[:120]})"
        )


def code_statistics(ids: list[torch.Tensor], vocab_size: int) -> dict[str, float]:
    """Codebook usage and perplexity of integer ids of any shapes."""
    return {k: float(v) for k, v in code_usage(torch.cat([i.flatten() for i in ids]), vocab_size).items()}


def as_frames(pixels: torch.Tensor) -> torch.Tensor:
    """Clips (B, T, C, H, W) -> frames (B*T, C, H, W); images unchanged."""
    return pixels.flatten(0, 1) if pixels.ndim == 5 else pixels


def tokens_per_image(layout) -> int:
    """Tokens the generator models per image (or clip), from the tokenizer's layout."""
    if hasattr(layout, "num_tokens"):
        return layout.num_tokens
    return math.prod(getattr(layout, name, 1) for name in ("frames", "height", "width"))


def features_for(args) -> tuple[torch.nn.Module | None, str]:
    """The rFID feature extractor asked for, and the metric's name (or why there is none)."""
    if args.fid_features == "classifier":
        if not args.classifier:
            raise ValueError("--fid-features classifier needs --classifier DIR")
        return classifier_features(load_classifier(args.classifier)), "rfid_classifier"
    try:
        return inception_features(args.inception_weights), "rfid"
    except FeaturesUnavailable as err:
        return None, str(err)


@torch.no_grad()
def evaluate(path: str, args, device: torch.device) -> dict:
    """The protocol's numbers for the tokenizer at ``path`` (any format argen loads)."""
    from argen.convert.loaders import load  # the CLI's loader: official files, diffusers VAEs

    tok = load(path, "tokenizer").to(device).eval()
    if getattr(tok, "codec", False):
        raise ValueError(f"{path}: a byte-stream codec; its reconstruction is the codec's, not learned")
    resolution = args.resolution or tok.config.resolution
    frames = getattr(tok.config, "frames", None)
    data = (
        build_dataset(args.dataset, resolution, frames) if frames else build_dataset(args.dataset, resolution)
    )
    data = Subset(data, range(min(args.num_images, len(data))))
    lpips, lpips_note = lpips_metric() if not args.no_lpips else (None, "not asked (--no-lpips)")
    sums = {"psnr": [], "ssim": [], "lpips": []}
    ids, originals, recons = [], [], []
    for images, _ in DataLoader(data, batch_size=args.batch_size):
        images = images.to(device)
        codes = tok.encode(images)
        recon = tok.decode(codes)
        ids += [c.cpu() for c in (codes if isinstance(codes, (list, tuple)) else [codes])]
        flat_images, flat_recon = as_frames(images), as_frames(recon)
        sums["psnr"].append(psnr(flat_recon, flat_images).cpu())
        sums["ssim"].append(ssim(flat_recon, flat_images).cpu())
        if lpips is not None:
            lpips = lpips.to(device)
            sums["lpips"].append(
                torch.stack([lpips(r[None], i[None]) for r, i in zip(flat_recon, flat_images)])
            )
        if images.ndim == 4:
            originals.append(to_uint8(images.cpu()))
            recons.append(to_uint8(recon.cpu()))
    result = {
        "tokenizer": str(path),
        "num_images": len(data),
        "psnr": float(torch.cat(sums["psnr"]).mean()),
        "ssim": float(torch.cat(sums["ssim"]).mean()),
        "lpips": float(torch.cat(sums["lpips"]).mean()) if sums["lpips"] else None,
        "tokens_per_image": tokens_per_image(tok.layout),
    }
    if lpips_note:
        result["lpips_note"] = lpips_note
    if hasattr(tok, "token_statistics"):  # tokenizers whose tokens are not one codebook's ids
        result.update(tok.token_statistics(ids))
    elif not ids[0].dtype.is_floating_point:
        result.update(code_statistics(ids, tok.layout.vocab_size))
    result.update(reconstruction_fid(originals, recons, args, device))
    return result


def reconstruction_fid(originals: list, recons: list, args, device: torch.device) -> dict:
    """rFID of the reconstructions against their originals (images only)."""
    if not originals:
        return {"rfid_note": "clips: reconstruction FID is not defined (use FVD)"}
    import numpy as np

    extractor, name = features_for(args)
    if extractor is None:
        return {"rfid_note": name}
    return {
        name: frechet_distance(extractor, np.concatenate(originals), np.concatenate(recons), device=device)
    }


def table(results: list[dict]) -> str:
    """The results as a Markdown table, one row per tokenizer."""
    columns = [
        "psnr",
        "ssim",
        "lpips",
        "rfid",
        "rfid_classifier",
        "codebook_usage",
        "perplexity",
        "tokens_per_image",
    ]
    columns += sorted({k for r in results for k, v in r.items() if isinstance(v, float)} - set(columns))
    columns = [c for c in columns if any(r.get(c) is not None for r in results)]
    lines = ["| tokenizer | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
    for r in results:
        cells = [f"{r[c]:.4g}" if isinstance(r.get(c), float) else str(r.get(c, "-")) for c in columns]
        lines.append(f"| {r['tokenizer']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tokenizer", nargs="+", required=True, help="tokenizer directories (model/ of a run)")
    p.add_argument(
        "--dataset", default="digits", help="embedded dataset or image/video folder (default: digits)"
    )
    p.add_argument("--num-images", type=int, default=2000, help="the first N items (default: 2000)")
    p.add_argument("--resolution", type=int, default=None, help="default: the tokenizer's")
    p.add_argument("--batch-size", type=int, default=250, help="default: 250")
    p.add_argument(
        "--fid-features",
        choices=["inception", "classifier"],
        default=None,
        help="rFID features (default: classifier when --classifier is given, else inception)",
    )
    p.add_argument("--classifier", default=None, help="a dataset classifier run's model/ directory")
    p.add_argument("--inception-weights", default=None, help="a local copy of the Inception weights")
    p.add_argument("--no-lpips", action="store_true", help="skip LPIPS (default: computed when possible)")
    p.add_argument("--out", default=None, help="write the JSON here (default: print it)")
    p.add_argument(
        "--device", default="cuda" if torch.cuda.is_available() else "cpu", help="default: cuda if any"
    )
    args = p.parse_args(argv)
    args.fid_features = args.fid_features or ("classifier" if args.classifier else "inception")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        results = [evaluate(path, args, torch.device(args.device)) for path in args.tokenizer]
    except (ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    protocol = {
        "dataset": args.dataset,
        "split": f"the first {args.num_images} items in dataset order (fewer if the dataset is smaller)",
        "resolution": args.resolution or "each tokenizer's",
        "pixels": "[0, 1]; PSNR and SSIM per image (clips: per frame), then averaged",
        "fid_features": args.fid_features
        if args.fid_features == "inception"
        else f"classifier {args.classifier}",
    }
    report = {"protocol": protocol, "results": results}
    print(table(results))
    text = json.dumps(report, indent=2)
    if args.out:
        Path(args.out).write_text(text + "\n")
    else:
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
