"""What an entry of the op registry (registry.py) holds, and the builders of the entries' example inputs."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import Tensor

from . import network_params
from .contract import empty_output

Kind = Literal["permutation", "depthwise", "gemm"]


@dataclass(frozen=True)
class OpSpec:
    """One op. ``make_args(case, gen)`` returns float32 CPU arguments in schema order for an op-specific
    case tuple (``case_doc``); callers move them to a device and dtype."""

    name: str
    schema: str
    doc: str
    check: Callable[..., None]
    out_shape: Callable[..., tuple[int, ...]]
    reference: Callable[..., Tensor]
    make_args: Callable[[tuple, torch.Generator], tuple]
    case_doc: str
    example_case: tuple  # a case at the network's shapes (x1.0), for the CLI check
    kind: Kind
    backends: frozenset[str] = frozenset({"native", "triton"})
    triton: str | None = None  # "module:function" of the launcher in shufflekernels/triton/
    # What backend="auto" runs on CUDA when both kernels are there: "triton" where the Triton kernel does
    # in one launch what the native path does in several (the units: one kernel each, against cuBLAS
    # GEMMs and separate depthwise and interleave kernels; docs/design.md, "Choosing a backend").
    cuda_auto: Literal["native", "triton"] = "native"
    keyword_only: Sequence[str] = ()  # arguments the Python wrapper takes by keyword only
    defaults: dict = field(default_factory=dict)  # Python defaults beyond the schema's own
    differentiable: bool = False
    backward: Callable | None = field(default=None, repr=False)  # (ns_ops, ctx, grad) -> grads
    setup_context: Callable | None = field(default=None, repr=False)

    @property
    def triton_module(self) -> str:
        """The module of shufflekernels/triton/ holding the op's Triton launcher."""
        return self.triton.split(":")[0]

    @property
    def triton_function(self) -> str:
        return self.triton.split(":")[1]

    def default(self, name: str):
        """An argument's Python default: the entry's own (``defaults``), else the schema's, else
        ``inspect.Parameter.empty``."""
        if name in self.defaults:
            return self.defaults[name]
        arg = next(a for a in self.arguments if a.name == name)
        return arg.default_value if arg.has_default_value() else inspect.Parameter.empty

    def complete(self, args: Sequence, options: dict | None = None) -> tuple:
        """Every argument in schema order: ``args`` positionally, then ``options`` by name, then the
        defaults (the dispatcher leaves out trailing arguments equal to their schema default)."""
        names = self.arg_names[len(args) :]
        if not names:
            return tuple(args)
        options = options or {}
        return (*args, *(options[n] if n in options else self.default(n) for n in names))

    # Parsed once per entry: the Triton ops complete their arguments from them on every call.
    @functools.cached_property
    def arguments(self) -> list[torch._C.Argument]:
        return list(torch._C.parse_schema(f"x::{self.schema}").arguments)

    @functools.cached_property
    def arg_names(self) -> list[str]:
        return [a.name for a in self.arguments]

    def fake(self, *args):
        """The fake (meta) kernel: the contract's check, then an empty output of the right shape and
        memory format (the first tensor argument decides the format, as in the kernels)."""
        self.check(*args)
        first = args[0][0] if isinstance(args[0], (list, tuple)) else args[0]
        return empty_output(first, self.out_shape(*args))


def rand(gen: torch.Generator, *shape: int, scale: float = 1.0) -> Tensor:
    return scale * torch.randn(*shape, generator=gen)


def random_param(gen: torch.Generator, shape: tuple[int, ...]) -> Tensor:
    """A folded parameter of this shape with non-trivial values: a conv weight scaled to keep activations
    O(1) (by the square root of its fan-in: 1x1, depthwise 3x3 and the stem's 3x3), or a bias of both
    signs (so that ReLUs clip)."""
    if len(shape) == 1:
        return rand(gen, *shape, scale=0.5)
    c_in, kernel = shape[1], shape[2] * shape[3]
    return rand(gen, *shape, scale=max(c_in * kernel, 1) ** -0.5)


def pw_params(gen, c_out: int, c_in: int) -> tuple[Tensor, Tensor]:
    return random_param(gen, (c_out, c_in, 1, 1)), random_param(gen, (c_out,))


def dw_params(gen, channels: int) -> tuple[Tensor, Tensor]:
    return random_param(gen, (channels, 1, 3, 3)), random_param(gen, (channels,))


def unit_params(
    c_in: int, branch: int, split: bool, *, dtype: torch.dtype = torch.float32, device="cpu", seed: int = 0
) -> tuple[Tensor, ...]:
    """Folded parameters of a split unit (``c_in == 2 * branch``) or a down unit, in the op's argument
    order: the one builder of unit parameters for tests and benchmarks."""
    gen = torch.Generator().manual_seed(seed)
    kind = "split_unit" if split else "down_unit"
    shapes = network_params.shapes(kind, c_in, branch)
    return tuple(random_param(gen, shape).to(device=device, dtype=dtype) for shape in shapes)
