"""Convert official checkpoints into argen checkpoint directories.

python -m argen.convert llamagen-gpt c2i_B_256.pt runs/llamagen-b --model GPT-B --image-size 256
python -m argen.convert llamagen-gpt t2i_XL_stage2_512.pt runs/llamagen-t2i --image-size 512
python -m argen.convert llamagen-vq vq_ds16_c2i.pt runs/llamagen-vq16 --image-size 256
python -m argen.convert var-vae vae_ch160v4096z32.pth runs/var-vae
python -m argen.convert var var_d16.pth runs/var-d16 --vae vae_ch160v4096z32.pth   # + runs/var-d16/tokenizer
python -m argen.convert diffusers-vae stabilityai/sd-vae-ft-ema runs/sd-vae --image-size 256 --patch-size 2
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from argen.checkpoint import CheckpointError, save_model
from argen.convert.llamagen import (
    GPT_PRESETS,
    LLAMAGEN_TEXT_ENCODER,
    gpt_from_llamagen,
    load_official_state,
    vq_from_llamagen,
)
from argen.convert.var import VAR_PATCH_NUMS, vae_from_var, var_from_official
from argen.tokenizers.continuous import ContinuousTokenizer


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m argen.convert",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(dest="kind", required=True)
    gpt = sub.add_parser("llamagen-gpt", help="LlamaGen GPT (c2i_*.pt, t2i_*.pt)")
    gpt.add_argument("--model", choices=sorted(GPT_PRESETS), help="default: inferred from the shapes")
    gpt.add_argument("--downsample", type=int, default=16, help="the tokenizer's stride")
    gpt.add_argument(
        "--text-encoder",
        default=LLAMAGEN_TEXT_ENCODER,
        help="t2i: the encoder the model reads (a hub id or local directory)",
    )
    vq = sub.add_parser("llamagen-vq", help="LlamaGen VQ tokenizer (vq_ds16_c2i.pt, vq_ds8_c2i.pt)")
    var_vae = sub.add_parser("var-vae", help="VAR multi-scale VQVAE (vae_ch160v4096z32.pth)")
    var = sub.add_parser("var", help="VAR transformer (var_d16.pth ... var_d30.pth), with its VQVAE")
    var.add_argument("--vae", required=True, help="the VQVAE file (vae_ch160v4096z32.pth)")
    for parser in (var_vae, var):
        parser.add_argument("--patch-nums", type=int, nargs="+", default=list(VAR_PATCH_NUMS))
    kl = sub.add_parser("diffusers-vae", help="a diffusers AutoencoderKL (local directory or hub id)")
    kl.add_argument("--patch-size", type=int, default=1, help="tokens are patch x patch latent patches")
    kl.add_argument("--patch-nums", type=int, nargs="*", default=[], help="FlowAR scales (tokens per side)")
    for parser in (gpt, vq, var_vae, var, kl):
        parser.add_argument("src")
        parser.add_argument("out")
        parser.add_argument("--image-size", type=int, default=256)
    args = p.parse_args(argv)
    try:
        if args.kind == "diffusers-vae":
            model = ContinuousTokenizer.from_pretrained(
                args.src, args.image_size, args.patch_size, tuple(args.patch_nums)
            )
            print(f"wrote {save_model(model, args.out)}")
            return 0
        state = load_official_state(args.src)
        if args.kind == "llamagen-gpt":
            model = gpt_from_llamagen(state, args.model, args.image_size, args.downsample, args.text_encoder)
        elif args.kind == "var-vae":
            model = vae_from_var(state, args.image_size, tuple(args.patch_nums))
        elif args.kind == "var":
            model = var_from_official(state, tuple(args.patch_nums))
            vae = vae_from_var(load_official_state(args.vae), args.image_size, tuple(args.patch_nums))
        else:
            model = vq_from_llamagen(state, args.image_size)
    except (CheckpointError, ValueError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"wrote {save_model(model, args.out)}")
    if args.kind == "var":  # the tokenizer travels inside the model directory
        print(f"wrote {save_model(vae, Path(args.out) / 'tokenizer')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
