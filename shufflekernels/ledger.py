"""The launch and traffic ledger: for each layer of the network and for the whole of it, the launches of
one forward on the GPU and the bytes each kernel reads and writes in global memory, per backend, next
to the floor. Measured on the CPU, without a GPU:

- native CUDA: the emulated CUDA library (``torch.ops.shufflekernels_cuda_emulated``, the CUDA kernel
  bodies run by a host executor) in its dry run, which counts every launch without computing: each
  body reports the bytes its launch reads and writes (csrc/cuda/launch_plan.h, Traffic), each library call
  (cuBLAS, an ATen kernel) its own, a GEMM M*K + K*N + M*N elements. It runs the whole network as one
  ``shufflenet`` call (what FusedShuffleNetV2 runs on CUDA), which marks where each layer starts;
- triton: FusedShuffleNetV2 with backend="triton" runs its forward on meta tensors; each Triton
  launch is recorded instead of run (bytes: the tensors it is given, ``out`` written, the others read,
  each tensor once), each ATen op the forward runs in Python is a launch too (reading its inputs,
  writing its outputs) unless it only allocates or makes a view. The stem has no Triton kernel: on
  CUDA it runs natively, so its row is the native one;
- auto: the fused model on CUDA with backend="auto" (Triton installed): each layer from the path
  ``_backend_selection.auto_choice`` picks for it, the native stem and head around the Triton units;
- reference: the reference ShuffleNetV2 module (torchvision's ops, BatchNorm unfolded) run eagerly in
  the same dtype on meta tensors, every ATen op counted at its minimum, one read of each input and one
  write of each output;
- floor: per unit, one read of its input and one write of its output, plus its weights; the stem reads
  the image and writes its output, the head (conv5, mean, classifier) reads conv5's input and writes
  the logits.

Figures are per forward (launches) and per image (bytes): a batch's bytes divided by its size, so at
batch 1 the weights dominate.
"""

from __future__ import annotations

import contextlib
import dataclasses

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from . import contract, reference, registry
from . import model as _model

IMAGE = 224
# ATen ops that allocate without writing: not launches.
_ALLOCATIONS = {"empty", "empty_strided", "empty_like", "new_empty", "new_empty_strided"}


@dataclasses.dataclass
class Launch:
    layer: str
    name: str
    read: int
    written: int


def build_model(width: float = 1.0, dtype: torch.dtype = torch.float16, backend: str = "native"):
    repeats, channels = reference.WIDTHS[width]
    torch.manual_seed(0)
    net = _model.FusedShuffleNetV2.from_reference(reference.ShuffleNetV2(repeats, channels).eval(), backend=backend)
    return net.to(dtype)


def layer_names_of(stage_lengths) -> list[str]:
    """stem, stage2.0 down, stage2.1 split, ..., head."""
    units = [
        f"stage{stage}.{u} {'split' if u else 'down'}"
        for stage, length in enumerate(stage_lengths, start=2)
        for u in range(length)
    ]
    return ["stem", *units, "head"]


def layer_names(net) -> list[str]:
    return layer_names_of(net.stage_lengths)


# --------------------------------------------------------------------------------------------------
# native CUDA (the emulated library, dry run)
# --------------------------------------------------------------------------------------------------


def _parse(log: str, names: list[str]) -> list[Launch]:
    """The launches of a traffic log, each in the layer the last ``layer <index>`` line named."""
    out, layer = [], "network"
    for line in log.splitlines():
        kind, *fields = line.split()
        if kind == "layer":
            layer = names[int(fields[0])]
            continue
        name, read, written = fields
        out.append(Launch(layer, name, int(read), int(written)))
    return out


@contextlib.contextmanager
def _dry_run(lib):
    lib.traffic_log()
    lib.dry_run(True)
    try:
        yield
    finally:
        lib.dry_run(False)


def native_cuda(net, batch: int) -> list[Launch]:
    """The one ``shufflenet`` call FusedShuffleNetV2 makes on CUDA, on the emulated CUDA library in its
    dry run, for an NCHW input; each launch in the layer the op marked it with."""
    lib = torch.ops.shufflekernels_cuda_emulated
    x = torch.empty(batch, 3, IMAGE, IMAGE, dtype=net.fc_weight.dtype)
    with _dry_run(lib), torch.inference_mode():
        lib.shufflenet(x, net._network_params, net.stage_lengths)
        return _parse(lib.traffic_log(), layer_names(net))


# --------------------------------------------------------------------------------------------------
# meta-tensor forwards: Triton and the reference
# --------------------------------------------------------------------------------------------------


def _nbytes(t) -> int:
    return t.numel() * t.element_size() if isinstance(t, torch.Tensor) else 0


def _storage(t: torch.Tensor) -> int:
    return t.untyped_storage()._cdata


def _tensors(values) -> list[torch.Tensor]:
    flat = []
    for v in values:
        if isinstance(v, torch.Tensor):
            flat.append(v)
        elif isinstance(v, (list, tuple)):
            flat += _tensors(v)
    return flat


class _AtenCounter(TorchDispatchMode):
    """Every ATen op that launches a kernel, at one read of its inputs and one write of its outputs;
    allocations and views are not launches."""

    def __init__(self, launches: list[Launch], layer: list[str]) -> None:
        super().__init__()
        self.launches, self.layer = launches, layer

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        inputs = _tensors([*args, *kwargs.values()])
        storages = {_storage(t) for t in inputs}
        # A view (or an op that may return its input, as contiguous or to, and did) launches nothing.
        is_view = all(_storage(t) in storages for t in _tensors([out])) and not func._schema.is_mutable
        if not is_view and func._opname not in _ALLOCATIONS:
            if func._opname == "copy_":  # (destination, source)
                read, written = _nbytes(args[1]), _nbytes(args[0])
            else:
                read, written = sum(map(_nbytes, inputs)), sum(map(_nbytes, _tensors([out])))
            self.launches.append(Launch(self.layer[0], f"aten.{func._opname}", read, written))
        return out


def _meta_forward(net, batch: int, run) -> list[Launch]:
    """net's forward on a meta NCHW input, each op of ``model._run`` handed to ``run(op, x, params,
    options, launches, layer)``; ATen ops counted."""
    launches: list[Launch] = []
    names = iter(layer_names(net))
    layer = ["stem"]
    original = _model._run

    def patched(op, backend, x, *params, **options):
        if op != "pointwise":
            layer[0] = next(names)
        elif layer[0] != "head":
            layer[0] = "head"
        return run(op, x, [on_meta[id(p)] for p in params], options, launches, layer[0])

    x = torch.empty(batch, 3, IMAGE, IMAGE, dtype=net.fc_weight.dtype, device="meta")
    on_meta = {id(p): p.to("meta") for p in net.buffers()}  # .to keeps the stored strides
    backend = net.backend
    net.set_backend("reference")  # the layers through model._run (patched), none as one native call
    _model._run = patched
    try:
        with torch.inference_mode(), _AtenCounter(launches, layer):
            net(x)
    finally:
        _model._run = original
        net.set_backend(backend)
    return launches


def reference_path(width: float, dtype: torch.dtype, batch: int) -> list[Launch]:
    """The reference ShuffleNetV2 module run eagerly (torchvision's ops, BatchNorm unfolded) on meta
    tensors, each ATen op at one read of its inputs and one write of its outputs."""
    repeats, channels = reference.WIDTHS[width]
    net = reference.ShuffleNetV2(repeats, channels).eval().to(device="meta", dtype=dtype)
    launches: list[Launch] = []
    layer = ["stem"]
    units = [unit for name in ("stage2", "stage3", "stage4") for unit in getattr(net, name)]
    hooks = []
    for name, module in zip(layer_names_of(repeats)[1:], [*units, net.conv5]):
        hooks.append(module.register_forward_pre_hook(lambda *_, name=name: layer.__setitem__(0, name)))
    try:
        with torch.inference_mode(), _AtenCounter(launches, layer):
            net(torch.empty(batch, 3, IMAGE, IMAGE, dtype=dtype, device="meta"))
    finally:
        for hook in hooks:
            hook.remove()
    return launches


def triton_path(net, batch: int, native_stem: list[Launch]) -> list[Launch]:
    """The Triton path's launches; ``native_stem``: the native CUDA stem's (it has no Triton kernel)."""
    from .triton import recording  # lazily: importing triton takes seconds

    def run(op, x, params, options, launches, layer):
        if op == "stem":
            launches += native_stem
            return contract.empty_output(x, registry.OPS["stem"].out_shape(x, *params))
        with recording.recording(launches, layer, Launch):
            return recording.launch(op, x, params, options)

    return _meta_forward(net, batch, run)


# --------------------------------------------------------------------------------------------------
# floor and table
# --------------------------------------------------------------------------------------------------


def floor(net, batch: int) -> dict[str, int]:
    """Bytes per layer: one read of its input, one write of its output, its weights."""
    es = net.fc_weight.element_size()
    rows: dict[str, int] = {}
    x = torch.empty(batch, 3, IMAGE, IMAGE, dtype=net.fc_weight.dtype, device="meta")
    with torch.inference_mode():
        y = reference.stem(x, net.conv1_weight.to("meta"), net.conv1_bias.to("meta"))
        rows["stem"] = _nbytes(x) + _nbytes(y) + (net.conv1_weight.numel() + net.conv1_bias.numel()) * es
        for name, unit in zip(layer_names(net)[1:-1], net.units):
            out = getattr(reference, unit.OP)(y, *[p.to("meta") for p in unit.params()])
            rows[name] = _nbytes(y) + _nbytes(out) + sum(p.numel() for p in unit.params()) * es
            y = out
    head = (net.conv5_weight, net.conv5_bias, net.fc_weight, net.fc_bias)
    rows["head"] = _nbytes(y) + batch * net.num_classes * es + sum(p.numel() for p in head) * es
    return rows


def by_layer(launches: list[Launch]) -> dict[str, tuple[int, int]]:
    """layer -> (launches, bytes)."""
    rows: dict[str, tuple[int, int]] = {}
    for launch in launches:
        n, b = rows.get(launch.layer, (0, 0))
        rows[launch.layer] = (n + 1, b + launch.read + launch.written)
    return rows


def ledger(width: float = 1.0, dtype: torch.dtype = torch.float16, batch: int = 256, triton: bool = True) -> dict:
    """{"layers": names, "floor": {layer: bytes}, backend: {"layers": {layer: (launches, bytes)},
    "launches": [Launch]}} for the native CUDA path (the one shufflenet call), the Triton path (when triton is installed and asked for) and the reference."""
    net = build_model(width, dtype)
    layers = native_cuda(net, batch)
    result = {
        "layers": layer_names(net),
        "batch": batch,
        "floor": floor(net, batch),
        "native": {"layers": by_layer(layers), "launches": layers},
        "reference": {"layers": by_layer(launches := reference_path(width, dtype, batch)), "launches": launches},
    }
    if triton:
        stem = [launch for launch in layers if launch.layer == "stem"]
        launches = triton_path(net, batch, stem)
        result["triton"] = {"layers": by_layer(launches), "launches": launches}
        auto = auto_path(net, result)
        result["auto"] = {"layers": by_layer(auto), "launches": auto}
    return result


def auto_path(net, result: dict) -> list[Launch]:
    """The fused model's forward on CUDA with backend="auto", on a machine with Triton: each layer's
    launches from the path ``_backend_selection.auto_choice`` picks for its op (what FusedShuffleNetV2 runs there;
    when that is native for every unit, the whole network is the one ``shufflenet`` call)."""
    from . import _backend_selection

    ops = ["stem", *(unit.OP for unit in net.units), "pointwise"]
    chosen = {
        layer: _backend_selection.auto_choice(op, "cuda", "native" in registry.OPS[op].backends, True)
        for layer, op in zip(result["layers"], ops)
    }
    if all(chosen[layer] == "native" for layer in result["layers"][1:-1]):
        return list(result["native"]["launches"])
    # Otherwise the model runs its channels_last forward (model._forward_channels_last): the input's
    # channels_last copy and the native stem op, as the Triton path counts them, then each layer's choice.
    stem = [launch for launch in result["triton"]["launches"] if launch.layer == "stem"]
    return stem + [
        launch
        for layer in result["layers"][1:]
        for launch in result[chosen[layer]]["launches"]
        if launch.layer == layer
    ]


def totals(entry: dict) -> tuple[int, int]:
    return len(entry["launches"]), sum(launch.read + launch.written for launch in entry["launches"])


def format_table(result: dict) -> str:
    batch = result["batch"]
    backends = [b for b in ("native", "triton", "auto", "reference") if b in result]
    mb = lambda b: f"{b / batch / 1e6:.3f}"  # noqa: E731
    header = ["layer", "floor MB/img", *[f"{b} {what}" for b in backends for what in ("launches", "MB/img")]]
    rows = []
    for layer in result["layers"]:
        row = [layer, mb(result["floor"][layer])]
        for b in backends:
            n, by = result[b]["layers"].get(layer, (0, 0))
            row += [str(n), mb(by)]
        rows.append(row)
    total = ["network", mb(sum(result["floor"].values()))]
    for b in backends:
        n, by = totals(result[b])
        total += [str(n), mb(by)]
    rows.append(total)
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    line = lambda r: "  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths)))  # noqa: E731
    return "\n".join([line(header), line(["-" * w for w in widths]), *map(line, rows)])


# The budgets (x1.0, float16, batch 256, per image): the path, then (launches, MB per image) that
# must be met and aimed at. "auto": the fused model on CUDA with backend="auto"; "native": the native
# CUDA path, as the one shufflenet call the fused model makes with backend="native".
BUDGETS = {
    "fused model on CUDA, backend='auto'": {"path": "auto", "must": (25, 7.0), "aim": (20, 5.0)},
    "native CUDA path (cuBLAS units, fused stem, head and epilogues)": {
        "path": "native",
        "must": (60, 11.0),
        "aim": None,
    },
}


def budget_figures(result: dict, path: str) -> tuple[int, float]:
    """(launches per forward, MB per image) of a budget's path."""
    n, b = totals(result[path])
    return n, b / result["batch"] / 1e6


def format_notes(result: dict) -> str:
    n, mb = budget_figures(result, "native")
    lines = [f"native CUDA, as the one shufflenet call FusedShuffleNetV2 makes: {n} launches, {mb:.3f} MB/img"]
    if result["batch"] != 256:
        return "\n".join([*lines, "budgets: per image at batch 256 (see that table)"])
    for what, budget in BUDGETS.items():
        if budget["path"] not in result and budget["path"] != "native":
            lines.append(f"budget, {what}: needs triton installed to count")
            continue
        n, mb = budget_figures(result, budget["path"])
        must = budget["must"]
        aim = f", aim {budget['aim'][0]} / {budget['aim'][1]} MB" if budget["aim"] else ""
        met = "met" if n <= must[0] and mb <= must[1] else "NOT met"
        lines.append(
            f"budget, {what}: must {must[0]} launches / {must[1]} MB{aim}: {met} ({n} launches, {mb:.3f} MB/img)"
        )
    return "\n".join(lines)
