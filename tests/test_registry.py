"""The op registry (shufflekernels/registry.py) against what the dispatcher actually holds, and against
the places that follow from it: an op left out of the registry, or registered without its kernels or
under other argument names, fails here."""

from __future__ import annotations

import importlib.util
import inspect

import pytest
import torch

import shufflekernels as sk
from shufflekernels import _backend_selection, ops, registry

from conftest import CUDA_EMULATION_BUILT, requires_native_cpu

CUDA_BUILT = bool(sk.build_info().get("cuda"))
# The native libraries this build holds: the emulated CUDA one unless built with SK_HOST_EMULATION=0.
NATIVE_NAMESPACES = [registry.NATIVE_NS] + ([registry.EMULATED_NS] if CUDA_EMULATION_BUILT else [])


def _schema(qualname: str) -> torch._C.FunctionSchema:
    return torch._C._dispatch_find_schema_or_throw(qualname, "").schema()


def _signature(schema: torch._C.FunctionSchema) -> list[tuple[str, str, object]]:
    """(name, type, default) of every argument, and the return types: what a call can rely on."""
    args = [(a.name, str(a.type), a.default_value if a.has_default_value() else None) for a in schema.arguments]
    return args + [("->", str(r.type), None) for r in schema.returns]


def _namespace_ops(namespace: str) -> set[str]:
    """Every op the dispatcher holds in a namespace, overloads folded."""
    prefix = f"{namespace}::"
    return {
        name[len(prefix) :].split(".")[0] for name in torch._C._dispatch_get_all_op_names() if name.startswith(prefix)
    }


# Ops the native libraries define that are not ops of the contract, with why.
NOT_IN_THE_CONTRACT = {
    registry.NATIVE_NS: {"prepack": "a hint to the CPU kernels (keep packed weights), with no result"},
    registry.EMULATED_NS: {
        "launch_log": "test hook of the emulation",
        "force_wide_index": "test hook of the emulation",
        "traffic_log": "hook of the emulation: the ledger's launch and traffic counts",
        "dry_run": "hook of the emulation: count launches without computing (the ledger)",
    },
}


@requires_native_cpu
@pytest.mark.parametrize("namespace", NATIVE_NAMESPACES)
def test_native_libraries_hold_exactly_the_registry(namespace):
    held = _namespace_ops(namespace) - set(NOT_IN_THE_CONTRACT[namespace])
    assert held == set(registry.OPS), f"in the dispatcher, not the registry: {held - set(registry.OPS)}; " \
        f"in the registry, not the dispatcher: {set(registry.OPS) - held}"  # fmt: skip


@requires_native_cpu
@pytest.mark.parametrize("namespace", NATIVE_NAMESPACES)
@pytest.mark.parametrize("op", list(registry.OPS))
def test_schema_is_the_registrys(namespace, op):
    expected = torch._C.parse_schema(f"{namespace}::{registry.OPS[op].schema}")
    assert _signature(_schema(f"{namespace}::{op}")) == _signature(expected)


@requires_native_cpu
@pytest.mark.parametrize("op", list(registry.OPS))
def test_native_kernels_are_registered(op):
    spec = registry.OPS[op]
    assert "native" in spec.backends
    assert torch._C._dispatch_has_kernel_for_dispatch_key(f"{registry.NATIVE_NS}::{op}", "CPU")
    if CUDA_EMULATION_BUILT:
        assert torch._C._dispatch_has_kernel_for_dispatch_key(f"{registry.EMULATED_NS}::{op}", "CPU")
    if CUDA_BUILT:
        assert torch._C._dispatch_has_kernel_for_dispatch_key(f"{registry.NATIVE_NS}::{op}", "CUDA")
    assert op in _backend_selection.NATIVE_KERNELS["cpu"]
    assert (op in _backend_selection.NATIVE_KERNELS["cuda"]) == CUDA_BUILT


@requires_native_cpu
@pytest.mark.parametrize("namespace", NATIVE_NAMESPACES)
@pytest.mark.parametrize("op", list(registry.OPS))
def test_fake_kernels_are_registered(namespace, op):
    # The registry registers one fake per op and namespace (torch.compile and torch.export need them).
    assert torch._C._dispatch_has_kernel_for_dispatch_key(f"{namespace}::{op}", "Meta")


@pytest.mark.skipif(importlib.util.find_spec("triton") is None, reason="triton is not installed")
def test_triton_ops_have_the_native_names_and_types(triton_backend):
    from shufflekernels.triton import library

    assert set(library.LAUNCHERS) == set(registry.ops_with("triton")) == set(_backend_selection.TRITON_OPS)
    assert _namespace_ops(registry.TRITON_NS) == set(registry.ops_with("triton"))
    for op in registry.ops_with("triton"):
        expected = torch._C.parse_schema(f"x::{registry.OPS[op].schema}")
        assert _signature(_schema(f"{registry.TRITON_NS}::{op}")) == _signature(expected), op
        if registry.defined_in(registry.NATIVE_NS, op):
            assert _signature(_schema(f"{registry.TRITON_NS}::{op}")) == _signature(
                _schema(f"{registry.NATIVE_NS}::{op}")
            )
        for key in ("CPU", "CUDA", "Meta"):
            assert torch._C._dispatch_has_kernel_for_dispatch_key(f"{registry.TRITON_NS}::{op}", key), (op, key)


@pytest.mark.parametrize("op", list(registry.OPS))
def test_every_op_has_a_typed_wrapper(op):
    # The wrapper takes the schema's arguments by the schema's names (and backend=), in schema order.
    assert op in ops.__all__
    parameters = list(inspect.signature(getattr(ops, op)).parameters)
    assert parameters == [*registry.OPS[op].arg_names, "backend"]


@pytest.mark.parametrize("op", list(registry.OPS))
def test_registry_entry_is_consistent(op):
    spec = registry.OPS[op]
    assert spec.name == op and spec.schema.startswith(f"{op}(")
    assert spec.backends <= {"native", "triton"}
    assert (spec.backward is None) == (not spec.differentiable)
    args = registry.example_args(op)
    spec.check(*args)  # the example satisfies the contract
    assert tuple(spec.reference(*args).shape) == spec.out_shape(*args)


def test_backend_report_follows_the_registry():
    report = sk.backends()
    assert report["reference"]["ops"] == list(registry.OPS)
    assert sorted(report["triton"]["ops"]) == sorted(registry.ops_with("triton"))
