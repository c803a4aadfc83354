"""Reconstruction PSNR of trained tokenizers on the same images, in one run.

    python -m benchmarks.tokenizer_psnr --tokenizers runs/digits/vq/model runs/digits/msvq/model

PSNR over pixels in [0, 1], averaged per image; also the number of tokens per image.
"""

from __future__ import annotations

import argparse

import torch
from torch.utils.data import DataLoader, Subset

from argen import tokenizers
from argen.data import build_dataset
from argen.tokenizers.layout import ContinuousLayout


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tokenizers", nargs="+", default=["runs/digits/vq/model", "runs/digits/msvq/model"])
    p.add_argument("--dataset", default="digits")
    p.add_argument("--num-images", type=int, default=2000)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = p.parse_args()

    for path in args.tokenizers:
        tok = tokenizers.load(path).to(args.device).eval()
        data = build_dataset(args.dataset, tok.config.resolution)
        data = Subset(data, range(min(args.num_images, len(data))))
        psnrs = []
        for images, _ in DataLoader(data, batch_size=250):
            images = images.to(args.device)
            with torch.no_grad():
                recon = tok.decode(tok.encode(images))
            mse = ((recon - images) / 2).pow(2).flatten(1).mean(1)  # pixels in [0, 1]
            psnrs.append(10 * torch.log10(1 / mse.clamp_min(1e-10)))
        layout = tok.layout
        if isinstance(layout, ContinuousLayout):  # decoded from the grid alone
            tokens, kind = layout.height * layout.width, f"continuous, {layout.token_dim}-d"
        else:
            tokens, kind = (
                getattr(layout, "num_tokens", layout.height * layout.width),
                f"codebook {layout.vocab_size}",
            )
        print(
            f"{path}: PSNR {torch.cat(psnrs).mean():.2f} dB over {len(data)} {args.dataset} images, "
            f"{tokens} tokens per image, {kind}"
        )


if __name__ == "__main__":
    main()
