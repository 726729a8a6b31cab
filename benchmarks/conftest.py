"""pytest-benchmark setup: providers side by side per group.

pytest benchmarks --benchmark-group-by=group                 # full run, providers compared
pytest benchmarks --benchmark-disable                        # smoke: each provider runs once (CI)
pytest benchmarks --benchmark-json=bench-results/ops.json    # results as data, for plots
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))

from providers import THREADS  # noqa: E402


@pytest.fixture(autouse=True)
def _cpu_threads():
    """Every benchmark runs with the same CPU thread count (SK_BENCH_THREADS, default 2)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(THREADS)
    with torch.inference_mode():
        yield
    torch.set_num_threads(previous)


def record(benchmark, group: str, provider: str, **info) -> None:
    benchmark.group = group
    benchmark.extra_info.update(provider=provider, threads=THREADS, **info)
