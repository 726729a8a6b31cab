"""Loads the compiled op library (shufflekernels._C) and records what each backend can run here.

Nothing here touches a GPU: CUDA kernels count as *built* when they are registered with the
dispatcher, and as *usable* when, in addition, torch sees a CUDA device.
"""

from __future__ import annotations

import functools
import importlib
import os
import warnings

import torch

OPS = ("channel_shuffle", "shuffle_cat", "dwconv3x3", "pointwise", "stem", "split_unit", "down_unit")
# Ops the Triton backend has a kernel for (the stem is not one of the fused families).
TRITON_OPS = ("channel_shuffle", "shuffle_cat", "dwconv3x3", "pointwise", "split_unit", "down_unit")

BUILD_HINT = (
    "build it with `pip install --no-build-isolation -e .` from the repository root "
    "(CUDA kernels need a CUDA build of torch and a CUDA toolkit: see the top of setup.py)"
)

try:
    from . import _C  # noqa: F401  (importing it registers the schemas and kernels)

    BUILD_INFO: dict = _C.build_info()
    LOAD_ERROR: str | None = None
except ImportError as exc:  # the package works without it, on the reference (and Triton) backends
    BUILD_INFO = {}
    LOAD_ERROR = f"{type(exc).__name__}: {exc}"
    warnings.warn(
        f"shufflekernels: the native op library could not be loaded ({LOAD_ERROR}); "
        f"only the reference and Triton backends are available. To fix it, {BUILD_HINT}.",
        RuntimeWarning,
        stacklevel=2,
    )

NATIVE_LOADED = LOAD_ERROR is None


def _defined(op: str) -> bool:
    try:
        torch._C._dispatch_find_schema_or_throw(f"shufflekernels::{op}", "")
    except RuntimeError:  # a library built from older sources: that op is simply not built
        return False
    return True


# Ops whose schema the loaded library defines.
DEFINED_OPS: frozenset[str] = frozenset(op for op in OPS if NATIVE_LOADED and _defined(op))

# shufflekernels::prepack(weights): not an op of the contract but a hint to the CPU kernels that they
# may keep packed copies of these 1x1 weights (csrc/cpu/kernels_cpu.cpp, PackedWeights).
PREPACK_DEFINED: bool = NATIVE_LOADED and _defined("prepack")


def _has_kernel(op: str, dispatch_key: str) -> bool:
    return op in DEFINED_OPS and torch._C._dispatch_has_kernel_for_dispatch_key(f"shufflekernels::{op}", dispatch_key)


# Which native kernels are registered, decided once at import so that torch.compile reads constants.
NATIVE_KERNELS: dict[str, frozenset[str]] = {
    device: frozenset(op for op in OPS if _has_kernel(op, device.upper())) for device in ("cpu", "cuda")
}


@functools.lru_cache(maxsize=None)
def _triton_status() -> tuple[bool, str]:
    try:
        triton_ops = importlib.import_module("shufflekernels.triton")
    except ImportError as exc:  # pragma: no cover - triton ships with CUDA builds of torch
        return False, f"triton is not importable ({exc})"
    return triton_ops.status()


def triton_status() -> tuple[bool, str]:
    """(usable, why) for the Triton backend on this machine; cached (``triton_status.cache_clear()``)."""
    return _triton_status()


triton_status.cache_clear = _triton_status.cache_clear
# A constant to torch.compile, which would otherwise trace into importlib and break the graph of every
# op called with backend="triton". This is the mark torch.compiler.assume_constant_result sets; calling
# that would import torch._dynamo (and with it triton) at `import shufflekernels`.
triton_status._dynamo_marked_constant = True


def interpreter_enabled() -> bool:
    return os.environ.get("TRITON_INTERPRET") == "1"
