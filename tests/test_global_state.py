"""conftest's guard sees every global it watches change, and puts it back."""

from __future__ import annotations

import os

import pytest
import torch

from shufflekernels import _backend_selection, model

import global_state

# (what a careless test does, the name the guard reports it under)
CHANGES = [
    (lambda: torch.set_num_threads(torch.get_num_threads() + 1), "CPU threads"),
    # Each TF32 switch is seen through both of torch's APIs: the reports all name what changed.
    (lambda: global_state.set_tf32(matmul=True, conv=False), "CUDA GEMMs"),
    (lambda: global_state.set_tf32(matmul=False, conv=True), "cuDNN"),
    (lambda: torch.use_deterministic_algorithms(True), "deterministic algorithms"),
    (lambda: torch.set_default_dtype(torch.float64), "default dtype"),
    (lambda: os.environ.__setitem__("SK_GUARD_PROBE", "1"), "environment variable SK_GUARD_PROBE"),
    (lambda: os.environ.__setitem__("PATH", "/nowhere"), "environment variable PATH"),
    (lambda: _backend_selection.NATIVE_KERNELS.__setitem__("cpu", frozenset()), "native kernels per device"),
    (lambda: setattr(model, "_native_ops", None), "the model's native op library"),
]


@pytest.mark.parametrize("change, reported", CHANGES, ids=[name for _, name in CHANGES])
def test_guard_reports_and_restores(change, reported):
    before = global_state.snapshot()
    change()
    try:
        found = global_state.differences(before, global_state.snapshot())
        assert found and all(reported in line for line in found), found
    finally:
        global_state.restore(before)
    assert global_state.differences(before, global_state.snapshot()) == []


def test_tf32_context_restores_on_error():
    before = global_state.tf32_matmul_allowed()
    with pytest.raises(ZeroDivisionError), global_state.tf32_matmul(not before):
        assert global_state.tf32_matmul_allowed() == (not before)
        1 / 0  # noqa: B018
    assert global_state.tf32_matmul_allowed() == before
