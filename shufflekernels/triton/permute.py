"""channel_shuffle and shuffle_cat: pure channel permutations, one read and one write per element.

Index model (docs/design.md, "Op semantics"): ``channel_shuffle`` sees ``[N, C, H, W]`` as ``[N, g, C/g, H, W]`` and writes
``[N, C/g, g, H, W]``, so ``out[n, j*g + i] = x[n, i*(C/g) + j]``. ``shuffle_cat`` of ``x_0..x_{g-1}`` is the
same map with ``x_i`` as group i: ``out[n, j*g + i] = x_i[n, j]``.

Both kernels tile the *output* channels, so the writes are dense and each output channel gathers its
source channel. Tiles and strides follow common.py. shuffle_cat takes up to ``MAX_SOURCES`` source
pointers per launch (a Triton kernel cannot take a list of pointers of variable length); more groups
than that take several launches, each writing its own output channels.
"""

from __future__ import annotations

from collections.abc import Sequence

import triton
import triton.language as tl
from torch import Tensor

from ..contract import output_memory_format
from .common import (
    PIXEL_ARGS,
    autotune_configs,
    channels_innermost,
    load_tile,
    op_launcher,
    pixel_bucket,
    pixel_coords,
    store_tile,
)

MAX_SOURCES = 4

# Copies are bandwidth-bound; the tile only has to keep enough bytes in flight. A tall tile suits NCHW
# (pixels innermost), a wide one channels_last. 16 elements per thread: at 32, shuffle_cat spilled on
# sm_90 (each source's tile is loaded with its own 64-bit addresses before the selects), and 16 loads
# in flight per thread already cover the latency of a copy.
_CONFIGS = autotune_configs(
    [
        triton.Config({"BLOCK_P": 128, "BLOCK_C": 16}, num_warps=4),
        triton.Config({"BLOCK_P": 16, "BLOCK_C": 128}, num_warps=4),
        triton.Config({"BLOCK_P": 64, "BLOCK_C": 64}, num_warps=8),
    ],
    triton.Config({"BLOCK_P": 32, "BLOCK_C": 16}),
)


@triton.autotune(configs=_CONFIGS, key=["C", "PIXEL_BUCKET", "X_PIXEL_MAJOR", "OUT_PIXEL_MAJOR"])
@triton.jit(do_not_specialize=PIXEL_ARGS)
def _channel_shuffle_kernel(
    x,
    x_sn,
    x_sc,
    x_sh,
    x_sw,
    out,
    o_sn,
    o_sc,
    o_sh,
    o_sw,
    M,
    HW,
    W,
    C,
    GROUPS,
    PIXEL_BUCKET,
    X_PIXEL_MAJOR: tl.constexpr,
    OUT_PIXEL_MAJOR: tl.constexpr,
    BLOCK_P: tl.constexpr,
    BLOCK_C: tl.constexpr,
):
    m = tl.program_id(0) * BLOCK_P + tl.arange(0, BLOCK_P)
    oc = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
    pix_mask = m < M
    ch_mask = oc < C
    n, h, w = pixel_coords(m, HW, W)
    ic = (oc % GROUPS) * (C // GROUPS) + oc // GROUPS
    tile = load_tile(x, n * x_sn + h * x_sh + w * x_sw, ic.to(tl.int64) * x_sc, pix_mask, ch_mask, X_PIXEL_MAJOR)
    store_tile(out, n * o_sn + h * o_sh + w * o_sw, oc.to(tl.int64) * o_sc, tile, pix_mask, ch_mask, OUT_PIXEL_MAJOR)


@triton.autotune(configs=_CONFIGS, key=["C_EACH", "PIXEL_BUCKET", "NUM_SOURCES", "X_PIXEL_MAJOR", "OUT_PIXEL_MAJOR"])
@triton.jit(do_not_specialize=PIXEL_ARGS)
def _shuffle_cat_kernel(
    x0,
    x1,
    x2,
    x3,
    x_sn,
    x_sc,
    x_sh,
    x_sw,
    out,
    o_sn,
    o_sc,
    o_sh,
    o_sw,
    M,
    HW,
    W,
    C_EACH,
    GROUPS,
    FIRST_GROUP,
    PIXEL_BUCKET,
    NUM_SOURCES: tl.constexpr,
    X_PIXEL_MAJOR: tl.constexpr,
    OUT_PIXEL_MAJOR: tl.constexpr,
    BLOCK_P: tl.constexpr,
    BLOCK_C: tl.constexpr,
):
    # q numbers this launch's output channels densely: q = j * NUM_SOURCES + s is channel j of source s,
    # written to output channel j * GROUPS + FIRST_GROUP + s (dense when one launch takes all groups).
    m = tl.program_id(0) * BLOCK_P + tl.arange(0, BLOCK_P)
    q = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
    pix_mask = m < M
    q_mask = q < C_EACH * NUM_SOURCES
    n, h, w = pixel_coords(m, HW, W)
    j = q // NUM_SOURCES
    s = q % NUM_SOURCES
    x_pix = n * x_sn + h * x_sh + w * x_sw
    x_ch = j.to(tl.int64) * x_sc
    # Each lane loads from exactly one source (the others are masked off), then a select keeps it: a
    # sum of the masked loads would turn -0.0 into +0.0.
    tile = load_tile(x0, x_pix, x_ch, pix_mask, q_mask & (s == 0), X_PIXEL_MAJOR)
    if NUM_SOURCES > 1:
        tile = tl.where((s == 1)[None, :], load_tile(x1, x_pix, x_ch, pix_mask, q_mask & (s == 1), X_PIXEL_MAJOR), tile)
    if NUM_SOURCES > 2:
        tile = tl.where((s == 2)[None, :], load_tile(x2, x_pix, x_ch, pix_mask, q_mask & (s == 2), X_PIXEL_MAJOR), tile)
    if NUM_SOURCES > 3:
        tile = tl.where((s == 3)[None, :], load_tile(x3, x_pix, x_ch, pix_mask, q_mask & (s == 3), X_PIXEL_MAJOR), tile)
    oc = j * GROUPS + FIRST_GROUP + s
    store_tile(out, n * o_sn + h * o_sh + w * o_sw, oc.to(tl.int64) * o_sc, tile, pix_mask, q_mask, OUT_PIXEL_MAJOR)


@op_launcher("channel_shuffle")
def channel_shuffle(out: Tensor, x: Tensor, groups: int) -> None:
    n, c, h, w = x.shape
    m = n * h * w

    def grid(meta):
        return (triton.cdiv(m, meta["BLOCK_P"]), triton.cdiv(c, meta["BLOCK_C"]))

    _channel_shuffle_kernel[grid](
        x, *x.stride(), out, *out.stride(), m, h * w, w, c, groups, pixel_bucket(m),
        X_PIXEL_MAJOR=channels_innermost(x), OUT_PIXEL_MAJOR=channels_innermost(out),
    )  # fmt: skip


@op_launcher("shuffle_cat")
def shuffle_cat(out: Tensor, tensors: Sequence[Tensor]) -> None:
    first = tensors[0]
    n, c_each, h, w = first.shape
    groups = len(tensors)
    # One set of source strides serves every source; sources laid out unlike the first are copied once
    # into the output's layout (and then the first is too, if it differs from that).
    if any(t.stride() != first.stride() for t in tensors):
        tensors = [t.contiguous(memory_format=output_memory_format(out)) for t in tensors]
    m = n * h * w
    x_sn, x_sc, x_sh, x_sw = tensors[0].stride()
    for start in range(0, groups, MAX_SOURCES):
        chunk = list(tensors[start : start + MAX_SOURCES])
        num = len(chunk)
        chunk += [chunk[0]] * (MAX_SOURCES - num)

        def grid(meta, num=num):
            return (triton.cdiv(m, meta["BLOCK_P"]), triton.cdiv(c_each * num, meta["BLOCK_C"]))

        _shuffle_cat_kernel[grid](
            *chunk, x_sn, x_sc, x_sh, x_sw, out, *out.stride(), m, h * w, w, c_each, groups, start, pixel_bucket(m),
            NUM_SOURCES=num, X_PIXEL_MAJOR=channels_innermost(tensors[0]), OUT_PIXEL_MAJOR=channels_innermost(out),
        )  # fmt: skip
