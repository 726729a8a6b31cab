"""The ShuffleNetV2 units, one kernel each.

Math (docs/design.md, "Op semantics"; every conv's BatchNorm folded into weight and bias):
    split unit (stride 1): x1, x2 = x.chunk(2, 1); y = relu(pw2(dw(relu(pw1(x2))))); out = shuffle_cat([x1, y])
    down unit (stride 2):  b1 = relu(pw3(dw1_s2(x))); b2 = relu(pw2(dw2_s2(relu(pw1(x))))); out = shuffle_cat([b1, b2])
so with B output channels per branch, ``out[:, 2j] = x1[:, j]`` (or ``b1[:, j]``) and ``out[:, 2j+1] = y[:, j]``
(or ``b2[:, j]``): the shuffle is only the channel index of the stores.

One program owns a tile of output pixels and a block of output channels of each branch, and nothing it
computes goes to global memory but the output:
- branch 2 (the odd channels): the depthwise conv needs ``t = relu(pw1(.))`` at the nine taps of each
  pixel, i.e. on a halo around the tile. Triton cannot shift a register tile in space, so t is
  recomputed at each tap: a tl.dot GEMM of the tap's input pixels (served by L1/L2: neighbouring taps and
  tiles read the same lines) by pw1, zeroed outside the image (the depthwise conv pads t, not x) and
  accumulated times its depthwise weight, BLOCK_M mid channels at a time; each such block feeds one more
  tl.dot into pw2, whose bias and ReLU are the epilogue. That is 9x the GEMM work of pw1 (times the
  output-channel blocks of a wide branch) for no global round trip of t;
- branch 1 (the even channels), from the same program: the identity copy of x1 (split unit), or
  dw1_s2 + pw3 on x (down unit), whose depthwise tile is computed per K block from nine shifted loads.

t and the depthwise output are rounded to x's dtype before each tl.dot, as a stored intermediate would
be; both accumulate in float32. float32 inputs use tl.dot with input_precision="ieee", since TF32 would
not meet float32 tolerances.

Tiles and layouts follow common.py: x and out are read and written through their strides, pixel-major or
plane-major by layout.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch import Tensor

from .common import (
    PIXEL_ARGS,
    autotune_configs,
    channels_innermost,
    dw3x3_tile,
    interpreting,
    load_tile,
    next_pow2,
    op_launcher,
    pixel_bucket,
    pixel_coords,
    store_tile,
    tap_pixels,
)


# The output channels of each branch one program computes. On a GPU, in half precision, one block
# covers a branch of up to 128 channels (x0.5 and x1.0 up to stage3): a [32, 128] tensor-core
# accumulator is 16 registers a thread at 8 warps. float32 takes the IEEE path, an FMA dot whose
# operands are spread across registers, so its blocks stop at 64, as do the down unit's (it runs two
# depthwise + 1x1 branches). Each further block of a unit recomputes branch b's pw1 and depthwise for
# its pixels: x1.0 stage4 (232 channels) does that work twice in half precision; past 128 channels a
# wider block would need fewer pixels per program or spill.
def _max_block_n(dtype: torch.dtype, two_branches: bool = False) -> int:
    if interpreting():
        return 32
    return 64 if dtype == torch.float32 or two_branches else 128


# 128 pixels on 8 warps spilled on sm_90 when writing an NCHW output (one 64-bit address per element
# of a [128, 128] tile), and so did 64 pixels on 4 warps under Triton 3.6 and 3.9 (3.8 sat at exactly
# 255 registers); on 8 warps they take at most 190 under 3.6, 3.8 and 3.9. 32 pixels serve the small
# maps (49 pixels at batch 1 in stage4 and conv5).
_POINTWISE_CONFIGS = autotune_configs(
    [
        triton.Config({"BLOCK_P": 64, "BLOCK_K": 32}, num_warps=8, num_stages=3),
        triton.Config({"BLOCK_P": 32, "BLOCK_K": 32}, num_warps=4, num_stages=3),
    ],
    triton.Config({"BLOCK_P": 32, "BLOCK_K": 16}),
)

# The unit kernel's live tiles, per program: the pw1 product t and the depthwise accumulator d, both
# [P, BLOCK_M] over a block of mid channels; the pw2 accumulator [P, BLOCK_N]; the operand tiles; the
# pixel addresses and masks of a tap. Compiled for sm_90 at the network's shapes (.ci/check_triton_sm90.py):
# - the nine taps are loops, not unrolled (here and in branch a's depthwise tile): unrolled, each tap's
#   pixel addresses and masks, invariant in the channel loops, were hoisted out of them and held nine
#   sets at once (64-bit each, as rows of 58 or 116 channels are not known to be aligned), and spilled;
# - 32 pixels on 8 warps, BLOCK_K 32, BLOCK_M 16: at most 228 registers under Triton 3.6, 3.8 and 3.9.
#   64 pixels sat at 254-255 and spilled under 3.9 (4-8 B, channels_last); with BLOCK_M 32 the down unit
#   spilled at 255 in channels_last; 4 warps spilled at every width;
# - maxnreg 255: without it ptxas capped some float32 variants at 128 registers and spilled (12-40 B);
# - one stage: prefetching the next K block would cost registers and shared memory for little.
# Under the interpreter the blocks are small, so that the test shapes cross several of them.
_UNIT_CONFIGS = autotune_configs(
    [triton.Config({"BLOCK_P": 32, "BLOCK_K": 32, "BLOCK_M": 16}, num_warps=8, num_stages=1, maxnreg=255)],
    triton.Config({"BLOCK_P": 32, "BLOCK_K": 16, "BLOCK_M": 16}),
)


@triton.jit
def _mma(a, b, acc, IEEE: tl.constexpr):
    if IEEE:
        acc = tl.dot(a, b, acc, input_precision="ieee")
    else:
        acc = tl.dot(a, b, acc)
    return acc


@triton.jit
def _load_pw_weight(pw_w, w_so, w_si, k, k_mask, co, co_mask):
    """``[K, N]`` tile of a 1x1 conv weight ``[C_out, C_in]``, read through its strides: the B operand of
    out = in @ w^T. The fused model stores it K-major (w_so 1), so the tile's rows are contiguous."""
    return tl.load(pw_w + co[None, :] * w_so + k[:, None] * w_si, mask=k_mask[:, None] & co_mask[None, :], other=0.0)


@triton.jit
def _gemm_tile(x, pix, x_sc, pix_mask, C_IN, w, w_so, w_si, co, co_mask, acc,
               X_PIXEL_MAJOR: tl.constexpr, IEEE: tl.constexpr, BLOCK_K: tl.constexpr):  # fmt: skip
    """acc + the 1x1 conv of the pixels at offsets ``pix`` (zero where not pix_mask) by weight ``w``
    ``[C_out, C_IN]``, output channels ``co``: a ``[P, N]`` tile, BLOCK_K input channels a step."""
    for k0 in range(0, C_IN, BLOCK_K):
        k = k0 + tl.arange(0, BLOCK_K)
        k_mask = k < C_IN
        a = load_tile(x, pix, k.to(tl.int64) * x_sc, pix_mask, k_mask, X_PIXEL_MAJOR)
        acc = _mma(a, _load_pw_weight(w, w_so, w_si, k, k_mask, co, co_mask), acc, IEEE)
    return acc


@triton.autotune(configs=_POINTWISE_CONFIGS, key=["C_IN", "C_OUT", "PIXEL_BUCKET", "X_PIXEL_MAJOR", "OUT_PIXEL_MAJOR"])
@triton.jit(do_not_specialize=PIXEL_ARGS)
def _pointwise_relu_kernel(
    x,
    x_sn,
    x_sc,
    x_sh,
    x_sw,
    weight,
    w_so,
    w_si,
    bias,
    out,
    o_sn,
    o_sc,
    o_sh,
    o_sw,
    M,
    HW,
    W,
    C_IN,
    C_OUT,
    PIXEL_BUCKET,
    X_PIXEL_MAJOR: tl.constexpr,
    OUT_PIXEL_MAJOR: tl.constexpr,
    IEEE: tl.constexpr,
    RELU: tl.constexpr,
    BLOCK_P: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr,
):
    m = tl.program_id(0) * BLOCK_P + tl.arange(0, BLOCK_P)
    co = tl.program_id(1) * BLOCK_N + tl.arange(0, BLOCK_N)
    pix_mask = m < M
    co_mask = co < C_OUT
    n, h, w = pixel_coords(m, HW, W)
    x_pix = n * x_sn + h * x_sh + w * x_sw
    acc = _gemm_tile(x, x_pix, x_sc, pix_mask, C_IN, weight, w_so, w_si, co, co_mask,
                     tl.full((BLOCK_P, BLOCK_N), 0.0, tl.float32), X_PIXEL_MAJOR, IEEE, BLOCK_K)  # fmt: skip
    acc += tl.load(bias + co, mask=co_mask, other=0.0).to(tl.float32)[None, :]
    if RELU:
        acc = tl.maximum(acc, 0.0)
    store_tile(
        out,
        n * o_sn + h * o_sh + w * o_sw,
        co.to(tl.int64) * o_sc,
        acc.to(out.dtype.element_ty),
        pix_mask,
        co_mask,
        OUT_PIXEL_MAJOR,
    )


@triton.jit
def _dw_pw_relu(
    src, s_n, s_c, s_h, s_w, C_IN,
    n, ho, wo, H, W, pix_mask,
    dw_w, dw_sc, dw_sh, dw_sw, dw_b, pw_w, pw_so, pw_si, pw_b, co, co_mask,
    STRIDE: tl.constexpr, SRC_PIXEL_MAJOR: tl.constexpr, IEEE: tl.constexpr,
    BLOCK_P: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
):  # fmt: skip
    """relu(pw(dw3x3_s(src) + dw_b) + pw_b) at output pixels (n, ho, wo), channels co: [P, N] float32."""
    acc = tl.full((BLOCK_P, BLOCK_N), 0.0, tl.float32)
    for k0 in range(0, C_IN, BLOCK_K):
        k = k0 + tl.arange(0, BLOCK_K)
        k_mask = k < C_IN
        d = dw3x3_tile(
            src,
            s_n,
            s_h,
            s_w,
            n,
            ho,
            wo,
            H,
            W,
            pix_mask,
            k,
            k.to(tl.int64) * s_c,
            k_mask,
            dw_w,
            dw_sc,
            dw_sh,
            dw_sw,
            STRIDE,
            SRC_PIXEL_MAJOR,
            BLOCK_P,
            BLOCK_K,
            True,
        )
        d += tl.load(dw_b + k, mask=k_mask, other=0.0).to(tl.float32)[None, :]
        wt = _load_pw_weight(pw_w, pw_so, pw_si, k, k_mask, co, co_mask)
        acc = _mma(d.to(wt.dtype), wt, acc, IEEE)
    acc += tl.load(pw_b + co, mask=co_mask, other=0.0).to(tl.float32)[None, :]
    return tl.maximum(acc, 0.0)


@triton.jit
def _pw_relu_dw_tile(
    x, x_sn, x_sc, x_sh, x_sw, C_IN,
    n, ho, wo, H, W, pix_mask,
    pw_w, pw_so, pw_si, pw_b, mid, mid_mask,
    dw_w, dw_sc, dw_sh, dw_sw,
    STRIDE: tl.constexpr, X_PIXEL_MAJOR: tl.constexpr, IEEE: tl.constexpr,
    BLOCK_P: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_K: tl.constexpr,
):  # fmt: skip
    """dw3x3_s(t) without its bias, t = relu(pw(x) + pw_b), for channels ``mid`` at output pixels
    (n, ho, wo): ``[P, M]`` float32. t is computed at each tap from the input pixels there, rounded to
    x's dtype (as a stored t would be) and zero outside the image (the padding of the depthwise input)."""
    acc = tl.full((BLOCK_P, BLOCK_M), 0.0, tl.float32)
    bias = tl.load(pw_b + mid, mask=mid_mask, other=0.0).to(tl.float32)
    base = n * x_sn
    for tap in range(9):
        dy = tap // 3
        dx = tap - 3 * dy
        pix, ok = tap_pixels(base, x_sh, x_sw, ho, wo, H, W, pix_mask, dy, dx, STRIDE)
        t = _gemm_tile(x, pix, x_sc, ok, C_IN, pw_w, pw_so, pw_si, mid, mid_mask,
                       tl.full((BLOCK_P, BLOCK_M), 0.0, tl.float32), X_PIXEL_MAJOR, IEEE, BLOCK_K)  # fmt: skip
        t = tl.where(ok[:, None], tl.maximum(t + bias[None, :], 0.0), 0.0)
        t = t.to(x.dtype.element_ty).to(tl.float32)
        weight = tl.load(dw_w + mid * dw_sc + (dy * dw_sh + dx * dw_sw), mask=mid_mask, other=0.0).to(tl.float32)
        acc += t * weight[None, :]
    return acc


@triton.autotune(
    configs=_UNIT_CONFIGS,
    key=["C_A", "C_B", "C_MID", "C_OUT", "PIXEL_BUCKET", "STRIDE", "A_IS_IDENTITY", "A_PIXEL_MAJOR", "OUT_PIXEL_MAJOR"],
)
@triton.jit(do_not_specialize=PIXEL_ARGS)
def _unit_kernel(
    a, a_sn, a_sc, a_sh, a_sw, C_A,
    a_dw_w, a_dw_sc, a_dw_sh, a_dw_sw, a_dw_b, a_pw_w, a_pw_so, a_pw_si, a_pw_b,
    b, b_sn, b_sc, b_sh, b_sw, C_B,
    b_pw1_w, b_pw1_so, b_pw1_si, b_pw1_b, b_dw_w, b_dw_sc, b_dw_sh, b_dw_sw, b_dw_b,
    b_pw2_w, b_pw2_so, b_pw2_si, b_pw2_b,
    out, o_sn, o_sc, o_sh, o_sw,
    M, H, W, W_OUT, HW_OUT, C_MID, C_OUT, PIXEL_BUCKET,
    STRIDE: tl.constexpr, A_IS_IDENTITY: tl.constexpr, A_PIXEL_MAJOR: tl.constexpr, B_PIXEL_MAJOR: tl.constexpr,
    OUT_PIXEL_MAJOR: tl.constexpr, IEEE: tl.constexpr,
    BLOCK_P: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
):  # fmt: skip
    """One unit at BLOCK_P output pixels and BLOCK_N channels of each branch. Branch b (odd channels):
    relu(pw2(dw_s(relu(pw1(b))))) from b's C_B channels through C_MID, BLOCK_M mid channels at a time;
    branch a (even channels): a's channels copied (A_IS_IDENTITY, stride 1) or relu(pw(dw_s(a)))."""
    m = tl.program_id(0) * BLOCK_P + tl.arange(0, BLOCK_P)
    co = tl.program_id(1) * BLOCK_N + tl.arange(0, BLOCK_N)
    pix_mask = m < M
    co_mask = co < C_OUT
    n, ho, wo = pixel_coords(m, HW_OUT, W_OUT)
    o_pix = n * o_sn + ho * o_sh + wo * o_sw
    co64 = co.to(tl.int64)

    if A_IS_IDENTITY:
        # Stride 1, so output pixel (ho, wo) is input pixel (ho, wo); copied bit for bit.
        ya = load_tile(a, n * a_sn + ho * a_sh + wo * a_sw, co64 * a_sc, pix_mask, co_mask, A_PIXEL_MAJOR)
    else:
        ya = _dw_pw_relu(
            a, a_sn, a_sc, a_sh, a_sw, C_A, n, ho, wo, H, W, pix_mask,
            a_dw_w, a_dw_sc, a_dw_sh, a_dw_sw, a_dw_b, a_pw_w, a_pw_so, a_pw_si, a_pw_b, co, co_mask,
            STRIDE, A_PIXEL_MAJOR, IEEE, BLOCK_P, BLOCK_N, BLOCK_K,
        )  # fmt: skip
    store_tile(out, o_pix, (2 * co64) * o_sc, ya.to(out.dtype.element_ty), pix_mask, co_mask, OUT_PIXEL_MAJOR)

    acc = tl.full((BLOCK_P, BLOCK_N), 0.0, tl.float32)
    for m0 in range(0, C_MID, BLOCK_M):
        mid = m0 + tl.arange(0, BLOCK_M)
        mid_mask = mid < C_MID
        d = _pw_relu_dw_tile(
            b, b_sn, b_sc, b_sh, b_sw, C_B, n, ho, wo, H, W, pix_mask,
            b_pw1_w, b_pw1_so, b_pw1_si, b_pw1_b, mid, mid_mask, b_dw_w, b_dw_sc, b_dw_sh, b_dw_sw,
            STRIDE, B_PIXEL_MAJOR, IEEE, BLOCK_P, BLOCK_M, BLOCK_K,
        )  # fmt: skip
        d += tl.load(b_dw_b + mid, mask=mid_mask, other=0.0).to(tl.float32)[None, :]
        w2 = _load_pw_weight(b_pw2_w, b_pw2_so, b_pw2_si, mid, mid_mask, co, co_mask)
        acc = _mma(d.to(w2.dtype), w2, acc, IEEE)
    yb = tl.maximum(acc + tl.load(b_pw2_b + co, mask=co_mask, other=0.0).to(tl.float32)[None, :], 0.0)
    store_tile(out, o_pix, (2 * co64 + 1) * o_sc, yb.to(out.dtype.element_ty), pix_mask, co_mask, OUT_PIXEL_MAJOR)


def _pw(weight: Tensor) -> tuple:
    """A 1x1 conv weight ``[C_out, C_in, 1, 1]`` as the kernels take it: the tensor and its two strides,
    read in place whatever its storage (the fused model stores it K-major)."""
    return weight, weight.stride(0), weight.stride(1)


def _dw(weight: Tensor) -> tuple:
    """A depthwise weight ``[C, 1, 3, 3]`` and its channel, row and column strides, read in place (the
    fused model stores it tap-major)."""
    return weight, weight.stride(0), weight.stride(2), weight.stride(3)


def _pointwise_relu(x: Tensor, weight: Tensor, bias: Tensor, out: Tensor, relu: bool = True) -> Tensor:
    """out = relu(x @ weight^T + bias) per pixel (no ReLU when not relu), written through out's strides."""
    n, c_in, h, w = x.shape
    c_out = weight.shape[0]
    m = n * h * w
    block_n = min(next_pow2(c_out), _max_block_n(x.dtype))

    def grid(meta):
        return (triton.cdiv(m, meta["BLOCK_P"]), triton.cdiv(c_out, block_n))

    _pointwise_relu_kernel[grid](
        x, *x.stride(), *_pw(weight), bias.contiguous(), out, *out.stride(),
        m, h * w, w, c_in, c_out, pixel_bucket(m),
        X_PIXEL_MAJOR=channels_innermost(x), OUT_PIXEL_MAJOR=channels_innermost(out),
        IEEE=x.dtype == torch.float32, RELU=relu, BLOCK_N=block_n,
    )  # fmt: skip
    return out


def _unit(out: Tensor, a: Tensor, a_params, b: Tensor, b_params, stride: int, h: int, w: int) -> None:
    """Launches the unit kernel; ``a_params`` None makes branch a the identity copy of ``a``."""
    n, c_out2, h_out, w_out = out.shape
    c_out = c_out2 // 2
    m = n * h_out * w_out
    b_pw1_w, b_pw1_b, b_dw_w, b_dw_b, b_pw2_w, b_pw2_b = b_params
    c_mid = b_pw1_w.shape[0]
    a_is_identity = a_params is None
    # The identity branch reads none of these: branch b's tensors stand in for them.
    a_dw_w, a_dw_b, a_pw_w, a_pw_b = (b_dw_w, b_dw_b, b_pw2_w, b_pw2_b) if a_is_identity else a_params

    block_n = min(next_pow2(c_out), _max_block_n(out.dtype, two_branches=not a_is_identity))

    def grid(meta):
        return (triton.cdiv(m, meta["BLOCK_P"]), triton.cdiv(c_out, block_n))

    _unit_kernel[grid](
        a, *a.stride(), a.shape[1], *_dw(a_dw_w), a_dw_b.contiguous(), *_pw(a_pw_w), a_pw_b.contiguous(),
        b, *b.stride(), b.shape[1], *_pw(b_pw1_w), b_pw1_b.contiguous(), *_dw(b_dw_w), b_dw_b.contiguous(),
        *_pw(b_pw2_w), b_pw2_b.contiguous(),
        out, *out.stride(),
        m, h, w, w_out, h_out * w_out, c_mid, c_out, pixel_bucket(m),
        STRIDE=stride, A_IS_IDENTITY=a_is_identity,
        A_PIXEL_MAJOR=channels_innermost(a), B_PIXEL_MAJOR=channels_innermost(b),
        OUT_PIXEL_MAJOR=channels_innermost(out), IEEE=out.dtype == torch.float32, BLOCK_N=block_n,
    )  # fmt: skip


@op_launcher("pointwise")
def pointwise(out: Tensor, x: Tensor, weight: Tensor, bias: Tensor, relu: bool) -> None:
    """conv1x1(x, weight) + bias, then ReLU when relu, in x's memory format (written there directly)."""
    _pointwise_relu(x, weight, bias, out, relu)


@op_launcher("split_unit")
def split_unit(out: Tensor, x, pw1_w, pw1_b, dw_w, dw_b, pw2_w, pw2_b) -> None:
    n, c, h, w = x.shape
    branch = c // 2
    _unit(out, x[:, :branch], None, x[:, branch:], (pw1_w, pw1_b, dw_w, dw_b, pw2_w, pw2_b), 1, h, w)


@op_launcher("down_unit")
def down_unit(out: Tensor, x, dw1_w, dw1_b, pw3_w, pw3_b, pw1_w, pw1_b, dw2_w, dw2_b, pw2_w, pw2_b) -> None:
    n, _, h, w = x.shape
    _unit(out, x, (dw1_w, dw1_b, pw3_w, pw3_b), x, (pw1_w, pw1_b, dw2_w, dw2_b, pw2_w, pw2_b), 2, h, w)
