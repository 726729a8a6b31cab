"""The contract around the kernels: bad input, opcheck, torch.compile/export, autograd, backends."""

from __future__ import annotations

import subprocess
import sys
import warnings

import pytest
import torch

import shufflekernels as sk
from shufflekernels import _backend_selection, ops, registry
from shufflekernels import reference as ref

from conftest import native_devices, requires_native_cpu
from op_cases import CASES, make_inputs

# --------------------------------------------------------------------------------------------------
# Bad input: one contract, every path. The C++ checks (csrc/contract.h) are the contract for native
# calls; the wrappers, the reference, the fake kernels and the Triton ops run contract.py. Each case
# must raise the same exception class with the same message on every path that can receive it
# (tests/test_triton.py runs the Triton ops' side of the same table).
# --------------------------------------------------------------------------------------------------

x4 = torch.randn(2, 8, 5, 5)
w8 = torch.randn(8, 1, 3, 3)
b8 = torch.randn(8)


def _split(x=None, **override):
    """split_unit arguments for x [2, 8, 5, 5] (branch 4), with some replaced."""
    args = dict(x=x4 if x is None else x, pw1_weight=torch.randn(4, 4, 1, 1), pw1_bias=torch.randn(4),
                dw_weight=torch.randn(4, 1, 3, 3), dw_bias=torch.randn(4), pw2_weight=torch.randn(4, 4, 1, 1),
                pw2_bias=torch.randn(4))  # fmt: skip
    args.update(override)
    return tuple(args.values())


def _down(x=None, **override):
    """down_unit arguments for x [2, 8, 5, 5] (branch 4), with some replaced."""
    args = dict(x=x4 if x is None else x, dw1_weight=w8, dw1_bias=b8, pw3_weight=torch.randn(4, 8, 1, 1),
                pw3_bias=torch.randn(4), pw1_weight=torch.randn(4, 8, 1, 1), pw1_bias=torch.randn(4),
                dw2_weight=torch.randn(4, 1, 3, 3), dw2_bias=torch.randn(4), pw2_weight=torch.randn(4, 4, 1, 1),
                pw2_bias=torch.randn(4))  # fmt: skip
    args.update(override)
    return tuple(args.values())


x3 = torch.randn(2, 3, 16, 16)


def _net(replace: dict | None = None):
    """shufflenet arguments for a two-stage network (stage_repeats [1, 2]: 32 tensors), with some
    parameters replaced (by index)."""
    args = registry.OPS["shufflenet"].make_args((2, 16, 16, 4, 8, 16, 0, 16, 5, 1, 2), torch.Generator().manual_seed(0))
    params = list(args[1])
    for i, t in (replace or {}).items():
        params[i] = t
    return x3, params, args[2]


# Reasons a case cannot reach a path: the dispatcher's own argument parsing refuses it first.
SCHEMA_REFUSES = "the dispatcher's schema parsing refuses it before any kernel runs"
NO_TENSOR = "with no tensor the dispatcher has no device to dispatch on and raises first"

# name: (op, arguments in schema order, exception, argument named, {path: why it cannot be reached})
BAD_INPUTS = {
    "channel_shuffle rank 3": ("channel_shuffle", lambda: (torch.randn(8, 5, 5), 2), ValueError, "x", {}),
    "channel_shuffle groups does not divide C": ("channel_shuffle", lambda: (x4, 3), ValueError, "groups", {}),
    "channel_shuffle groups 0": ("channel_shuffle", lambda: (x4, 0), ValueError, "groups", {}),
    "channel_shuffle groups negative": ("channel_shuffle", lambda: (x4, -2), ValueError, "groups", {}),
    "channel_shuffle groups float": (
        "channel_shuffle",
        lambda: (x4, 2.0),
        TypeError,
        "groups",
        {"native": SCHEMA_REFUSES},
    ),
    "channel_shuffle integer dtype": (
        "channel_shuffle",
        lambda: (torch.ones(1, 4, 2, 2, dtype=torch.int32), 2),
        TypeError,
        "x",
        {},
    ),
    "channel_shuffle complex dtype": (
        "channel_shuffle",
        lambda: (torch.ones(1, 4, 2, 2, dtype=torch.complex64), 2),
        TypeError,
        "x",
        {},
    ),
    "channel_shuffle not a tensor": (
        "channel_shuffle",
        lambda: ([[1.0]], 1),
        TypeError,
        "x",
        {"native": SCHEMA_REFUSES},
    ),
    "shuffle_cat empty list": ("shuffle_cat", lambda: ([],), ValueError, "tensors", {"native": NO_TENSOR}),
    "shuffle_cat a bare tensor": ("shuffle_cat", lambda: (x4,), TypeError, "tensors", {"native": SCHEMA_REFUSES}),
    "shuffle_cat shapes differ": (
        "shuffle_cat",
        lambda: ([x4, torch.randn(2, 8, 5, 6)],),
        ValueError,
        "tensors[1]",
        {},
    ),
    "shuffle_cat third of three differs": (
        "shuffle_cat",
        lambda: ([x4, x4, torch.randn(2, 4, 5, 5)],),
        ValueError,
        "tensors[2]",
        {},
    ),
    "shuffle_cat dtypes differ": ("shuffle_cat", lambda: ([x4, x4.double()],), TypeError, "tensors[1]", {}),
    "shuffle_cat rank 2": ("shuffle_cat", lambda: ([torch.randn(2, 8)] * 2,), ValueError, "tensors[0]", {}),
    "dwconv3x3 rank 5": ("dwconv3x3", lambda: (torch.randn(1, 2, 8, 5, 5), w8, None, 1, False), ValueError, "x", {}),
    "dwconv3x3 weight shape": (
        "dwconv3x3",
        lambda: (x4, torch.randn(8, 1, 5, 5), None, 1, False),
        ValueError,
        "weight",
        {},
    ),
    "dwconv3x3 weight channels": (
        "dwconv3x3",
        lambda: (x4, torch.randn(4, 1, 3, 3), None, 1, False),
        ValueError,
        "weight",
        {},
    ),
    "dwconv3x3 bias shape": ("dwconv3x3", lambda: (x4, w8, torch.randn(7), 1, False), ValueError, "bias", {}),
    "dwconv3x3 weight dtype": ("dwconv3x3", lambda: (x4, w8.double(), None, 1, False), TypeError, "weight", {}),
    "dwconv3x3 stride 3": ("dwconv3x3", lambda: (x4, w8, None, 3, False), ValueError, "stride", {}),
    "dwconv3x3 stride 0": ("dwconv3x3", lambda: (x4, w8, None, 0, False), ValueError, "stride", {}),
    "dwconv3x3 zero width": ("dwconv3x3", lambda: (torch.randn(1, 8, 5, 0), w8, None, 1, False), ValueError, "x", {}),
    "dwconv3x3 integer dtype": ("dwconv3x3", lambda: (x4.long(), w8.long(), None, 1, False), TypeError, "x", {}),
    "dwconv3x3 relu not bool": (
        "dwconv3x3",
        lambda: (x4, w8, None, 1, 1),
        TypeError,
        "relu",
        {"native": SCHEMA_REFUSES},
    ),
    "pointwise weight channels": (
        "pointwise",
        lambda: (x4, torch.randn(6, 4, 1, 1), torch.randn(6), True),
        ValueError,
        "weight",
        {},
    ),
    "pointwise bias shape": (
        "pointwise",
        lambda: (x4, torch.randn(6, 8, 1, 1), torch.randn(5), True),
        ValueError,
        "bias",
        {},
    ),
    # torch's own conv2d answers [N, 0, H, W] for no input channels, so there is no reference to match.
    "pointwise no input channels": (
        "pointwise",
        lambda: (torch.randn(2, 0, 3, 3), torch.randn(4, 0, 1, 1), torch.randn(4), True),
        ValueError,
        "x",
        {},
    ),
    "pointwise 3x3 weight": (
        "pointwise",
        lambda: (x4, torch.randn(6, 8, 3, 3), torch.randn(6), True),
        ValueError,
        "weight",
        {},
    ),
    "pointwise 2-D weight": (
        "pointwise",
        lambda: (x4, torch.randn(6, 8), torch.randn(6), False),
        ValueError,
        "weight",
        {},
    ),
    "stem weight in-channels": (
        "stem",
        lambda: (x4, torch.randn(24, 3, 3, 3), torch.randn(24)),
        ValueError,
        "weight",
        {},
    ),
    "stem bias shape": ("stem", lambda: (x4, torch.randn(24, 8, 3, 3), torch.randn(8)), ValueError, "bias", {}),
    "split_unit odd channels": ("split_unit", lambda: _split(torch.randn(1, 7, 4, 4)), ValueError, "x", {}),
    # W = 0 used to return an empty tensor through torch.ops while the wrapper raised.
    "split_unit zero width": ("split_unit", lambda: _split(torch.randn(2, 8, 5, 0)), ValueError, "x", {}),
    "split_unit pw1 bias shape": ("split_unit", lambda: _split(pw1_bias=torch.randn(5)), ValueError, "pw1_bias", {}),
    "split_unit dw weight channels": (
        "split_unit",
        lambda: _split(dw_weight=torch.randn(8, 1, 3, 3)),
        ValueError,
        "dw_weight",
        {},
    ),
    "split_unit pw2 weight dtype": (
        "split_unit",
        lambda: _split(pw2_weight=torch.randn(4, 4, 1, 1).half()),
        TypeError,
        "pw2_weight",
        {},
    ),
    "down_unit dw1 channels": (
        "down_unit",
        lambda: _down(dw1_weight=torch.randn(4, 1, 3, 3)),
        ValueError,
        "dw1_weight",
        {},
    ),
    "down_unit pw3 in-channels": (
        "down_unit",
        lambda: _down(pw3_weight=torch.randn(4, 6, 1, 1)),
        ValueError,
        "pw3_weight",
        {},
    ),
    "down_unit pw1 rank": ("down_unit", lambda: _down(pw1_weight=torch.randn(4, 8)), ValueError, "pw1_weight", {}),
    "down_unit pw2 bias": ("down_unit", lambda: _down(pw2_bias=torch.randn(3)), ValueError, "pw2_bias", {}),
    "shufflenet a tensor short": ("shufflenet", lambda: (x3, _net()[1][:-1], [1, 2]), ValueError, "params", {}),
    "shufflenet no stages": ("shufflenet", lambda: (x3, _net()[1], []), ValueError, "stage_repeats", {}),
    "shufflenet an empty stage": ("shufflenet", lambda: (x3, _net()[1], [1, 0]), ValueError, "stage_repeats", {}),
    "shufflenet stage2 pw1 in-channels": (
        "shufflenet",
        lambda: _net(replace={6: torch.randn(4, 5, 1, 1)}),
        ValueError,
        "params[6]",
        {},
    ),
    "shufflenet split unit dw bias": (
        "shufflenet",
        lambda: _net(replace={25: torch.randn(3)}),
        ValueError,
        "params[25]",
        {},
    ),
    "shufflenet classifier 2-D": (
        "shufflenet",
        lambda: _net(replace={-2: torch.randn(5, 16)}),
        ValueError,
        "params[30]",
        {},
    ),
    "shufflenet float64 conv5": (
        "shufflenet",
        lambda: _net(replace={-4: torch.randn(16, 16, 1, 1).double()}),
        TypeError,
        "params[28]",
        {},
    ),
    "shufflenet repeats not ints": (
        "shufflenet",
        lambda: (x3, _net()[1], [1.0, 2.0]),
        TypeError,
        "stage_repeats",
        {"native": SCHEMA_REFUSES},
    ),
}


def _activation_one_dimension_short(op: str) -> tuple:
    """The op's example arguments with its activation (the first tensor) missing its batch dimension."""
    args = list(registry.example_args(op))
    if isinstance(args[0], list):
        args[0] = [args[0][0][0], *args[0][1:]]
    else:
        args[0] = args[0][0]
    return tuple(args)


# Every op gets this case without an entry of its own (so a new op is covered the day it is added);
# the entries above name the bad inputs particular to each op.
for _op, _spec in registry.OPS.items():
    _first = "tensors[0]" if str(_spec.arguments[0].type).startswith("List") else _spec.arg_names[0]
    BAD_INPUTS[f"{_op} activation of rank 3 (every op)"] = (
        _op,
        lambda op=_op: _activation_one_dimension_short(op),
        ValueError,
        _first,
        {},
    )


def raised(call) -> tuple[type, str]:
    """(exception class, message) of what call raises."""
    with pytest.raises(Exception) as info:
        call()
    return type(info.value), str(info.value).split("\n")[0]


def contract_error(case: str) -> tuple[type, str]:
    """What the contract says for a case: contract.py through the reference path, checked for form."""
    op, make, exc, arg, _ = BAD_INPUTS[case]
    got = raised(lambda: ops.call(op, *make(), backend="reference"))
    assert got[0] is exc, got
    assert got[1].startswith(f"shufflekernels.{op}: argument '{arg}' expected "), got[1]
    assert ", got " in got[1], got[1]
    return got


@pytest.mark.parametrize("case", list(BAD_INPUTS), ids=str)
def test_bad_input_python(case):
    contract_error(case)


def _paths() -> dict[str, object]:
    """Every path besides the reference one that runs the contract, by name."""
    paths = {}
    if _backend_selection.NATIVE_LOADED:
        paths["native"] = lambda op, args: getattr(torch.ops.shufflekernels, op)(*args)
        paths["emulated CUDA"] = lambda op, args: getattr(torch.ops.shufflekernels_cuda_emulated, op)(*args)

        def fake(op, args):
            from torch._subclasses.fake_tensor import FakeTensorMode

            mode = FakeTensorMode()

            def convert(a):
                if isinstance(a, torch.Tensor):
                    return mode.from_tensor(a)
                return [convert(t) for t in a] if isinstance(a, list) else a

            with mode:
                return getattr(torch.ops.shufflekernels, op)(*[convert(a) for a in args])

        paths["fake"] = fake
    return paths


@requires_native_cpu
@pytest.mark.parametrize("path", ["native", "emulated CUDA", "fake"])
@pytest.mark.parametrize("case", list(BAD_INPUTS), ids=str)
def test_bad_input_same_on_every_path(case, path):
    op, make, _, _, unreachable = BAD_INPUTS[case]
    if "native" in unreachable:
        pytest.skip(unreachable["native"])
    assert raised(lambda: _paths()[path](op, make())) == contract_error(case)


def test_backend_errors():
    with pytest.raises(
        ValueError, match=r"shufflekernels\.channel_shuffle: argument 'backend' expected one of .*, got 'cudnn'"
    ):
        ops.channel_shuffle(x4, 2, backend="cudnn")
    with pytest.raises(RuntimeError, match=r"shufflekernels\.stem: argument 'backend' expected .*got 'triton'"):
        ops.stem(x4, torch.randn(24, 8, 3, 3), torch.randn(24), backend="triton")


@pytest.mark.parametrize("device", native_devices())
def test_empty_batch_returns_empty(device):
    x = torch.randn(0, 8, 5, 5, device=device)
    assert ops.channel_shuffle(x, 2).shape == (0, 8, 5, 5)
    assert ops.shuffle_cat([x, x]).shape == (0, 16, 5, 5)
    assert ops.dwconv3x3(x, w8.to(device), stride=2).shape == (0, 8, 3, 3)


def test_unbuilt_backend_says_how_to_build(monkeypatch):
    monkeypatch.setitem(_backend_selection.NATIVE_KERNELS, "cpu", frozenset())
    with pytest.raises(RuntimeError, match="not built for cpu tensors.*pip install"):
        ops.channel_shuffle(x4, 2, backend="native")


def test_triton_not_installed_is_refused(monkeypatch):
    monkeypatch.setattr(_backend_selection, "TRITON_INSTALLED", False)
    _backend_selection.triton_status.cache_clear()
    try:
        with pytest.raises(RuntimeError, match="backend 'triton' is not usable here: triton is not installed"):
            ops.channel_shuffle(x4, 2, backend="triton")
    finally:
        monkeypatch.undo()
        _backend_selection.triton_status.cache_clear()


def test_auto_falls_back_to_reference_with_one_warning(monkeypatch):
    monkeypatch.setitem(_backend_selection.NATIVE_KERNELS, "cpu", frozenset())
    monkeypatch.setattr(_backend_selection, "_warned", set())
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
    split = (
        torch.randn(2, 2 * cb, hw, hw),
        torch.randn(cb, cb, 1, 1),
        torch.randn(cb),
        torch.randn(cb, 1, 3, 3),
        torch.randn(cb),
        torch.randn(cb, cb, 1, 1),
        torch.randn(cb),
    )
    down = (
        x,
        torch.randn(c_in, 1, 3, 3),
        torch.randn(c_in),
        torch.randn(cb, c_in, 1, 1),
        torch.randn(cb),
        torch.randn(cb, c_in, 1, 1),
        torch.randn(cb),
        torch.randn(cb, 1, 3, 3),
        torch.randn(cb),
        torch.randn(cb, cb, 1, 1),
        torch.randn(cb),
    )
    return split, down


# Each op's opcheck inputs: the smallest non-empty case of tests/op_cases.py in both dense layouts,
# gradients on for the differentiable ops, and a view dense in neither format whose strides are
# channels_last-like (a channel slice of a channels_last activation, as a unit's halves are): the fakes
# must give the output the same strides as the kernels, or torch.compile traces the wrong ones.
LAYOUT_VIEWS = ["nchw", "nhwc", "channel slice of nhwc"]


def _opcheck_args(op: str, view: str) -> tuple:
    case = min((c for c, _ in CASES[op] if c[0] > 0), key=lambda c: c[0] * c[1] * c[2] * c[3])
    args = make_inputs(op, case, dtype=torch.float32, device="cpu", layout="nhwc" if view != "nchw" else "nchw")
    if view == "channel slice of nhwc":

        def slice_of_wider(t):
            wide = torch.randn(t.shape[0], 2 * t.shape[1], *t.shape[2:]).contiguous(memory_format=torch.channels_last)
            wide[:, 1::2] = t  # interleaved, so the slice below is not dense
            return wide[:, 1::2]

        first = args[0]
        args = ([slice_of_wider(t) for t in first] if isinstance(first, list) else slice_of_wider(first), *args[1:])
    if registry.OPS[op].differentiable:
        grad = lambda t: t.detach().requires_grad_()  # noqa: E731
        args = tuple([grad(t) for t in a] if isinstance(a, list) else grad(a) if isinstance(a, torch.Tensor) else a for a in args)  # fmt: skip
    return args


@requires_native_cpu
@pytest.mark.parametrize("view", LAYOUT_VIEWS)
@pytest.mark.parametrize("op", list(registry.OPS))
def test_opcheck(op, view):
    torch.library.opcheck(getattr(torch.ops.shufflekernels, op).default, _opcheck_args(op, view))


@requires_native_cpu
def test_compile_fullgraph():
    torch._dynamo.reset()
    split, down = _unit_args(c_in=8, cb=4)

    def f(x, y, w, b):
        z = ops.shuffle_cat([x, y])
        z = ops.dwconv3x3(z, w, b, stride=2, relu=True)
        z = ops.channel_shuffle(z, 4)
        return ops.split_unit(ops.down_unit(*down), *split[1:]), z

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
    assert {
        "shufflekernels.shuffle_cat.default",
        "shufflekernels.dwconv3x3.default",
        "shufflekernels.channel_shuffle.default",
    } <= targets
    torch.testing.assert_close(exported.module()(x, y, w8), Block()(x, y, w8))


def test_backends_report():
    report = sk.backends()
    assert set(report) == {"native-cpu", "native-cuda", "triton", "reference"}
    assert set(report["native-cpu"]["ops"]) == set(_backend_selection.OPS)
    for entry in report.values():
        assert {"built", "usable", "why"} <= set(entry)
    assert report["reference"]["usable"]
