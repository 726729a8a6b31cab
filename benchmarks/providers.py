"""One setup shared by every benchmark: the network's real shapes, and the providers compared on them.

A provider is a name and a callable built once per (op, shape); the benchmark times the callable, so
ours, eager, torch.compile and the other runtimes run the same inputs under the same conditions.
ONNX Runtime, OpenVINO, MNN and ExecuTorch providers exist only where those packages are installed
(`pip install -r requirements-peers.txt`; ExecuTorch lives in its own environment, see that file).
"""

from __future__ import annotations

import copy
import importlib.util
import os
import tempfile
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

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
    return ref.demo_model(width, seed)


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


def mnn_module(path: str, threads: int = THREADS) -> Callable[[torch.Tensor], object]:
    """MNN on the ONNX export, CPU backend, precision normal. The conversion calls the converter's
    Python module (`_tools`, shipped in the `mnn` wheel) directly: the `mnnconvert` wrapper script
    around it tries to pip-install a package and uploads telemetry."""
    import _tools
    import MNN
    import onnx

    mnn_path = os.path.splitext(path)[0] + ".mnn"
    if not os.path.exists(mnn_path):
        argv = ["mnnconvert", "-f", "ONNX", "--modelFile", path, "--MNNModel", mnn_path, "--bizCode", "shufflekernels"]
        if not _tools.mnnconvert(argv):
            raise RuntimeError(f"MNN could not convert {path}")
    graph = onnx.load(path, load_external_data=False).graph
    runtime = MNN.nn.create_runtime_manager(({"backend": "CPU", "precision": "normal", "numThread": threads},))
    net = MNN.nn.load_module_from_file(
        mnn_path, [graph.input[0].name], [graph.output[0].name], runtime_manager=runtime
    )  # fmt: skip
    # MNN evaluates lazily: read() makes the forward happen inside the timed call.
    return lambda x: net.forward(MNN.expr.const(x.numpy(), list(x.shape), MNN.expr.NCHW)).read()


class ExportFriendly(nn.Module):
    """The reference model's forward with `chunk` as two slices and the global mean with kept dims,
    same weights, same results. ExecuTorch's XNNPACK partitioner takes neither `split_with_sizes`
    (what chunk exports to) nor a mean that drops dims: the plain model is cut into 15 delegated pieces
    with the 13 splits and the mean run by the portable kernels in between. This one is delegated whole."""

    def __init__(self, model: ref.ShuffleNetV2) -> None:
        super().__init__()
        self.model = model

    @staticmethod
    def _unit(unit: ref.InvertedResidual, x: torch.Tensor) -> torch.Tensor:
        if unit.stride == 1:
            half = x.shape[1] // 2
            return ref.shuffle_cat([x[:, :half], unit.branch2(x[:, half:])])
        return ref.shuffle_cat([unit.branch1(x), unit.branch2(x)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = self.model
        x = m.maxpool(m.conv1(x))
        for stage in (m.stage2, m.stage3, m.stage4):
            for unit in stage:
                x = self._unit(unit, x)
        return m.fc(m.conv5(x).mean((2, 3), keepdim=True).flatten(1))


def executorch_method(
    model: ref.ShuffleNetV2, example: torch.Tensor, threads: int = THREADS
) -> Callable[[torch.Tensor], object]:
    """ExecuTorch with the XNNPACK delegate on the whole graph, run by the runtime's Python bindings."""
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower
    from executorch.extension.pybindings.portable_lib import _unsafe_reset_threadpool
    from executorch.runtime import Runtime

    # torch.export cannot take inference tensors (what a model built under inference_mode holds, as in the
    # pytest suite): export a copy made outside inference mode.
    with torch.inference_mode(False), torch.no_grad():
        friendly = ExportFriendly(copy.deepcopy(model)).eval()
        exported = torch.export.export(friendly, (example.clone(),))
        edge = to_edge_transform_and_lower(exported, partitioner=[XnnpackPartitioner()])
    outside = [
        str(n.target) for n in edge.exported_program().graph_module.graph.nodes
        if n.op == "call_function" and "delegate" not in str(n.target) and "getitem" not in str(n.target)
    ]  # fmt: skip
    if outside:  # the figure would not be XNNPACK's: say so rather than quote it
        raise RuntimeError(f"ExecuTorch: ops left outside the XNNPACK delegate: {outside}")
    program = edge.to_executorch()
    # XNNPACK's pool is process-wide and sized by cpuinfo unless reset; the only thread knob the Python
    # bindings have (experimental).
    _unsafe_reset_threadpool(threads)
    loaded = Runtime.get().load_program(program.buffer)
    method = loaded.load_method("forward")

    def run(x: torch.Tensor, _program=loaded) -> torch.Tensor:
        # A Method does not keep its Program (and the bytes it runs from) alive: without this
        # reference the first call reads freed memory and the process dies of a segfault.
        return method.execute([x])[0]

    return run


def compile_freezing(model: nn.Module) -> Callable[[torch.Tensor], object]:
    """torch.compile as a PyTorch user would deploy it for CPU inference: channels_last, Inductor
    freezing (weights become constants, BatchNorm folds into oneDNN convolutions). Set per compile,
    not in the global config, so a plain torch.compile in the same process stays plain."""
    compiled = torch.compile(model.to(memory_format=torch.channels_last), options={"freezing": True})
    return lambda x: compiled(x.contiguous(memory_format=torch.channels_last))


def model_providers(width: float, batch: int, size: int = 224, peers: bool = True) -> dict[str, Callable]:
    """The whole-model providers: reference eager (NCHW and channels_last), torch.compile (plain, and
    with freezing), fused native, and ONNX Runtime / OpenVINO / MNN / ExecuTorch where installed."""
    model = randomized_model(width)
    example = torch.randn(batch, 3, size, size)
    model_cl = randomized_model(width).to(memory_format=torch.channels_last)
    providers: dict[str, Callable] = {
        "eager": model,
        "eager channels_last": lambda x: model_cl(x.contiguous(memory_format=torch.channels_last)),
        "torch.compile": torch.compile(randomized_model(width)),
        "torch.compile freezing": compile_freezing(randomized_model(width)),
    }
    if sk.backends()["native-cpu"]["usable"]:
        providers["fused native"] = sk.FusedShuffleNetV2.from_reference(model, backend="native")
    if peers and have("onnxruntime") and have("onnxscript"):
        providers["onnxruntime"] = _or_failure(lambda: ort_session(onnx_file(model, example)))
    if peers and have("openvino") and have("onnxscript"):
        providers["openvino"] = _or_failure(lambda: openvino_model(onnx_file(model, example)))
    if peers and have("MNN") and have("_tools") and have("onnxscript"):
        providers["mnn"] = _or_failure(lambda: mnn_module(onnx_file(model, example)))
    if peers and have("executorch"):
        providers["executorch xnnpack"] = _or_failure(lambda: executorch_method(model, example))
    return providers


def _or_failure(build: Callable[[], Callable]) -> Callable:
    """The peer built by `build`, or, where that fails, a callable that raises why: the providers are
    built together, and one peer that cannot build should fail its own benchmark, not everyone's."""
    try:
        return build()
    except Exception as e:
        error = f"{type(e).__name__}: {e}"

        def failed(x: torch.Tensor):
            raise RuntimeError(f"this provider could not be built: {error}")

        return failed


def torch_shuffle_cat(tensors: list[torch.Tensor]) -> torch.Tensor:
    """What a user writes without us: torch.cat then the view/transpose shuffle."""
    x = torch.cat(tensors, 1)
    n, c, h, w = x.shape
    return x.view(n, len(tensors), c // len(tensors), h, w).transpose(1, 2).reshape(n, c, h, w)


def torch_dwconv_bn(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, stride: int) -> torch.Tensor:
    return F.conv2d(x, weight, bias, stride=stride, padding=1, groups=x.shape[1])
