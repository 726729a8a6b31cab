"""The process-wide state a test can change, read and restored without ``monkeypatch``.

pytest's ``monkeypatch.setattr`` records an attribute's old value as it finds it on the object; for a
flag that torch serves through ``__getattr__`` (``torch.backends.cuda.matmul.allow_tf32``) pytest 9.2
records "not set" and deletes the attribute at teardown, which fails and leaves the flag changed for the
rest of the session. So flags are set here through torch's own setters, and ``snapshot()`` /
``restore()`` let conftest's guard fail any test that leaves one of them changed.
"""

from __future__ import annotations

import contextlib
import os

import torch

from shufflekernels import _backend_selection, model


def _precision_api() -> bool:
    """Whether torch has the ``fp32_precision`` API (torch 2.9 on; every torch we support has it)."""
    return hasattr(torch.backends.cuda.matmul, "fp32_precision")


# The fp32_precision settings, as torch stores them ("none": inherit the parent's), parents first.
_PRECISION_FLAGS = {
    "generic": (),
    "CUDA GEMMs": ("cuda", "matmul"),
    "cuDNN": ("cudnn",),
    "cuDNN convolutions": ("cudnn", "conv"),
    "cuDNN RNNs": ("cudnn", "rnn"),
    "oneDNN": ("mkldnn",),
    "oneDNN GEMMs": ("mkldnn", "matmul"),
    "oneDNN convolutions": ("mkldnn", "conv"),
    "oneDNN RNNs": ("mkldnn", "rnn"),
}


def _flag_owner(path: tuple[str, ...]):
    owner = torch.backends
    for part in path:
        owner = getattr(owner, part, None)
    return owner if hasattr(owner, "fp32_precision") else None


def _resolved(*paths: tuple[str, ...]) -> str:
    """The first setting along ``paths`` (child to parent) that is not "none"."""
    for path in paths:
        owner = _flag_owner(path)
        if owner is not None and owner.fp32_precision != "none":
            return owner.fp32_precision
    return "none"


def tf32_matmul_allowed() -> bool:
    """Whether float32 CUDA GEMMs may run in TF32, read through the fp32_precision API where torch has it
    (reading the legacy flag raises when the two APIs were set to different values)."""
    if _precision_api():
        return _resolved(("cuda", "matmul"), ()) == "tf32"
    return bool(torch.backends.cuda.matmul.allow_tf32)


def tf32_conv_allowed() -> bool:
    """Whether float32 cuDNN convolutions may run in TF32."""
    if _precision_api():
        return _resolved(("cudnn", "conv"), ("cudnn",), ()) == "tf32"
    return bool(torch.backends.cudnn.allow_tf32)


def set_tf32(matmul: bool, conv: bool) -> None:
    """Allows or forbids TF32 for float32 CUDA GEMMs and cuDNN convolutions, through the legacy setters:
    torch keeps both APIs in step when they are used, while torch's own code still reads the legacy
    flags (torch.export saves cuDNN's, Inductor the matmul precision) and raises if the fp32_precision
    API was set to something else."""
    torch.backends.cuda.matmul.allow_tf32 = matmul
    torch.backends.cudnn.allow_tf32 = conv


@contextlib.contextmanager
def tf32_matmul(allowed: bool):
    """TF32 for float32 CUDA GEMMs allowed (or not) inside, through the current API (fp32_precision, or
    allow_tf32 where torch lacks it), and put back as it was on the way out, whatever happens."""
    if not _precision_api():
        saved_flag = torch.backends.cuda.matmul.allow_tf32
        torch.backends.cuda.matmul.allow_tf32 = allowed
        try:
            yield
        finally:
            torch.backends.cuda.matmul.allow_tf32 = saved_flag
        return
    saved = torch.backends.cuda.matmul.fp32_precision
    torch.backends.cuda.matmul.fp32_precision = "tf32" if allowed else "ieee"
    try:
        yield
    finally:
        torch.backends.cuda.matmul.fp32_precision = saved


# Environment variables the tools set for themselves, not a test: pytest names the running test, and
# Inductor exports its cache folder on its first compile (for its worker processes).
SET_BY_TOOLS = {"PYTEST_CURRENT_TEST", "TORCHINDUCTOR_CACHE_DIR"}


def snapshot() -> dict:
    """Every global a test here may change, by name. Compared before and after each test."""
    precision = {"TF32 for CUDA GEMMs": tf32_matmul_allowed(), "TF32 for cuDNN convolutions": tf32_conv_allowed()}
    if _precision_api():  # every setting, read without the legacy getters (which raise on a mix)
        precision.update(
            {
                f"fp32 precision of {name}": owner.fp32_precision
                for name, path in _PRECISION_FLAGS.items()
                if (owner := _flag_owner(path)) is not None
            }
        )
    else:
        precision["float32 matmul precision"] = torch.get_float32_matmul_precision()
    return {
        **precision,
        "CPU threads": torch.get_num_threads(),
        "deterministic algorithms": torch.are_deterministic_algorithms_enabled(),
        "default dtype": torch.get_default_dtype(),
        "grad mode": torch.is_grad_enabled(),
        "environment": {k: v for k, v in os.environ.items() if k not in SET_BY_TOOLS},
        "native kernels per device": {
            device: frozenset(ops) for device, ops in _backend_selection.NATIVE_KERNELS.items()
        },
        "triton installed": _backend_selection.TRITON_INSTALLED,
        "the model's native op library": model._native_ops,
    }


def restore(state: dict) -> None:
    """Puts back what ``snapshot()`` recorded."""
    if _precision_api():
        # The legacy setters first, so that the legacy flags agree with what is restored; then each setting.
        set_tf32(state["TF32 for CUDA GEMMs"], state["TF32 for cuDNN convolutions"])
        for name, path in _PRECISION_FLAGS.items():
            if (owner := _flag_owner(path)) is not None:
                owner.fp32_precision = state[f"fp32 precision of {name}"]
    else:
        torch.set_float32_matmul_precision(state["float32 matmul precision"])
        set_tf32(state["TF32 for CUDA GEMMs"], state["TF32 for cuDNN convolutions"])
    torch.set_num_threads(state["CPU threads"])
    torch.use_deterministic_algorithms(state["deterministic algorithms"])
    torch.set_default_dtype(state["default dtype"])
    torch.set_grad_enabled(state["grad mode"])
    for name in set(os.environ) - set(state["environment"]) - SET_BY_TOOLS:
        del os.environ[name]
    os.environ.update(state["environment"])
    _backend_selection.NATIVE_KERNELS.clear()
    _backend_selection.NATIVE_KERNELS.update(state["native kernels per device"])
    _backend_selection.TRITON_INSTALLED = state["triton installed"]
    model._native_ops = state["the model's native op library"]


def differences(before: dict, after: dict) -> list[str]:
    """What changed between two snapshots, one line each (environment variables by name)."""
    found = []
    for name, old in before.items():
        new = after[name]
        if name == "environment":
            changed = sorted(k for k in old.keys() | new.keys() if old.get(k) != new.get(k))
            found += [f"environment variable {k}: {old.get(k)!r} -> {new.get(k)!r}" for k in changed]
        elif old != new:
            found.append(f"{name}: {old!r} -> {new!r}")
    return found
