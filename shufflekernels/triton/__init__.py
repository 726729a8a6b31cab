"""Triton kernels for the shufflekernels ops (CUDA tensors; CPU tensors under TRITON_INTERPRET=1).

The functions here are what ops.py calls for ``backend="triton"``, after it has checked the inputs.
Each forwards to a custom op ``torch.ops.shufflekernels_triton.<name>`` (library.py). Importing this
package imports neither triton nor the kernels, so ``import shufflekernels`` stays cheap and works on any
machine; they are imported on the first call, which is also when triton.jit reads TRITON_INTERPRET.

Modules: common.py (addressing model and helpers), permute.py (channel_shuffle, shuffle_cat),
dwconv.py (dwconv3x3), units.py (split_unit, down_unit), library.py (op registration).
"""

from __future__ import annotations

import os

import torch
from torch import Tensor

from .._library import TRITON_OPS as OPS  # noqa: E402  (one list of what has a Triton kernel)


def status() -> tuple[bool, str]:
    """(usable, why) for the Triton backend: triton imports, and there is a CUDA device or the interpreter."""
    try:
        import triton
    except ImportError as exc:
        return False, f"triton is not importable ({exc}); it ships with CUDA builds of torch"
    if os.environ.get("TRITON_INTERPRET") == "1":
        return True, f"Triton {triton.__version__} kernels; running under TRITON_INTERPRET=1 on CPU (slow: for tests)"
    if torch.cuda.is_available():
        return True, f"Triton {triton.__version__} kernels for CUDA tensors"
    return False, (
        f"Triton {triton.__version__}: no CUDA device and TRITON_INTERPRET is not 1 "
        "(TRITON_INTERPRET=1 runs the kernels on CPU tensors, slowly)"
    )


def _library():
    from . import library

    return library


def channel_shuffle(x: Tensor, groups: int) -> Tensor:
    return _library().channel_shuffle(x, groups)


def shuffle_cat(tensors: list[Tensor]) -> Tensor:
    return _library().shuffle_cat(list(tensors))


def dwconv3x3(x: Tensor, weight: Tensor, bias: Tensor | None, stride: int, relu: bool) -> Tensor:
    return _library().dwconv3x3(x, weight, bias, stride, relu)


def pointwise(x: Tensor, weight: Tensor, bias: Tensor, relu: bool) -> Tensor:
    return _library().pointwise(x, weight, bias, relu)


def split_unit(x, pw1_w, pw1_b, dw_w, dw_b, pw2_w, pw2_b) -> Tensor:
    return _library().split_unit(x, pw1_w, pw1_b, dw_w, dw_b, pw2_w, pw2_b)


def down_unit(x, dw1_w, dw1_b, pw3_w, pw3_b, pw1_w, pw1_b, dw2_w, dw2_b, pw2_w, pw2_b) -> Tensor:
    return _library().down_unit(x, dw1_w, dw1_b, pw3_w, pw3_b, pw1_w, pw1_b, dw2_w, dw2_b, pw2_w, pw2_b)
