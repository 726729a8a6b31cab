"""Triton kernels for the shufflekernels ops (CUDA tensors; CPU tensors under TRITON_INTERPRET=1)."""

from __future__ import annotations


def status() -> tuple[bool, str]:
    """(usable, why) for the Triton backend."""
    return False, "the Triton kernels are not built yet (see the Triton backend issue)"
