"""Training curves side by side: for a baseline run and others of the same budget (e.g. with
and without representation alignment), each run's first and final logged loss and the first
logged step at which it reaches the baseline's final loss (``never`` if it does not).

    python -m benchmarks.loss_curves --baseline runs/cifar10/gpt --runs runs/cifar10/gpt_align

Reads each run's ``log.jsonl``; ``--key`` picks the logged value (default ``loss``: the
generator's own cross-entropy, without an alignment term, which is logged apart).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def curve(run: Path, key: str) -> list[tuple[int, float]]:
    """(step, value) of every line of ``run``'s log.jsonl that has ``key``."""
    lines = (json.loads(line) for line in (run / "log.jsonl").read_text().splitlines() if line.strip())
    points = [(int(entry["step"]), float(entry[key])) for entry in lines if key in entry]
    if not points:
        raise ValueError(f"{run}/log.jsonl logs no {key!r}")
    return points


def first_reaching(points: list[tuple[int, float]], target: float) -> int | None:
    """The first step whose value is at most ``target``."""
    return next((step for step, value in points if value <= target), None)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--baseline", required=True)
    p.add_argument("--runs", nargs="+", required=True)
    p.add_argument("--key", default="loss")
    args = p.parse_args()
    base = curve(Path(args.baseline), args.key)
    target = base[-1][1]
    print(
        f"{'run':40s} {'first':>8s} {'final':>8s} {'steps':>6s}  reaches the baseline's final {target:.4f} at"
    )
    for run in [args.baseline, *args.runs]:
        points = curve(Path(run), args.key)
        step = first_reaching(points, target)
        print(
            f"{run:40s} {points[0][1]:8.4f} {points[-1][1]:8.4f} {points[-1][0]:6d}  "
            f"{'never' if step is None else step}"
        )


if __name__ == "__main__":
    main()
