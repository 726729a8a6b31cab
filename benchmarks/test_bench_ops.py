"""Per-op benchmarks at the real shapes of ShuffleNetV2 x1.0 (224x224, batch 1), CPU.

Each group holds one op at one shape, with every provider: what a user writes in PyTorch (eager,
NCHW and channels_last), and ours (native), plus a plain copy of the output as the floor a
permutation cannot beat.
"""

from __future__ import annotations

import pytest
import torch

import shufflekernels as sk
from shufflekernels import reference as ref
from shufflekernels.opspec import unit_params

from conftest import record
from providers import X1_0_DOWN_UNITS, X1_0_DWCONVS, X1_0_SPLIT_UNITS, torch_dwconv_bn, torch_shuffle_cat

native = pytest.mark.skipif(not sk.backends()["native-cpu"]["usable"], reason="native CPU kernels not built")

LAYOUTS = {"nchw": torch.contiguous_format, "nhwc": torch.channels_last}


def _x(n, c, h, layout, seed=0):
    return torch.randn(n, c, h, h, generator=torch.Generator().manual_seed(seed)).contiguous(
        memory_format=LAYOUTS[layout]
    )


SHUFFLE_PROVIDERS = {
    "torch cat+shuffle": torch_shuffle_cat,
    "native shuffle_cat": lambda ts: sk.ops.shuffle_cat(ts, backend="native"),
}


@native
@pytest.mark.parametrize("layout", list(LAYOUTS))
@pytest.mark.parametrize("shape", X1_0_SPLIT_UNITS, ids=lambda s: s[0])
@pytest.mark.parametrize("provider", [*SHUFFLE_PROVIDERS, "copy of the output"])
def test_shuffle_cat(benchmark, provider, shape, layout):
    stage, c, h = shape
    a, b = _x(1, c // 2, h, layout, 0), _x(1, c // 2, h, layout, 1)
    record(benchmark, f"shuffle_cat {stage} 2x{c // 2}x{h}x{h} {layout}", provider)
    if provider == "copy of the output":
        src, dst = _x(1, c, h, layout), torch.empty(1, c, h, h).contiguous(memory_format=LAYOUTS[layout])
        benchmark(dst.copy_, src)
        return
    out = benchmark(SHUFFLE_PROVIDERS[provider], [a, b])
    assert torch.equal(out, ref.shuffle_cat([a, b]))


DW_PROVIDERS = {
    "torch conv2d": torch_dwconv_bn,
    "native dwconv3x3": lambda x, w, b, s: sk.ops.dwconv3x3(x, w, b, stride=s, backend="native"),
}


@native
@pytest.mark.parametrize("layout", list(LAYOUTS))
@pytest.mark.parametrize("shape", X1_0_DWCONVS, ids=lambda s: s[0].replace(" ", "-"))
@pytest.mark.parametrize("provider", list(DW_PROVIDERS))
def test_dwconv3x3(benchmark, provider, shape, layout):
    where, c, h, stride = shape
    x = _x(1, c, h, layout)
    w, b = torch.randn(c, 1, 3, 3), torch.randn(c)
    record(benchmark, f"dwconv3x3 {where} {c}x{h}x{h} s{stride} {layout}", provider)
    out = benchmark(DW_PROVIDERS[provider], x, w, b, stride)
    torch.testing.assert_close(out, ref.dwconv3x3(x, w, b, stride=stride), atol=1e-4, rtol=1e-4)


@native
@pytest.mark.parametrize("layout", list(LAYOUTS))
@pytest.mark.parametrize("shape", X1_0_SPLIT_UNITS, ids=lambda s: s[0])
@pytest.mark.parametrize("provider", ["reference ops", "native split_unit"])
def test_split_unit(benchmark, provider, shape, layout):
    stage, c, h = shape
    x, params = _x(1, c, h, layout), unit_params(c, c // 2, split=True)
    record(benchmark, f"split_unit {stage} {c}x{h}x{h} {layout}", provider)
    fn = ref.split_unit if provider == "reference ops" else (lambda *a: sk.ops.split_unit(*a, backend="native"))
    out = benchmark(fn, x, *params)
    torch.testing.assert_close(out, ref.split_unit(x, *params), atol=1e-4, rtol=1e-4)


@native
@pytest.mark.parametrize("layout", list(LAYOUTS))
@pytest.mark.parametrize("shape", X1_0_DOWN_UNITS, ids=lambda s: s[0])
@pytest.mark.parametrize("provider", ["reference ops", "native down_unit"])
def test_down_unit(benchmark, provider, shape, layout):
    stage, c, h, cb = shape
    x, params = _x(1, c, h, layout), unit_params(c, cb, split=False)
    record(benchmark, f"down_unit {stage} {c}x{h}x{h}->{2 * cb} {layout}", provider)
    fn = ref.down_unit if provider == "reference ops" else (lambda *a: sk.ops.down_unit(*a, backend="native"))
    out = benchmark(fn, x, *params)
    torch.testing.assert_close(out, ref.down_unit(x, *params), atol=1e-4, rtol=1e-4)
