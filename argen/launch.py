"""What every entry point checks about how it was launched."""

from __future__ import annotations

import logging
import os

from accelerate import Accelerator

logger = logging.getLogger(__name__)


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
