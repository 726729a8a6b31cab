"""Parity of the Triton backend against shufflekernels.reference, plus its registration and contract.

With a CUDA device the kernels run compiled on it; without one, this module turns on Triton's CPU
interpreter (TRITON_INTERPRET=1) for its own duration and runs them on CPU tensors. The interpreter runs
each program in numpy, so the shapes are small: each odd case is there for the reason beside it, and
the block sizes under the interpreter (shufflekernels/triton, ``autotune_configs``) are small enough
that these shapes still span several pixel tiles, channel blocks and K iterations.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import shufflekernels as sk
from shufflekernels import _backend_selection, registry, tolerances
from shufflekernels import reference as ref

from conftest import LAYOUTS, calibrate_bn, make_layout, photographs
from op_cases import INTERPRETER_CASES, make_inputs, params
from test_contract import BAD_INPUTS, contract_error, raised
from test_ops import assert_matches_reference

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


@pytest.fixture(autouse=True, scope="module")
def _triton_for_this_module(triton_backend):
    yield


def _skip_bf16_dot(dtype):
    if INTERPRETED and dtype == torch.bfloat16:
        pytest.skip(BF16_DOT_UNDER_INTERPRETER)


# --------------------------------------------------------------------------------------------------
# Parity: every op with a Triton kernel x layout x dtype x the interpreter-sized cases of
# tests/op_cases.py.
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("op,case", params(INTERPRETER_CASES, registry.ops_with("triton")))
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_parity(layout, op, case, dtype):
    if registry.OPS[op].kind == "gemm":
        _skip_bf16_dot(dtype)
    args = make_inputs(op, case, dtype=dtype, device=DEVICE, layout=layout)
    out = sk.ops.call(op, *args, backend="triton")
    assert_matches_reference(op, out, args)
    if op == "split_unit":  # the identity half is copied bit for bit into the even channels
        assert torch.equal(out[:, 0::2], args[0][:, : args[0].shape[1] // 2])


@pytest.mark.parametrize("case", list(BAD_INPUTS), ids=str)
def test_bad_input_same_as_every_path(case):
    # The Triton ops run the contract themselves, so a direct torch.ops call is refused as the wrapper's is.
    from shufflekernels.triton import library  # noqa: F401  (registers the ops)

    op, make, _, _, unreachable = BAD_INPUTS[case]
    if "native" in unreachable or op not in registry.ops_with("triton"):
        pytest.skip(unreachable.get("native", "no Triton kernel for this op"))
    assert raised(lambda: getattr(torch.ops.shufflekernels_triton, op)(*make())) == contract_error(case)


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


def test_weights_read_in_their_stored_layout():
    """The kernels read weights through their strides (nothing is copied into their layout per call):
    the fused model's K-major 1x1 and tap-major depthwise weights (model._stored) give exactly what
    contiguous ones give."""
    from shufflekernels.model import _k_major, _tap_major

    x, w, b, _ = make_inputs("pointwise", (2, 24, 6, 5, 40, True), dtype=torch.float32, device=DEVICE, layout="nhwc")
    stored = _k_major(w)
    assert not stored.is_contiguous()
    assert torch.equal(sk.ops.pointwise(x, stored, b, backend="triton"), sk.ops.pointwise(x, w, b, backend="triton"))
    dw = make_inputs("dwconv3x3", (2, 24, 6, 5, 2, False, False), dtype=torch.float32, device=DEVICE, layout="nhwc")[1]
    stored = _tap_major(dw)
    assert not stored.is_contiguous()
    assert torch.equal(
        sk.ops.dwconv3x3(x, stored, None, stride=2, backend="triton"),
        sk.ops.dwconv3x3(x, dw, None, stride=2, backend="triton"),
    )


def test_units_read_non_contiguous_weights():
    # Weights that are views (as after slicing a larger checkpoint) are read by value, not by layout.
    args = make_inputs("split_unit", (1, 16, 4, 4), dtype=torch.float32, device=DEVICE, layout="nchw")
    views = [torch.stack([p, torch.zeros_like(p)], -1)[..., 0] for p in args[1:]]
    assert not any(v.is_contiguous() for v in views)
    assert_matches_reference("split_unit", sk.ops.split_unit(args[0], *views, backend="triton"), args)


# --------------------------------------------------------------------------------------------------
# Registration: opcheck, torch.compile, status, and what importing costs.
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("op", registry.ops_with("triton"))
@pytest.mark.parametrize("layout", ["nchw", "nhwc"])
def test_opcheck(op, layout):
    from shufflekernels.triton import library  # noqa: F401  (registers the ops)

    # The first interpreter case of each op: small, with the odd sizes the table starts with.
    args = make_inputs(op, INTERPRETER_CASES[op][0][0], dtype=torch.float32, device=DEVICE, layout=layout)
    if registry.OPS[op].differentiable:
        args = tuple([t.requires_grad_() for t in a] if isinstance(a, list) else a.requires_grad_() if isinstance(a, torch.Tensor) else a for a in args)  # fmt: skip
    torch.library.opcheck(getattr(torch.ops.shufflekernels_triton, op).default, args)


def test_compile_fullgraph():
    x, *params = make_inputs("split_unit", (1, 16, 4, 5), dtype=torch.float32, device=DEVICE, layout="nhwc")

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
    usable, why = _backend_selection.triton_status()
    assert usable, why
    assert ("TRITON_INTERPRET=1" in why) == INTERPRETED
    entry = sk.backends()["triton"]
    assert entry["usable"] and entry["built"]
    assert sorted(entry["ops"]) == sorted(_backend_selection.TRITON_OPS)


def test_cpu_tensor_without_interpreter_is_refused(monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    _backend_selection.triton_status.cache_clear()
    x = torch.randn(1, 4, 2, 2)
    try:
        # Without a GPU, ops.py refuses the backend; with one, the launcher refuses the CPU tensor.
        refusal = (
            "expected a CUDA tensor" if ON_GPU else "backend 'triton' is not usable here: .*TRITON_INTERPRET is not 1"
        )
        with pytest.raises(RuntimeError, match=refusal):
            sk.ops.channel_shuffle(x, 2, backend="triton")
        with pytest.raises(RuntimeError, match="dwconv3x3: backend 'triton' expected a CUDA tensor"):
            torch.ops.shufflekernels_triton.dwconv3x3(x, torch.randn(4, 1, 3, 3), None, 1, False)
        # 'auto' never picks Triton for CPU tensors.
        assert sk.ops.resolve_backend("channel_shuffle", "auto", torch.device("cpu")) != "triton"
    finally:
        monkeypatch.undo()
        _backend_selection.triton_status.cache_clear()


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


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=str)
def test_model_calibrated_on_photographs(dtype):
    """x0.5 with BatchNorm statistics calibrated on photographs, run on them: float32 to the reference's
    logits, float16 within twice torch's own float16 error (the reference model run in float16)."""
    from test_model import assert_logits_match, reference_model

    photos = photographs(48)
    model = calibrate_bn(reference_model(0.5, num_classes=10), photos)
    fused = sk.FusedShuffleNetV2.from_reference(model, backend="triton").to(DEVICE, dtype)
    with torch.inference_mode():
        expected = model(photos)
        got = fused(photos.to(DEVICE, dtype)).cpu()
        if dtype == torch.float32:
            assert_logits_match(got, expected)
        else:
            torch_error = tolerances.relative_error(model.to(dtype)(photos.to(dtype)), expected)
            assert tolerances.relative_error(got, expected) <= 2 * torch_error + 1e-4


# --------------------------------------------------------------------------------------------------
# The fused unit kernels at the network's real shapes (224x224 input: stage2 at 56x56 -> 28x28), every
# width, on real activations: photographs through a network whose BatchNorm statistics were calibrated
# on them (train-mode passes), so the folded weights and biases have a trained network's spread.
# --------------------------------------------------------------------------------------------------


@functools.cache
def _stage2(width: float):
    """(the stage2 down unit's input, its params, the split unit's input (the down unit's output), its
    params), float32, from the calibrated model on one photograph."""
    from test_model import reference_model

    photos = photographs()
    model = calibrate_bn(reference_model(width), photos)
    fused = sk.FusedShuffleNetV2.from_reference(model, backend="reference")
    with torch.inference_mode():
        x = ref.stem(photos[:1], fused.conv1_weight, fused.conv1_bias)
        down, split = fused.units[0].params(), fused.units[1].params()
        return x, down, ref.down_unit(x, *down), split


@pytest.mark.parametrize("op", ["down_unit", "split_unit"])
@pytest.mark.parametrize("width", list(ref.WIDTHS))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=str)
def test_units_at_network_shapes_on_calibrated_weights(op, width, dtype):
    if dtype == torch.float16 and width > 1.0 and INTERPRETED:
        pytest.skip("float16 at x1.5 and x2.0: a GPU run covers them; float32 covers their code here")
    down_x, down, split_x, split = _stage2(width)
    x, params = (down_x, down) if op == "down_unit" else (split_x, split)
    if INTERPRETED and width > 1.0:
        # The real channel counts on a crop of the real map (a sixteenth of it, with its borders odd):
        # the interpreter's time grows with pixels x channels squared, and x2.0's split unit took two
        # minutes at 28x28.
        x = x[:, :, 1 : 2 + x.shape[2] // 4, 1 : 2 + x.shape[3] // 4]
    x = x.contiguous(memory_format=torch.channels_last)
    expected = getattr(ref, op)(x, *params)
    got = sk.ops.call(op, x.to(DEVICE, dtype), *[p.to(DEVICE, dtype) for p in params], backend="triton").cpu()
    assert got.shape == expected.shape and got.is_contiguous(memory_format=torch.channels_last)
    if dtype == torch.float32:
        torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)
    else:
        # Held to torch's own error in this dtype: the reference run in it, against float32.
        torch_error = tolerances.relative_error(getattr(ref, op)(x.to(dtype), *[p.to(dtype) for p in params]), expected)
        assert tolerances.relative_error(got, expected) <= 2 * torch_error + 1e-4
