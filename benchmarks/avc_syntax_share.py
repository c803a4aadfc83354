"""How much of an H.264 stream a byte-wise syntax mask could check: over encoded clips, the
share of bytes that are NAL framing (start codes and NAL header bytes, which a mask can fix)
against slice payloads (slice headers and entropy-coded macroblocks), and which entropy coder
the picture parameter set selects (CABAC: an arithmetic code, where any byte string decodes to
some bins, so validity is only known by decoding every macroblock).

    python -m benchmarks.avc_syntax_share --config configs/moving_digits_avc.yaml --num-clips 200
"""

from __future__ import annotations

import argparse
import re

import torch

from argen.config import load_yaml
from argen.data import build_dataset
from argen.tokenizers.avc import AVCConfig, AVCTokenizer

START_CODE = re.compile(rb"\x00\x00\x01")


def entropy_coder(header: bytes) -> str:
    """CABAC or CAVLC, from the first picture parameter set (NAL type 8) of ``header``."""
    for match in START_CODE.finditer(header):
        if header[match.end()] & 0x1F == 8:
            payload = header[match.end() + 1 : match.end() + 8]
            bits = "".join(f"{b:08b}" for b in payload)
            i = 0
            for _ in range(2):  # pic_parameter_set_id, seq_parameter_set_id: exp-Golomb codes
                zeros = bits.index("1", i) - i
                i += 2 * zeros + 1
            return "CABAC" if bits[i] == "1" else "CAVLC"
    return "unknown"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default="configs/moving_digits_avc.yaml")
    p.add_argument("--num-clips", type=int, default=200)
    args = p.parse_args()
    recipe = load_yaml(args.config)
    tokenizer = AVCTokenizer(AVCConfig(**recipe["model"]))
    data = build_dataset(
        recipe["data"]["dataset"], recipe["data"]["resolution"], frames=recipe["data"]["frames"]
    )
    clips = torch.stack([data[i][0] for i in range(args.num_clips)])
    streams = tokenizer.streams(clips)
    total = sum(len(s) for s in streams)
    units = [len(START_CODE.findall(s)) for s in streams]
    framing = sum(4 * n for n in units)  # 3 start-code bytes + 1 NAL header byte per unit
    print(f"clips={len(streams)} codec={tokenizer.codec} entropy coder={entropy_coder(tokenizer.header)}")
    print(f"bytes per clip {total / len(streams):.1f}; NAL units per clip {sum(units) / len(units):.1f}")
    print(f"framing (start codes + NAL headers): {framing / total:.1%} of the bytes")
    print(f"slice headers + entropy-coded macroblocks: {1 - framing / total:.1%}")


if __name__ == "__main__":
    main()
