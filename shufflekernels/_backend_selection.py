"""Backend status and selection: loads the compiled op library (shufflekernels._C), records what each
backend can run here, and picks the backend for a call.

Nothing here touches a GPU: CUDA kernels count as *built* when they are registered with the
dispatcher, and as *usable* when, in addition, torch sees a CUDA device. This is the one place that
reads TRITON_INTERPRET (``interpreter_enabled``).
"""

from __future__ import annotations

import functools
import importlib.util
import os
import warnings

import torch

from . import registry

OPS = tuple(registry.OPS)
# Ops the Triton backend has a kernel for.
TRITON_OPS = registry.ops_with("triton")
BACKENDS = ("auto", "native", "triton", "reference")

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

# Ops whose schema the loaded library defines (a library built from older sources may lack some).
DEFINED_OPS: frozenset[str] = frozenset(
    op for op in OPS if NATIVE_LOADED and registry.defined_in(registry.NATIVE_NS, op)
)

# shufflekernels::prepack(weights): not an op of the contract but a hint to the CPU kernels that they
# may keep packed copies of these 1x1 weights (csrc/cpu/packed_weights.cpp).
PREPACK_DEFINED: bool = NATIVE_LOADED and registry.defined_in(registry.NATIVE_NS, "prepack")


def _has_kernel(op: str, dispatch_key: str) -> bool:
    return op in DEFINED_OPS and torch._C._dispatch_has_kernel_for_dispatch_key(f"shufflekernels::{op}", dispatch_key)


# Which native kernels are registered, decided once at import so that torch.compile reads constants.
NATIVE_KERNELS: dict[str, frozenset[str]] = {
    device: frozenset(op for op in OPS if _has_kernel(op, device.upper())) for device in ("cpu", "cuda")
}

if NATIVE_LOADED:
    registry.register_namespace(registry.NATIVE_NS)
    registry.register_namespace(registry.EMULATED_NS)


def interpreter_enabled() -> bool:
    """TRITON_INTERPRET=1: Triton kernels run on CPU tensors in its interpreter (what triton.jit reads
    when it decorates a kernel, so it must be set before the first Triton call)."""
    return os.environ.get("TRITON_INTERPRET") == "1"


# Whether triton is installed, asked without importing it (importing triton takes seconds).
TRITON_INSTALLED: bool = importlib.util.find_spec("triton") is not None


def triton_usable() -> bool:
    """Whether Triton kernels can run here: triton is installed, and there is a CUDA device or the
    interpreter. Cheap and free of imports, so torch.compile traces it as a constant."""
    return TRITON_INSTALLED and (interpreter_enabled() or torch.cuda.is_available())


@functools.cache
def triton_status() -> tuple[bool, str]:
    """(usable, why) for the Triton backend on this machine, for reports and error messages; cached
    (``triton_status.cache_clear()``)."""
    if not TRITON_INSTALLED:
        return False, "triton is not installed; it ships with CUDA builds of torch"
    try:
        import triton
    except ImportError as exc:  # pragma: no cover - an installed but broken triton
        return False, f"triton is not importable ({exc})"
    if interpreter_enabled():
        return True, f"Triton {triton.__version__} kernels; running under TRITON_INTERPRET=1 on CPU (slow: for tests)"
    if torch.cuda.is_available():
        return True, f"Triton {triton.__version__} kernels for CUDA tensors"
    return False, (
        f"Triton {triton.__version__}: no CUDA device and TRITON_INTERPRET is not 1 "
        "(TRITON_INTERPRET=1 runs the kernels on CPU tensors, slowly)"
    )


def triton_device_refusal(op: str, device: torch.device) -> str | None:
    """Why the Triton kernels cannot take tensors on ``device``, or None: Triton compiles for GPUs and
    reads CPU tensors only through its interpreter."""
    if device.type == "cuda" or interpreter_enabled():
        return None
    return (
        f"shufflekernels.{op}: backend 'triton' expected a CUDA tensor (or TRITON_INTERPRET=1 set before the "
        f"first Triton call, for CPU tensors), got a tensor on {device}"
    )


# --------------------------------------------------------------------------------------------------
# Selection.
# --------------------------------------------------------------------------------------------------

_warned: set[tuple[str, str, str]] = set()


def auto_choice(op: str, device_type: str, native_built: bool, triton_ok: bool) -> str:
    """What backend="auto" runs ``op`` on, given what is there: on CUDA, the op's registry preference
    (``cuda_auto``) between its native and Triton kernels when both are; else native, then Triton on
    CUDA, then the reference. A rule without side effects, which the ledger applies to a CUDA machine."""
    triton_ok = triton_ok and device_type == "cuda" and op in TRITON_OPS
    if native_built and triton_ok:
        return registry.OPS[op].cuda_auto
    if native_built:
        return "native"
    return "triton" if triton_ok else "reference"


def resolve_backend(op: str, backend: str, device: torch.device) -> str:
    """The backend that will run ``op`` on ``device`` for the requested ``backend``.

    ``auto`` follows ``auto_choice``, and says so once with a warning when no native kernel is built for
    the device. Raises RuntimeError for an explicit request that cannot be served here, saying how to
    fix it.
    """
    if backend not in BACKENDS:
        raise ValueError(f"shufflekernels.{op}: argument 'backend' expected one of {BACKENDS}, got {backend!r}")
    device_type = device.type
    native_ok = op in NATIVE_KERNELS.get(device_type, frozenset())
    if backend == "native":
        if not native_ok:
            why = LOAD_ERROR or f"no {device_type.upper()} kernel was compiled for it"
            raise RuntimeError(
                f"shufflekernels.{op}: backend 'native' is not built for {device_type} tensors ({why}); {BUILD_HINT}"
            )
        return "native"
    if backend == "triton":
        if op not in TRITON_OPS:
            raise RuntimeError(
                f"shufflekernels.{op}: argument 'backend' expected 'auto', 'native' or 'reference' "
                "(there is no Triton kernel for this op), got 'triton'"
            )
        if not triton_usable():
            raise RuntimeError(f"shufflekernels.{op}: backend 'triton' is not usable here: {triton_status()[1]}")
        refusal = triton_device_refusal(op, device)
        if refusal:
            raise RuntimeError(refusal)
        return "triton"
    if backend == "reference":
        return "reference"
    chosen = auto_choice(op, device_type, native_ok, device_type == "cuda" and triton_usable())
    if not native_ok:
        key = (op, device_type, chosen)
        if key not in _warned:
            _warned.add(key)
            warnings.warn(
                f"shufflekernels.{op}: no native kernel is built for {device_type} tensors; "
                f"backend='auto' uses the {chosen} implementation instead ({BUILD_HINT})",
                RuntimeWarning,
                stacklevel=4,
            )
    return chosen
