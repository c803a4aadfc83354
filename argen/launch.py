"""What every entry point checks about how it was launched."""

from __future__ import annotations

import logging
import os

import torch
from accelerate import Accelerator

logger = logging.getLogger(__name__)
DEFAULT_THREADS = torch.get_num_threads()  # PyTorch's choice for this machine (physical cores)


class RunError(RuntimeError):
    """A run (training or sampling) cannot start or go on."""


def check_world(accelerator: Accelerator) -> None:
    """Fail when a launcher started several processes that Accelerate does not join (they
    would each run alone and overwrite one another's outputs)."""
    env = os.environ
    if "ACCELERATE_USE_CPU" in env and "MASTER_ADDR" in env and "WORLD_SIZE" not in env:
        raise RunError(  # accelerate's single-process launcher, asked for several processes
            "accelerate launch was asked for several processes but started one (without --multi_gpu it "
            "runs a single process); launch them with `accelerate launch --multi_gpu --num_processes N "
            "...` (on a machine without GPUs: `ACCELERATE_USE_CPU=1 accelerate launch --multi_gpu ...`)"
        )
    launched = int(env.get("WORLD_SIZE", "1"))
    if launched != accelerator.num_processes:
        raise RunError(
            f"{launched} processes were launched but Accelerate sees {accelerator.num_processes}; "
            f"on a machine without GPUs set ACCELERATE_USE_CPU=1 (e.g. `ACCELERATE_USE_CPU=1 "
            f"accelerate launch --multi_gpu --num_processes 2 train.py ...`)"
        )
    gpus = os.environ.get("CUDA_VISIBLE_DEVICES", "")
    if gpus and accelerator.device.type == "cpu":
        logger.warning(
            "the launch asked for GPU(s) (CUDA_VISIBLE_DEVICES=%s) but none is available: running on the CPU",
            gpus,
        )


def configure_threads(threads: int = 0) -> int:
    """Set PyTorch's intra-op threads -> how many. ``threads`` > 0 is used as given; 0 (auto) keeps
    ``OMP_NUM_THREADS`` when it is set, else shares PyTorch's default (the physical cores) among
    the processes launched on this machine. Warns when other processes keep the CPUs busy: there,
    threads that wait on each other are several times slower than one (``benchmarks/threads.py``)."""
    if threads < 0:
        raise ValueError(f"threads must be >= 0 (0: auto), got {threads}")
    if threads == 0 and os.environ.get("OMP_NUM_THREADS"):
        threads = torch.get_num_threads()
    elif threads == 0:
        threads = max(1, DEFAULT_THREADS // int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    torch.set_num_threads(threads)
    others = other_running_processes()
    if threads > 1 and others > 0:
        logger.warning(
            "%d other process(es) running on the CPUs: %d threads will wait on each other (4x slower "
            "per training step measured on 2 busy cores); on a shared machine use 1 thread "
            "(train.threads=1, sample.py --threads 1)",
            others,
            threads,
        )
    return threads


def other_running_processes() -> int:
    """Processes other than this one running on the CPUs right now (Linux; 0 elsewhere)."""
    try:
        running = open("/proc/loadavg").read().split()[3].split("/")[0]
    except (OSError, IndexError):
        return 0
    return max(0, int(running) - 1)
