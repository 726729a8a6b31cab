"""The public ops: one typed wrapper per op, its input checks, its fake (meta) implementation and,
for the pure permutations, its autograd formula.

Every op has one schema (csrc/schema.cpp) and three implementations: ``native`` (C++ CPU kernels and
CUDA kernels, registered with the dispatcher), ``triton`` (Triton kernels registered as custom ops,
shufflekernels/triton/) and ``reference`` (pure PyTorch, shufflekernels/reference.py). ``backend="auto"``
picks native when that op has a kernel built for the tensor's device, else Triton on CUDA, else the
reference, and says so once with a warning.

Shapes: ``x`` is ``[N, C, H, W]``, NCHW or channels_last; every output keeps the input's memory format.
Dtypes: float32 everywhere; float16 and bfloat16 too (the CPU kernels accumulate them in float32).
"""

from __future__ import annotations

import warnings
from typing import Literal, Sequence

import torch
from torch import Tensor

from . import _library
from . import reference as _reference

__all__ = ["channel_shuffle", "shuffle_cat", "dwconv3x3", "pointwise", "stem", "split_unit", "down_unit", "BACKENDS", "resolve_backend"]

Backend = Literal["auto", "native", "triton", "reference"]
BACKENDS = ("auto", "native", "triton", "reference")
FLOAT_DTYPES = (torch.float32, torch.float16, torch.bfloat16)

# --------------------------------------------------------------------------------------------------
# Input checks: the contract, in one place. The fake impls run them too, so a traced graph rejects
# what eager rejects.
# --------------------------------------------------------------------------------------------------


def _fail(op: str, arg: str, expected: str, got: object, exc: type[Exception] = ValueError) -> None:
    raise exc(f"shufflekernels.{op}: argument '{arg}' expected {expected}, got {got}")


def _check_tensor(op: str, arg: str, t: object, rank: int | None = 4) -> None:
    if not isinstance(t, Tensor):
        _fail(op, arg, "a torch.Tensor", type(t).__name__, TypeError)
    if t.dtype not in FLOAT_DTYPES:
        _fail(op, arg, "dtype float32, float16 or bfloat16", t.dtype, TypeError)
    if rank is not None and t.dim() != rank:
        _fail(op, arg, f"a {rank}-D tensor", f"{t.dim()}-D with shape {tuple(t.shape)}")


def _check_like(op: str, arg: str, t: object, like: Tensor, shape: Sequence[int]) -> None:
    _check_tensor(op, arg, t, rank=None)
    if t.device != like.device:
        _fail(op, arg, f"device {like.device}", t.device)
    if t.dtype != like.dtype:
        _fail(op, arg, f"dtype {like.dtype} (that of x)", t.dtype, TypeError)
    if tuple(t.shape) != tuple(shape):
        _fail(op, arg, f"shape {tuple(shape)}", tuple(t.shape))


def _check_int(op: str, arg: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, torch.SymInt)):
        _fail(op, arg, "an int", type(value).__name__, TypeError)


def _check_channel_shuffle(x: Tensor, groups: int) -> None:
    _check_tensor("channel_shuffle", "x", x)
    _check_int("channel_shuffle", "groups", groups)
    if groups < 1:
        _fail("channel_shuffle", "groups", ">= 1", groups)
    if x.shape[1] % groups != 0:
        _fail("channel_shuffle", "groups", f"a divisor of the channel count {x.shape[1]}", groups)


def _check_shuffle_cat(tensors: Sequence[Tensor]) -> None:
    if isinstance(tensors, Tensor) or not isinstance(tensors, (list, tuple)):
        _fail("shuffle_cat", "tensors", "a list or tuple of tensors", type(tensors).__name__, TypeError)
    if len(tensors) == 0:
        _fail("shuffle_cat", "tensors", "at least one tensor", "an empty sequence")
    _check_tensor("shuffle_cat", "tensors[0]", tensors[0])
    for i, t in enumerate(tensors[1:], start=1):
        _check_like("shuffle_cat", f"tensors[{i}]", t, tensors[0], tensors[0].shape)


def _check_dw(op: str, x: Tensor, weight: Tensor, bias: Tensor | None, names: tuple[str, str], channels: int) -> None:
    _check_like(op, names[0], weight, x, (channels, 1, 3, 3))
    if bias is not None:
        _check_like(op, names[1], bias, x, (channels,))


def _check_pw(op: str, x: Tensor, weight: Tensor, bias: Tensor, names: tuple[str, str], c_out: int, c_in: int) -> None:
    _check_like(op, names[0], weight, x, (c_out, c_in, 1, 1))
    _check_like(op, names[1], bias, x, (c_out,))


def _check_stride(op: str, stride: int) -> None:
    _check_int(op, "stride", stride)
    if stride not in (1, 2):
        _fail(op, "stride", "1 or 2", stride)


def _check_spatial(op: str, x: Tensor) -> None:
    if x.shape[2] < 1 or x.shape[3] < 1:
        _fail(op, "x", "H >= 1 and W >= 1 for a 3x3 window with padding 1", f"shape {tuple(x.shape)}")


def _check_dwconv3x3(x: Tensor, weight: Tensor, bias: Tensor | None, stride: int, relu: bool) -> None:
    _check_tensor("dwconv3x3", "x", x)
    _check_stride("dwconv3x3", stride)
    if not isinstance(relu, bool):
        _fail("dwconv3x3", "relu", "a bool", type(relu).__name__, TypeError)
    _check_spatial("dwconv3x3", x)
    _check_dw("dwconv3x3", x, weight, bias, ("weight", "bias"), x.shape[1])


def _check_pointwise(x: Tensor, weight: Tensor, bias: Tensor, relu: bool = True) -> None:
    _check_tensor("pointwise", "x", x)
    if not isinstance(relu, bool):
        _fail("pointwise", "relu", "a bool", type(relu).__name__, TypeError)
    _check_tensor("pointwise", "weight", weight)
    _check_pw("pointwise", x, weight, bias, ("weight", "bias"), weight.shape[0], x.shape[1])
    if x.shape[1] == 0:  # torch's conv2d returns [N, 0, H, W] here, not the bias: no answer to match
        _fail("pointwise", "x", "at least one channel", 0)


def _check_stem(x: Tensor, weight: Tensor, bias: Tensor) -> None:
    _check_tensor("stem", "x", x)
    _check_spatial("stem", x)
    _check_tensor("stem", "weight", weight)
    _check_like("stem", "weight", weight, x, (weight.shape[0], x.shape[1], 3, 3))
    _check_like("stem", "bias", bias, x, (weight.shape[0],))


def _check_split_unit(x, pw1_w, pw1_b, dw_w, dw_b, pw2_w, pw2_b) -> None:
    op = "split_unit"
    _check_tensor(op, "x", x)
    if x.shape[1] % 2 != 0:
        _fail(op, "x", "an even channel count", x.shape[1])
    _check_spatial(op, x)
    cb = x.shape[1] // 2
    _check_pw(op, x, pw1_w, pw1_b, ("pw1_weight", "pw1_bias"), cb, cb)
    _check_dw(op, x, dw_w, dw_b, ("dw_weight", "dw_bias"), cb)
    _check_pw(op, x, pw2_w, pw2_b, ("pw2_weight", "pw2_bias"), cb, cb)


def _check_down_unit(x, dw1_w, dw1_b, pw3_w, pw3_b, pw1_w, pw1_b, dw2_w, dw2_b, pw2_w, pw2_b) -> None:
    op = "down_unit"
    _check_tensor(op, "x", x)
    _check_spatial(op, x)
    _check_tensor(op, "pw1_weight", pw1_w)
    c_in, cb = x.shape[1], pw1_w.shape[0]
    _check_dw(op, x, dw1_w, dw1_b, ("dw1_weight", "dw1_bias"), c_in)
    _check_pw(op, x, pw3_w, pw3_b, ("pw3_weight", "pw3_bias"), cb, c_in)
    _check_pw(op, x, pw1_w, pw1_b, ("pw1_weight", "pw1_bias"), cb, c_in)
    _check_dw(op, x, dw2_w, dw2_b, ("dw2_weight", "dw2_bias"), cb)
    _check_pw(op, x, pw2_w, pw2_b, ("pw2_weight", "pw2_bias"), cb, cb)


def _check_inference(op: str, tensors: Sequence[Tensor | None]) -> None:
    if torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors):
        raise RuntimeError(
            f"shufflekernels.{op} is inference-only (it has no backward), but an input requires grad "
            "under grad mode; call it under torch.no_grad() or torch.inference_mode(), or detach the inputs"
        )


# --------------------------------------------------------------------------------------------------
# Backend selection.
# --------------------------------------------------------------------------------------------------

_warned: set[tuple[str, str, str]] = set()


def resolve_backend(op: str, backend: str, device: torch.device) -> str:
    """The backend that will run ``op`` on ``device`` for the requested ``backend``.

    Raises RuntimeError for an explicit request that cannot be served here, saying how to fix it.
    """
    if backend not in BACKENDS:
        _fail(op, "backend", f"one of {BACKENDS}", repr(backend))
    device_type = device.type
    native_ok = op in _library.NATIVE_KERNELS.get(device_type, frozenset())
    if backend == "native":
        if not native_ok:
            why = _library.LOAD_ERROR or f"no {device_type.upper()} kernel was compiled for it"
            raise RuntimeError(
                f"shufflekernels.{op}: backend 'native' is not built for {device_type} tensors ({why}); "
                f"{_library.BUILD_HINT}"
            )
        return "native"
    if backend == "triton":
        if op not in _library.TRITON_OPS:
            raise RuntimeError(
                f"shufflekernels.{op}: argument 'backend' expected 'auto', 'native' or 'reference' "
                "(there is no Triton kernel for this op), got 'triton'"
            )
        usable, why = _library.triton_status()
        if not usable:
            raise RuntimeError(f"shufflekernels.{op}: backend 'triton' is not usable here: {why}")
        if device_type == "cpu" and not _library.interpreter_enabled():
            # Triton compiles for GPUs; it reads CPU tensors only through its interpreter.
            raise RuntimeError(
                f"shufflekernels.{op}: backend 'triton' expected CUDA tensors (or TRITON_INTERPRET=1 for CPU "
                f"tensors), got a {device_type} tensor"
            )
        return "triton"
    if backend == "reference":
        return "reference"
    if native_ok:
        return "native"
    if device_type == "cuda" and op in _library.TRITON_OPS and _library.triton_status()[0]:
        chosen = "triton"
    else:
        chosen = "reference"
    key = (op, device_type, chosen)
    if key not in _warned:
        _warned.add(key)
        warnings.warn(
            f"shufflekernels.{op}: no native kernel is built for {device_type} tensors; "
            f"backend='auto' uses the {chosen} implementation instead ({_library.BUILD_HINT})",
            RuntimeWarning,
            stacklevel=3,
        )
    return chosen


def _triton_ops():
    from . import triton as triton_ops

    return triton_ops


# --------------------------------------------------------------------------------------------------
# The ops.
# --------------------------------------------------------------------------------------------------


def channel_shuffle(x: Tensor, groups: int, *, backend: Backend = "auto") -> Tensor:
    """Channel shuffle: ``out[n, j*g + i] = x[n, i*(C/g) + j]``.

    x: ``[N, C, H, W]`` with ``C % groups == 0``. Returns ``[N, C, H, W]`` in x's memory format.
    Differentiable: the backward is the inverse shuffle (``groups = C/g``).
    """
    _check_channel_shuffle(x, groups)
    chosen = resolve_backend("channel_shuffle", backend, x.device)
    if chosen == "native":
        return torch.ops.shufflekernels.channel_shuffle(x, groups)
    if chosen == "triton":
        return _triton_ops().channel_shuffle(x, groups)
    return _reference.channel_shuffle(x, groups)


def shuffle_cat(tensors: Sequence[Tensor], *, backend: Backend = "auto") -> Tensor:
    """``channel_shuffle(torch.cat(tensors, 1), len(tensors))`` in one pass: ``out[n, j*g + i] = tensors[i][n, j]``.

    tensors: g tensors ``[N, C, H, W]`` of one shape, dtype and device. Returns ``[N, g*C, H, W]`` in the
    first tensor's memory format. Differentiable.
    """
    _check_shuffle_cat(tensors)
    tensors = list(tensors)
    chosen = resolve_backend("shuffle_cat", backend, tensors[0].device)
    if chosen == "native":
        return torch.ops.shufflekernels.shuffle_cat(tensors)
    if chosen == "triton":
        return _triton_ops().shuffle_cat(tensors)
    return _reference.shuffle_cat(tensors)


def dwconv3x3(
    x: Tensor,
    weight: Tensor,
    bias: Tensor | None = None,
    *,
    stride: int = 1,
    relu: bool = False,
    backend: Backend = "auto",
) -> Tensor:
    """Depthwise 3x3 convolution, padding 1, with an optional bias (a folded BatchNorm) and ReLU.

    x: ``[N, C, H, W]``; weight: ``[C, 1, 3, 3]``; bias: ``[C]`` or None; stride 1 or 2.
    Returns ``[N, C, (H - 1) // stride + 1, (W - 1) // stride + 1]`` in x's memory format.
    Inference-only: inputs that require grad under grad mode are refused.
    """
    _check_dwconv3x3(x, weight, bias, stride, relu)
    _check_inference("dwconv3x3", (x, weight, bias))
    chosen = resolve_backend("dwconv3x3", backend, x.device)
    if chosen == "native":
        return torch.ops.shufflekernels.dwconv3x3(x, weight, bias, stride, relu)
    if chosen == "triton":
        return _triton_ops().dwconv3x3(x, weight, bias, stride, relu)
    return _reference.dwconv3x3(x, weight, bias, stride=stride, relu=relu)


def pointwise(x: Tensor, weight: Tensor, bias: Tensor, *, relu: bool = True, backend: Backend = "auto") -> Tensor:
    """A 1x1 convolution with a folded BatchNorm and, when ``relu``, a ReLU: ``relu(conv1x1(x, weight) + bias)``.
    Without ReLU on ``[N, C, 1, 1]`` input it is a linear layer (the classifier).

    x: ``[N, Cin, H, W]``; weight: ``[Cout, Cin, 1, 1]`` (any strides: the CPU engine reads a weight
    stored transposed in place); bias: ``[Cout]``. Returns ``[N, Cout, H, W]`` in x's memory format.
    Inference-only.
    """
    _check_pointwise(x, weight, bias, relu)
    _check_inference("pointwise", (x, weight, bias))
    chosen = resolve_backend("pointwise", backend, x.device)
    if chosen == "native":
        return torch.ops.shufflekernels.pointwise(x, weight, bias, relu)
    if chosen == "triton":
        return _triton_ops().pointwise(x, weight, bias, relu)
    return _reference.pointwise(x, weight, bias, relu)


def stem(x: Tensor, weight: Tensor, bias: Tensor, *, backend: Backend = "auto") -> Tensor:
    """The network's stem: ``maxpool3x3/2(relu(conv3x3/2(x, weight) + bias))``, padding 1 for both.

    x: ``[N, Cin, H, W]``; weight: ``[Cout, Cin, 3, 3]``; bias: ``[Cout]`` (a folded BatchNorm). Returns
    ``[N, Cout, Hp, Wp]`` with ``Hc = (H - 1) // 2 + 1``, ``Hp = (Hc - 1) // 2 + 1`` (same for W), in x's
    memory format. The CPU kernel is ours (float32); elsewhere it is ATen's conv, ReLU and max-pool.
    Inference-only.
    """
    _check_stem(x, weight, bias)
    _check_inference("stem", (x, weight, bias))
    chosen = resolve_backend("stem", backend, x.device)
    if chosen == "native":
        return torch.ops.shufflekernels.stem(x, weight, bias)
    return _reference.stem(x, weight, bias)


def split_unit(
    x: Tensor,
    pw1_weight: Tensor,
    pw1_bias: Tensor,
    dw_weight: Tensor,
    dw_bias: Tensor,
    pw2_weight: Tensor,
    pw2_bias: Tensor,
    *,
    backend: Backend = "auto",
) -> Tensor:
    """The stride-1 ShuffleNetV2 unit on folded parameters.

    ``x1, x2 = x.chunk(2, 1)``; ``y = relu(pw2(dw(relu(pw1(x2)))))``; returns ``shuffle_cat([x1, y])``.
    x: ``[N, 2B, H, W]``; pw weights ``[B, B, 1, 1]``, dw weight ``[B, 1, 3, 3]``, biases ``[B]``.
    Returns ``[N, 2B, H, W]`` in x's memory format. Inference-only.
    """
    args = (x, pw1_weight, pw1_bias, dw_weight, dw_bias, pw2_weight, pw2_bias)
    _check_split_unit(*args)
    _check_inference("split_unit", args)
    chosen = resolve_backend("split_unit", backend, x.device)
    if chosen == "native":
        return torch.ops.shufflekernels.split_unit(*args)
    if chosen == "triton":
        return _triton_ops().split_unit(*args)
    return _reference.split_unit(*args)


def down_unit(
    x: Tensor,
    dw1_weight: Tensor,
    dw1_bias: Tensor,
    pw3_weight: Tensor,
    pw3_bias: Tensor,
    pw1_weight: Tensor,
    pw1_bias: Tensor,
    dw2_weight: Tensor,
    dw2_bias: Tensor,
    pw2_weight: Tensor,
    pw2_bias: Tensor,
    *,
    backend: Backend = "auto",
) -> Tensor:
    """The stride-2 ShuffleNetV2 unit on folded parameters.

    ``b1 = relu(pw3(dw1_s2(x)))``, ``b2 = relu(pw2(dw2_s2(relu(pw1(x)))))``; returns ``shuffle_cat([b1, b2])``.
    x: ``[N, Cin, H, W]``; dw1 ``[Cin, 1, 3, 3]``/``[Cin]``; pw3, pw1 ``[B, Cin, 1, 1]``/``[B]``;
    dw2 ``[B, 1, 3, 3]``/``[B]``; pw2 ``[B, B, 1, 1]``/``[B]``. Returns ``[N, 2B, (H-1)//2+1, (W-1)//2+1]``
    in x's memory format. Inference-only.
    """
    args = (x, dw1_weight, dw1_bias, pw3_weight, pw3_bias, pw1_weight, pw1_bias, dw2_weight, dw2_bias, pw2_weight, pw2_bias)
    _check_down_unit(*args)
    _check_inference("down_unit", args)
    chosen = resolve_backend("down_unit", backend, x.device)
    if chosen == "native":
        return torch.ops.shufflekernels.down_unit(*args)
    if chosen == "triton":
        return _triton_ops().down_unit(*args)
    return _reference.down_unit(*args)


# --------------------------------------------------------------------------------------------------
# Fake (meta) implementations and autograd of the native ops, so torch.compile and torch.export
# trace them. Registered only when the library that defines their schemas is loaded.
# --------------------------------------------------------------------------------------------------


def _empty_like_format(x: Tensor, shape: Sequence[int]) -> Tensor:
    return x.new_empty(shape).contiguous(memory_format=_reference.output_memory_format(x))


def _dw_out(size: int, stride: int) -> int:
    return (size + 2 - 3) // stride + 1


def _register_fake(op: str):
    """register_fake for a native op, skipped when the loaded library does not define it."""
    if op in _library.DEFINED_OPS:
        return torch.library.register_fake(f"shufflekernels::{op}")
    return lambda fn: fn


if _library.NATIVE_LOADED:

    @_register_fake("channel_shuffle")
    def _channel_shuffle_fake(x: Tensor, groups: int) -> Tensor:
        _check_channel_shuffle(x, groups)
        return _empty_like_format(x, x.shape)

    @_register_fake("shuffle_cat")
    def _shuffle_cat_fake(tensors: list[Tensor]) -> Tensor:
        _check_shuffle_cat(tensors)
        n, c, h, w = tensors[0].shape
        return _empty_like_format(tensors[0], (n, c * len(tensors), h, w))

    @_register_fake("dwconv3x3")
    def _dwconv3x3_fake(x, weight, bias, stride, relu):
        _check_dwconv3x3(x, weight, bias, stride, relu)
        n, c, h, w = x.shape
        return _empty_like_format(x, (n, c, _dw_out(h, stride), _dw_out(w, stride)))

    @_register_fake("pointwise")
    def _pointwise_fake(x, weight, bias, relu=True):
        _check_pointwise(x, weight, bias, relu)
        n, _, h, w = x.shape
        return _empty_like_format(x, (n, weight.shape[0], h, w))

    @_register_fake("stem")
    def _stem_fake(x, weight, bias):
        _check_stem(x, weight, bias)
        n, _, h, w = x.shape
        return _empty_like_format(x, (n, weight.shape[0], _dw_out(_dw_out(h, 2), 2), _dw_out(_dw_out(w, 2), 2)))

    @_register_fake("split_unit")
    def _split_unit_fake(x, pw1_w, pw1_b, dw_w, dw_b, pw2_w, pw2_b):
        _check_split_unit(x, pw1_w, pw1_b, dw_w, dw_b, pw2_w, pw2_b)
        return _empty_like_format(x, x.shape)

    @_register_fake("down_unit")
    def _down_unit_fake(x, dw1_w, dw1_b, pw3_w, pw3_b, pw1_w, pw1_b, dw2_w, dw2_b, pw2_w, pw2_b):
        _check_down_unit(x, dw1_w, dw1_b, pw3_w, pw3_b, pw1_w, pw1_b, dw2_w, dw2_b, pw2_w, pw2_b)
        n, _, h, w = x.shape
        return _empty_like_format(x, (n, 2 * pw1_w.shape[0], _dw_out(h, 2), _dw_out(w, 2)))

    # The permutations are differentiable: the gradient of a shuffle is the inverse shuffle, which is
    # the shuffle with C/g groups.
    def _channel_shuffle_setup(ctx, inputs, output):
        ctx.inverse_groups = inputs[0].shape[1] // inputs[1]

    def _channel_shuffle_backward(ctx, grad):
        return torch.ops.shufflekernels.channel_shuffle(grad, ctx.inverse_groups), None

    torch.library.register_autograd(
        "shufflekernels::channel_shuffle", _channel_shuffle_backward, setup_context=_channel_shuffle_setup
    )

    def _shuffle_cat_setup(ctx, inputs, output):
        ctx.channels = inputs[0][0].shape[1]

    def _shuffle_cat_backward(ctx, grad):
        return (list(torch.ops.shufflekernels.channel_shuffle(grad, ctx.channels).split(ctx.channels, 1)),)

    torch.library.register_autograd("shufflekernels::shuffle_cat", _shuffle_cat_backward, setup_context=_shuffle_cat_setup)
