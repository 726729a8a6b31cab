"""The op registry: one entry per op, from which everything else about the op follows.

An entry holds the op's schema (the string ``csrc/schema.h`` defines for the native library), its
documentation and Python signature, its contract check and output shape (built from contract.py's
rules, mirrored by csrc/contract.h), its reference (reference.py), the backends that implement it
besides the reference, where its Triton launcher is, whether it is differentiable, and how to build
its inputs from a case tuple. From the table follow:

- the typed wrappers of ops.py and ``ops.call`` (checks, backend choice, which implementation runs);
- backend availability (_backend_selection.py) and the Triton library's ops (triton/library.py);
- the fake kernels and autograd formulas, registered once per op for every namespace that carries
  it (``register_namespace``): ``shufflekernels`` (native), ``shufflekernels_triton`` and
  ``shufflekernels_cuda_emulated``;
- the test tables (tests/op_cases.py adds the shapes) and ``python -m shufflekernels check``.

tests/test_registry.py holds this table equal to what the dispatcher has. docs/design.md, "Adding an
op", lists what a new op touches.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from . import network_params
from . import reference as ref
from .contract import (
    check_activation,
    check_bool,
    check_dw_params,
    check_int,
    check_like,
    check_pw_params,
    check_rank,
    check_spatial,
    check_tensor,
    dw_out_size,
    fail,
    stem_out_size,
)
from .opspec import OpSpec, random_param
from .opspec import dw_params as _dw
from .opspec import pw_params as _pw
from .opspec import rand as _rand

# Namespaces whose ops carry the schemas below: the native library, its CUDA kernels emulated on host
# threads (csrc/cuda/host_emulation.cpp) and the Triton library (triton/library.py).
NATIVE_NS = "shufflekernels"
EMULATED_NS = "shufflekernels_cuda_emulated"
TRITON_NS = "shufflekernels_triton"

# --------------------------------------------------------------------------------------------------
# The ops: each one's check (the order csrc/contract.h runs them in), output shape and entry.
# --------------------------------------------------------------------------------------------------


def check_channel_shuffle(x: Tensor, groups: int) -> None:
    op = "channel_shuffle"
    check_activation(op, "x", x)
    check_int(op, "groups", groups)
    if groups < 1:
        fail(op, "groups", ">= 1", groups)
    if x.shape[1] % groups != 0:
        fail(op, "groups", f"a divisor of the channel count {x.shape[1]}", groups)


# The permutations are differentiable: the gradient of a shuffle with g groups is the inverse shuffle
# (the shuffle with C/g groups); that of shuffle_cat is the inverse shuffle split back into the inputs.
def _channel_shuffle_setup(ctx, inputs, output):
    ctx.inverse_groups = inputs[0].shape[1] // inputs[1]


def _channel_shuffle_backward(ns_ops, ctx, grad):
    return ns_ops.channel_shuffle(grad, ctx.inverse_groups), None


CHANNEL_SHUFFLE = OpSpec(
    name="channel_shuffle",
    schema="channel_shuffle(Tensor x, int groups) -> Tensor",
    doc="""Channel shuffle: ``out[n, j*g + i] = x[n, i*(C/g) + j]``.

    x: ``[N, C, H, W]`` with ``C % groups == 0``. Returns ``[N, C, H, W]`` in x's memory format.
    Differentiable: the backward is the inverse shuffle (``groups = C/g``).""",
    check=check_channel_shuffle,
    out_shape=lambda x, groups: tuple(x.shape),
    reference=ref.channel_shuffle,
    make_args=lambda case, gen: (_rand(gen, *case[:4]), case[4]),
    case_doc="(N, C, H, W, groups)",
    example_case=(2, 116, 14, 13, 2),
    kind="permutation",
    triton="permute:channel_shuffle",
    differentiable=True,
    backward=_channel_shuffle_backward,
    setup_context=_channel_shuffle_setup,
)


def check_shuffle_cat(tensors: Sequence[Tensor]) -> None:
    op = "shuffle_cat"
    if isinstance(tensors, Tensor) or not isinstance(tensors, (list, tuple)):
        fail(op, "tensors", "a list or tuple of tensors", type(tensors).__name__, TypeError)
    if len(tensors) == 0:
        fail(op, "tensors", "at least one tensor", "an empty sequence")
    check_activation(op, "tensors[0]", tensors[0])
    for i, t in enumerate(tensors[1:], start=1):
        check_like(op, f"tensors[{i}]", t, "tensors[0]", tensors[0], tensors[0].shape)


def _shuffle_cat_setup(ctx, inputs, output):
    ctx.channels = inputs[0][0].shape[1]


def _shuffle_cat_backward(ns_ops, ctx, grad):
    return (list(ns_ops.channel_shuffle(grad, ctx.channels).split(ctx.channels, 1)),)


SHUFFLE_CAT = OpSpec(
    name="shuffle_cat",
    schema="shuffle_cat(Tensor[] tensors) -> Tensor",
    doc="""``channel_shuffle(torch.cat(tensors, 1), len(tensors))`` in one pass: ``out[n, j*g + i] = tensors[i][n, j]``.

    tensors: g tensors ``[N, C, H, W]`` of one shape, dtype and device. Returns ``[N, g*C, H, W]`` in the
    first tensor's memory format. Differentiable.""",
    check=check_shuffle_cat,
    out_shape=lambda tensors: (tensors[0].shape[0], tensors[0].shape[1] * len(tensors), *tensors[0].shape[2:]),
    reference=ref.shuffle_cat,
    make_args=lambda case, gen: ([_rand(gen, *case[:4]) for _ in range(case[4])],),
    case_doc="(N, C per tensor, H, W, number of tensors)",
    example_case=(2, 58, 15, 14, 2),
    kind="permutation",
    triton="permute:shuffle_cat",
    differentiable=True,
    backward=_shuffle_cat_backward,
    setup_context=_shuffle_cat_setup,
)


def check_dwconv3x3(x: Tensor, weight: Tensor, bias: Tensor | None, stride: int, relu: bool) -> None:
    op = "dwconv3x3"
    check_activation(op, "x", x)
    check_int(op, "stride", stride)
    if stride not in (1, 2):
        fail(op, "stride", "1 or 2", stride)
    check_bool(op, "relu", relu)
    check_spatial(op, x)
    check_dw_params(op, ("weight", "bias"), x, weight, bias, x.shape[1])


DWCONV3X3 = OpSpec(
    name="dwconv3x3",
    schema="dwconv3x3(Tensor x, Tensor weight, Tensor? bias, int stride, bool relu) -> Tensor",
    doc="""Depthwise 3x3 convolution, padding 1, with an optional bias (a folded BatchNorm) and ReLU.

    x: ``[N, C, H, W]``; weight: ``[C, 1, 3, 3]``; bias: ``[C]`` or None; stride 1 or 2.
    Returns ``[N, C, (H - 1) // stride + 1, (W - 1) // stride + 1]`` in x's memory format.
    Inference-only: inputs that require grad under grad mode are refused.""",
    check=check_dwconv3x3,
    out_shape=lambda x, w, b, stride, relu: (
        *x.shape[:2],
        dw_out_size(x.shape[2], stride),
        dw_out_size(x.shape[3], stride),
    ),
    reference=lambda x, weight, bias, stride, relu: ref.dwconv3x3(x, weight, bias, stride=stride, relu=relu),
    make_args=lambda case, gen: (
        _rand(gen, *case[:4]),
        *(_dw(gen, case[1]) if case[6] else (_dw(gen, case[1])[0], None)),
        case[4],
        case[5],
    ),
    case_doc="(N, C, H, W, stride, relu, with_bias)",
    example_case=(2, 116, 14, 13, 2, True, True),
    kind="depthwise",
    triton="dwconv:dwconv3x3",
    keyword_only=("stride", "relu"),
    defaults={"bias": None, "stride": 1, "relu": False},
)


def check_pointwise(x: Tensor, weight: Tensor, bias: Tensor, relu: bool = True) -> None:
    op = "pointwise"
    check_activation(op, "x", x)
    check_bool(op, "relu", relu)
    check_tensor(op, "weight", weight)
    check_rank(op, "weight", weight, 4)
    check_pw_params(op, ("weight", "bias"), x, weight, bias, weight.shape[0], x.shape[1])
    if x.shape[1] == 0:  # torch's conv2d returns [N, 0, H, W] here, not the bias: no answer to match
        fail(op, "x", "at least one channel", 0)


POINTWISE = OpSpec(
    name="pointwise",
    schema="pointwise(Tensor x, Tensor weight, Tensor bias, bool relu=True) -> Tensor",
    doc="""A 1x1 convolution with a folded BatchNorm and, when ``relu``, a ReLU: ``relu(conv1x1(x, weight) + bias)``.
    Without ReLU on ``[N, C, 1, 1]`` input it is a linear layer (the classifier).

    x: ``[N, Cin, H, W]``; weight: ``[Cout, Cin, 1, 1]`` (any strides: the CPU engine reads a weight
    stored transposed in place); bias: ``[Cout]``. Returns ``[N, Cout, H, W]`` in x's memory format.
    Inference-only.""",
    check=check_pointwise,
    out_shape=lambda x, weight, bias, relu=True: (x.shape[0], weight.shape[0], *x.shape[2:]),
    reference=ref.pointwise,
    make_args=lambda case, gen: (_rand(gen, *case[:4]), *_pw(gen, case[4], case[1]), case[5]),
    case_doc="(N, C_in, H, W, C_out, relu)",
    example_case=(2, 464, 7, 7, 1024, True),
    kind="gemm",
    triton="units:pointwise",
    keyword_only=("relu",),
)


def check_stem(x: Tensor, weight: Tensor, bias: Tensor) -> None:
    op = "stem"
    check_activation(op, "x", x)
    check_spatial(op, x)
    check_tensor(op, "weight", weight)
    check_rank(op, "weight", weight, 4)
    check_like(op, "weight", weight, "x", x, (weight.shape[0], x.shape[1], 3, 3))
    check_like(op, "bias", bias, "x", x, (weight.shape[0],))


STEM = OpSpec(
    name="stem",
    schema="stem(Tensor x, Tensor weight, Tensor bias) -> Tensor",
    doc="""The network's stem: ``maxpool3x3/2(relu(conv3x3/2(x, weight) + bias))``, padding 1 for both.

    x: ``[N, Cin, H, W]``; weight: ``[Cout, Cin, 3, 3]``; bias: ``[Cout]`` (a folded BatchNorm). Returns
    ``[N, Cout, Hp, Wp]`` with ``Hc = (H - 1) // 2 + 1``, ``Hp = (Hc - 1) // 2 + 1`` (same for W), in x's
    memory format. The kernels compute it in one pass with no intermediate (the CPU's for float32; other
    dtypes on the CPU run ATen's conv, ReLU and max-pool).
    Inference-only.""",
    check=check_stem,
    out_shape=lambda x, weight, bias: (
        x.shape[0],
        weight.shape[0],
        stem_out_size(x.shape[2]),
        stem_out_size(x.shape[3]),
    ),
    reference=ref.stem,
    make_args=lambda case, gen: (
        _rand(gen, *case[:4]),
        *(random_param(gen, shape) for shape in network_params.shapes("stem", case[1], case[4])),
    ),
    case_doc="(N, C_in, H, W, C_out)",
    example_case=(2, 3, 64, 48, 24),
    kind="gemm",
    backends=frozenset({"native"}),  # not one of the fused families: no Triton kernel
)


def check_split_unit(x, pw1_weight, pw1_bias, dw_weight, dw_bias, pw2_weight, pw2_bias) -> None:
    op = "split_unit"
    check_activation(op, "x", x)
    if x.shape[1] % 2 != 0:
        fail(op, "x", "an even channel count", x.shape[1])
    check_spatial(op, x)
    cb = x.shape[1] // 2
    check_pw_params(op, ("pw1_weight", "pw1_bias"), x, pw1_weight, pw1_bias, cb, cb)
    check_dw_params(op, ("dw_weight", "dw_bias"), x, dw_weight, dw_bias, cb)
    check_pw_params(op, ("pw2_weight", "pw2_bias"), x, pw2_weight, pw2_bias, cb, cb)


SPLIT_UNIT = OpSpec(
    name="split_unit",
    schema=(
        "split_unit(Tensor x, Tensor pw1_weight, Tensor pw1_bias, Tensor dw_weight, Tensor dw_bias, "
        "Tensor pw2_weight, Tensor pw2_bias) -> Tensor"
    ),
    doc="""The stride-1 ShuffleNetV2 unit on folded parameters.

    ``x1, x2 = x.chunk(2, 1)``; ``y = relu(pw2(dw(relu(pw1(x2)))))``; returns ``shuffle_cat([x1, y])``.
    x: ``[N, 2B, H, W]``; pw weights ``[B, B, 1, 1]``, dw weight ``[B, 1, 3, 3]``, biases ``[B]``.
    Returns ``[N, 2B, H, W]`` in x's memory format. Inference-only.""",
    check=check_split_unit,
    out_shape=lambda x, *params: tuple(x.shape),
    reference=ref.split_unit,
    make_args=lambda case, gen: (
        _rand(gen, *case[:4]),
        *_pw(gen, case[1] // 2, case[1] // 2),
        *_dw(gen, case[1] // 2),
        *_pw(gen, case[1] // 2, case[1] // 2),
    ),
    case_doc="(N, C, H, W), C = 2 * branch channels",
    example_case=(2, 116, 14, 13),
    kind="gemm",
    triton="units:split_unit",
    cuda_auto="triton",
)


def check_down_unit(x, dw1_weight, dw1_bias, pw3_weight, pw3_bias, pw1_weight, pw1_bias, dw2_weight, dw2_bias,
                    pw2_weight, pw2_bias) -> None:  # fmt: skip
    op = "down_unit"
    check_activation(op, "x", x)
    check_spatial(op, x)
    check_tensor(op, "pw1_weight", pw1_weight)
    check_rank(op, "pw1_weight", pw1_weight, 4)
    c_in, cb = x.shape[1], pw1_weight.shape[0]
    check_dw_params(op, ("dw1_weight", "dw1_bias"), x, dw1_weight, dw1_bias, c_in)
    check_pw_params(op, ("pw3_weight", "pw3_bias"), x, pw3_weight, pw3_bias, cb, c_in)
    check_pw_params(op, ("pw1_weight", "pw1_bias"), x, pw1_weight, pw1_bias, cb, c_in)
    check_dw_params(op, ("dw2_weight", "dw2_bias"), x, dw2_weight, dw2_bias, cb)
    check_pw_params(op, ("pw2_weight", "pw2_bias"), x, pw2_weight, pw2_bias, cb, cb)


DOWN_UNIT = OpSpec(
    name="down_unit",
    schema=(
        "down_unit(Tensor x, Tensor dw1_weight, Tensor dw1_bias, Tensor pw3_weight, Tensor pw3_bias, "
        "Tensor pw1_weight, Tensor pw1_bias, Tensor dw2_weight, Tensor dw2_bias, Tensor pw2_weight, "
        "Tensor pw2_bias) -> Tensor"
    ),
    doc="""The stride-2 ShuffleNetV2 unit on folded parameters.

    ``b1 = relu(pw3(dw1_s2(x)))``, ``b2 = relu(pw2(dw2_s2(relu(pw1(x)))))``; returns ``shuffle_cat([b1, b2])``.
    x: ``[N, Cin, H, W]``; dw1 ``[Cin, 1, 3, 3]``/``[Cin]``; pw3, pw1 ``[B, Cin, 1, 1]``/``[B]``;
    dw2 ``[B, 1, 3, 3]``/``[B]``; pw2 ``[B, B, 1, 1]``/``[B]``. Returns ``[N, 2B, (H-1)//2+1, (W-1)//2+1]``
    in x's memory format. Inference-only.""",
    check=check_down_unit,
    out_shape=lambda x, *p: (x.shape[0], 2 * p[4].shape[0], dw_out_size(x.shape[2], 2), dw_out_size(x.shape[3], 2)),
    reference=ref.down_unit,
    make_args=lambda case, gen: (
        _rand(gen, *case[:4]),
        *_dw(gen, case[1]),
        *_pw(gen, case[4], case[1]),
        *_pw(gen, case[4], case[1]),
        *_dw(gen, case[4]),
        *_pw(gen, case[4], case[4]),
    ),
    case_doc="(N, C_in, H, W, branch channels)",
    example_case=(2, 116, 14, 13, 116),
    kind="gemm",
    triton="units:down_unit",
    cuda_auto="triton",
)


def check_shufflenet(x: Tensor, params: Sequence[Tensor], stage_repeats: Sequence[int]) -> None:
    op = "shufflenet"
    check_activation(op, "x", x)
    check_spatial(op, x)
    if isinstance(stage_repeats, (str, bytes)) or not isinstance(stage_repeats, (list, tuple)):
        fail(op, "stage_repeats", "a list of ints", type(stage_repeats).__name__, TypeError)
    for r in stage_repeats:
        check_int(op, "stage_repeats", r)
    if len(stage_repeats) == 0 or min(stage_repeats) < 1:
        fail(op, "stage_repeats", "at least one stage, each of at least one unit", list(stage_repeats))
    if isinstance(params, Tensor) or not isinstance(params, (list, tuple)):
        fail(op, "params", "a list or tuple of tensors", type(params).__name__, TypeError)
    count = network_params.count(stage_repeats)
    if len(params) != count:
        fail(op, "params", f"{count} tensors for stage_repeats {list(stage_repeats)}", len(params))

    def width(i: int) -> int:  # output channels of the weight at params[i], which sets the shapes after it
        check_tensor(op, f"params[{i}]", params[i])
        check_rank(op, f"params[{i}]", params[i], 4)
        return params[i].shape[0]

    c = x.shape[1]
    for section in network_params.layout(stage_repeats):
        at = network_params.WIDTH_FROM[section.kind]
        w = None if at is None else width(section.start + at)
        for k, shape in enumerate(network_params.shapes(section.kind, c, w)):
            check_like(op, f"params[{section.start + k}]", params[section.start + k], "x", x, shape)
        c = network_params.out_channels(section.kind, c, w)


def _shufflenet_args(case: tuple, gen: torch.Generator) -> tuple:
    n, h, w, c0, c1, c2, c3, c5, classes, *repeats = case
    widths = {"stem": c0, "conv5": c5, "classifier": classes}
    stage_branches = [c1 // 2, c2 // 2, c3 // 2]
    params, c = [], 3
    for section in network_params.layout(repeats):
        width = stage_branches[section.stage] if section.kind == "down_unit" else widths.get(section.kind)
        params += [random_param(gen, shape) for shape in network_params.shapes(section.kind, c, width)]
        c = network_params.out_channels(section.kind, c, width)
    return _rand(gen, n, 3, h, w), params, list(repeats)


SHUFFLENET = OpSpec(
    name="shufflenet",
    schema="shufflenet(Tensor x, Tensor[] params, int[] stage_repeats) -> Tensor",
    doc="""The whole ShuffleNetV2 forward on folded parameters, in one call: stem, the units of each stage,
    conv5, global mean and classifier (what FusedShuffleNetV2 runs).

    x: ``[N, 3, H, W]``; params: flat, as ``reference.shufflenet`` documents (conv1, every unit in order,
    conv5, the classifier as a 1x1 conv ``[classes, C5, 1, 1]``); stage_repeats: units per stage
    (``[4, 8, 4]``). Returns logits ``[N, classes]``. On the CPU it runs as one parallel region over a
    plan made once per set of weights. Inference-only.""",
    check=check_shufflenet,
    out_shape=lambda x, params, stage_repeats: (x.shape[0], params[-1].shape[0]),
    reference=ref.shufflenet,
    make_args=_shufflenet_args,
    case_doc="(N, H, W, C_stem, C_stage2, C_stage3, C_stage4, C_conv5, classes, repeats...)",
    example_case=(2, 64, 48, 24, 116, 232, 464, 1024, 1000, 4, 8, 4),
    kind="gemm",
    backends=frozenset({"native"}),
)

# Every entry above, in the order defined: a new entry needs no list of its own.
OPS: dict[str, OpSpec] = {value.name: value for value in list(globals().values()) if isinstance(value, OpSpec)}


# --------------------------------------------------------------------------------------------------
# Helpers over the table.
# --------------------------------------------------------------------------------------------------


def ops_with(backend: str) -> tuple[str, ...]:
    """The ops a backend implements ("native", "triton"; every op has a reference)."""
    return tuple(name for name, spec in OPS.items() if backend == "reference" or backend in spec.backends)


def to(args, device, dtype):
    """Arguments with every tensor (in lists too) moved to ``device`` and ``dtype``."""

    def move(a):
        if isinstance(a, Tensor):
            return a.to(device=device, dtype=dtype)
        if isinstance(a, list):
            return [move(t) for t in a]
        return a

    return tuple(move(a) for a in args)


def example_args(name: str, *, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32, seed: int = 0):
    """The op's example case (network-shaped), on ``device`` in ``dtype``."""
    return to(OPS[name].make_args(OPS[name].example_case, torch.Generator().manual_seed(seed)), device, dtype)


def defined_in(namespace: str, name: str) -> bool:
    try:
        torch._C._dispatch_find_schema_or_throw(f"{namespace}::{name}", "")
    except RuntimeError:
        return False
    return True


_registered: set[str] = set()


def register_namespace(namespace: str) -> None:
    """Registers the fake kernel of every op the namespace defines, and the autograd formula of the
    differentiable ones (each computing its gradient with the same namespace's ops). Idempotent."""
    if namespace in _registered:
        return
    _registered.add(namespace)
    ns_ops = getattr(torch.ops, namespace)
    for spec in OPS.values():
        if not defined_in(namespace, spec.name):
            continue
        qualname = f"{namespace}::{spec.name}"
        torch.library.register_fake(qualname, spec.fake)
        if spec.differentiable:

            def backward(ctx, grad, spec=spec):
                return spec.backward(ns_ops, ctx, grad)

            torch.library.register_autograd(qualname, backward, setup_context=spec.setup_context)
