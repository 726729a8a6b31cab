"""What an entry of the op registry (registry.py) holds, and the builders of the entries' example inputs."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import Tensor

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
    def arguments(self) -> list[torch._C.Argument]:
        return list(torch._C.parse_schema(f"x::{self.schema}").arguments)

    @property
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


def pw_params(gen, c_out: int, c_in: int) -> tuple[Tensor, Tensor]:
    """A 1x1 weight scaled to keep activations O(1), and a bias of both signs (so ReLUs clip)."""
    return rand(gen, c_out, c_in, 1, 1, scale=max(c_in, 1) ** -0.5), rand(gen, c_out, scale=0.5)


def dw_params(gen, channels: int) -> tuple[Tensor, Tensor]:
    return rand(gen, channels, 1, 3, 3, scale=1 / 3), rand(gen, channels, scale=0.5)
