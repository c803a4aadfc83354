"""Training curves without TensorBoard: a run's ``log.jsonl`` drawn as ``curves.png``, one panel
per logged value (loss, codebook usage, ...) against the step. Written at the end of training,
or by ``python -m argen.training.curves RUN [RUN ...]``.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

from PIL import Image, ImageDraw

CURVES_FILE = "curves.png"
PANEL = (320, 180)  # width, height of one panel in pixels
MARGIN = 28


def read_log(path: Path) -> dict[str, list[tuple[int, float]]]:
    """Every numeric value of a ``log.jsonl`` as (step, value) points, by name (not ``lr``)."""
    series: dict[str, list[tuple[int, float]]] = {}
    for line in path.read_text().splitlines():
        record = json.loads(line)
        for name, value in record.items():
            if name not in ("step", "lr") and isinstance(value, (int, float)) and math.isfinite(value):
                series.setdefault(name, []).append((record["step"], float(value)))
    return series


def draw_panel(draw: ImageDraw.ImageDraw, origin: tuple[int, int], name: str, points: list) -> None:
    """One curve in the panel whose top-left corner is ``origin``, its value range labelled."""
    x0, y0 = origin[0] + MARGIN, origin[1] + MARGIN
    width, height = PANEL[0] - 2 * MARGIN, PANEL[1] - 2 * MARGIN
    steps, values = [p[0] for p in points], [p[1] for p in points]
    low, high = min(values), max(values)
    span_s, span_v = max(max(steps) - min(steps), 1), (high - low) or 1.0
    xy = [(x0 + width * (s - min(steps)) / span_s, y0 + height * (1 - (v - low) / span_v)) for s, v in points]
    draw.rectangle([x0, y0, x0 + width, y0 + height], outline=(200, 200, 200))
    if len(xy) > 1:
        draw.line(xy, fill=(31, 119, 180), width=2)
    else:
        draw.ellipse([xy[0][0] - 2, xy[0][1] - 2, xy[0][0] + 2, xy[0][1] + 2], fill=(31, 119, 180))
    draw.text((x0, origin[1] + 8), name, fill=(0, 0, 0))
    draw.text((x0 + width + 2, y0 - 4), f"{high:.4g}", fill=(90, 90, 90))
    draw.text((x0 + width + 2, y0 + height - 8), f"{low:.4g}", fill=(90, 90, 90))
    draw.text((x0, y0 + height + 4), f"step {min(steps)}", fill=(90, 90, 90))
    draw.text((x0 + width - 60, y0 + height + 4), f"step {max(steps)}", fill=(90, 90, 90))


def write_curves(run: Path) -> Path | None:
    """``run/curves.png`` from ``run/log.jsonl`` (None when nothing was logged)."""
    log = run / "log.jsonl"
    series = read_log(log) if log.is_file() else {}
    if not series:
        return None
    columns = min(3, len(series))
    rows = -(-len(series) // columns)
    image = Image.new("RGB", (PANEL[0] * columns, PANEL[1] * rows), "white")
    draw = ImageDraw.Draw(image)
    for i, (name, points) in enumerate(series.items()):
        draw_panel(draw, (PANEL[0] * (i % columns), PANEL[1] * (i // columns)), name, points)
    image.save(run / CURVES_FILE)
    return run / CURVES_FILE


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m argen.training.curves", description=__doc__.split("\n\n")[0])
    p.add_argument("runs", nargs="+", type=Path, help="run directories (with log.jsonl)")
    args = p.parse_args(argv)
    for run in args.runs:
        written = write_curves(run)
        print(f"wrote {written}" if written else f"{run}: no log.jsonl with values to draw")
    return 0


if __name__ == "__main__":
    sys.exit(main())
