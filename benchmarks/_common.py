"""Helpers shared by the benchmark scripts."""

from __future__ import annotations

import argparse
import ctypes
import re
import time
from pathlib import Path

import torch

from argen.config import from_dict
from argen.models.llama import Llama, LlamaConfig


def build_llama(preset: str, grid: int, vocab: int, device: str, dtype: torch.dtype) -> Llama:
    torch.manual_seed(0)
    config = from_dict(
        LlamaConfig,
        {"preset": preset, "vocab_size": vocab, "grid_size": [grid, grid], "num_classes": 1000},
    )
    return Llama(config).to(device=device, dtype=dtype)


def timed(fn, device: str, repeats: int) -> float:
    """Best wall time of ``repeats`` calls of ``fn`` (after one warm-up call)."""
    fn()
    best = float("inf")
    for _ in range(repeats):
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return best


def peak_memory_mib(fn, device: str) -> float:
    """Memory ``fn`` adds at its peak, in MiB: the CUDA allocator's peak, or on a Linux CPU the
    growth of the resident set's high-water mark (freed heap memory is handed back to the system
    first; approximate: the C allocator may still reuse memory it kept)."""
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        fn()
        torch.cuda.synchronize()
        return (torch.cuda.max_memory_allocated() - before) / 2**20
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current resident set
    before = process_memory_kib("VmRSS")
    fn()
    return (process_memory_kib("VmHWM") - before) / 1024


def process_memory_kib(field: str) -> int:
    """A memory field of /proc/self/status (VmRSS, VmHWM, ...) in KiB."""
    return int(re.search(rf"^{field}:\s+(\d+) kB", Path("/proc/self/status").read_text(), re.M).group(1))


def memory_bandwidth(device: str) -> float:
    """Measured device-memory copy bandwidth in bytes/s (read + write of a 1 GiB buffer)."""
    x = torch.empty(256 * 2**20, dtype=torch.float32, device=device)
    y = torch.empty_like(x)
    seconds = timed(lambda: y.copy_(x), device, 5)
    return 2 * x.numel() * 4 / seconds


def quality_parser(
    doc: str | None,
    classifier: str = "runs/digits/classifier/model",
    reference: str = "digits",
    num_samples: int = 1000,
    batch_size: int = 100,
) -> argparse.ArgumentParser:
    """The options of the benchmarks that sample runs and judge them with a classifier."""
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", nargs="+", required=True)
    p.add_argument("--classifier", default=classifier)
    p.add_argument("--reference", default=reference)
    p.add_argument("--num-samples", type=int, default=num_samples)
    p.add_argument("--batch-size", type=int, default=batch_size)
    return p
