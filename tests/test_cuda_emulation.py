"""The CUDA backend's kernels run on host threads (csrc/cuda/host_emulation.cpp), beyond the op tables of
test_ops.py (whose "cuda-emulated" params cover every op, dtype, layout and odd shape):

- which vector width and index type each launch plans, so that a planning change cannot silently send
  the network's shapes down the scalar path (the emulation checks every vector access's alignment, and
  .ci/check_sass.py that each vectorised kernel's machine code uses vector instructions);
- inputs whose pointers or strides rule vectors out;
- NaN through the ReLU epilogues;
- the whole network through the CUDA kernels' code, every width.

What this cannot prove is the GPU's side: launch configuration, streams, the hardware. tests/test_cuda.py
and benchmarks/gpu_check.sh do that where a GPU is present.
"""

from __future__ import annotations

import pytest
import torch

import shufflekernels as sk
from shufflekernels import model as model_module
from shufflekernels import reference as ref
from shufflekernels import tolerances
from shufflekernels.opspec import unit_params

import global_state
from conftest import requires_cuda_emulation
from test_model import assert_logits_match, reference_model

pytestmark = requires_cuda_emulation

EMULATED = torch.ops.shufflekernels_cuda_emulated


@pytest.fixture(autouse=True)
def clean_log():
    EMULATED.launch_log()
    yield
    EMULATED.force_wide_index(False)


def _launches() -> list[str]:
    return EMULATED.launch_log().splitlines()


def _x(shape, layout, dtype=torch.float32):
    x = torch.randn(*shape).to(dtype)
    return x.contiguous(memory_format=torch.channels_last) if layout == "nhwc" else x


def _dw(c, dtype):
    return torch.randn(c, 1, 3, 3).to(dtype), torch.randn(c).to(dtype)


# (case, dtype, call on inputs of that dtype, expected launches). The planner takes 16-byte accesses where every
# count and pointer allows, else 8-byte, else 4-byte (2-byte dtypes), else one element; a 64-bit index
# is always scalar.
PLANS = [
    # Permutations: NCHW moves plane rows (H*W), NHWC stores output pixels (C).
    (
        "shuffle nchw HW=64",
        torch.float32,
        lambda dt: EMULATED.channel_shuffle(_x((2, 8, 8, 8), "nchw", dt), 2),
        ["interleave nchw v4 i32"],
    ),
    (
        "shuffle nchw HW=64",
        torch.float16,
        lambda dt: EMULATED.channel_shuffle(_x((2, 8, 8, 8), "nchw", dt), 2),
        ["interleave nchw v8 i32"],
    ),
    (
        "shuffle nchw HW=6: 8 bytes on float32, 4 on float16",
        torch.float32,
        lambda dt: EMULATED.channel_shuffle(_x((1, 4, 2, 3), "nchw", dt), 2),
        ["interleave nchw v2 i32"],
    ),
    (
        "shuffle nchw HW=6",
        torch.float16,
        lambda dt: EMULATED.channel_shuffle(_x((1, 4, 2, 3), "nchw", dt), 2),
        ["interleave nchw v2 i32"],
    ),
    (
        "shuffle nchw HW=15",
        torch.float16,
        lambda dt: EMULATED.channel_shuffle(_x((1, 4, 3, 5), "nchw", dt), 2),
        ["interleave nchw v1 i32"],
    ),
    (
        "shuffle nhwc C=116 (x1.0 stage 2)",
        torch.float32,
        lambda dt: EMULATED.channel_shuffle(_x((1, 116, 4, 4), "nhwc", dt), 2),
        ["interleave nhwc v4 i32"],
    ),
    (
        "shuffle nhwc, 20 groups: two launches of at most 16 sources, scalar",
        torch.float32,
        lambda dt: EMULATED.channel_shuffle(_x((1, 40, 3, 3), "nhwc", dt), 20),
        ["interleave nhwc v1 i32"] * 2,
    ),
    (
        "shuffle_cat nchw HW=49 (stage 4)",
        torch.bfloat16,
        lambda dt: EMULATED.shuffle_cat([_x((1, 8, 7, 7), "nchw", dt)] * 2),
        ["interleave nchw v1 i32"],
    ),
    # Depthwise: NHWC vectors over channels; NCHW over output columns (W and Wo both multiples).
    (
        "dw nhwc C=232 stride 1",
        torch.float32,
        lambda dt: EMULATED.dwconv3x3(_x((1, 232, 5, 5), "nhwc", dt), *_dw(232, dt), 1, True),
        ["dwconv3x3 nhwc v4 i32"],
    ),
    (
        "dw nhwc C=58 (x1.0 stage 2 branch)",
        torch.float32,
        lambda dt: EMULATED.dwconv3x3(_x((1, 58, 5, 5), "nhwc", dt), *_dw(58, dt), 2, False),
        ["dwconv3x3 nhwc v2 i32"],
    ),
    (
        "dw nhwc C=232",
        torch.float16,
        lambda dt: EMULATED.dwconv3x3(_x((1, 232, 5, 5), "nhwc", dt), *_dw(232, dt), 1, False),
        ["dwconv3x3 nhwc v8 i32"],
    ),
    (
        "dw nchw 28x28 stride 1",
        torch.float32,
        lambda dt: EMULATED.dwconv3x3(_x((1, 3, 28, 28), "nchw", dt), *_dw(3, dt), 1, False),
        ["dwconv3x3 nchw v4 i32"],
    ),
    (
        "dw nchw 16x16 stride 2 (Wo = 8)",
        torch.float16,
        lambda dt: EMULATED.dwconv3x3(_x((1, 3, 16, 16), "nchw", dt), *_dw(3, dt), 2, False),
        ["dwconv3x3 nchw v8 i32"],
    ),
    (
        "dw nchw 28x28 stride 2: Wo = 14 is no multiple of 4",
        torch.float32,
        lambda dt: EMULATED.dwconv3x3(_x((1, 3, 28, 28), "nchw", dt), *_dw(3, dt), 2, False),
        ["dwconv3x3 nchw v2 i32"],
    ),
    (
        "dw nchw odd W",
        torch.float32,
        lambda dt: EMULATED.dwconv3x3(_x((1, 3, 7, 7), "nchw", dt), *_dw(3, dt), 1, False),
        ["dwconv3x3 nchw v1 i32"],
    ),
    # pointwise: on channels_last (conv5) and on pooled features the bias and ReLU are in the cuBLAS
    # GEMM's epilogue, so nothing of ours runs; NCHW with pixels takes our epilogue pass.
    (
        "pointwise nhwc Cout=1024 (conv5)",
        torch.float32,
        lambda dt: EMULATED.pointwise(
            _x((1, 8, 7, 7), "nhwc", dt), torch.randn(1024, 8, 1, 1).to(dt), torch.randn(1024).to(dt)
        ),
        [],
    ),
    (
        "pointwise nchw HW=49",
        torch.float32,
        lambda dt: EMULATED.pointwise(
            _x((1, 8, 7, 7), "nchw", dt), torch.randn(16, 8, 1, 1).to(dt), torch.randn(16).to(dt)
        ),
        ["bias_act nchw v1 i32"],
    ),
    (
        "pointwise nchw pooled [N, C, 1, 1] (the classifier)",
        torch.float16,
        lambda dt: EMULATED.pointwise(
            _x((2, 8, 1, 1), "nchw", dt), torch.randn(16, 8, 1, 1).to(dt), torch.randn(16).to(dt), False
        ),
        [],
    ),
    # The stem, one kernel: 24 channels an NHWC pixel (16-byte stores in half precision), one element an
    # NCHW item.
    (
        "stem nhwc x1.0",
        torch.float16,
        lambda dt: EMULATED.stem(
            _x((1, 3, 32, 32), "nhwc", dt), torch.randn(24, 3, 3, 3).to(dt), torch.randn(24).to(dt)
        ),
        ["stem nhwc v8 i32"],
    ),
    (
        "stem nchw",
        torch.float32,
        lambda dt: EMULATED.stem(
            _x((1, 3, 17, 17), "nchw", dt), torch.randn(24, 3, 3, 3).to(dt), torch.randn(24).to(dt)
        ),
        ["stem nchw v1 i32"],
    ),
    # The units at the network's shapes.
    (
        "split unit x1.0 stage 2 nhwc (58 branch channels)",
        torch.float32,
        lambda dt: EMULATED.split_unit(_x((1, 116, 28, 28), "nhwc", dt), *unit_params(116, 58, True, dtype=dt)),
        ["dwconv3x3 nhwc v2 i32", "interleave2 nhwc v2 i32"],
    ),
    (
        "split unit x1.0 stage 2 nhwc",
        torch.float16,
        lambda dt: EMULATED.split_unit(_x((1, 116, 28, 28), "nhwc", dt), *unit_params(116, 58, True, dtype=dt)),
        ["dwconv3x3 nhwc v2 i32", "interleave2 nhwc v2 i32"],
    ),
    (
        "split unit x0.5 stage 3 nhwc (48 branch channels)",
        torch.float16,
        lambda dt: EMULATED.split_unit(_x((1, 96, 14, 14), "nhwc", dt), *unit_params(96, 48, True, dtype=dt)),
        ["dwconv3x3 nhwc v8 i32", "interleave2 nhwc v8 i32"],
    ),
    (
        "split unit nchw 28x28",
        torch.float32,
        lambda dt: EMULATED.split_unit(_x((1, 48, 28, 28), "nchw", dt), *unit_params(48, 24, True, dtype=dt)),
        ["dwconv3x3 nchw v4 i32", "interleave2 nchw v4 i32"],
    ),
    (
        "down unit x1.0 stage 2 entry nhwc",
        torch.float32,
        lambda dt: EMULATED.down_unit(_x((1, 24, 56, 56), "nhwc", dt), *unit_params(24, 58, False, dtype=dt)),
        ["dwconv3x3 nhwc v4 i32", "dwconv3x3 nhwc v2 i32", "interleave2 nhwc v2 i32"],
    ),
    (
        "down unit nchw 56x56 -> 28x28",
        torch.float32,
        lambda dt: EMULATED.down_unit(_x((1, 24, 56, 56), "nchw", dt), *unit_params(24, 24, False, dtype=dt)),
        ["dwconv3x3 nchw v4 i32", "dwconv3x3 nchw v4 i32", "interleave2 nchw v4 i32"],
    ),
]


@pytest.mark.parametrize("case, dtype, run, expected", PLANS, ids=[f"{p[0]} {p[1]}" for p in PLANS])
def test_launch_plan(case, dtype, run, expected):
    run(dtype)
    assert _launches() == expected


def _network(width, dtype):
    fused = sk.FusedShuffleNetV2.from_reference(reference_model(width).eval(), backend="native").to(dtype=dtype)
    return fused._network_params, fused.stage_lengths


def test_network_launch_plan():
    """The network at x1.0 in float16 from an NCHW image: the stem writes channels_last, 8 channels a
    vector (24 channels); each unit's depthwise launch is as wide as both its parts allow, 2 for
    stage 2's 58-channel branches (and the stem's 24 in the down unit), 4 for stage 3's 116, 8 for stage
    4's 232. The 1x1s are library GEMMs, not bodies."""
    params, repeats = _network(1.0, torch.float16)
    EMULATED.shufflenet(_x((1, 3, 32, 32), "nchw", torch.float16), params, repeats)
    units = [f"unit_dwconv nhwc v{v} i32" for v, n in ((2, 4), (4, 8), (8, 4)) for _ in range(n)]
    assert _launches() == ["stem nhwc v8 i32", *units]


def test_network_under_tf32_runs_the_layer_ops():
    """A split unit's final GEMM passes its identity half through a 1 in the weights: exact in float32,
    rounded under TF32. With TF32 allowed for float32 GEMMs the network runs the layer ops instead, whose
    identity half is a copy."""
    params, repeats = _network(0.5, torch.float32)
    x = _x((2, 3, 32, 32), "nchw")
    planned = EMULATED.shufflenet(x, params, repeats)
    assert not any(line.startswith("interleave2") for line in _launches())
    with global_state.tf32_matmul(True):
        layered = EMULATED.shufflenet(x, params, repeats)
    assert any(line.startswith("interleave2") for line in _launches())
    torch.testing.assert_close(layered, planned)


def test_wide_index_is_scalar():
    x = _x((1, 116, 8, 8), "nhwc")
    params = unit_params(116, 58, True)
    EMULATED.force_wide_index(True)
    out = EMULATED.split_unit(x, *params)
    assert _launches() == ["dwconv3x3 nhwc v1 i64", "interleave2 nhwc v1 i64"]
    torch.testing.assert_close(out, ref.split_unit(x, *params), atol=1e-4, rtol=1e-4)


def _offset_by_one(shape, layout):
    """A dense tensor whose data starts one element past an aligned address."""
    n, c, h, w = shape
    flat = torch.randn(n * c * h * w + 1)[1:]
    if layout == "nhwc":
        return flat.view(n, h, w, c).permute(0, 3, 1, 2)
    return flat.view(n, c, h, w)


# (op, layout): inputs at an odd address must plan scalar accesses (a vector access there would fault
# on a GPU, and raises in the emulation) and still compute the reference.
MISALIGNED = [
    ("channel_shuffle", "nchw"),
    ("dwconv3x3", "nchw"),
    ("dwconv3x3", "nhwc"),
    ("split_unit", "nhwc"),  # the identity half is read in place
    ("split_unit", "nchw"),
]


@pytest.mark.parametrize("op, layout", MISALIGNED)
def test_misaligned_input_plans_scalar(op, layout):
    x = _offset_by_one((2, 16, 8, 8), layout)
    if op == "channel_shuffle":
        out, expected = EMULATED.channel_shuffle(x, 2), ref.channel_shuffle(x, 2)
    elif op == "dwconv3x3":
        w, b = _dw(16, torch.float32)
        out, expected = EMULATED.dwconv3x3(x, w, b, 1, True), ref.dwconv3x3(x, w, b, stride=1, relu=True)
    else:
        params = unit_params(16, 8, True)
        out, expected = EMULATED.split_unit(x, *params), ref.split_unit(x, *params)
    launches = _launches()
    # The first launch reads the misaligned input (in the split unit: the last, reading its identity half).
    reads_input = launches[-1] if op == "split_unit" else launches[0]
    assert " v1 " in reads_input, launches
    torch.testing.assert_close(out, expected, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("layout", ["nchw", "nhwc"])
def test_relu_epilogues_keep_nan(layout):
    # torch.relu(nan) is nan; fmaxf(nan, 0) would be 0. Every ReLU of the CUDA kernels keeps it.
    x = _x((1, 8, 8, 8), layout)
    x[0, :, 3, 3] = float("nan")
    w, b = _dw(8, torch.float32)
    assert torch.isnan(EMULATED.dwconv3x3(x, w, b, 1, True)[0, :, 3, 3]).all()
    assert torch.isnan(EMULATED.pointwise(x, torch.randn(8, 8, 1, 1), torch.randn(8))[0, :, 3, 3]).all()
    # The stem's conv output at (1, 1) reads pixel (3, 3), and the max-pool at (0, 0) reads it: NaN wins.
    assert torch.isnan(EMULATED.stem(x, torch.randn(4, 8, 3, 3), torch.randn(4))[0, :, 0, 0]).all()
    out = EMULATED.split_unit(x, *unit_params(8, 4, True))
    assert torch.isnan(out[0, 1::2, 3, 3]).all()  # the branch's channels, through both ReLUs


# (width, image size, layout, dtype): the network end to end through the emulated CUDA ops. float16
# runs the CPU's half GEMM, slow, so only on the smallest width.
MODEL_CASES = [
    (0.5, 64, "nhwc", torch.float32),
    (0.5, 64, "nchw", torch.float16),
    (1.0, 64, "nchw", torch.float32),
    (1.5, 32, "nhwc", torch.float32),
    (2.0, 32, "nhwc", torch.float32),  # 122 branch channels: the 8-byte path
]


@pytest.mark.parametrize("width, size, layout, dtype", MODEL_CASES, ids=str)
def test_model_through_emulated_cuda_kernels(monkeypatch, width, size, layout, dtype):
    model = reference_model(width).eval()
    fused = sk.FusedShuffleNetV2.from_reference(model, backend="native").to(dtype=dtype)
    monkeypatch.setattr(model_module, "_native_ops", EMULATED)
    x = _x((2, 3, size, size), layout)
    with torch.no_grad():
        got = fused(x.to(dtype)).float()
        expected = model(x)
    launches = _launches()
    assert any(line.startswith("unit_dwconv") for line in launches), "the units did not run emulated"
    if dtype == torch.float32:
        assert_logits_match(got, expected)
    else:  # half precision may swap near-tied classes: the error bound is the check (as in test_cuda.py)
        err = tolerances.relative_error(got, expected)
        assert err <= tolerances.MODEL[dtype], f"relative error {err:.2e}"
