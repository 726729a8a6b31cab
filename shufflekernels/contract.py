"""The op contract's rules in Python: the checks every op's check is made of, the output memory format,
and the output size of a 3x3 window.

A leaf module (it imports torch only), shared by the op registry (registry.py: each op's check and
output shape, built from these), the reference and the Triton backend. The native kernels run the
same checks in C++ (csrc/contract.h): same rules, same order, same exception class and the same
message, so a bad input reads alike on every path (tests/test_contract.py holds them equal case by
case). Python also checks what the dispatcher's schema would refuse before any kernel runs
(non-tensors, a float ``groups``).

Messages: ``shufflekernels.<op>: argument '<arg>' expected <what>, got <value>``, with dtypes as
``torch.float32`` and shapes as ``[N, C, H, W]``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor
from torch._prims_common import suggest_memory_format  # the Python twin of c10's, used by torch's meta kernels

FLOAT_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


def fail(op: str, arg: str, expected: str, got: object, exc: type[Exception] = ValueError) -> None:
    raise exc(f"shufflekernels.{op}: argument '{arg}' expected {expected}, got {got}")


def shape_str(shape: Sequence[int]) -> str:
    """A shape as c10 prints an IntArrayRef: ``[2, 8, 5, 5]``."""
    return "[" + ", ".join(str(int(s)) for s in shape) + "]"


# --------------------------------------------------------------------------------------------------
# Building blocks (csrc/contract.h has the same).
# --------------------------------------------------------------------------------------------------


def check_tensor(op: str, arg: str, t: object) -> None:
    if not isinstance(t, Tensor):
        fail(op, arg, "a torch.Tensor", type(t).__name__, TypeError)


def check_rank(op: str, arg: str, t: Tensor, rank: int) -> None:
    if t.dim() != rank:
        fail(op, arg, f"a {rank}-D tensor", f"{t.dim()}-D with shape {shape_str(t.shape)}")


def check_activation(op: str, arg: str, t: object) -> None:
    """A float tensor ``[N, C, H, W]``."""
    check_tensor(op, arg, t)
    if t.dtype not in FLOAT_DTYPES:
        fail(op, arg, "dtype float32, float16 or bfloat16", t.dtype, TypeError)
    check_rank(op, arg, t, 4)


def check_like(op: str, arg: str, t: object, like_arg: str, like: Tensor, shape: Sequence[int]) -> None:
    """``t`` on like's device, in like's dtype, with the given shape."""
    check_tensor(op, arg, t)
    if t.device != like.device:
        fail(op, arg, f"device {like.device}", t.device)
    if t.dtype != like.dtype:
        fail(op, arg, f"dtype {like.dtype} (that of {like_arg})", t.dtype, TypeError)
    if tuple(t.shape) != tuple(shape):
        fail(op, arg, f"shape {shape_str(shape)}", shape_str(t.shape))


def check_int(op: str, arg: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, torch.SymInt)):
        fail(op, arg, "an int", type(value).__name__, TypeError)


def check_bool(op: str, arg: str, value: object) -> None:
    if not isinstance(value, bool):
        fail(op, arg, "a bool", type(value).__name__, TypeError)


def check_spatial(op: str, x: Tensor) -> None:
    if x.shape[2] < 1 or x.shape[3] < 1:
        fail(op, "x", "H >= 1 and W >= 1 for a 3x3 window with padding 1", f"shape {shape_str(x.shape)}")


def check_dw_params(op: str, names: tuple[str, str], x: Tensor, weight: object, bias: object, channels: int) -> None:
    """A depthwise weight ``[C, 1, 3, 3]`` and its bias ``[C]`` (optional)."""
    check_like(op, names[0], weight, "x", x, (channels, 1, 3, 3))
    if bias is not None:
        check_like(op, names[1], bias, "x", x, (channels,))


def check_pw_params(
    op: str, names: tuple[str, str], x: Tensor, weight: object, bias: object, c_out: int, c_in: int
) -> None:
    """A pointwise weight ``[Cout, Cin, 1, 1]`` and its bias ``[Cout]``."""
    check_like(op, names[0], weight, "x", x, (c_out, c_in, 1, 1))
    check_like(op, names[1], bias, "x", x, (c_out,))


def check_inference(op: str, args: Sequence[object]) -> None:
    """The ops without a backward refuse inputs (lists of them too) that would need one."""
    tensors = [t for a in args for t in (a if isinstance(a, (list, tuple)) else [a])]
    if torch.is_grad_enabled() and any(isinstance(t, Tensor) and t.requires_grad for t in tensors):
        raise RuntimeError(
            f"shufflekernels.{op} is inference-only (it has no backward), but an input requires grad "
            "under grad mode; call it under torch.no_grad() or torch.inference_mode(), or detach the inputs"
        )


# --------------------------------------------------------------------------------------------------
# Output shapes and memory format.
# --------------------------------------------------------------------------------------------------


def dw_out_size(size: int, stride: int) -> int:
    """Depthwise 3x3 with padding 1 (and max-pool 3x3, padding 1): ``(size + 2 - 3) // stride + 1``."""
    return (size + 2 - 3) // stride + 1


def stem_out_size(size: int) -> int:
    """The stem's output size: conv 3x3/2 then max-pool 3x3/2, padding 1 each (csrc/contract.h's twin)."""
    return dw_out_size(dw_out_size(size, 2), 2)


def output_memory_format(x: Tensor) -> torch.memory_format:
    """The memory format of every op's output for input x: the one torch suggests for x's strides, the
    rule the native kernels apply (c10's suggest_memory_format). A tensor dense in neither format, such
    as a channel slice of a channels_last tensor, still gets the format its strides are closest to."""
    return suggest_memory_format(x) if x.dim() == 4 else torch.contiguous_format


def empty_output(like: Tensor, shape: Sequence[int]) -> Tensor:
    """An uninitialised output of ``shape`` in the memory format the contract gives it for input ``like``
    (an activation; outputs of other ranks, such as logits, are contiguous)."""
    fmt = output_memory_format(like) if len(shape) == 4 else torch.contiguous_format
    return torch.empty(tuple(shape), dtype=like.dtype, device=like.device, memory_format=fmt)
