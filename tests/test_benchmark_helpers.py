"""The benchmark scripts' shared measurements."""

import torch

from benchmarks._common import peak_memory_mib


def test_peak_memory_counts_what_a_call_holds_at_its_peak_on_the_cpu():
    def holds_64_mib():
        block = torch.ones(16 * 2**20)  # 64 MiB of float32, written so its pages are resident
        return float(block[-1])

    assert 60 < peak_memory_mib(holds_64_mib, "cpu") < 100
    assert peak_memory_mib(lambda: torch.ones(16), "cpu") < 8
