"""Pure-PyTorch reference: the ground truth every backend, test and benchmark compares against.

The ops compute exactly what docs/design.md ("Op semantics") specifies, with plain torch calls and no
fusion. The model is ShuffleNetV2 (Ma et al., ECCV 2018) with torchvision's module structure,
constructor arguments and ``state_dict`` keys, so weights move between torchvision, this reference and
FusedShuffleNetV2 as they are. torchvision is not needed.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from . import network_params
from .contract import output_memory_format

__all__ = [
    "channel_shuffle",
    "shuffle_cat",
    "dwconv3x3",
    "fold_bn",
    "pointwise",
    "stem",
    "split_unit",
    "down_unit",
    "shufflenet",
    "InvertedResidual",
    "ShuffleNetV2",
    "shufflenet_v2_x0_5",
    "shufflenet_v2_x1_0",
    "shufflenet_v2_x1_5",
    "shufflenet_v2_x2_0",
    "WIDTHS",
    "demo_model",
]


def channel_shuffle(x: Tensor, groups: int) -> Tensor:
    """``out[n, j*g + i] = x[n, i*(C/g) + j]`` for x ``[N, C, H, W]``; keeps x's memory format."""
    n, c, h, w = x.shape
    out = x.reshape(n, groups, c // groups, h, w).transpose(1, 2).reshape(n, c, h, w)
    return out.contiguous(memory_format=output_memory_format(x))


def shuffle_cat(tensors: Sequence[Tensor]) -> Tensor:
    """``channel_shuffle(torch.cat(tensors, 1), len(tensors))``."""
    return channel_shuffle(torch.cat(list(tensors), 1), len(tensors))


def dwconv3x3(x: Tensor, weight: Tensor, bias: Tensor | None = None, *, stride: int = 1, relu: bool = False) -> Tensor:
    """Depthwise 3x3 conv, padding 1: x ``[N, C, H, W]``, weight ``[C, 1, 3, 3]``, bias ``[C]`` or None.

    Output ``[N, C, (H - 1) // stride + 1, (W - 1) // stride + 1]``; ReLU after the bias if ``relu``.
    Low-precision inputs are computed in float32 and rounded once, as the fused kernels do.
    """
    compute = x.float() if x.dtype in (torch.float16, torch.bfloat16) else x
    out = F.conv2d(
        compute,
        weight.to(compute.dtype),
        None if bias is None else bias.to(compute.dtype),
        stride=stride,
        padding=1,
        groups=x.shape[1],
    )
    if relu:
        out = torch.relu(out)
    return out.to(x.dtype).contiguous(memory_format=output_memory_format(x))


def fold_bn(conv_weight: Tensor, bn: nn.BatchNorm2d, conv_bias: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Folds an eval-mode BatchNorm2d into the conv before it.

    ``w' = w * gamma / sqrt(var + eps)``, ``b' = beta - mean * gamma / sqrt(var + eps)`` (plus the conv
    bias scaled the same way, where there is one). Computed in float64 and returned in the weight's dtype.
    """
    if not isinstance(bn, nn.BatchNorm2d):
        raise TypeError(f"shufflekernels.fold_bn: argument 'bn' expected nn.BatchNorm2d, got {type(bn).__name__}")
    if bn.running_mean is None or bn.running_var is None:
        raise ValueError("shufflekernels.fold_bn: argument 'bn' expected running statistics (track_running_stats=True)")
    if conv_weight.shape[0] != bn.num_features:
        raise ValueError(
            f"shufflekernels.fold_bn: argument 'conv_weight' expected {bn.num_features} output channels "
            f"(the BatchNorm's num_features), got shape {tuple(conv_weight.shape)}"
        )
    var = bn.running_var.detach().double()
    mean = bn.running_mean.detach().double()
    gamma = bn.weight.detach().double() if bn.weight is not None else torch.ones_like(var)
    beta = bn.bias.detach().double() if bn.bias is not None else torch.zeros_like(var)
    scale = gamma / torch.sqrt(var + bn.eps)
    weight = conv_weight.detach().double() * scale.reshape(-1, *([1] * (conv_weight.dim() - 1)))
    bias = beta - mean * scale
    if conv_bias is not None:
        bias = bias + conv_bias.detach().double() * scale
    return weight.to(conv_weight.dtype), bias.to(conv_weight.dtype)


def pointwise(x: Tensor, weight: Tensor, bias: Tensor, relu: bool = True) -> Tensor:
    """``conv1x1(x, weight) + bias``, then ReLU when ``relu``: x ``[N, Cin, H, W]``, weight ``[Cout, Cin, 1, 1]``,
    bias ``[Cout]``. Computed in float32 and rounded once; keeps x's memory format."""
    return _pointwise(x, weight, bias, relu=relu).to(x.dtype).contiguous(memory_format=output_memory_format(x))


def stem(x: Tensor, weight: Tensor, bias: Tensor) -> Tensor:
    """The network's stem, ``maxpool3x3/2(relu(conv3x3/2(x, weight) + bias))`` with padding 1 for both:
    x ``[N, Cin, H, W]``, weight ``[Cout, Cin, 3, 3]``, bias ``[Cout]``. Computed in float32."""
    compute = x.float() if x.dtype in (torch.float16, torch.bfloat16) else x
    out = F.conv2d(compute, weight.to(compute.dtype), bias.to(compute.dtype), stride=2, padding=1)
    out = F.max_pool2d(torch.relu(out), kernel_size=3, stride=2, padding=1)
    return out.to(x.dtype).contiguous(memory_format=output_memory_format(x))


def _pointwise(x: Tensor, weight: Tensor, bias: Tensor, relu: bool) -> Tensor:
    compute = x.float() if x.dtype in (torch.float16, torch.bfloat16) else x
    out = F.conv2d(compute, weight.to(compute.dtype), bias.to(compute.dtype))
    return torch.relu(out) if relu else out


def split_unit(
    x: Tensor,
    pw1_weight: Tensor,
    pw1_bias: Tensor,
    dw_weight: Tensor,
    dw_bias: Tensor,
    pw2_weight: Tensor,
    pw2_bias: Tensor,
) -> Tensor:
    """Stride-1 unit on folded parameters: ``x1, x2 = x.chunk(2, 1)``;
    ``y = relu(pw2(dw(relu(pw1(x2)))))``; ``shuffle_cat([x1, y])``. Computed in float32."""
    x1, x2 = x.chunk(2, 1)
    t = _pointwise(x2, pw1_weight, pw1_bias, relu=True)
    t = dwconv3x3(t, dw_weight, dw_bias, stride=1)
    y = _pointwise(t, pw2_weight, pw2_bias, relu=True)
    return shuffle_cat([x1, y.to(x.dtype)]).contiguous(memory_format=output_memory_format(x))


def down_unit(
    x: Tensor,
    dw1_weight: Tensor,
    dw1_bias: Tensor,
    pw3_weight: Tensor,
    pw3_bias: Tensor,
    pw1_weight: Tensor,
    pw1_bias: Tensor,
    dw2_weight: Tensor,
    dw2_bias: Tensor,
    pw2_weight: Tensor,
    pw2_bias: Tensor,
) -> Tensor:
    """Stride-2 unit on folded parameters: ``b1 = relu(pw3(dw_s2(x)))``,
    ``b2 = relu(pw2(dw_s2(relu(pw1(x)))))``, ``shuffle_cat([b1, b2])``. Computed in float32."""
    compute = x.float() if x.dtype in (torch.float16, torch.bfloat16) else x
    b1 = _pointwise(dwconv3x3(compute, dw1_weight, dw1_bias, stride=2), pw3_weight, pw3_bias, relu=True)
    t = _pointwise(compute, pw1_weight, pw1_bias, relu=True)
    b2 = _pointwise(dwconv3x3(t, dw2_weight, dw2_bias, stride=2), pw2_weight, pw2_bias, relu=True)
    return shuffle_cat([b1.to(x.dtype), b2.to(x.dtype)]).contiguous(memory_format=output_memory_format(x))


def shufflenet(x: Tensor, params: Sequence[Tensor], stage_repeats: Sequence[int]) -> Tensor:
    """The whole network on folded parameters: stem, then per stage a down unit and ``repeats - 1``
    split units, conv5 (1x1 + bias + ReLU), global mean, classifier. Returns logits ``[N, classes]``.

    ``params``, flat, as network_params.py describes it: conv1 weight and bias; each unit's parameters
    in the order of ``down_unit`` (10) or ``split_unit`` (6); conv5 weight ``[C5, C, 1, 1]`` and bias;
    the classifier's weight as a 1x1 conv ``[classes, C5, 1, 1]`` and bias."""
    layers = {
        "stem": stem,
        "down_unit": down_unit,
        "split_unit": split_unit,
        "conv5": pointwise,
        "classifier": lambda features, weight, bias: pointwise(
            features.mean((2, 3), keepdim=True), weight, bias, relu=False
        ),
    }
    out = x
    for section, tensors in network_params.sections(params, stage_repeats):
        out = layers[section.kind](out, *tensors)
    return out.flatten(1)


# --------------------------------------------------------------------------------------------------
# The model, with torchvision's structure and state_dict keys.
# --------------------------------------------------------------------------------------------------


def _depthwise_conv(channels: int, stride: int) -> nn.Conv2d:
    return nn.Conv2d(channels, channels, kernel_size=3, stride=stride, padding=1, bias=False, groups=channels)


class InvertedResidual(nn.Module):
    """One ShuffleNetV2 unit (torchvision's ``InvertedResidual``): the split unit for stride 1, the down
    unit for stride > 1. ``branch1``/``branch2`` hold the same layers at the same indices as torchvision."""

    def __init__(self, inp: int, oup: int, stride: int) -> None:
        super().__init__()
        if not (1 <= stride <= 3):
            raise ValueError("illegal stride value")
        self.stride = stride
        branch_features = oup // 2
        if (self.stride == 1) and (inp != branch_features << 1):
            raise ValueError(
                f"Invalid combination of stride {stride}, inp {inp} and oup {oup} values. "
                "If stride == 1 then inp should be equal to oup // 2 << 1."
            )
        if self.stride > 1:
            self.branch1 = nn.Sequential(
                _depthwise_conv(inp, self.stride),
                nn.BatchNorm2d(inp),
                nn.Conv2d(inp, branch_features, kernel_size=1, stride=1, padding=0, bias=False),
                nn.BatchNorm2d(branch_features),
                nn.ReLU(inplace=True),
            )
        else:
            self.branch1 = nn.Sequential()
        self.branch2 = nn.Sequential(
            nn.Conv2d(inp if self.stride > 1 else branch_features, branch_features, 1, 1, 0, bias=False),
            nn.BatchNorm2d(branch_features),
            nn.ReLU(inplace=True),
            _depthwise_conv(branch_features, self.stride),
            nn.BatchNorm2d(branch_features),
            nn.Conv2d(branch_features, branch_features, 1, 1, 0, bias=False),
            nn.BatchNorm2d(branch_features),
            nn.ReLU(inplace=True),
        )

    def forward(self, x: Tensor) -> Tensor:
        if self.stride == 1:
            x1, x2 = x.chunk(2, dim=1)
            return shuffle_cat([x1, self.branch2(x2)])
        return shuffle_cat([self.branch1(x), self.branch2(x)])


class ShuffleNetV2(nn.Module):
    """ShuffleNetV2 with torchvision's constructor, module names and ``state_dict`` keys.

    ``stages_repeats``: units in stage2..stage4 (3 ints); ``stages_out_channels``: output channels of
    conv1, stage2..stage4 and conv5 (5 ints). Input ``[N, 3, H, W]``, output ``[N, num_classes]``.
    """

    def __init__(
        self, stages_repeats: Sequence[int], stages_out_channels: Sequence[int], num_classes: int = 1000
    ) -> None:
        super().__init__()
        if len(stages_repeats) != 3:
            raise ValueError("expected stages_repeats as list of 3 positive ints")
        if len(stages_out_channels) != 5:
            raise ValueError("expected stages_out_channels as list of 5 positive ints")
        self._stage_out_channels = list(stages_out_channels)

        input_channels = 3
        output_channels = self._stage_out_channels[0]
        self.conv1 = nn.Sequential(
            nn.Conv2d(input_channels, output_channels, 3, 2, 1, bias=False),
            nn.BatchNorm2d(output_channels),
            nn.ReLU(inplace=True),
        )
        input_channels = output_channels
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)

        for name, repeats, output_channels in zip(
            ("stage2", "stage3", "stage4"), stages_repeats, self._stage_out_channels[1:]
        ):
            units = [InvertedResidual(input_channels, output_channels, 2)]
            units += [InvertedResidual(output_channels, output_channels, 1) for _ in range(repeats - 1)]
            setattr(self, name, nn.Sequential(*units))
            input_channels = output_channels

        output_channels = self._stage_out_channels[-1]
        self.conv5 = nn.Sequential(
            nn.Conv2d(input_channels, output_channels, 1, 1, 0, bias=False),
            nn.BatchNorm2d(output_channels),
            nn.ReLU(inplace=True),
        )
        self.fc = nn.Linear(output_channels, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv1(x)
        x = self.maxpool(x)
        x = self.stage2(x)
        x = self.stage3(x)
        x = self.stage4(x)
        x = self.conv5(x)
        x = x.mean([2, 3])
        return self.fc(x)


# Width multiplier -> (stages_repeats, stages_out_channels), as published.
WIDTHS: dict[float, tuple[list[int], list[int]]] = {
    0.5: ([4, 8, 4], [24, 48, 96, 192, 1024]),
    1.0: ([4, 8, 4], [24, 116, 232, 464, 1024]),
    1.5: ([4, 8, 4], [24, 176, 352, 704, 1024]),
    2.0: ([4, 8, 4], [24, 244, 488, 976, 2048]),
}


def _from_width(width: float, num_classes: int) -> ShuffleNetV2:
    repeats, channels = WIDTHS[width]
    return ShuffleNetV2(repeats, channels, num_classes=num_classes)


def shufflenet_v2_x0_5(num_classes: int = 1000) -> ShuffleNetV2:
    return _from_width(0.5, num_classes)


def shufflenet_v2_x1_0(num_classes: int = 1000) -> ShuffleNetV2:
    return _from_width(1.0, num_classes)


def shufflenet_v2_x1_5(num_classes: int = 1000) -> ShuffleNetV2:
    return _from_width(1.5, num_classes)


def shufflenet_v2_x2_0(num_classes: int = 1000) -> ShuffleNetV2:
    return _from_width(2.0, num_classes)


def demo_model(width: float, seed: int = 0, num_classes: int = 1000) -> ShuffleNetV2:
    """The embedded default of the demo and the benchmarks: the reference model with seeded random
    weights and non-trivial BatchNorm statistics (no pretrained weights are downloaded), in eval mode."""
    torch.manual_seed(seed)
    repeats, channels = WIDTHS[width]
    model = ShuffleNetV2(repeats, channels, num_classes=num_classes)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
    return model.eval()
