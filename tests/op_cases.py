"""Shape tables of every op, with the reason each odd case is there.

A case is the op's case tuple (``registry.OPS[op].case_doc``); ``registry.OPS[op].make_args`` turns it
into arguments. ``CASES`` are for the native kernels (and their CUDA code emulated on host threads);
``INTERPRETER_CASES`` are small enough for Triton's interpreter, which runs every program in numpy; its
blocks (shufflekernels/triton, ``autotune_configs``) are small enough that these still span several
pixel tiles, channel blocks and K iterations.
"""

from __future__ import annotations

import torch

from shufflekernels import registry

from conftest import make_layout

CASES: dict[str, list[tuple[tuple, str]]] = {
    "channel_shuffle": [
        ((1, 116, 28, 28, 2), "x1.0 stage2 at 224x224"),
        ((2, 232, 14, 14, 2), "x1.0 stage3, batch 2"),
        ((1, 58, 7, 7, 2), "29 channels per group: not a multiple of any SIMD width"),
        ((3, 12, 5, 9, 3), "three groups, odd H and W"),
        ((2, 24, 4, 4, 4), "more than two groups"),
        ((1, 8, 1, 1, 2), "1x1 spatial: NCHW and channels_last are the same bytes"),
        ((1, 6, 3, 3, 1), "groups=1 is the identity"),
        ((1, 6, 3, 3, 6), "groups=C: one channel per group (a transpose)"),
        ((1, 40, 3, 5, 20), "more groups than one interleave launch reads on CUDA (16)"),
        ((0, 8, 4, 4, 2), "empty batch"),
    ],
    "shuffle_cat": [
        ((1, 58, 28, 28, 2), "x1.0 stage2 split unit: identity half + branch"),
        ((4, 116, 14, 14, 2), "x1.0 stage3, batch 4"),
        ((1, 29, 7, 7, 2), "odd channel count per tensor"),
        ((2, 5, 3, 7, 3), "three tensors, odd sizes"),
        ((1, 4, 1, 1, 2), "1x1 spatial"),
        ((1, 3, 2, 2, 1), "a single tensor is a copy"),
        ((1, 2, 3, 3, 17), "more tensors than one CUDA interleave launch reads"),
        ((0, 4, 3, 3, 2), "empty batch"),
    ],
    "dwconv3x3": [
        ((1, 116, 28, 28, 1, True, True), "x1.0 stage2 split unit"),
        ((1, 232, 14, 14, 1, False, True), "x1.0 stage3"),
        ((2, 58, 56, 56, 2, False, True), "x1.0 stage2 down unit branch 2"),
        ((1, 464, 7, 7, 1, True, False), "x1.0 stage4: few pixels, many channels; no bias"),
        ((3, 13, 9, 11, 1, True, True), "odd everything"),
        ((2, 7, 7, 9, 2, True, False), "stride 2 on odd H and W: last window overhangs the border"),
        ((1, 5, 1, 1, 1, False, False), "1x1 spatial: only the centre tap is inside"),
        ((1, 5, 1, 1, 2, True, True), "1x1 spatial at stride 2"),
        ((1, 3, 2, 3, 2, False, True), "smaller than the window"),
        ((1, 4, 1, 600, 1, True, True), "a row longer than the CPU kernel's column chunk (256)"),
        ((0, 8, 5, 5, 2, True, True), "empty batch"),
    ],
    "pointwise": [
        ((1, 464, 7, 7, 1024, True), "x1.0 conv5 at batch 1: few pixels, so the CPU splits output channels"),
        ((2, 58, 28, 28, 58, True), "a unit's first 1x1 at x1.0 stage2"),
        ((1, 24, 56, 56, 58, False), "the down unit's branch-2 1x1 at stage2 entry, no ReLU"),
        ((3, 5, 3, 7, 33, True), "one output channel past a 32-wide panel, odd sizes"),
        ((1, 7, 1, 1, 3, False), "one pixel; fewer output channels than one vector"),
        ((4, 1024, 1, 1, 1000, False), "the classifier on pooled features: [N, C, 1, 1] is dense in both layouts"),
        ((0, 8, 4, 4, 6, True), "empty batch"),
    ],
    "stem": [
        ((1, 3, 224, 224, 24), "the network's stem at 224x224"),
        ((2, 3, 33, 47, 24), "odd sizes: the last conv and pool windows overhang the border"),
        ((1, 3, 1, 1, 24), "one pixel: one conv output, one pooled output"),
        ((1, 4, 9, 6, 40), "other channel counts: 40 outputs span a partial second vector"),
        ((1, 2, 5, 5, 7), "fewer outputs than one vector"),
        ((1, 3, 9, 9, 16), "exactly one AVX-512 vector of outputs"),
        ((0, 3, 8, 8, 24), "empty batch"),
    ],
    "split_unit": [
        ((1, 116, 28, 28), "x1.0 stage2"),
        ((2, 232, 14, 14), "x1.0 stage3"),
        ((1, 48, 28, 28), "x0.5 stage2"),
        ((3, 10, 5, 7), "odd branch width (5) and odd sizes"),
        ((2, 32, 6, 6), "16 branch channels: the GEMM's panel is one AVX-512 vector"),
        ((1, 4, 1, 1), "1x1 spatial"),
        ((0, 8, 3, 3), "empty batch"),
    ],
    "down_unit": [
        ((1, 24, 56, 56, 58), "x1.0 stage2 entry"),
        ((2, 116, 28, 28, 116), "x1.0 stage3 entry"),
        ((1, 232, 14, 14, 232), "x1.0 stage4 entry"),
        ((2, 6, 7, 9, 5), "odd sizes at stride 2, odd branch width"),
        ((1, 3, 1, 1, 2), "1x1 spatial"),
        ((0, 4, 5, 5, 3), "empty batch"),
    ],
    # (N, H, W, C_stem, C_stage2, C_stage3, C_stage4, C_conv5, classes, repeats...)
    "shufflenet": [
        ((1, 64, 64, 24, 116, 232, 464, 1024, 1000, 4, 8, 4), "x1.0 at batch 1: every layer shared by the threads"),
        (
            (3, 40, 36, 24, 48, 96, 192, 256, 10, 2, 3, 2),
            "x0.5 widths, batch 3: whole images per thread, one left over",
        ),
        ((2, 33, 47, 16, 40, 80, 160, 64, 7, 1, 2, 1), "odd sizes: every stride-2 window overhangs; one-unit stages"),
        ((1, 9, 9, 8, 16, 32, 64, 32, 5, 1, 1, 1), "a 9x9 image: 3x3 after the stem, 1x1 from stage 3 on"),
        ((0, 16, 16, 8, 16, 32, 64, 32, 5, 1, 1, 1), "empty batch"),
    ],
}

# Under the interpreter: BLOCK_P 32, channel blocks 16, BLOCK_K 16, BLOCK_N at most 32.
INTERPRETER_CASES: dict[str, list[tuple[tuple, str]]] = {
    "channel_shuffle": [
        ((2, 8, 5, 7, 2), "odd H and W, two images in one pixel tile"),
        ((1, 40, 3, 3, 2), "40 channels: the last channel block is partial"),
        ((3, 12, 5, 9, 3), "three groups"),
        ((1, 8, 1, 1, 4), "1x1 spatial: NCHW and channels_last are the same bytes"),
        ((1, 6, 3, 3, 1), "groups=1 is the identity"),
        ((1, 6, 2, 3, 6), "groups=C: one channel per group"),
        ((0, 8, 4, 4, 2), "empty batch"),
    ],
    "shuffle_cat": [
        ((2, 5, 3, 7, 2), "the units' case, odd sizes and channel count"),
        ((1, 20, 3, 3, 2), "40 output channels: a partial channel block"),
        ((2, 3, 2, 3, 3), "three tensors"),
        ((1, 2, 3, 3, 6), "six tensors: two launches (at most 4 sources each), the second writing groups 4 and 5"),
        ((1, 4, 1, 1, 2), "1x1 spatial"),
        ((1, 3, 2, 2, 1), "a single tensor is a copy"),
        ((0, 4, 3, 3, 2), "empty batch"),
    ],
    "dwconv3x3": [
        ((2, 8, 7, 5, 1, True, True), "odd H and W; a pixel tile spans both images"),
        ((2, 7, 7, 9, 2, False, False), "stride 2 on odd sizes: the last window overhangs the border"),
        ((1, 40, 4, 6, 1, True, True), "40 channels: a partial channel block"),
        ((1, 5, 1, 1, 1, False, True), "1x1 spatial: only the centre tap is inside"),
        ((1, 3, 2, 3, 2, True, False), "smaller than the window, at stride 2"),
        ((0, 8, 5, 5, 2, True, True), "empty batch"),
    ],
    "pointwise": [
        ((2, 8, 5, 7, 40, True), "two output-channel blocks, odd sizes across 2 images"),
        ((1, 20, 3, 3, 5, False), "K not a multiple of BLOCK_K; fewer outputs than one block"),
        ((0, 4, 3, 3, 6, True), "empty batch"),
    ],
    "split_unit": [
        ((2, 16, 5, 7), "branch of 8 < the 16 rows tl.dot needs: padded blocks; odd sizes across 2 images"),
        ((1, 48, 4, 4), "x0.5 stage2 branch (24): one full and one partial K block"),
        ((1, 80, 3, 5), "branch of 40: two output-channel blocks, three K blocks"),
        ((1, 4, 1, 1), "1x1 spatial: every depthwise tap but the centre is padding"),
        ((0, 8, 3, 3), "empty batch"),
    ],
    "down_unit": [
        ((2, 8, 7, 5, 8), "odd sizes at stride 2, two images per pixel tile"),
        ((1, 24, 6, 6, 24), "x0.5 stage2 entry (24 -> 2 x 24)"),
        ((1, 20, 5, 4, 40), "branch of 40 from 20 inputs: K and N blocks differ per branch"),
        ((1, 3, 1, 1, 2), "1x1 spatial; 3 input channels"),
        ((0, 4, 5, 5, 3), "empty batch"),
    ],
}


def params(table: dict[str, list[tuple[tuple, str]]], ops) -> list:
    """(op, case) pytest params for the ops given, each case's reason as its id suffix."""
    import pytest

    return [pytest.param(op, case, id=f"{op}-{case}") for op in ops for case, _why in table[op]]


def make_inputs(op: str, case: tuple, *, dtype: torch.dtype, device: str, layout: str, seed: int = 0) -> tuple:
    """The op's arguments for a case: float32 values rounded once to ``dtype``, on ``device``, with the
    activation (every tensor of shuffle_cat's list) in ``layout`` (conftest.make_layout)."""
    spec = registry.OPS[op]
    args = registry.to(spec.make_args(case, torch.Generator().manual_seed(seed)), device, dtype)
    first = args[0]
    if isinstance(first, list):
        first = [make_layout(t, layout) for t in first]
    else:
        first = make_layout(first, layout)
    return (first, *args[1:])
