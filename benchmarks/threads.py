"""CPU threads, in one run: a training step, sampling, tokenizing and a data-loader pass of the
digits' sizes, each in a fresh process at 1 and 2 intra-op threads, with OpenMP's default and
passive wait policies, on an idle machine and beside a second busy process; the configurations
alternate and each figure is the median of its rounds.

    python -m benchmarks.threads --rounds 2
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import subprocess
import sys
import time

WORKLOAD = r"""
import json, statistics, sys, time
import torch
from torch.utils.data import DataLoader
from argen.data import build_dataset
from argen.models.llama import Llama, LlamaConfig
from argen.sampling import SamplingConfig
from argen.sampling.next_token import sample_next_token
from argen.tokenizers.vq import VQConfig, VQModel

threads, workers = int(sys.argv[1]), int(sys.argv[2])
torch.set_num_threads(threads)
torch.manual_seed(0)

def median_ms(fn, repeats):
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)

model = Llama(LlamaConfig(vocab_size=256, grid_size=(4, 4), num_classes=10, dim=128, n_layer=4, n_head=4))
optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
tokens, labels = torch.randint(0, 256, (64, 16)), torch.randint(0, 10, (64,))

def train_step():
    logits = model(tokens, labels)
    loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), tokens.flatten())
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()

def sample():
    with torch.no_grad():
        sample_next_token(model.eval(), torch.arange(100) % 10, SamplingConfig(cfg_scale=2.0))
    model.train()

vq = VQModel(VQConfig(resolution=16, base_channels=32, channel_mult=(1, 2, 2), num_res_blocks=1,
                      z_channels=16, codebook_size=256, codebook_dim=8)).eval()
images = torch.rand(64, 3, 16, 16) * 2 - 1

def tokenize():
    with torch.no_grad():
        vq.encode(images)

data = DataLoader(build_dataset("digits", 16), batch_size=64, num_workers=workers)

def data_pass():
    for _ in data:
        pass

print(json.dumps({
    "train step": median_ms(train_step, 20),
    "sample 100": median_ms(sample, 3),
    "tokenize 64": median_ms(tokenize, 10),
    "data epoch": median_ms(data_pass, 2),
}))
"""


def busy_process() -> subprocess.Popen:
    """A second process that keeps one core busy (another user's job)."""
    return subprocess.Popen([sys.executable, "-c", "while True: pass"])


def measure(threads: int, policy: str, workers: int, busy: bool) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    if policy != "default":
        env["OMP_WAIT_POLICY"] = policy
    other = busy_process() if busy else None
    try:
        time.sleep(0.5 if busy else 0)
        out = subprocess.run(
            [sys.executable, "-c", WORKLOAD, str(threads), str(workers)],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
    finally:
        if other is not None:
            other.kill()
            other.wait()
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--workers", type=int, nargs="+", default=[0, 2], help="data-loader workers")
    args = p.parse_args()
    configs = list(itertools.product([False, True], [1, 2], ["default", "PASSIVE"], args.workers))
    rounds: dict[tuple, list[dict]] = {c: [] for c in configs}
    for _ in range(args.rounds):
        for config in configs:  # alternating: every configuration once per round
            busy, threads, policy, workers = config
            rounds[config].append(measure(threads, policy, workers, busy))
    print(f"{os.cpu_count()} CPUs; ms, median of {args.rounds} rounds")
    for (busy, threads, policy, workers), results in rounds.items():
        figures = {key: statistics.median(r[key] for r in results) for key in results[0]}
        load = "busy" if busy else "idle"
        row = "  ".join(f"{key} {value:8.1f}" for key, value in figures.items())
        print(f"{load} threads {threads} wait {policy:7s} workers {workers}: {row}")


if __name__ == "__main__":
    main()
