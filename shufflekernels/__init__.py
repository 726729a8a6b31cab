"""shufflekernels: fused CPU, CUDA and Triton kernels for ShuffleNetV2 inference in PyTorch.

import shufflekernels as sk
sk.ops.shuffle_cat([a, b])                    # channel shuffle fused with concat
sk.ops.dwconv3x3(x, w, b, stride=2, relu=True)  # depthwise 3x3 with folded BatchNorm
sk.backends()                                 # what is built and usable here, and why not
"""

from __future__ import annotations

import importlib.util

from . import _backend_selection, ops, reference
from .model import FusedShuffleNetV2
from .reference import fold_bn

__version__ = "0.1.0"
__all__ = ["ops", "reference", "fold_bn", "FusedShuffleNetV2", "backends", "build_info", "__version__"]


def build_info() -> dict:
    """How the native library was built (empty when it is not loaded)."""
    return dict(_backend_selection.BUILD_INFO)


def backends() -> dict[str, dict]:
    """Each backend and device: whether it is built, whether it is usable here, and why not."""
    import torch

    cuda_device = torch.cuda.is_available()
    info = _backend_selection.BUILD_INFO
    native_why = _backend_selection.LOAD_ERROR
    result = {
        "native-cpu": {
            "built": bool(_backend_selection.NATIVE_KERNELS["cpu"]),
            "usable": bool(_backend_selection.NATIVE_KERNELS["cpu"]),
            "ops": sorted(_backend_selection.NATIVE_KERNELS["cpu"]),
            "why": native_why
            or f"C++ kernels; float32 channels_last engine: {info.get('cpu_engine_isa', '?')} "
            f"(chosen at run time); torch CPU capability {torch.backends.cpu.get_cpu_capability()}",
        },
        "native-cuda": {
            "built": bool(_backend_selection.NATIVE_KERNELS["cuda"]),
            "usable": bool(_backend_selection.NATIVE_KERNELS["cuda"]) and cuda_device,
            "ops": sorted(_backend_selection.NATIVE_KERNELS["cuda"]),
            "why": native_why
            or (
                f"CUDA kernels for {info.get('cuda_archs')}, compiled by CUDA toolkit {info.get('cuda_toolkit')} "
                f"(torch's CUDA: {info.get('cuda_version')})"
                + (
                    ""
                    if cuda_device
                    else "; no CUDA device visible to torch (the tests run these kernels on the "
                    "CPU through torch.ops.shufflekernels_cuda_emulated)"
                )
                if _backend_selection.NATIVE_KERNELS["cuda"]
                else "not compiled: torch is not a CUDA build or no CUDA toolkit was found at build time"
            ),
        },
    }
    # Triton kernels are compiled on first use: "built" means triton is installed.
    triton_usable, triton_why = _backend_selection.triton_status()
    result["triton"] = {
        "built": importlib.util.find_spec("triton") is not None,
        "usable": triton_usable,
        "ops": list(_backend_selection.TRITON_OPS),
        "why": triton_why,
    }
    result["reference"] = {"built": True, "usable": True, "ops": list(_backend_selection.OPS), "why": "pure PyTorch"}
    return result
