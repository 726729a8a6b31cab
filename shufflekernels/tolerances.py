"""How close a kernel must come to the reference: the one table the tests and the CLI read.

Ops are compared elementwise against the reference computed in float32 from the same rounded inputs
(``OPS``: kind -> dtype -> (atol, rtol)). Permutations move bits and are compared exactly. The GEMM
kinds round their intermediates to the input dtype where the reference keeps float32 (the fused units
store the 1x1 output before the depthwise, and the Triton units round it before each tl.dot), and
Triton's interpreter truncates float32 -> bfloat16 where a GPU rounds to nearest: one more ulp.

The whole network is compared by the relative L2 error of its logits (``MODEL``): sixteen units of
half-precision rounding add up, and near-tied classes may swap in half precision, so there the error
bound is the check and the top-1 class is compared in float32 only.
"""

from __future__ import annotations

import torch
from torch import Tensor

OPS: dict[str, dict[torch.dtype, tuple[float, float]]] = {
    "permutation": {torch.float32: (0.0, 0.0), torch.float16: (0.0, 0.0), torch.bfloat16: (0.0, 0.0)},
    "depthwise": {torch.float32: (1e-5, 1e-5), torch.float16: (2e-3, 2e-3), torch.bfloat16: (1.6e-2, 1.6e-2)},
    "gemm": {torch.float32: (1e-4, 1e-4), torch.float16: (1e-2, 1e-2), torch.bfloat16: (6e-2, 6e-2)},
}

MODEL: dict[torch.dtype, float] = {torch.float32: 1e-4, torch.float16: 2e-2, torch.bfloat16: 8e-2}


def assert_op_close(kind: str, got: Tensor, expected: Tensor) -> None:
    """Raises (torch.testing's message) unless ``got`` is within the kind's tolerance of ``expected``."""
    if kind == "permutation":
        assert torch.equal(got, expected), "a permutation must move bits exactly"
        return
    atol, rtol = OPS[kind][got.dtype]
    torch.testing.assert_close(got.float(), expected.float(), atol=atol, rtol=rtol)


def relative_error(got: Tensor, expected: Tensor) -> float:
    """``|got - expected| / |expected|`` in the L2 norm, in float32."""
    got, expected = got.float(), expected.float()
    return ((got - expected).norm() / expected.norm().clamp_min(1e-12)).item()
