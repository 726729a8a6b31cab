"""What every Triton kernel here shares: the tile addressing model, autotune configs, launch helpers.

Addressing model. An activation ``[N, C, H, W]`` is addressed through its four strides, so any strided
tensor (a channel slice, a permuted view, an expanded one) is read as it is, without a copy. A tile is
``[pixels, channels]``; the pixel index ``m`` runs over ``(n, h, w)`` flattened, so one tile may span
image borders and the 7x7 maps of a batch still fill tiles of 64 pixels.

Per layout, decided once by the launcher and passed as the ``*_PIXEL_MAJOR`` constexprs:
- channels innermost in memory (channels_last): the tile is loaded as stored, ``[P, K]``; Triton
  specialises the channel stride 1, so the channel axis is contiguous and vectorised;
- planes innermost (NCHW): the tile is loaded ``[K, P]``, so that consecutive threads read consecutive
  pixels of one plane, and transposed in registers.
Either way, the code between load and store sees ``[P, K]``.

Offsets are computed in int64: ``n * stride_n`` passes 2**31 for large batches.

Accumulators start from ``tl.full(.., 0.0, ..)`` rather than ``tl.zeros``: tl.zeros is itself a
``triton.jit`` function, bound to the compiler or the interpreter when triton is first imported, so it
fails under TRITON_INTERPRET=1 set after that import (as a test module does); tl.full is a builtin.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import os

import torch
import triton
import triton.language as tl
from torch import Tensor

from .. import contract, registry
from .._backend_selection import interpreter_enabled, triton_device_refusal


def interpreting() -> bool:
    """Whether the kernels run under Triton's interpreter (TRITON_INTERPRET=1)."""
    return interpreter_enabled()


def check_device(op: str, t: Tensor) -> None:
    """CPU tensors run only under the interpreter. ops.py asks whether the backend is usable on this
    machine, which a CUDA device makes true, so a CPU tensor can still arrive here (through torch.ops)."""
    refusal = triton_device_refusal(op, t.device)
    if refusal:
        raise RuntimeError(refusal)


def op_launcher(op: str):
    """Makes ``body(out, *args)`` the op's launcher, ``(*args) -> out`` in schema order, around the
    preamble every Triton op shares: the device check, the output allocated as the contract lays it out
    (the registry's out_shape, with the strides the fake kernel gives it), an empty output returned
    before any launch, and the launch on the input's device."""
    spec = registry.OPS[op]

    def wrap(body):
        @functools.wraps(body)
        def launch(*args):
            first = args[0][0] if isinstance(args[0], (list, tuple)) else args[0]
            check_device(op, first)
            out = contract.empty_output(first, spec.out_shape(*args))
            if out.numel() == 0:
                return out
            with device_guard(first):
                body(out, *args)
            return out

        return launch

    return wrap


def registered_launcher(op: str):
    """The launcher the registry names for an op (its ``triton`` entry, "module:function")."""
    spec = registry.OPS[op]
    return getattr(importlib.import_module(f"{__package__}.{spec.triton_module}"), spec.triton_function)


def autotune_configs(tuned: list[triton.Config], interpreted: triton.Config) -> list[triton.Config]:
    """``tuned`` on a GPU; the single ``interpreted`` config under the interpreter, where timing a config
    means running it in numpy: with one config the autotuner does not benchmark at all.

    ``SK_TRITON_AUTOTUNE=0`` (read when the kernels are defined) keeps only the first tuned config: one
    compile per specialisation and no timing, for test runs where tuning would cost more than the tests.
    """
    if interpreting():
        return [interpreted]
    return tuned[:1] if os.environ.get("SK_TRITON_AUTOTUNE") == "0" else tuned


# Int arguments that only enter pixel index arithmetic and pixel masks. Triton's JIT would specialise
# each int argument on its divisibility by 16 (and on being 1) and compile a binary per combination,
# i.e. per resolution and batch size; here that buys nothing, since pixel coordinates come out of
# divisions and no pixel-axis access can vectorise. Channel counts and strides stay specialised: they
# decide whether a channels_last row loads as vectors. PIXEL_BUCKET is the autotune key's pixel count.
PIXEL_ARGS = ["M", "H", "W", "HW", "W_OUT", "HW_OUT", "PIXEL_BUCKET"]


def pixel_bucket(m: int) -> int:
    """The pixel count as the autotuners key it: the next power of two, up to 2**16 (past that the grid
    fills an H200 several times over with any tile, so the best config no longer moves). Batch 1 at
    7x7 and batch 256 at 56x56 want different tiles; a key on channels alone would tune once for both."""
    return min(triton.next_power_of_2(max(m, 1)), 1 << 16)


def next_pow2(n: int, at_least: int = 16) -> int:
    """tl.dot and tl.arange want power-of-two blocks, and tl.dot at least 16 per dimension."""
    return max(at_least, triton.next_power_of_2(max(n, 1)))


def channels_innermost(t: Tensor) -> bool:
    """Whether tiles of ``t`` should be pixel-major: its channel stride is below its column stride."""
    return t.stride(1) < t.stride(3)


def device_guard(t: Tensor):
    """Triton launches on the current CUDA device; make it the tensor's one."""
    return torch.cuda.device(t.device) if t.device.type == "cuda" else contextlib.nullcontext()


@triton.jit
def pixel_coords(m, HW, W):
    """Flat pixel index -> (n, h, w), each int64 so stride products do not overflow."""
    n = m // HW
    r = m - n * HW
    h = r // W
    w = r - h * W
    return n.to(tl.int64), h.to(tl.int64), w.to(tl.int64)


@triton.jit
def load_tile(ptr, pix_off, ch_off, pix_mask, ch_mask, PIXEL_MAJOR: tl.constexpr):
    """The ``[P, K]`` tile at ``ptr + pix_off[p] + ch_off[k]``, zero where masked."""
    if PIXEL_MAJOR:
        tile = tl.load(ptr + pix_off[:, None] + ch_off[None, :], mask=pix_mask[:, None] & ch_mask[None, :], other=0.0)
    else:
        tile = tl.trans(
            tl.load(ptr + ch_off[:, None] + pix_off[None, :], mask=ch_mask[:, None] & pix_mask[None, :], other=0.0)
        )
    return tile


@triton.jit
def store_tile(ptr, pix_off, ch_off, tile, pix_mask, ch_mask, PIXEL_MAJOR: tl.constexpr):
    """Stores the ``[P, K]`` tile at ``ptr + pix_off[p] + ch_off[k]`` where not masked."""
    if PIXEL_MAJOR:
        tl.store(ptr + pix_off[:, None] + ch_off[None, :], tile, mask=pix_mask[:, None] & ch_mask[None, :])
    else:
        tl.store(ptr + ch_off[:, None] + pix_off[None, :], tl.trans(tile), mask=ch_mask[:, None] & pix_mask[None, :])


@triton.jit
def tap_pixels(base, s_h, s_w, ho, wo, H, W, pix_mask, dy, dx, STRIDE: tl.constexpr):
    """Where tap (dy, dx) of a 3x3 window (padding 1) of output pixels (ho, wo) reads: the pixels' offsets
    from ``base`` and whether each lies inside the image (outside is the padding)."""
    hi = ho * STRIDE + (dy - 1)
    wi = wo * STRIDE + (dx - 1)
    ok = pix_mask & (hi >= 0) & (hi < H) & (wi >= 0) & (wi < W)
    return base + hi * s_h + wi * s_w, ok


@triton.jit
def _dw3x3_tap(
    acc, src, base, s_h, s_w, ho, wo, H, W, pix_mask, dy, dx,
    ch, ch_off, ch_mask, dw_w, w_sc, w_sh, w_sw, STRIDE: tl.constexpr, SRC_PIXEL_MAJOR: tl.constexpr,
):  # fmt: skip
    """acc + tap (dy, dx) of the depthwise conv: the tile shifted in space, zero outside the image."""
    pix, ok = tap_pixels(base, s_h, s_w, ho, wo, H, W, pix_mask, dy, dx, STRIDE)
    x = load_tile(src, pix, ch_off, ok, ch_mask, SRC_PIXEL_MAJOR).to(tl.float32)
    tap = tl.load(dw_w + ch * w_sc + (dy * w_sh + dx * w_sw), mask=ch_mask, other=0.0).to(tl.float32)
    return acc + x * tap[None, :]


@triton.jit
def dw3x3_tile(
    src, s_n, s_h, s_w, n, ho, wo, H, W, pix_mask,
    ch, ch_off, ch_mask, dw_w, w_sc, w_sh, w_sw,
    STRIDE: tl.constexpr, SRC_PIXEL_MAJOR: tl.constexpr, BLOCK_P: tl.constexpr, BLOCK_K: tl.constexpr,
    ROLLED: tl.constexpr = False,
):  # fmt: skip
    """Depthwise 3x3 (padding 1) of channels ``ch`` at output pixels ``(n, ho, wo)``: ``[P, K]`` float32.
    The weight ``[C, 1, 3, 3]`` is read through its strides ``w_sc, w_sh, w_sw`` (tap-major in the model).

    The nine taps are nine loads of the same tile shifted in space; neighbouring tiles read the same
    lines, which L1/L2 serve. Out-of-image taps are masked to zero, which is the padding.

    ROLLED runs the taps as a loop rather than unrolled: for a caller that calls this inside a loop of
    its own, where the unrolled taps' pixel addresses and masks (invariant in that loop) would be
    hoisted out of it and held, nine sets at once.
    """
    acc = tl.full((BLOCK_P, BLOCK_K), 0.0, tl.float32)
    base = n * s_n
    if ROLLED:
        for tap in range(9):
            dy = tap // 3
            acc = _dw3x3_tap(acc, src, base, s_h, s_w, ho, wo, H, W, pix_mask, dy, tap - 3 * dy,
                             ch, ch_off, ch_mask, dw_w, w_sc, w_sh, w_sw, STRIDE, SRC_PIXEL_MAJOR)  # fmt: skip
    else:
        for dy in tl.static_range(3):
            for dx in tl.static_range(3):
                acc = _dw3x3_tap(acc, src, base, s_h, s_w, ho, wo, H, W, pix_mask, dy, dx,
                                 ch, ch_off, ch_mask, dw_w, w_sc, w_sh, w_sw, STRIDE, SRC_PIXEL_MAJOR)  # fmt: skip
    return acc
