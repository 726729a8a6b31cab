"""dwconv3x3: depthwise 3x3 convolution, padding 1, stride 1 or 2, optional bias (a folded BatchNorm)
and ReLU epilogue.

Index model: ``out[n, c, ho, wo] = b[c] + sum_{dy,dx} w[c, dy, dx] * x[n, c, ho*s + dy - 1, wo*s + dx - 1]``
with out-of-image taps zero; ``H_out = (H - 1) // s + 1``. One program computes a ``[P, C]`` tile of
output pixels by channels in float32 (common.dw3x3_tile) and rounds once on store.
"""

from __future__ import annotations

import triton
import triton.language as tl
from torch import Tensor

from .common import (
    PIXEL_ARGS,
    autotune_configs,
    channels_innermost,
    dw3x3_tile,
    op_launcher,
    pixel_bucket,
    pixel_coords,
    store_tile,
)

# Nine loads per output element, each of a [P, C] tile with its own 64-bit addresses, which ptxas
# hoists together for latency: at 32 elements a thread 66 of 72 sm_90 variants spilled, and at 16
# NCHW still did. 8 elements a thread fit, with 72 loads a thread in flight, plenty for a
# bandwidth-bound kernel. Tall tiles suit NCHW, wide ones channels_last.
_CONFIGS = autotune_configs(
    [
        triton.Config({"BLOCK_P": 64, "BLOCK_C": 16}, num_warps=4),
        triton.Config({"BLOCK_P": 16, "BLOCK_C": 64}, num_warps=4),
        triton.Config({"BLOCK_P": 32, "BLOCK_C": 64}, num_warps=8),
    ],
    triton.Config({"BLOCK_P": 32, "BLOCK_C": 16}),
)


@triton.autotune(configs=_CONFIGS, key=["C", "PIXEL_BUCKET", "STRIDE", "X_PIXEL_MAJOR", "OUT_PIXEL_MAJOR"])
@triton.jit(do_not_specialize=PIXEL_ARGS)
def _dwconv3x3_kernel(
    x,
    x_sn,
    x_sc,
    x_sh,
    x_sw,
    weight,
    w_sc,
    w_sh,
    w_sw,
    bias,
    out,
    o_sn,
    o_sc,
    o_sh,
    o_sw,
    M,
    C,
    H,
    W,
    W_OUT,
    HW_OUT,
    PIXEL_BUCKET,
    STRIDE: tl.constexpr,
    HAS_BIAS: tl.constexpr,
    RELU: tl.constexpr,
    X_PIXEL_MAJOR: tl.constexpr,
    OUT_PIXEL_MAJOR: tl.constexpr,
    BLOCK_P: tl.constexpr,
    BLOCK_C: tl.constexpr,
):
    m = tl.program_id(0) * BLOCK_P + tl.arange(0, BLOCK_P)
    c = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
    pix_mask = m < M
    ch_mask = c < C
    n, ho, wo = pixel_coords(m, HW_OUT, W_OUT)
    acc = dw3x3_tile(
        x,
        x_sn,
        x_sh,
        x_sw,
        n,
        ho,
        wo,
        H,
        W,
        pix_mask,
        c,
        c.to(tl.int64) * x_sc,
        ch_mask,
        weight,
        w_sc,
        w_sh,
        w_sw,
        STRIDE,
        X_PIXEL_MAJOR,
        BLOCK_P,
        BLOCK_C,
    )
    if HAS_BIAS:
        acc += tl.load(bias + c, mask=ch_mask, other=0.0).to(tl.float32)[None, :]
    if RELU:
        acc = tl.maximum(acc, 0.0)
    store_tile(
        out,
        n * o_sn + ho * o_sh + wo * o_sw,
        c.to(tl.int64) * o_sc,
        acc.to(out.dtype.element_ty),
        pix_mask,
        ch_mask,
        OUT_PIXEL_MAJOR,
    )


@op_launcher("dwconv3x3")
def dwconv3x3(out: Tensor, x: Tensor, weight: Tensor, bias: Tensor | None, stride: int, relu: bool) -> None:
    n, c, h, w = x.shape
    h_out, w_out = out.shape[2:]
    m = n * h_out * w_out

    def grid(meta):
        return (triton.cdiv(m, meta["BLOCK_P"]), triton.cdiv(c, meta["BLOCK_C"]))

    _dwconv3x3_kernel[grid](
        x, *x.stride(), weight, weight.stride(0), weight.stride(2), weight.stride(3),
        weight if bias is None else bias.contiguous(), out, *out.stride(),
        m, c, h, w, w_out, h_out * w_out, pixel_bucket(m),
        STRIDE=stride, HAS_BIAS=bias is not None, RELU=relu,
        X_PIXEL_MAJOR=channels_innermost(x), OUT_PIXEL_MAJOR=channels_innermost(out),
    )  # fmt: skip
