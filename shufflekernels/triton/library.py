"""The Triton kernels as dispatcher-visible ops, ``torch.ops.shufflekernels_triton.*``.

They are ``torch.library.custom_op``s with a fake impl, not ``triton_op``s: torch.compile traces into a
``triton_op``'s kernels with fake tensors, which fails for CPU tensors under TRITON_INTERPRET=1, while a
custom op stays opaque and compiles on every device. The fake impls give the output the same shape and
memory format as the kernels do (both use ops._empty_like_format). Inputs were checked by ops.py.

Importing this module imports triton and decorates the kernels, so it is imported on first use only
(shufflekernels/triton/__init__.py) and TRITON_INTERPRET must be set before then.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from .. import ops as _ops
from . import dwconv as _dwconv
from . import permute as _permute
from . import units as _units

_NS = "shufflekernels_triton"


@torch.library.custom_op(f"{_NS}::channel_shuffle", mutates_args=())
def channel_shuffle(x: Tensor, groups: int) -> Tensor:
    return _permute.channel_shuffle(x, groups)


@channel_shuffle.register_fake
def _(x, groups):
    return _ops._empty_like_format(x, x.shape)


@torch.library.custom_op(f"{_NS}::shuffle_cat", mutates_args=())
def shuffle_cat(tensors: list[Tensor]) -> Tensor:
    return _permute.shuffle_cat(tensors)


@shuffle_cat.register_fake
def _(tensors):
    n, c, h, w = tensors[0].shape
    return _ops._empty_like_format(tensors[0], (n, c * len(tensors), h, w))


@torch.library.custom_op(f"{_NS}::dwconv3x3", mutates_args=())
def dwconv3x3(x: Tensor, weight: Tensor, bias: Optional[Tensor], stride: int, relu: bool) -> Tensor:
    return _dwconv.dwconv3x3(x, weight, bias, stride, relu)


@dwconv3x3.register_fake
def _(x, weight, bias, stride, relu):
    n, c, h, w = x.shape
    return _ops._empty_like_format(x, (n, c, _ops._dw_out(h, stride), _ops._dw_out(w, stride)))


@torch.library.custom_op(f"{_NS}::pointwise", mutates_args=())
def pointwise(x: Tensor, weight: Tensor, bias: Tensor, relu: bool = True) -> Tensor:
    return _units.pointwise(x, weight, bias, relu)


@pointwise.register_fake
def _(x, weight, bias, relu=True):
    return _ops._empty_like_format(x, (x.shape[0], weight.shape[0], x.shape[2], x.shape[3]))


@torch.library.custom_op(f"{_NS}::split_unit", mutates_args=())
def split_unit(
    x: Tensor, pw1_w: Tensor, pw1_b: Tensor, dw_w: Tensor, dw_b: Tensor, pw2_w: Tensor, pw2_b: Tensor
) -> Tensor:
    return _units.split_unit(x, pw1_w, pw1_b, dw_w, dw_b, pw2_w, pw2_b)


@split_unit.register_fake
def _(x, pw1_w, pw1_b, dw_w, dw_b, pw2_w, pw2_b):
    return _ops._empty_like_format(x, x.shape)


@torch.library.custom_op(f"{_NS}::down_unit", mutates_args=())
def down_unit(
    x: Tensor,
    dw1_w: Tensor,
    dw1_b: Tensor,
    pw3_w: Tensor,
    pw3_b: Tensor,
    pw1_w: Tensor,
    pw1_b: Tensor,
    dw2_w: Tensor,
    dw2_b: Tensor,
    pw2_w: Tensor,
    pw2_b: Tensor,
) -> Tensor:
    return _units.down_unit(x, dw1_w, dw1_b, pw3_w, pw3_b, pw1_w, pw1_b, dw2_w, dw2_b, pw2_w, pw2_b)


@down_unit.register_fake
def _(x, dw1_w, dw1_b, pw3_w, pw3_b, pw1_w, pw1_b, dw2_w, dw2_b, pw2_w, pw2_b):
    n, _, h, w = x.shape
    return _ops._empty_like_format(x, (n, 2 * pw1_w.shape[0], _ops._dw_out(h, 2), _ops._dw_out(w, 2)))


# The permutations are differentiable: the gradient of a shuffle with g groups is the inverse shuffle,
# the shuffle with C/g groups; that of shuffle_cat is the inverse shuffle split back into the inputs.
def _channel_shuffle_setup(ctx, inputs, output):
    x, groups = inputs
    ctx.inverse_groups = x.shape[1] // groups


def _channel_shuffle_backward(ctx, grad):
    return channel_shuffle(grad, ctx.inverse_groups), None


channel_shuffle.register_autograd(_channel_shuffle_backward, setup_context=_channel_shuffle_setup)


def _shuffle_cat_setup(ctx, inputs, output):
    ctx.channels = inputs[0][0].shape[1]


def _shuffle_cat_backward(ctx, grad):
    return (list(channel_shuffle(grad, ctx.channels).split(ctx.channels, 1)),)


shuffle_cat.register_autograd(_shuffle_cat_backward, setup_context=_shuffle_cat_setup)
