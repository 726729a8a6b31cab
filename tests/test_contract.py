"""The contract around the kernels: bad input, opcheck, torch.compile/export, autograd, backends."""

from __future__ import annotations

import re
import subprocess
import sys
import warnings

import pytest
import torch

import shufflekernels as sk
from shufflekernels import _library
from shufflekernels import ops
from shufflekernels import reference as ref

from conftest import native_devices, requires_native_cpu

# --------------------------------------------------------------------------------------------------
# Bad input: a clear exception naming the op and the argument, from the Python wrapper and from the
# C++ entry point alike (torch.ops.* calls skip the wrapper).
# --------------------------------------------------------------------------------------------------

x4 = torch.randn(2, 8, 5, 5)
w8 = torch.randn(8, 1, 3, 3)
b8 = torch.randn(8)

# (call through sk.ops, call straight into the native op or None, exception, op, argument)
BAD_INPUTS = {
    "channel_shuffle rank 3": (lambda: ops.channel_shuffle(torch.randn(8, 5, 5), 2), lambda: torch.ops.shufflekernels.channel_shuffle(torch.randn(8, 5, 5), 2), ValueError, "channel_shuffle", "x"),
    "channel_shuffle groups does not divide C": (lambda: ops.channel_shuffle(x4, 3), lambda: torch.ops.shufflekernels.channel_shuffle(x4, 3), ValueError, "channel_shuffle", "groups"),
    "channel_shuffle groups 0": (lambda: ops.channel_shuffle(x4, 0), lambda: torch.ops.shufflekernels.channel_shuffle(x4, 0), ValueError, "channel_shuffle", "groups"),
    "channel_shuffle groups negative": (lambda: ops.channel_shuffle(x4, -2), lambda: torch.ops.shufflekernels.channel_shuffle(x4, -2), ValueError, "channel_shuffle", "groups"),
    "channel_shuffle groups float": (lambda: ops.channel_shuffle(x4, 2.0), None, TypeError, "channel_shuffle", "groups"),
    "channel_shuffle integer dtype": (lambda: ops.channel_shuffle(torch.ones(1, 4, 2, 2, dtype=torch.int32), 2), lambda: torch.ops.shufflekernels.channel_shuffle(torch.ones(1, 4, 2, 2, dtype=torch.int32), 2), TypeError, "channel_shuffle", "x"),
    "channel_shuffle complex dtype": (lambda: ops.channel_shuffle(torch.ones(1, 4, 2, 2, dtype=torch.complex64), 2), lambda: torch.ops.shufflekernels.channel_shuffle(torch.ones(1, 4, 2, 2, dtype=torch.complex64), 2), TypeError, "channel_shuffle", "x"),
    "channel_shuffle not a tensor": (lambda: ops.channel_shuffle([[1.0]], 1), None, TypeError, "channel_shuffle", "x"),
    # No native call: with no tensor the dispatcher has no device to dispatch on and raises first.
    "shuffle_cat empty list": (lambda: ops.shuffle_cat([]), None, ValueError, "shuffle_cat", "tensors"),
    "shuffle_cat a bare tensor": (lambda: ops.shuffle_cat(x4), None, TypeError, "shuffle_cat", "tensors"),
    "shuffle_cat shapes differ": (lambda: ops.shuffle_cat([x4, torch.randn(2, 8, 5, 6)]), lambda: torch.ops.shufflekernels.shuffle_cat([x4, torch.randn(2, 8, 5, 6)]), ValueError, "shuffle_cat", "tensors[1]"),
    "shuffle_cat dtypes differ": (lambda: ops.shuffle_cat([x4, x4.double()]), lambda: torch.ops.shufflekernels.shuffle_cat([x4, x4.half()]), TypeError, "shuffle_cat", "tensors[1]"),
    "shuffle_cat rank 2": (lambda: ops.shuffle_cat([torch.randn(2, 8)] * 2), lambda: torch.ops.shufflekernels.shuffle_cat([torch.randn(2, 8)] * 2), ValueError, "shuffle_cat", "tensors[0]"),
    "dwconv3x3 rank 5": (lambda: ops.dwconv3x3(torch.randn(1, 2, 8, 5, 5), w8), lambda: torch.ops.shufflekernels.dwconv3x3(torch.randn(1, 2, 8, 5, 5), w8, None, 1, False), ValueError, "dwconv3x3", "x"),
    "dwconv3x3 weight shape": (lambda: ops.dwconv3x3(x4, torch.randn(8, 1, 5, 5)), lambda: torch.ops.shufflekernels.dwconv3x3(x4, torch.randn(8, 1, 5, 5), None, 1, False), ValueError, "dwconv3x3", "weight"),
    "dwconv3x3 weight channels": (lambda: ops.dwconv3x3(x4, torch.randn(4, 1, 3, 3)), lambda: torch.ops.shufflekernels.dwconv3x3(x4, torch.randn(4, 1, 3, 3), None, 1, False), ValueError, "dwconv3x3", "weight"),
    "dwconv3x3 bias shape": (lambda: ops.dwconv3x3(x4, w8, torch.randn(7)), lambda: torch.ops.shufflekernels.dwconv3x3(x4, w8, torch.randn(7), 1, False), ValueError, "dwconv3x3", "bias"),
    "dwconv3x3 weight dtype": (lambda: ops.dwconv3x3(x4, w8.double()), lambda: torch.ops.shufflekernels.dwconv3x3(x4, w8.half(), None, 1, False), TypeError, "dwconv3x3", "weight"),
    "dwconv3x3 stride 3": (lambda: ops.dwconv3x3(x4, w8, stride=3), lambda: torch.ops.shufflekernels.dwconv3x3(x4, w8, None, 3, False), ValueError, "dwconv3x3", "stride"),
    "dwconv3x3 stride 0": (lambda: ops.dwconv3x3(x4, w8, stride=0), lambda: torch.ops.shufflekernels.dwconv3x3(x4, w8, None, 0, False), ValueError, "dwconv3x3", "stride"),
    "dwconv3x3 zero width": (lambda: ops.dwconv3x3(torch.randn(1, 8, 5, 0), w8), lambda: torch.ops.shufflekernels.dwconv3x3(torch.randn(1, 8, 5, 0), w8, None, 1, False), ValueError, "dwconv3x3", "x"),
    "dwconv3x3 integer dtype": (lambda: ops.dwconv3x3(x4.long(), w8.long()), lambda: torch.ops.shufflekernels.dwconv3x3(x4.long(), w8.long(), None, 1, False), TypeError, "dwconv3x3", "x"),
    "dwconv3x3 relu not bool": (lambda: ops.dwconv3x3(x4, w8, relu=1), None, TypeError, "dwconv3x3", "relu"),
    "pointwise weight channels": (lambda: ops.pointwise(x4, torch.randn(6, 4, 1, 1), torch.randn(6)), lambda: torch.ops.shufflekernels.pointwise(x4, torch.randn(6, 4, 1, 1), torch.randn(6)), ValueError, "pointwise", "weight"),
    "pointwise bias shape": (lambda: ops.pointwise(x4, torch.randn(6, 8, 1, 1), torch.randn(5)), lambda: torch.ops.shufflekernels.pointwise(x4, torch.randn(6, 8, 1, 1), torch.randn(5)), ValueError, "pointwise", "bias"),
    # torch's own conv2d answers [N, 0, H, W] for no input channels, so there is no reference to match.
    "pointwise no input channels": (lambda: ops.pointwise(torch.randn(2, 0, 3, 3), torch.randn(4, 0, 1, 1), torch.randn(4)), lambda: torch.ops.shufflekernels.pointwise(torch.randn(2, 0, 3, 3), torch.randn(4, 0, 1, 1), torch.randn(4)), ValueError, "pointwise", "x"),
    "pointwise 3x3 weight": (lambda: ops.pointwise(x4, torch.randn(6, 8, 3, 3), torch.randn(6)), lambda: torch.ops.shufflekernels.pointwise(x4, torch.randn(6, 8, 3, 3), torch.randn(6)), ValueError, "pointwise", "weight"),
    "stem weight in-channels": (lambda: ops.stem(x4, torch.randn(24, 3, 3, 3), torch.randn(24)), lambda: torch.ops.shufflekernels.stem(x4, torch.randn(24, 3, 3, 3), torch.randn(24)), ValueError, "stem", "weight"),
    "stem bias shape": (lambda: ops.stem(x4, torch.randn(24, 8, 3, 3), torch.randn(8)), lambda: torch.ops.shufflekernels.stem(x4, torch.randn(24, 8, 3, 3), torch.randn(8)), ValueError, "stem", "bias"),
    "stem on triton": (lambda: ops.stem(x4, torch.randn(24, 8, 3, 3), torch.randn(24), backend="triton"), None, RuntimeError, "stem", "backend"),
    "split_unit odd channels": (lambda: ops.split_unit(torch.randn(1, 7, 4, 4), *([torch.randn(3)] * 6)), None, ValueError, "split_unit", "x"),
    "split_unit weight shape": (lambda: ops.split_unit(x4, torch.randn(4, 4, 1, 1), b8, w8, b8, torch.randn(4, 4, 1, 1), b8), None, ValueError, "split_unit", "pw1_bias"),
    "down_unit dw1 channels": (lambda: ops.down_unit(x4, torch.randn(4, 1, 3, 3), *([torch.randn(4)] * 9)), None, ValueError, "down_unit", "pw1_weight"),
    "unknown backend": (lambda: ops.channel_shuffle(x4, 2, backend="cudnn"), None, ValueError, "channel_shuffle", "backend"),
}


def _assert_message(exc_info, op: str, arg: str) -> None:
    message = str(exc_info.value)
    assert f"shufflekernels.{op}" in message, message
    assert f"'{arg}'" in message, message
    assert "expected" in message and "got" in message, message


@pytest.mark.parametrize("case", list(BAD_INPUTS), ids=str)
def test_bad_input_python(case):
    call, _, exc, op, arg = BAD_INPUTS[case]
    with pytest.raises(exc) as info:
        call()
    _assert_message(info, op, arg)


@requires_native_cpu
@pytest.mark.parametrize("case", [c for c in BAD_INPUTS if BAD_INPUTS[c][1] is not None], ids=str)
def test_bad_input_native(case):
    _, call, exc, op, arg = BAD_INPUTS[case]
    # TORCH_CHECK_VALUE / TORCH_CHECK_TYPE surface as ValueError / TypeError; the C++ message says
    # "tensors[i]" where Python says which i.
    with pytest.raises(exc) as info:
        call()
    _assert_message(info, op, re.sub(r"\[\d+\]", "[i]", arg) if op == "shuffle_cat" and arg != "tensors[0]" else arg)


@pytest.mark.parametrize("device", native_devices())
def test_empty_batch_returns_empty(device):
    x = torch.randn(0, 8, 5, 5, device=device)
    assert ops.channel_shuffle(x, 2).shape == (0, 8, 5, 5)
    assert ops.shuffle_cat([x, x]).shape == (0, 16, 5, 5)
    assert ops.dwconv3x3(x, w8.to(device), stride=2).shape == (0, 8, 3, 3)


def test_unbuilt_backend_says_how_to_build(monkeypatch):
    monkeypatch.setitem(_library.NATIVE_KERNELS, "cpu", frozenset())
    with pytest.raises(RuntimeError, match="not built for cpu tensors.*pip install"):
        ops.channel_shuffle(x4, 2, backend="native")


def test_triton_on_cpu_without_interpreter_is_refused(monkeypatch):
    monkeypatch.setattr(_library, "triton_status", lambda: (False, "no CUDA device and TRITON_INTERPRET is not 1"))
    with pytest.raises(RuntimeError, match="backend 'triton' is not usable here"):
        ops.channel_shuffle(x4, 2, backend="triton")


def test_auto_falls_back_to_reference_with_one_warning(monkeypatch):
    monkeypatch.setitem(_library.NATIVE_KERNELS, "cpu", frozenset())
    monkeypatch.setattr(ops, "_warned", set())
    with pytest.warns(RuntimeWarning, match="uses the reference implementation"):
        out = ops.channel_shuffle(x4, 2)
    assert torch.equal(out, ref.channel_shuffle(x4, 2))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ops.channel_shuffle(x4, 2)  # said once, not on every call


def test_import_needs_no_gpu_and_warns_nothing():
    # A CPU-only machine imports the package silently (no CUDA init, no warning).
    code = "import warnings; warnings.simplefilter('error'); import shufflekernels, torch; assert not torch.cuda.is_initialized()"
    subprocess.run([sys.executable, "-c", code], check=True)


# --------------------------------------------------------------------------------------------------
# Autograd: the permutations are differentiable, the rest refuse clearly.
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("device", native_devices())
@pytest.mark.parametrize("groups", [2, 3])
def test_channel_shuffle_grad(device, groups):
    x = torch.randn(2, 6, 3, 4, device=device, requires_grad=True)
    x_ref = x.detach().clone().requires_grad_()
    upstream = torch.randn(2, 6, 3, 4, device=device)
    ops.channel_shuffle(x, groups, backend="native").backward(upstream)
    ref.channel_shuffle(x_ref, groups).backward(upstream)
    assert torch.equal(x.grad, x_ref.grad)


@pytest.mark.parametrize("device", native_devices())
def test_shuffle_cat_grad(device):
    xs = [torch.randn(2, 5, 3, 3, device=device, requires_grad=True) for _ in range(3)]
    xs_ref = [x.detach().clone().requires_grad_() for x in xs]
    upstream = torch.randn(2, 15, 3, 3, device=device)
    ops.shuffle_cat(xs, backend="native").backward(upstream)
    ref.shuffle_cat(xs_ref).backward(upstream)
    for x, x_ref in zip(xs, xs_ref):
        assert torch.equal(x.grad, x_ref.grad)


@requires_native_cpu
@pytest.mark.filterwarnings("ignore:Input #0 requires gradient and is not a double")
def test_permutation_gradcheck():
    x = torch.randn(1, 4, 2, 3, dtype=torch.float32, requires_grad=True)
    # float32 gradcheck with loose tolerances: the op is a permutation, so the Jacobian is exact.
    assert torch.autograd.gradcheck(lambda t: ops.channel_shuffle(t, 2, backend="native"), (x,), eps=1e-2, atol=1e-3)


def test_inference_ops_refuse_grad_clearly():
    x = torch.randn(1, 8, 4, 4, requires_grad=True)
    with pytest.raises(RuntimeError, match=r"shufflekernels\.dwconv3x3 is inference-only.*torch.no_grad"):
        ops.dwconv3x3(x, w8)
    with torch.no_grad():
        ops.dwconv3x3(x, w8)
    with torch.inference_mode():
        ops.dwconv3x3(x, w8)


# --------------------------------------------------------------------------------------------------
# opcheck, torch.compile, torch.export.
# --------------------------------------------------------------------------------------------------


def _unit_args(c_in=8, cb=4, hw=6):
    x = torch.randn(2, c_in, hw, hw)
    split = (torch.randn(2, 2 * cb, hw, hw), torch.randn(cb, cb, 1, 1), torch.randn(cb), torch.randn(cb, 1, 3, 3), torch.randn(cb), torch.randn(cb, cb, 1, 1), torch.randn(cb))
    down = (x, torch.randn(c_in, 1, 3, 3), torch.randn(c_in), torch.randn(cb, c_in, 1, 1), torch.randn(cb), torch.randn(cb, c_in, 1, 1), torch.randn(cb), torch.randn(cb, 1, 3, 3), torch.randn(cb), torch.randn(cb, cb, 1, 1), torch.randn(cb))
    return split, down


def _opcheck_cases():
    split, down = _unit_args()
    nhwc = torch.randn(2, 8, 5, 5).contiguous(memory_format=torch.channels_last)
    nhwc_wide = torch.randn(2, 16, 6, 6).contiguous(memory_format=torch.channels_last)
    return {
        "channel_shuffle": ("channel_shuffle", (torch.randn(2, 8, 5, 5), 4)),
        "channel_shuffle grad": ("channel_shuffle", (torch.randn(2, 8, 5, 5, requires_grad=True), 2)),
        "channel_shuffle nhwc": ("channel_shuffle", (nhwc, 2)),
        "shuffle_cat": ("shuffle_cat", ([torch.randn(2, 3, 4, 4) for _ in range(3)],)),
        "shuffle_cat grad": ("shuffle_cat", ([torch.randn(2, 3, 4, 4, requires_grad=True) for _ in range(2)],)),
        "dwconv3x3": ("dwconv3x3", (torch.randn(2, 8, 7, 7), w8, b8, 2, True)),
        "dwconv3x3 no bias nhwc": ("dwconv3x3", (nhwc, w8, None, 1, False)),
        "pointwise": ("pointwise", (torch.randn(2, 8, 5, 5), torch.randn(6, 8, 1, 1), torch.randn(6))),
        "pointwise nhwc": ("pointwise", (nhwc, torch.randn(40, 8, 1, 1), torch.randn(40))),
        "pointwise no relu": ("pointwise", (torch.randn(3, 8, 1, 1), torch.randn(5, 8, 1, 1), torch.randn(5), False)),
        "stem": ("stem", (torch.randn(2, 3, 9, 8), torch.randn(24, 3, 3, 3), torch.randn(24))),
        "stem nhwc": ("stem", (torch.randn(1, 3, 7, 7).contiguous(memory_format=torch.channels_last), torch.randn(5, 3, 3, 3), torch.randn(5))),
        "split_unit": ("split_unit", split),
        "down_unit": ("down_unit", down),
        # Views dense in neither format whose strides are channels_last-like (a channel slice of a
        # channels_last activation, as a unit's halves are): the fakes must give the output the same
        # strides as the kernels, or torch.compile traces the wrong ones.
        "channel_shuffle nhwc slice": ("channel_shuffle", (nhwc_wide[:, :8], 2)),
        "shuffle_cat nhwc slices": ("shuffle_cat", ([nhwc_wide[:, :8], nhwc_wide[:, 8:]],)),
        "dwconv3x3 nhwc column slice": ("dwconv3x3", (nhwc_wide[:, :8, :, ::2], w8, b8, 1, True)),
        "pointwise nhwc slice": ("pointwise", (nhwc_wide[:, 8:], torch.randn(6, 8, 1, 1), torch.randn(6))),
        "stem nhwc slice": ("stem", (nhwc_wide[:, :3], torch.randn(5, 3, 3, 3), torch.randn(5))),
        "split_unit nhwc slice": ("split_unit", (nhwc_wide[:, :8], *split[1:])),
        "down_unit nhwc slice": ("down_unit", (nhwc_wide[:, 8:], *down[1:])),
    }


@requires_native_cpu
@pytest.mark.parametrize("case", list(_opcheck_cases()), ids=str)
def test_opcheck(case):
    name, args = _opcheck_cases()[case]
    torch.library.opcheck(getattr(torch.ops.shufflekernels, name).default, args)


@requires_native_cpu
def test_compile_fullgraph():
    torch._dynamo.reset()
    split, down = _unit_args(c_in=8, cb=4)

    def f(x, y, w, b):
        z = ops.shuffle_cat([x, y])
        z = ops.dwconv3x3(z, w, b, stride=2, relu=True)
        z = ops.channel_shuffle(z, 4)
        return ops.split_unit(ops.down_unit(*down), *split[1:]) , z

    x, y = torch.randn(2, 4, 9, 9), torch.randn(2, 4, 9, 9)
    with torch.no_grad():
        compiled = torch.compile(f, fullgraph=True, dynamic=False)
        got = compiled(x, y, w8, b8)
        expected = f(x, y, w8, b8)
    for g, e in zip(got, expected):
        torch.testing.assert_close(g, e)


@requires_native_cpu
def test_export():
    class Block(torch.nn.Module):
        def forward(self, x, y, w):
            return ops.channel_shuffle(ops.dwconv3x3(ops.shuffle_cat([x, y]), w, None, stride=1, relu=True), 2)

    x, y = torch.randn(1, 4, 6, 6), torch.randn(1, 4, 6, 6)
    exported = torch.export.export(Block(), (x, y, w8))
    targets = {str(n.target) for n in exported.graph.nodes if n.op == "call_function"}
    assert {"shufflekernels.shuffle_cat.default", "shufflekernels.dwconv3x3.default", "shufflekernels.channel_shuffle.default"} <= targets
    torch.testing.assert_close(exported.module()(x, y, w8), Block()(x, y, w8))


def test_backends_report():
    report = sk.backends()
    assert set(report) == {"native-cpu", "native-cuda", "triton", "reference"}
    assert set(report["native-cpu"]["ops"]) == set(_library.OPS)
    for entry in report.values():
        assert {"built", "usable", "why"} <= set(entry)
    assert report["reference"]["usable"]
