"""One setup shared by every benchmark: the network's real shapes, and the providers compared on them.

A provider is a name and a callable built once per (op, shape); the benchmark times the callable, so
ours, eager, torch.compile and the other runtimes run the same inputs under the same conditions.
ONNX Runtime and OpenVINO providers exist only where those packages are installed
(`pip install -r requirements-peers.txt`).
"""

from __future__ import annotations

import importlib.util
import os
import tempfile
from typing import Callable

import torch
import torch.nn.functional as F

import shufflekernels as sk
from shufflekernels import reference as ref

THREADS = int(os.environ.get("SK_BENCH_THREADS", "2"))

# The x1.0 network at 224x224, batch 1: (stage, channels of the unit's input, H = W).
X1_0_SPLIT_UNITS = [("stage2", 116, 28), ("stage3", 232, 14), ("stage4", 464, 7)]
X1_0_DOWN_UNITS = [("stage2", 24, 56, 58), ("stage3", 116, 28, 116), ("stage4", 232, 14, 232)]
# Depthwise convs of x1.0: (where, channels, input H = W, stride).
X1_0_DWCONVS = [
    ("stage2 split", 58, 28, 1), ("stage3 split", 116, 14, 1), ("stage4 split", 232, 7, 1),
    ("stage2 down", 58, 56, 2), ("stage3 down", 116, 28, 2), ("stage4 down", 232, 14, 2),
]  # fmt: skip


def have(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def randomized_model(width: float, seed: int = 0) -> ref.ShuffleNetV2:
    from shufflekernels.__main__ import demo_model

    return demo_model(width, seed)


def unit_params(c_in: int, cb: int, split: bool, seed: int = 0) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)

    def pw(co, ci):
        return torch.randn(co, ci, 1, 1, generator=g) / ci**0.5, torch.randn(co, generator=g) * 0.1

    def dw(ch):
        return torch.randn(ch, 1, 3, 3, generator=g) / 3, torch.randn(ch, generator=g) * 0.1

    if split:
        return (*pw(cb, cb), *dw(cb), *pw(cb, cb))
    return (*dw(c_in), *pw(cb, c_in), *pw(cb, c_in), *dw(cb), *pw(cb, cb))


def onnx_file(model: torch.nn.Module, example: torch.Tensor) -> str:
    """The model exported to ONNX once per process (cached by identity and input shape)."""
    key = (id(model), tuple(example.shape))
    if key not in _onnx_cache:
        path = os.path.join(tempfile.mkdtemp(prefix="sk-bench-"), "model.onnx")
        torch.onnx.export(model, (example,), path, dynamo=True, external_data=False)
        _onnx_cache[key] = path
    return _onnx_cache[key]


_onnx_cache: dict = {}


def ort_session(path: str, threads: int = THREADS) -> Callable[[torch.Tensor], object]:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return lambda x: session.run(None, {name: x.numpy()})[0]


def openvino_model(path: str, threads: int = THREADS, hint: str = "LATENCY") -> Callable[[torch.Tensor], object]:
    import openvino as ov

    core = ov.Core()
    compiled = core.compile_model(
        core.read_model(path), "CPU",
        {"INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": hint, "INFERENCE_PRECISION_HINT": "f32"},
    )  # fmt: skip
    request = compiled.create_infer_request()
    return lambda x: request.infer([x.numpy()])[0]


def model_providers(width: float, batch: int, size: int = 224, peers: bool = True) -> dict[str, Callable]:
    """The whole-model providers: reference eager (NCHW and channels_last), torch.compile, fused
    native, and ONNX Runtime / OpenVINO where installed."""
    model = randomized_model(width)
    example = torch.randn(batch, 3, size, size)
    model_cl = randomized_model(width).to(memory_format=torch.channels_last)
    providers: dict[str, Callable] = {
        "eager": model,
        "eager channels_last": lambda x: model_cl(x.contiguous(memory_format=torch.channels_last)),
        "torch.compile": torch.compile(randomized_model(width)),
    }
    if sk.backends()["native-cpu"]["usable"]:
        providers["fused native"] = sk.FusedShuffleNetV2.from_reference(model, backend="native")
    if peers and have("onnxruntime") and have("onnxscript"):
        providers["onnxruntime"] = ort_session(onnx_file(model, example))
    if peers and have("openvino") and have("onnxscript"):
        providers["openvino"] = openvino_model(onnx_file(model, example))
    return providers


def torch_shuffle_cat(tensors: list[torch.Tensor]) -> torch.Tensor:
    """What a user writes without us: torch.cat then the view/transpose shuffle."""
    x = torch.cat(tensors, 1)
    n, c, h, w = x.shape
    return x.view(n, len(tensors), c // len(tensors), h, w).transpose(1, 2).reshape(n, c, h, w)


def torch_dwconv_bn(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, stride: int) -> torch.Tensor:
    return F.conv2d(x, weight, bias, stride=stride, padding=1, groups=x.shape[1])
