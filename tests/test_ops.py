"""Parity of every native op against shufflekernels.reference, on CPU, on CUDA where usable, and
through the CUDA kernels' code emulated on host threads: every op of the registry x device x layout x
dtype x the shapes of tests/op_cases.py."""

from __future__ import annotations

import pytest
import torch

import shufflekernels as sk
from shufflekernels import reference as ref
from shufflekernels import registry, tolerances
from shufflekernels.opspec import unit_params

from conftest import (
    EMULATED_CUDA,
    LAYOUTS,
    assert_same_format,
    kernel_devices,
    make_layout,
    native_devices,
    requires_native_cpu,
    run_native,
    tensor_device,
)
from op_cases import CASES, make_inputs, params

DTYPES = [torch.float32, torch.float16, torch.bfloat16]


def assert_matches_reference(op: str, out: torch.Tensor, args: tuple) -> None:
    spec = registry.OPS[op]
    expected = spec.reference(*args)
    first = args[0][0] if isinstance(args[0], list) else args[0]
    assert out.shape == expected.shape == spec.out_shape(*args) and out.dtype == first.dtype
    tolerances.assert_op_close(spec.kind, out, expected)
    if out.dim() == 4:  # activations keep the input's format; logits are plain matrices
        assert_same_format(out, first)


@pytest.mark.parametrize("device", kernel_devices())
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("op,case", params(CASES, registry.ops_with("native")))
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_parity(device, layout, op, case, dtype):
    args = make_inputs(op, case, dtype=dtype, device=tensor_device(device), layout=layout)
    out = run_native(device, op, *args)
    assert_matches_reference(op, out, args)
    if op == "split_unit":  # the identity half passes through untouched: even output channels are x1
        assert torch.equal(out[:, 0::2], args[0][:, : args[0].shape[1] // 2])


@pytest.mark.parametrize("device", kernel_devices())
def test_shuffle_cat_mixed_layouts(device):
    dev = tensor_device(device)
    # The first tensor decides the output layout; the others are read correctly whatever theirs is.
    a = torch.randn(2, 6, 5, 5, device=dev).contiguous(memory_format=torch.channels_last)
    b = torch.randn(2, 6, 5, 5, device=dev)
    c = make_layout(torch.randn(2, 6, 5, 5, device=dev), "strided")
    out = run_native(device, "shuffle_cat", [a, b, c])
    assert torch.equal(out, ref.shuffle_cat([a, b, c]))
    assert out.is_contiguous(memory_format=torch.channels_last)


def test_shuffle_cat_is_cat_then_shuffle():
    # The contract of docs/design.md, stated once against plain torch.
    xs = [torch.randn(2, 5, 3, 3) for _ in range(3)]
    expected = torch.cat(xs, 1).view(2, 3, 5, 3, 3).transpose(1, 2).reshape(2, 15, 3, 3)
    assert torch.equal(sk.ops.shuffle_cat(xs), expected)


@pytest.mark.parametrize("device", kernel_devices())
@pytest.mark.parametrize("case", [(1, 464, 7, 7, 1024, True), (3, 5, 3, 7, 33, False)], ids=str)
def test_pointwise_k_major_weight(device, case):
    # Stored transposed (input-channel major), as FusedShuffleNetV2 keeps its 1x1 weights: read in place.
    x, weight, bias, relu = make_inputs(
        "pointwise", case, dtype=torch.float32, device=tensor_device(device), layout="nhwc"
    )
    c_out, c_in = weight.shape[:2]
    weight = weight.reshape(c_out, c_in).t().contiguous().t().reshape(c_out, c_in, 1, 1)
    assert_matches_reference(
        "pointwise", run_native(device, "pointwise", x, weight, bias, relu), (x, weight, bias, relu)
    )


@pytest.mark.parametrize("device", native_devices())
def test_units_match_torchvision_structure(device):
    # The ops on folded parameters equal the reference model's unmodified modules (BN in eval mode).
    torch.manual_seed(0)
    model = ref.shufflenet_v2_x0_5()
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.5, 0.5)
    model.eval().to(device)
    down, split = model.stage2[0], model.stage2[1]
    x = torch.randn(2, 24, 14, 14, device=device)
    b1, b2 = down.branch1, down.branch2
    down_params = (
        *sk.fold_bn(b1[0].weight, b1[1]),
        *sk.fold_bn(b1[2].weight, b1[3]),
        *sk.fold_bn(b2[0].weight, b2[1]),
        *sk.fold_bn(b2[3].weight, b2[4]),
        *sk.fold_bn(b2[5].weight, b2[6]),
    )
    with torch.no_grad():
        y = sk.ops.down_unit(x, *down_params, backend="native")
        torch.testing.assert_close(y, down(x), atol=1e-4, rtol=1e-4)
        s2 = split.branch2
        split_params = (
            *sk.fold_bn(s2[0].weight, s2[1]),
            *sk.fold_bn(s2[3].weight, s2[4]),
            *sk.fold_bn(s2[5].weight, s2[6]),
        )
        torch.testing.assert_close(
            sk.ops.split_unit(y, *split_params, backend="native"), split(y), atol=1e-4, rtol=1e-4
        )


def test_fold_bn_matches_conv_then_bn():
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(6, 8, 3, padding=1, bias=True)
    bn = torch.nn.BatchNorm2d(8).eval()
    bn.running_mean.uniform_(-1, 1)
    bn.running_var.uniform_(0.5, 2)
    bn.weight.data.uniform_(0.5, 1.5)
    bn.bias.data.uniform_(-1, 1)
    w, b = sk.fold_bn(conv.weight, bn, conv.bias)
    x = torch.randn(2, 6, 5, 5)
    with torch.no_grad():
        torch.testing.assert_close(torch.nn.functional.conv2d(x, w, b, padding=1), bn(conv(x)), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("backend", ["auto", "reference"])
def test_every_backend_name_computes_the_same(backend):
    x = torch.randn(2, 8, 6, 6)
    w, b = torch.randn(8, 1, 3, 3), torch.randn(8)
    torch.testing.assert_close(
        sk.ops.dwconv3x3(x, w, b, stride=2, relu=True, backend=backend), ref.dwconv3x3(x, w, b, stride=2, relu=True)
    )
    assert torch.equal(sk.ops.channel_shuffle(x, 4, backend=backend), ref.channel_shuffle(x, 4))


ENGINE_CHECK = """
import torch, shufflekernels as sk
from shufflekernels import reference as ref
assert sk.build_info()["cpu_engine_isa"] == "{isa}", sk.build_info()
torch.manual_seed(0)
# Branch widths 29, 58, 3, 17, 16 and 44 reach every lane shape of the GEMM's last panel and the stem's
# channel blocks (two vectors, a full and a half, one, a half) on each instruction set.
for n, c, h, w, cb in [(2, 24, 13, 11, 29), (1, 58, 28, 28, 58), (1, 6, 1, 1, 3), (3, 14, 7, 9, 17),
                       (2, 16, 6, 5, 16), (1, 10, 5, 5, 44)]:
    x = torch.randn(n, c, h, w).contiguous(memory_format=torch.channels_last)
    down = (torch.randn(c, 1, 3, 3), torch.randn(c), torch.randn(cb, c, 1, 1) / c**0.5, torch.randn(cb),
            torch.randn(cb, c, 1, 1) / c**0.5, torch.randn(cb), torch.randn(cb, 1, 3, 3), torch.randn(cb),
            torch.randn(cb, cb, 1, 1) / cb**0.5, torch.randn(cb))
    y = sk.ops.down_unit(x, *down, backend="native")
    torch.testing.assert_close(y, ref.down_unit(x, *down), atol=1e-4, rtol=1e-4)
    split = (torch.randn(cb, cb, 1, 1) / cb**0.5, torch.randn(cb), torch.randn(cb, 1, 3, 3), torch.randn(cb),
             torch.randn(cb, cb, 1, 1) / cb**0.5, torch.randn(cb))
    torch.testing.assert_close(sk.ops.split_unit(y, *split, backend="native"), ref.split_unit(y, *split), atol=1e-4, rtol=1e-4)
    stem = (torch.randn(cb, c, 3, 3) / (3 * c**0.5), torch.randn(cb))
    torch.testing.assert_close(sk.ops.stem(x, *stem, backend="native"), ref.stem(x, *stem), atol=1e-4, rtol=1e-4)
"""


@requires_native_cpu
@pytest.mark.parametrize("isa", ["avx512", "avx2", "baseline"])
def test_cpu_engine_variants(isa):
    # Each instruction-set variant of the float32 channels_last engine, forced through
    # SK_ENGINE_ISA in a fresh process (the choice is made once per process).
    import os
    import subprocess
    import sys

    flags = open("/proc/cpuinfo").read() if os.path.exists("/proc/cpuinfo") else ""
    needs = {"avx512": ("avx512f", "avx512vl", "avx512dq", "avx512bw"), "avx2": ("avx2", "fma"), "baseline": ()}[isa]
    if not all(f in flags.split() for f in needs):
        pytest.skip(f"this CPU lacks {isa}")
    env = {**os.environ, "SK_ENGINE_ISA": isa}
    subprocess.run([sys.executable, "-c", ENGINE_CHECK.format(isa=isa)], check=True, env=env)


@requires_native_cpu
def test_engine_propagates_nan():
    # torch's ReLU and max-pool keep NaN; the vectorised engine must not turn it into zero.
    x = torch.randn(1, 8, 6, 6).contiguous(memory_format=torch.channels_last)
    x[0, 3, 2, 2] = float("nan")
    w, b = torch.randn(4, 8, 1, 1), torch.randn(4)
    assert torch.isnan(sk.ops.pointwise(x, w, b, backend="native")[0, :, 2, 2]).all()
    img = torch.randn(1, 3, 16, 16).contiguous(memory_format=torch.channels_last)
    img[0, 1, 5, 5] = float("nan")
    stem = sk.ops.stem(img, torch.randn(5, 3, 3, 3), torch.randn(5), backend="native")
    assert torch.equal(torch.isnan(stem), torch.isnan(ref.stem(img, torch.randn(5, 3, 3, 3), torch.randn(5))))


@requires_native_cpu
def test_pointwise_single_channel_keeps_nchw():
    # [N, 1, H, W] is dense in both layouts; an NCHW input still gets an NCHW output.
    x = torch.randn(2, 1, 5, 5)
    out = sk.ops.pointwise(x, torch.randn(8, 1, 1, 1), torch.randn(8), backend="native")
    assert out.is_contiguous()


# The CPU kernels keep panel-packed copies of the 1x1 weights declared to them (shufflekernels::prepack,
# as FusedShuffleNetV2 does for its buffers; csrc/cpu/packed_weights.cpp). (case, reason):
# every call must still match the reference.
PACKING_CASES = {
    "repeated": "calls read the packed copy",
    "updated in place": "an in-place update bumps the version: repacked, not stale",
    "reallocated": "new weights, likely at the freed addresses: never the old packing",
    "inference tensors": "no version counter: read in place every time",
    "k-major and strided views": "packing reads any strides",
    "not declared, written through .data": "no version bump, but undeclared weights are read in place",
}


@requires_native_cpu
@pytest.mark.parametrize("case", list(PACKING_CASES), ids=str)
def test_packed_weights_stay_correct(case):
    torch.manual_seed(0)
    x = torch.randn(2, 32, 6, 6).contiguous(memory_format=torch.channels_last)

    def make():
        """Split-unit parameters, then a pointwise weight and bias (40 outputs: a partial last panel)."""
        with torch.inference_mode(case == "inference tensors"):
            params = list(unit_params(32, 16, split=True))
            params += [torch.randn(40, 32, 1, 1) / 32**0.5, torch.randn(40)]
        if case == "k-major and strided views":
            params[0] = params[0].reshape(16, 16).t().contiguous().t().reshape(16, 16, 1, 1)  # as the model stores them
            params[4] = torch.randn(16, 32, 1, 1)[:, ::2]  # every other input channel: dense in neither order
        if not case.startswith("not declared"):
            torch.ops.shufflekernels.prepack([params[0], params[4], params[6]])
        return params

    params = make()
    for step in range(4):
        if step == 2 and case == "updated in place":
            params[0].mul_(-1.5)
            params[6].add_(0.25)
        if step == 2 and case == "reallocated":
            del params
            params = make()
        if step == 2 and case.startswith("not declared"):
            params[0].data.copy_(torch.randn(16, 16, 1, 1))
            params[6].data.mul_(-1.0)
        unit, (pw_w, pw_b) = params[:6], params[6:]
        torch.testing.assert_close(
            sk.ops.split_unit(x, *unit, backend="native"), ref.split_unit(x, *unit), atol=1e-4, rtol=1e-4
        )
        torch.testing.assert_close(
            sk.ops.pointwise(x, pw_w, pw_b, backend="native"), ref.pointwise(x, pw_w, pw_b), atol=1e-4, rtol=1e-4
        )


# The network op runs from a plan made once per set of weights (the CPU's packed weights and arena, the
# CUDA path's unit GEMM weights; csrc/plan_cache.h). (case, reason): every call must still match the
# reference.
NETWORK_PLAN_CASES = {
    "repeated": "calls reuse the plan",
    "updated in place": "an in-place update bumps the version: a new plan, not a stale one",
    "reallocated": "new weights, likely at the freed addresses: never the old plan",
    "inference tensors": "no version counter: planned by address, and a new address is a new plan",
}


@pytest.mark.parametrize("device", [p for p in kernel_devices() if p.values[0] in ("cpu", "cuda", EMULATED_CUDA)])
@pytest.mark.parametrize("case", list(NETWORK_PLAN_CASES), ids=str)
def test_network_plan_stays_correct(case, device):
    case_args = CASES["shufflenet"][1][0]  # x0.5 widths, batch 3

    def make(seed):
        with torch.inference_mode(case == "inference tensors"):
            x, params, repeats = registry.OPS["shufflenet"].make_args(case_args, torch.Generator().manual_seed(seed))
            return x.to(tensor_device(device)), [p.to(tensor_device(device)) for p in params], repeats

    x, params, repeats = make(0)
    for step in range(3):
        if step == 1 and case == "updated in place":
            params[-4].mul_(-1.5)  # conv5's weight
            params[4].add_(0.25)  # the first down unit's pw3
        if step == 1 and case in ("reallocated", "inference tensors"):
            del params
            _, params, _ = make(1)
        torch.testing.assert_close(
            run_native(device, "shufflenet", x, params, repeats),
            ref.shufflenet(x, params, repeats),
            atol=1e-4,
            rtol=1e-4,
        )
