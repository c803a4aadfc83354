"""The prepared GPU check runs end to end: its CPU dry run (tiny shapes) fills every section."""

import json
import subprocess
import sys

from benchmarks.gpu_check import SECTIONS


def test_gpu_check_dry_run_fills_every_section(tmp_path):
    out = tmp_path / "check.json"
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.gpu_check", "--dry-run", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    rows = json.loads(out.read_text())["rows"]
    assert {row["section"] for row in rows} == set(SECTIONS)
    assert not any("error" in row for row in rows)
    speeds = [row[k] for row in rows for k in ("tokens_per_s", "images_per_s") if k in row]
    assert len(speeds) == len(rows) - 3 and all(s > 0 for s in speeds)  # speculative rows: passes
    speculative = {row["variant"]: row for row in rows if row["section"] == "speculative"}
    assert speculative["plain"]["tokens_per_pass"] == 1.0
    assert speculative["standard"]["tokens_per_pass"] >= 1.0
    bf16 = next(row for row in rows if row["section"] == "train" and row["variant"] == "bf16")
    assert bf16["loss_vs_fp32"] < 0.1  # bf16 autocast agrees with fp32 on the same batch


def test_gpu_check_without_cuda_skips_cleanly(capsys, monkeypatch):
    from benchmarks import gpu_check

    monkeypatch.setattr(gpu_check.torch.cuda, "is_available", lambda: False)
    assert gpu_check.main([]) == 0
    assert "no CUDA device" in capsys.readouterr().out
