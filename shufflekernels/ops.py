"""The public ops: a typed wrapper per op of the registry, generated from its entry (registry.py).

Every op has one schema and up to three implementations: ``native`` (C++ CPU kernels and CUDA kernels,
``torch.ops.shufflekernels.*``), ``triton`` (Triton kernels, ``torch.ops.shufflekernels_triton.*``, same
schemas) and ``reference`` (pure PyTorch, reference.py). A wrapper takes the schema's arguments by the
schema's names (a few by keyword only, as the entry says) plus ``backend``; it checks its inputs
against the contract (the native kernels check the same in C++), refuses inputs that need a gradient
where the op has no backward, and runs the backend ``backend`` resolves to (``auto``: native when that
op has a kernel built for the tensor's device, else Triton on CUDA, else the reference, said once
with a warning). ``help(shufflekernels.ops.dwconv3x3)`` shows an op's signature and shapes.

Shapes: ``x`` is ``[N, C, H, W]``, NCHW or channels_last; every output keeps the input's memory format.
Dtypes: float32 everywhere; float16 and bfloat16 too (the CPU kernels accumulate them in float32).
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Literal

import torch
from torch import Tensor

from . import contract, registry
from ._backend_selection import BACKENDS, resolve_backend

Backend = Literal["auto", "native", "triton", "reference"]


def _triton_ops():
    """The Triton library's ops, registered on first use (importing it imports triton)."""
    from .triton import library  # noqa: F401

    return getattr(torch.ops, registry.TRITON_NS)


def _dispatch(name: str, args: tuple, backend: str) -> Tensor:
    spec = registry.OPS[name]
    spec.check(*args)
    if not spec.differentiable:
        contract.check_inference(name, args)
    first = args[0] if isinstance(args[0], Tensor) else args[0][0]  # shuffle_cat's tensors[0]
    chosen = resolve_backend(name, backend, first.device)
    if chosen == "native":
        return getattr(torch.ops.shufflekernels, name)(*args)
    if chosen == "triton":
        return getattr(_triton_ops(), name)(*args)
    return spec.reference(*args)


def call(name: str, *args, backend: Backend = "auto") -> Tensor:
    """Runs the registry's op ``name`` with its arguments in schema order (``registry.OPS[name].schema``),
    e.g. ``call("dwconv3x3", x, weight, bias, 2, True)``: what the typed wrappers do."""
    if name not in registry.OPS:
        raise ValueError(f"shufflekernels.ops.call: argument 'name' expected one of {list(registry.OPS)}, got {name!r}")
    return _dispatch(name, args, backend)


# Schema types (as torch prints them) -> the wrapper's annotations.
_ANNOTATIONS = {
    "Tensor": Tensor,
    "Optional[Tensor]": Tensor | None,
    "List[Tensor]": Sequence[Tensor],
    "List[int]": Sequence[int],
    "int": int,
    "float": float,
    "bool": bool,
}


def _wrapper(spec: registry.OpSpec):
    """``def <op>(<schema arguments>, *, backend="auto")`` calling _dispatch, with the entry's docstring.
    Written as source, as dataclasses does, so a call costs one Python frame and no argument binding."""
    parameters, values = [], {}
    for arg in spec.arguments:
        kind = (
            inspect.Parameter.KEYWORD_ONLY if arg.name in spec.keyword_only else inspect.Parameter.POSITIONAL_OR_KEYWORD
        )
        default = spec.default(arg.name)
        parameters.append(inspect.Parameter(arg.name, kind, default=default, annotation=_ANNOTATIONS[str(arg.type)]))
    parameters.append(inspect.Parameter("backend", inspect.Parameter.KEYWORD_ONLY, default="auto", annotation=Backend))
    signature = inspect.Signature(parameters, return_annotation=Tensor)
    source_params = []
    for p in parameters:
        if p.kind is inspect.Parameter.KEYWORD_ONLY and "*" not in source_params:
            source_params.append("*")
        if p.default is inspect.Parameter.empty:
            source_params.append(p.name)
        else:
            values[f"_default_{p.name}"] = p.default
            source_params.append(f"{p.name}=_default_{p.name}")
    arguments = ", ".join(spec.arg_names)
    source = (
        f"def {spec.name}({', '.join(source_params)}):\n    return _dispatch({spec.name!r}, ({arguments},), backend)\n"
    )
    namespace = {"_dispatch": _dispatch, **values}
    exec(source, namespace)  # noqa: S102  (generated from the registry's own schema strings)
    fn = namespace[spec.name]
    fn.__signature__ = signature
    fn.__doc__ = spec.doc
    fn.__module__ = __name__
    fn.__annotations__ = {p.name: p.annotation for p in parameters} | {"return": Tensor}
    return fn


for _spec in registry.OPS.values():
    globals()[_spec.name] = _wrapper(_spec)

__all__ = [*registry.OPS, "call", "BACKENDS", "resolve_backend"]
