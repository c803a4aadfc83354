"""End-to-end ``sample.py`` throughput (images/s), eager vs. --compile, in one run.

    python benchmarks/sample_throughput.py --ckpt runs/digits/gpt --num-samples 2000

Uses a trained run directory (the README demo makes runs/digits/gpt). Times whole ``sample.py``
invocations: process start-up, loading, sampling, decoding and writing samples.npz and grid.png.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time


def sample(args: list[str]) -> int:
    return subprocess.run([sys.executable, "sample.py", *args], capture_output=True).returncode


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ckpt", default="runs/digits/gpt")
    p.add_argument("--num-samples", type=int, default=2000)
    p.add_argument("--batch-size", type=int, default=250)
    p.add_argument("--cfg-scale", type=float, default=2.0)
    args = p.parse_args()

    common = [
        "--ckpt",
        args.ckpt,
        "--num-samples",
        str(args.num_samples),
        "--batch-size",
        str(args.batch_size),
        "--cfg-scale",
        str(args.cfg_scale),
    ]
    speeds = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, extra in (("eager", []), ("compiled", ["--compile"])):
            sample([*common, *extra, "--num-samples", str(args.batch_size), "--out", f"{tmp}/warm"])
            start = time.perf_counter()
            if sample([*common, *extra, "--out", f"{tmp}/{name}"]) != 0:
                raise SystemExit(f"sample.py failed for {name}")
            speeds[name] = args.num_samples / (time.perf_counter() - start)
    print(f"ckpt={args.ckpt} samples={args.num_samples} batch={args.batch_size} cfg={args.cfg_scale}")
    for name, speed in speeds.items():
        print(f"{name:9s} {speed:8.1f} images/s ({speed / speeds['eager']:.2f}x eager)")


if __name__ == "__main__":
    main()
