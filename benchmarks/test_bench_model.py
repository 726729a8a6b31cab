"""Whole-model benchmarks: ShuffleNetV2 (seeded weights, non-trivial BatchNorm), CPU, fp32, 224x224.

Providers: reference eager (NCHW and channels_last), torch.compile (plain, and with Inductor freezing on
channels_last), FusedShuffleNetV2 (native), and ONNX Runtime, OpenVINO, MNN and ExecuTorch + XNNPACK
when installed (skipped otherwise; ExecuTorch needs its environment's Python, see requirements-peers.txt).
These share one process, so the peers' thread pools can disturb each other;
benchmarks/compare_runtimes.py runs each in its own process for figures to quote.
"""

from __future__ import annotations

import functools
import os

import pytest
import torch

from conftest import record
from providers import model_providers

# Smoke mode (--benchmark-disable, as CI runs it) needs no peers and no torch.compile warm-up.
WIDTHS = [float(w) for w in os.environ.get("SK_BENCH_WIDTHS", "1.0").split(",")]
BATCHES = [int(b) for b in os.environ.get("SK_BENCH_BATCHES", "1,16").split(",")]
PROVIDERS = [
    "eager", "eager channels_last", "torch.compile", "torch.compile freezing", "fused native",
    "onnxruntime", "openvino", "mnn", "executorch xnnpack",
]  # fmt: skip
# Compiled, exported or converted: minutes of set-up for one call in smoke mode.
BUILT_AHEAD = {"torch.compile", "torch.compile freezing", "onnxruntime", "openvino", "mnn", "executorch xnnpack"}


@functools.cache
def _providers(width: float, batch: int, smoke: bool):
    return model_providers(width, batch, peers=not smoke)


@pytest.mark.parametrize("batch", BATCHES)
@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("provider", PROVIDERS)
def test_model(benchmark, request, provider, width, batch):
    smoke = request.config.getoption("benchmark_disable")
    if smoke and provider in BUILT_AHEAD:
        pytest.skip("smoke mode: compiling or exporting the model is not worth a single call")
    providers = _providers(width, batch, smoke)
    if provider not in providers:
        pytest.skip(f"{provider} is not installed or not built here")
    fn = providers[provider]
    x = torch.randn(batch, 3, 224, 224, generator=torch.Generator().manual_seed(1))
    fn(x)  # warm-up: first-call compilation and allocation are not part of the figure
    record(benchmark, f"model x{width} batch {batch}", provider, width=width, batch=batch)
    out = benchmark(fn, x)
    expected = providers["eager"](x)
    got = torch.as_tensor(out)
    assert ((got - expected).norm() / expected.norm()).item() < 1e-4
