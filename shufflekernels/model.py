"""FusedShuffleNetV2: a drop-in, inference-only ShuffleNetV2 that runs on the fused unit ops.

Built from a torchvision or reference model (or a state_dict of either): every BatchNorm is folded
into the conv before it once, at build time, and each unit runs as one ``split_unit``/``down_unit`` op.
The logits equal the source model's in eval mode.

Memory format: the network runs channels_last inside (decided here, once, for any input layout): a
1x1 conv is then a GEMM on ``[N*H*W, C]``, the depthwise conv vectorises across channels and the
shuffle is a per-pixel interleave.

When the units run natively, the whole forward is one op, ``shufflenet`` (docs/design.md, "The whole
network"): on the CPU it runs every layer in one parallel region from a plan the kernels make once
per set of weights; on CUDA it runs the stem kernel, three launches a unit (its two GEMMs, with
weights the kernels prepare once per set of weights, and the depthwise with the interleave in one
kernel) and the head (52 launches at x1.0; under graph capture, TF32 or an empty batch it runs the
layer ops instead). Otherwise the layer ops run from
Python: on CUDA with backend="auto" and Triton there, each unit is one Triton kernel (the registry's
``cuda_auto``), around the native stem and head.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from . import _backend_selection, network_params, ops
from . import reference as _reference
from .reference import fold_bn

__all__ = ["FusedShuffleNetV2"]


def _tap_major(weight: Tensor) -> Tensor:
    """A depthwise weight [C, 1, 3, 3] with the same values, stored as [9][C] (one tap's weights
    contiguous over channels): the layout the CPU engine reads in place."""
    c = weight.shape[0]
    return weight.reshape(c, 9).t().contiguous().t().reshape(c, 1, 3, 3)


def _is_one_by_one(name: str) -> bool:
    """Whether a buffer (by its name, with or without the module path) is a 1x1 conv weight."""
    leaf = name.rsplit(".", 1)[-1]
    return leaf.endswith("_weight") and leaf.startswith(("pw", "conv5", "fc"))


def _stored(name: str, t: Tensor) -> Tensor:
    """A folded parameter in the storage its consumer reads in place (values unchanged).

    Always a normal tensor, even when the model is built under torch.inference_mode(): the CPU kernels
    keep a packed copy only of weights with a version counter (inference tensors have none)."""
    with torch.inference_mode(False):
        if name == "fc_weight":  # the classifier runs as a 1x1 conv on the pooled [N, C, 1, 1] features
            return _k_major(t.reshape(*t.shape, 1, 1))
        if _is_one_by_one(name):
            return _k_major(t)
        if name.endswith("_weight") and name.startswith("dw"):
            return _tap_major(t)
        return t.clone().contiguous()


def _k_major(weight: Tensor) -> Tensor:
    """A 1x1 conv weight [Cout, Cin, 1, 1] with the same values, stored transposed (input channel
    major): the layout the CPU GEMM reads in place and cuBLAS reads as a plain transpose."""
    c_out, c_in = weight.shape[:2]
    return weight.reshape(c_out, c_in).t().contiguous().t().reshape(c_out, c_in, 1, 1)


class _FusedUnit(nn.Module):
    """One unit's folded parameters, held as buffers (nothing here trains)."""

    PARAMS: tuple[str, ...] = ()
    OP = ""

    def __init__(self, tensors: Mapping[str, Tensor], backend: str) -> None:
        super().__init__()
        for name in self.PARAMS:
            # .to() and load_state_dict() keep these buffers' strides, so the storage chosen here lasts.
            self.register_buffer(name, _stored(name, tensors[name].detach()))
        self.backend = backend

    def params(self) -> list[Tensor]:
        return [self._buffers[name] for name in self.PARAMS]

    def forward(self, x: Tensor) -> Tensor:
        return _run(self.OP, self.backend, x, *self.params())


# The op library the native backend calls. Tests point it at shufflekernels_cuda_emulated to run the
# whole network through the CUDA kernels' code on CPU tensors.
_native_ops = torch.ops.shufflekernels


def _run(op: str, backend: str, x: Tensor, *params: Tensor, **options) -> Tensor:
    """One of the ops on the backend the model was built for. The native op is called straight through
    the dispatcher: it checks its inputs itself, and the Python checks of ops.py would cost more than a
    small unit's kernels at batch 1."""
    if ops.resolve_backend(op, backend, x.device) == "native":
        return getattr(_native_ops, op).default(x, *params, **options)
    return getattr(ops, op)(x, *params, **options, backend=backend)


class FusedSplitUnit(_FusedUnit):
    PARAMS = network_params.NAMES["split_unit"]
    OP = "split_unit"


class FusedDownUnit(_FusedUnit):
    PARAMS = network_params.NAMES["down_unit"]
    OP = "down_unit"


def _fold_unit(unit: nn.Module) -> tuple[type[_FusedUnit], dict[str, Tensor]]:
    """Folded parameters of a torchvision/reference InvertedResidual (duck-typed)."""
    b2 = unit.branch2
    pw1, dw2, pw2 = fold_bn(b2[0].weight, b2[1]), fold_bn(b2[3].weight, b2[4]), fold_bn(b2[5].weight, b2[6])
    if unit.stride == 1:
        names = FusedSplitUnit.PARAMS
        return FusedSplitUnit, dict(zip(names, (*pw1, *dw2, *pw2)))
    if unit.stride != 2:
        raise ValueError(f"shufflekernels.FusedShuffleNetV2: a unit expected stride 1 or 2, got {unit.stride}")
    b1 = unit.branch1
    dw1, pw3 = fold_bn(b1[0].weight, b1[1]), fold_bn(b1[2].weight, b1[3])
    return FusedDownUnit, dict(zip(FusedDownUnit.PARAMS, (*dw1, *pw3, *pw1, *dw2, *pw2)))


def _width_of(stages_out_channels: list[int]) -> float | None:
    for width, (_, channels) in _reference.WIDTHS.items():
        if channels == stages_out_channels:
            return width
    return None


class FusedShuffleNetV2(nn.Module):
    """Inference-only ShuffleNetV2 on fused kernels. Build it with ``from_torchvision``,
    ``from_reference`` or ``from_state_dict``.

    Input ``[N, 3, H, W]`` (NCHW or channels_last, any float dtype the model was moved to);
    output logits ``[N, num_classes]``.
    """

    def __init__(
        self,
        stem: Mapping[str, Tensor],
        stages: list[list[tuple[type[_FusedUnit], dict]]],
        head: Mapping[str, Tensor],
        stages_out_channels: list[int],
        backend: str = "auto",
    ) -> None:
        super().__init__()
        if backend not in ops.BACKENDS:
            raise ValueError(
                f"shufflekernels.FusedShuffleNetV2: argument 'backend' expected one of {ops.BACKENDS}, got {backend!r}"
            )
        self.backend = backend
        self.stages_out_channels = list(stages_out_channels)
        self.width = _width_of(self.stages_out_channels)
        for name, tensor in {**stem, **head}.items():
            self.register_buffer(name, _stored(name, tensor.detach()))
        self.units = nn.Sequential(*(cls(tensors, backend) for stage in stages for cls, tensors in stage))
        self.stage_lengths = [len(stage) for stage in stages]
        self.num_classes = self.fc_weight.shape[0]
        super().train(False)
        self._prepack()

    # ----------------------------------------------------------------------------------------------
    # Construction
    # ----------------------------------------------------------------------------------------------

    @classmethod
    def from_torchvision(cls, model: nn.Module, backend: str = "auto") -> FusedShuffleNetV2:
        """From ``torchvision.models.shufflenet_v2_x*`` (or anything with its structure; torchvision is
        not imported). The model's BatchNorm running statistics are folded, i.e. eval-mode semantics."""
        for attr in ("conv1", "stage2", "stage3", "stage4", "conv5", "fc"):
            if not hasattr(model, attr):
                raise TypeError(
                    "shufflekernels.FusedShuffleNetV2.from_torchvision: argument 'model' expected a ShuffleNetV2 "
                    f"(torchvision's structure, with attribute {attr!r}), got {type(model).__name__}"
                )
        with torch.no_grad():
            stem = dict(zip(("conv1_weight", "conv1_bias"), fold_bn(model.conv1[0].weight, model.conv1[1])))
            stages = [[_fold_unit(unit) for unit in getattr(model, name)] for name in ("stage2", "stage3", "stage4")]
            head = dict(zip(("conv5_weight", "conv5_bias"), fold_bn(model.conv5[0].weight, model.conv5[1])))
            head["fc_weight"], head["fc_bias"] = model.fc.weight.detach(), model.fc.bias.detach()
        stages_out_channels = [
            model.conv1[0].out_channels,
            *(getattr(model, name)[-1].branch2[5].out_channels * 2 for name in ("stage2", "stage3", "stage4")),
            model.conv5[0].out_channels,
        ]
        fused = cls(stem, stages, head, stages_out_channels, backend=backend)
        return fused.to(device=model.fc.weight.device, dtype=model.fc.weight.dtype)

    @classmethod
    def from_reference(cls, model: _reference.ShuffleNetV2, backend: str = "auto") -> FusedShuffleNetV2:
        """From a ``shufflekernels.reference.ShuffleNetV2``."""
        if not isinstance(model, _reference.ShuffleNetV2):
            raise TypeError(
                "shufflekernels.FusedShuffleNetV2.from_reference: argument 'model' expected "
                f"shufflekernels.reference.ShuffleNetV2, got {type(model).__name__}"
            )
        return cls.from_torchvision(model, backend=backend)

    @classmethod
    def from_state_dict(
        cls, state_dict: Mapping[str, Any], width: float = 1.0, num_classes: int = 1000, backend: str = "auto"
    ) -> FusedShuffleNetV2:
        """From a torchvision/reference ``state_dict`` of a ``shufflenet_v2_x{width}`` model."""
        if width not in _reference.WIDTHS:
            raise ValueError(
                f"shufflekernels.FusedShuffleNetV2.from_state_dict: argument 'width' expected one of "
                f"{sorted(_reference.WIDTHS)}, got {width!r}"
            )
        repeats, channels = _reference.WIDTHS[width]
        model = _reference.ShuffleNetV2(repeats, channels, num_classes=num_classes)
        model.load_state_dict(state_dict)
        return cls.from_reference(model.eval(), backend=backend)

    # ----------------------------------------------------------------------------------------------
    # Inference
    # ----------------------------------------------------------------------------------------------

    def train(self, mode: bool = True) -> FusedShuffleNetV2:
        if mode:
            raise RuntimeError(
                "shufflekernels.FusedShuffleNetV2 is inference-only (BatchNorm is folded into the convs); "
                "train the torchvision/reference model and rebuild this one from it"
            )
        return super().train(False)

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(
                f"shufflekernels.FusedShuffleNetV2: argument 'x' expected shape [N, 3, H, W], got {tuple(x.shape)}"
            )
        if torch.is_grad_enabled() and x.requires_grad:
            raise RuntimeError(
                "shufflekernels.FusedShuffleNetV2 is inference-only, but its input requires grad under grad mode; "
                "call it under torch.no_grad() or torch.inference_mode()"
            )
        if self._units_native(x.device) and "shufflenet" in _backend_selection.NATIVE_KERNELS.get(x.device.type, ()):
            return _native_ops.shufflenet.default(x, self._network_params, self.stage_lengths)
        return self._forward_channels_last(x.contiguous(memory_format=torch.channels_last))

    def _forward_channels_last(self, x: Tensor) -> Tensor:
        # The stem has no Triton kernel (it is not one of the fused families): under backend="triton"
        # it runs natively where built, else as the reference.
        stem_backend = "native" if "stem" in _backend_selection.NATIVE_KERNELS.get(x.device.type, ()) else "reference"
        x = _run(
            "stem",
            self.backend if self.backend in ("native", "reference") else stem_backend,
            x,
            self.conv1_weight,
            self.conv1_bias,
        )
        if self._units_native(x.device):
            # The units straight through the dispatcher, without a module call each: at batch 1 the
            # Python around sixteen small ops is a tenth of the forward.
            for unit in self.units:
                x = getattr(_native_ops, unit.OP).default(x, *unit.params())
        else:
            x = self.units(x)
        x = _run("pointwise", self.backend, x, self.conv5_weight, self.conv5_bias)
        x = _run("pointwise", self.backend, x.mean((2, 3), keepdim=True), self.fc_weight, self.fc_bias, relu=False)
        return x.flatten(1)

    def _apply(self, fn, recurse=True):
        # .to()/.cuda()/.half() under torch.inference_mode() keep the buffers normal tensors (see _stored).
        with torch.inference_mode(False):
            super()._apply(fn, recurse)
        self._prepack()  # the buffers may be new tensors
        return self

    def _prepack(self) -> None:
        """Lists the folded parameters in the order of the ``shufflenet`` op (reference.shufflenet), once
        per set of buffers (load_state_dict writes into them in place; .to() and the like replace them),
        and lets the CPU kernels keep panel-packed copies of the 1x1 weights. These buffers change only
        through torch (load_state_dict, in-place ops), whose version counter the kernels check; writes
        that bypass it (through .data or numpy) are not supported on a fused model."""
        self._network_params = network_params.flatten(
            (self.conv1_weight, self.conv1_bias),
            [unit.params() for unit in self.units],
            (self.conv5_weight, self.conv5_bias, self.fc_weight, self.fc_bias),
        )

        if _backend_selection.PREPACK_DEFINED:
            torch.ops.shufflekernels.prepack([t for name, t in self.named_buffers() if _is_one_by_one(name)])

    def _units_native(self, device: torch.device) -> bool:
        return ops.resolve_backend("split_unit", self.backend, device) == "native" and (
            ops.resolve_backend("down_unit", self.backend, device) == "native"
        )

    def set_backend(self, backend: str) -> FusedShuffleNetV2:
        if backend not in ops.BACKENDS:
            raise ValueError(
                f"shufflekernels.FusedShuffleNetV2: argument 'backend' expected one of {ops.BACKENDS}, got {backend!r}"
            )
        self.backend = backend
        for unit in self.units:
            unit.backend = backend
        return self

    def extra_repr(self) -> str:
        width = f"x{self.width}" if self.width is not None else f"channels={self.stages_out_channels}"
        return f"width={width}, units={self.stage_lengths}, num_classes={self.num_classes}, backend={self.backend!r}"

    def __repr__(self) -> str:  # the unit list is long and says nothing the summary does not
        return f"FusedShuffleNetV2({self.extra_repr()})"
