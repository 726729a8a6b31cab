"""Parity of the Triton backend against shufflekernels.reference, plus its registration and contract.

With a CUDA device the kernels run compiled on it; without one, this module turns on Triton's CPU
interpreter (TRITON_INTERPRET=1) for its own duration and runs them on CPU tensors. The interpreter runs
each program in numpy, so the shapes are small: each odd case is there for the reason beside it, and
the block sizes under the interpreter (shufflekernels/triton, ``autotune_configs``) are small enough
that these shapes still span several pixel tiles, channel blocks and K iterations.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import shufflekernels as sk
import shufflekernels.triton as sk_triton
from shufflekernels import _library
from shufflekernels import reference as ref

from conftest import LAYOUTS, assert_same_format, make_layout

ON_GPU = torch.cuda.is_available()
DEVICE = "cuda" if ON_GPU else "cpu"
INTERPRETED = not ON_GPU or os.environ.get("TRITON_INTERPRET") == "1"
DTYPES = [torch.float32, torch.float16, torch.bfloat16]

pytestmark = [
    pytest.mark.triton,
    pytest.mark.skipif(importlib.util.find_spec("triton") is None, reason="triton is not installed"),
]

# Triton 3.8's interpreter hands bfloat16 tl.dot operands to numpy as their raw uint16 bits
# (interpreter.py, create_dot), so the products are integers; the unit kernels' bfloat16 path (their
# only tl.dot use in bfloat16) can be checked on a GPU only. Loads, stores and casts of bfloat16 work
# and are covered by the other ops.
BF16_DOT_UNDER_INTERPRETER = "Triton's interpreter computes bfloat16 tl.dot on the raw bits; checked on GPU only"

# dtype -> (atol, rtol) against the float32 reference. float16/bfloat16: the unit kernels round the
# pw1 output and the depthwise output to the input dtype before each tl.dot (a fused GPU kernel's
# choice, where the reference keeps float32 throughout); and the interpreter truncates float32 ->
# bfloat16 where a GPU rounds to nearest, one more bfloat16 ulp.
DW_TOLERANCES = {torch.float32: (1e-5, 1e-5), torch.float16: (2e-3, 2e-3), torch.bfloat16: (1.6e-2, 1.6e-2)}
UNIT_TOLERANCES = {torch.float32: (2e-5, 2e-5), torch.float16: (1e-2, 1e-2), torch.bfloat16: (6e-2, 6e-2)}


@pytest.fixture(autouse=True, scope="module")
def triton_backend():
    """The interpreter on (without a GPU) for this module only, with the cached Triton status dropped
    before and after, so that other modules see this machine's real status."""
    env = pytest.MonkeyPatch()
    if not ON_GPU:
        env.setenv("TRITON_INTERPRET", "1")
    _library.triton_status.cache_clear()
    yield
    env.undo()
    _library.triton_status.cache_clear()


def _data(*shape, dtype=torch.float32, scale=1.0):
    """Values in ``dtype``, and the same values in float32 for the reference."""
    low = (scale * torch.randn(*shape, device=DEVICE)).to(dtype)
    return low, low.float()


def _skip_bf16_dot(dtype):
    if INTERPRETED and dtype == torch.bfloat16:
        pytest.skip(BF16_DOT_UNDER_INTERPRETER)


def _close(out, expected, table):
    atol, rtol = table[out.dtype]
    torch.testing.assert_close(out.float(), expected, atol=atol, rtol=rtol)


# --------------------------------------------------------------------------------------------------
# The permutations: exact.
# --------------------------------------------------------------------------------------------------

# (N, C, H, W, groups); the interpreter's channel block is 16.
SHUFFLE_SHAPES = [
    (2, 8, 5, 7, 2),  # odd H and W, two images in one pixel tile
    (1, 40, 3, 3, 2),  # 40 channels: the last channel block is partial
    (3, 12, 5, 9, 3),  # three groups
    (1, 8, 1, 1, 4),  # 1x1 spatial: NCHW and channels_last are the same bytes
    (1, 6, 3, 3, 1),  # groups=1 is the identity
    (1, 6, 2, 3, 6),  # groups=C: one channel per group
    (0, 8, 4, 4, 2),  # empty batch
]


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("shape", SHUFFLE_SHAPES, ids=str)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_channel_shuffle(layout, shape, dtype):
    n, c, h, w, g = shape
    x = make_layout(torch.randn(n, c, h, w, device=DEVICE).to(dtype), layout)
    out = sk.ops.channel_shuffle(x, g, backend="triton")
    assert out.shape == x.shape and out.dtype == dtype
    assert torch.equal(out, ref.channel_shuffle(x.contiguous(), g))
    assert_same_format(out, x)


# (N, C per tensor, H, W, number of tensors); one launch reads at most 4 tensors.
SHUFFLE_CAT_SHAPES = [
    (2, 5, 3, 7, 2),  # the units' case, odd sizes and channel count
    (1, 20, 3, 3, 2),  # 40 output channels: a partial channel block
    (2, 3, 2, 3, 3),  # three tensors
    (1, 2, 3, 3, 6),  # six tensors: two launches, the second writing groups 4 and 5
    (1, 4, 1, 1, 2),  # 1x1 spatial
    (1, 3, 2, 2, 1),  # a single tensor is a copy
    (0, 4, 3, 3, 2),  # empty batch
]


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("shape", SHUFFLE_CAT_SHAPES, ids=str)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_shuffle_cat(layout, shape, dtype):
    n, c, h, w, g = shape
    xs = [make_layout(torch.randn(n, c, h, w, device=DEVICE).to(dtype), layout) for _ in range(g)]
    out = sk.ops.shuffle_cat(xs, backend="triton")
    assert out.shape == (n, c * g, h, w) and out.dtype == dtype
    assert torch.equal(out, ref.shuffle_cat([x.contiguous() for x in xs]))
    assert_same_format(out, xs[0])


def test_shuffle_cat_mixed_layouts():
    # The first tensor decides the output layout; the others are copied into it once and read right.
    a = torch.randn(2, 6, 5, 5, device=DEVICE).contiguous(memory_format=torch.channels_last)
    b = torch.randn(2, 6, 5, 5, device=DEVICE)
    c = make_layout(torch.randn(2, 6, 5, 5, device=DEVICE), "strided")
    out = sk.ops.shuffle_cat([a, b, c], backend="triton")
    assert torch.equal(out, ref.shuffle_cat([a, b, c]))
    assert out.is_contiguous(memory_format=torch.channels_last)


def test_shuffle_keeps_signed_zeros_and_nan():
    # A permutation moves bits: -0.0 stays -0.0 and NaN stays NaN (no arithmetic on the values).
    a = torch.tensor([0.0, -0.0, float("nan"), 1.0], device=DEVICE).reshape(1, 4, 1, 1)
    b = torch.tensor([-0.0, 0.0, -1.0, float("nan")], device=DEVICE).reshape(1, 4, 1, 1)
    out = sk.ops.shuffle_cat([a, b], backend="triton")
    expected = ref.shuffle_cat([a, b])
    assert torch.equal(out.view(torch.int32), expected.view(torch.int32))


def test_permutation_gradients():
    x = torch.randn(2, 6, 3, 4, device=DEVICE, requires_grad=True)
    a = torch.randn(2, 3, 3, 4, device=DEVICE, requires_grad=True)
    b = torch.randn(2, 3, 3, 4, device=DEVICE, requires_grad=True)
    weights = torch.randn(2, 6, 3, 4, device=DEVICE)
    got = torch.autograd.grad((sk.ops.channel_shuffle(x, 3, backend="triton") * weights).sum(), x)
    want = torch.autograd.grad((ref.channel_shuffle(x, 3) * weights).sum(), x)
    assert torch.equal(got[0], want[0])
    got = torch.autograd.grad((sk.ops.shuffle_cat([a, b], backend="triton") * weights).sum(), (a, b))
    want = torch.autograd.grad((ref.shuffle_cat([a, b]) * weights).sum(), (a, b))
    assert all(torch.equal(g, w) for g, w in zip(got, want))


# --------------------------------------------------------------------------------------------------
# Depthwise 3x3.
# --------------------------------------------------------------------------------------------------

# (N, C, H, W, stride)
DW_SHAPES = [
    (2, 8, 7, 5, 1),  # odd H and W; a pixel tile spans both images
    (2, 7, 7, 9, 2),  # stride 2 on odd sizes: the last window overhangs the border
    (1, 40, 4, 6, 1),  # 40 channels: a partial channel block
    (1, 5, 1, 1, 1),  # 1x1 spatial: only the centre tap is inside
    (1, 3, 2, 3, 2),  # smaller than the window, at stride 2
    (0, 8, 5, 5, 2),  # empty batch
]


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("shape", DW_SHAPES, ids=str)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("epilogue", ["bias+relu", "plain"])
def test_dwconv3x3(layout, shape, dtype, epilogue):
    n, c, h, w, stride = shape
    x, x32 = _data(n, c, h, w, dtype=dtype)
    x = make_layout(x, layout)
    weight, weight32 = _data(c, 1, 3, 3, dtype=dtype, scale=1 / 3)
    bias, bias32 = _data(c, dtype=dtype) if epilogue == "bias+relu" else (None, None)
    relu = epilogue == "bias+relu"
    out = sk.ops.dwconv3x3(x, weight, bias, stride=stride, relu=relu, backend="triton")
    expected = ref.dwconv3x3(x32, weight32, bias32, stride=stride, relu=relu)
    assert out.shape == expected.shape == (n, c, (h - 1) // stride + 1, (w - 1) // stride + 1)
    assert out.dtype == dtype
    _close(out, expected, DW_TOLERANCES)
    assert_same_format(out, x)


# --------------------------------------------------------------------------------------------------
# The units. Under the interpreter: BLOCK_P 32, BLOCK_K 16, BLOCK_N at most 32.
# --------------------------------------------------------------------------------------------------


def _unit_params(c_in: int, cb: int, dtype, split: bool):
    """Folded parameters as (dtype values, the same in float32); biases of both signs, so ReLUs clip."""

    def pw(co, ci):
        return [_data(co, ci, 1, 1, dtype=dtype, scale=ci**-0.5), _data(co, dtype=dtype, scale=0.5)]

    def dw(ch):
        return [_data(ch, 1, 3, 3, dtype=dtype, scale=1 / 3), _data(ch, dtype=dtype, scale=0.5)]

    pairs = pw(cb, cb) + dw(cb) + pw(cb, cb) if split else dw(c_in) + pw(cb, c_in) + pw(cb, c_in) + dw(cb) + pw(cb, cb)
    return [p for p, _ in pairs], [p32 for _, p32 in pairs]


# (N, C, H, W), C = 2 * branch channels.
SPLIT_SHAPES = [
    (2, 16, 5, 7),  # branch of 8 < the 16 rows tl.dot needs: padded blocks; odd sizes across 2 images
    (1, 48, 4, 4),  # x0.5 stage2 branch (24): one full and one partial K block
    (1, 80, 3, 5),  # branch of 40: two output-channel blocks, three K blocks
    (1, 4, 1, 1),  # 1x1 spatial: every depthwise tap but the centre is padding
    (0, 8, 3, 3),  # empty batch
]


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("shape", SPLIT_SHAPES, ids=str)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_split_unit(layout, shape, dtype):
    _skip_bf16_dot(dtype)
    n, c, h, w = shape
    x, x32 = _data(n, c, h, w, dtype=dtype)
    x = make_layout(x, layout)
    params, params32 = _unit_params(c, c // 2, dtype, split=True)
    out = sk.ops.split_unit(x, *params, backend="triton")
    expected = ref.split_unit(x32, *params32)
    assert out.shape == x.shape and out.dtype == dtype
    _close(out, expected, UNIT_TOLERANCES)
    # The identity half is copied bit for bit into the even channels.
    assert torch.equal(out[:, 0::2], x[:, : c // 2])
    assert_same_format(out, x)


# (N, C_in, H, W, C_out)
POINTWISE_SHAPES = [
    (2, 8, 5, 7, 40),  # two output-channel blocks, odd sizes across 2 images
    (1, 20, 3, 3, 5),  # K not a multiple of BLOCK_K; fewer outputs than one block
    (0, 4, 3, 3, 6),  # empty batch
]


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("shape", POINTWISE_SHAPES, ids=str)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("relu", [True, False])
def test_pointwise(layout, shape, dtype, relu):
    _skip_bf16_dot(dtype)
    n, c_in, h, w, c_out = shape
    x, x32 = _data(n, c_in, h, w, dtype=dtype)
    x = make_layout(x, layout)
    (weight, bias), (weight32, bias32) = _pointwise_params(c_out, c_in, dtype)
    out = sk.ops.pointwise(x, weight, bias, relu=relu, backend="triton")
    assert out.shape == (n, c_out, h, w) and out.dtype == dtype
    _close(out, ref.pointwise(x32, weight32, bias32, relu), UNIT_TOLERANCES)
    assert_same_format(out, x)


def test_weights_read_in_their_stored_layout():
    """The kernels read weights through their strides (nothing is copied into their layout per call):
    the fused model's K-major 1x1 and tap-major depthwise weights (model._stored) give exactly what
    contiguous ones give."""
    from shufflekernels.model import _k_major, _tap_major

    x, _ = _data(2, 24, 6, 5)
    x = make_layout(x, "nhwc")
    (w, b), _ = _pointwise_params(40, 24, torch.float32)
    stored = _k_major(w)
    assert not stored.is_contiguous()
    torch.testing.assert_close(
        sk.ops.pointwise(x, stored, b, backend="triton"), sk.ops.pointwise(x, w, b, backend="triton"), atol=0, rtol=0
    )
    dw, _ = _data(24, 1, 3, 3)
    stored = _tap_major(dw)
    assert not stored.is_contiguous()
    torch.testing.assert_close(
        sk.ops.dwconv3x3(x, stored, None, stride=2, backend="triton"),
        sk.ops.dwconv3x3(x, dw, None, stride=2, backend="triton"),
        atol=0,
        rtol=0,
    )


def _pointwise_params(c_out: int, c_in: int, dtype):
    pairs = [_data(c_out, c_in, 1, 1, dtype=dtype, scale=c_in**-0.5), _data(c_out, dtype=dtype, scale=0.5)]
    return [p for p, _ in pairs], [p32 for _, p32 in pairs]


# (N, C_in, H, W, branch channels)
DOWN_SHAPES = [
    (2, 8, 7, 5, 8),  # odd sizes at stride 2, two images per pixel tile
    (1, 24, 6, 6, 24),  # x0.5 stage2 entry (24 -> 2 x 24)
    (1, 20, 5, 4, 40),  # branch of 40 from 20 inputs: K and N blocks differ per branch
    (1, 3, 1, 1, 2),  # 1x1 spatial; 3 input channels
    (0, 4, 5, 5, 3),  # empty batch
]


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("shape", DOWN_SHAPES, ids=str)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_down_unit(layout, shape, dtype):
    _skip_bf16_dot(dtype)
    n, c, h, w, cb = shape
    x, x32 = _data(n, c, h, w, dtype=dtype)
    x = make_layout(x, layout)
    params, params32 = _unit_params(c, cb, dtype, split=False)
    out = sk.ops.down_unit(x, *params, backend="triton")
    expected = ref.down_unit(x32, *params32)
    assert out.shape == (n, 2 * cb, (h - 1) // 2 + 1, (w - 1) // 2 + 1) and out.dtype == dtype
    _close(out, expected, UNIT_TOLERANCES)
    assert_same_format(out, x)


def test_units_read_non_contiguous_weights():
    # Weights that are views (as after slicing a larger checkpoint) are read by value, not by layout.
    x, x32 = _data(1, 16, 4, 4)
    params, params32 = _unit_params(16, 8, torch.float32, split=True)
    views = [torch.stack([p, torch.zeros_like(p)], -1)[..., 0] for p in params]
    assert not any(v.is_contiguous() for v in views)
    _close(sk.ops.split_unit(x, *views, backend="triton"), ref.split_unit(x32, *params32), UNIT_TOLERANCES)


# --------------------------------------------------------------------------------------------------
# Registration: opcheck, torch.compile, status, and what importing costs.
# --------------------------------------------------------------------------------------------------


def _opcheck_cases():
    x = torch.randn(2, 8, 3, 5, device=DEVICE)
    xg = x.clone().requires_grad_()
    parts = [torch.randn(2, 4, 3, 5, device=DEVICE, requires_grad=True) for _ in range(2)]
    split, _ = _unit_params(8, 4, torch.float32, split=True)
    down, _ = _unit_params(8, 4, torch.float32, split=False)
    w, _ = _data(8, 1, 3, 3)
    b, _ = _data(8)
    return {
        "channel_shuffle": (xg, 2),
        "shuffle_cat": (parts,),
        "dwconv3x3": (x.contiguous(memory_format=torch.channels_last), w, b, 2, True),
        "dwconv3x3-nobias": (x, w, None, 1, False),
        "pointwise": (x, *_pointwise_params(6, 8, torch.float32)[0]),
        "split_unit": (x, *split),
        "down_unit": (x.contiguous(memory_format=torch.channels_last), *down),
    }


@pytest.mark.parametrize("case", ["channel_shuffle", "shuffle_cat", "dwconv3x3", "dwconv3x3-nobias", "pointwise", "split_unit", "down_unit"])
def test_opcheck(case):
    from shufflekernels.triton import library  # noqa: F401  (registers the ops)

    op = getattr(torch.ops.shufflekernels_triton, case.split("-")[0]).default
    torch.library.opcheck(op, _opcheck_cases()[case])


def test_compile_fullgraph():
    x = torch.randn(1, 16, 4, 5, device=DEVICE).contiguous(memory_format=torch.channels_last)
    params, _ = _unit_params(16, 8, torch.float32, split=True)

    def block(x, *params):
        y = sk.ops.split_unit(x, *params, backend="triton")
        return sk.ops.channel_shuffle(y, 4, backend="triton")

    torch._dynamo.reset()
    with torch.no_grad():
        got = torch.compile(block, fullgraph=True)(x, *params)
        want = block(x, *params)
    torch.testing.assert_close(got, want)
    assert got.is_contiguous(memory_format=torch.channels_last)


def test_status_and_backends_report():
    usable, why = _library.triton_status()
    assert usable, why
    assert ("TRITON_INTERPRET=1" in why) == INTERPRETED
    entry = sk.backends()["triton"]
    assert entry["usable"] and entry["built"]
    assert sorted(entry["ops"]) == sorted(_library.TRITON_OPS)


def test_cpu_tensor_without_interpreter_is_refused(monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    _library.triton_status.cache_clear()
    x = torch.randn(1, 4, 2, 2)
    try:
        # Without a GPU, ops.py refuses the backend; with one, the launcher refuses the CPU tensor.
        refusal = "expected a CUDA tensor" if ON_GPU else "backend 'triton' is not usable here: .*TRITON_INTERPRET is not 1"
        with pytest.raises(RuntimeError, match=refusal):
            sk.ops.channel_shuffle(x, 2, backend="triton")
        with pytest.raises(RuntimeError, match="dwconv3x3: backend 'triton' expected a CUDA tensor"):
            sk_triton.dwconv3x3(x, torch.randn(4, 1, 3, 3), None, 1, False)
        # 'auto' never picks Triton for CPU tensors.
        assert sk.ops.resolve_backend("channel_shuffle", "auto", torch.device("cpu")) != "triton"
    finally:
        monkeypatch.undo()
        _library.triton_status.cache_clear()


def test_import_does_not_import_triton():
    # `import shufflekernels` and `sk.backends()` must stay cheap and GPU-free; kernels load on first use.
    code = (
        "import sys, shufflekernels as sk; assert 'triton' not in sys.modules; sk.backends(); "
        "assert 'shufflekernels.triton.library' not in sys.modules"
    )
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    subprocess.run([sys.executable, "-c", code], check=True, env=env, cwd=Path(__file__).resolve().parents[1])


# --------------------------------------------------------------------------------------------------
# The model on the Triton backend: x0.5 on a small image (the interpreter runs every program in numpy).
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("layout", ["nchw", "nhwc"])
def test_model_x0_5(layout):
    from test_model import assert_logits_match, reference_model

    model = reference_model(0.5, num_classes=10).to(DEVICE)
    fused = sk.FusedShuffleNetV2.from_reference(model, backend="triton")
    x = torch.randn(2, 3, 40, 40, device=DEVICE)  # 40 -> 20 -> 10 -> 5 -> 3 -> 2: odd sizes at stride 2
    if layout == "nhwc":
        x = x.contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        # Float32 tl.dot runs IEEE (no TF32), so the logits match as tightly as on the native backend.
        assert_logits_match(fused(x), model(x))
