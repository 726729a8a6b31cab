"""The model on CUDA: parity per dtype, CUDA graph replay, torch.compile. Skipped without a GPU (the
per-op CUDA parity tables live in test_ops.py, parametrised over devices)."""

from __future__ import annotations

import pytest
import torch

import shufflekernels as sk
from shufflekernels import tolerances
from shufflekernels.cuda_graphs import graphed

from conftest import requires_cuda
from test_model import assert_logits_match, reference_model

pytestmark = requires_cuda


@pytest.mark.parametrize("dtype", list(tolerances.MODEL), ids=str)
@pytest.mark.parametrize("layout", ["nchw", "nhwc"])
@pytest.mark.parametrize("width", [0.5, 1.0, 1.5, 2.0])
def test_model_parity_cuda(width, layout, dtype):
    model = reference_model(width)
    x = torch.randn(4, 3, 224, 224)
    with torch.inference_mode():
        expected = model(x)
        fused = sk.FusedShuffleNetV2.from_reference(model, backend="native").to("cuda", dtype)
        xc = x.to("cuda", dtype)
        if layout == "nhwc":
            xc = xc.contiguous(memory_format=torch.channels_last)
        got = fused(xc).float().cpu()
    if dtype == torch.float32:
        # TF32 is off here (conftest.exact_float32_references); fp32 parity is as tight as on the CPU.
        assert_logits_match(got, expected)
    else:
        err = tolerances.relative_error(got, expected)
        assert err <= tolerances.MODEL[dtype], f"relative error {err:.2e}"


def test_cuda_graph_replay():
    model = reference_model(1.0)
    fused = sk.FusedShuffleNetV2.from_reference(model, backend="native").cuda()
    with torch.inference_mode():
        replay = graphed(fused, torch.randn(8, 3, 224, 224, device="cuda"))
        for seed in range(3):
            x = torch.randn(8, 3, 224, 224, generator=torch.Generator().manual_seed(seed))
            assert_logits_match(replay(x.cuda()).cpu(), model(x))


def test_compile_cuda():
    torch._dynamo.reset()
    model = reference_model(0.5)
    fused = sk.FusedShuffleNetV2.from_reference(model, backend="native").cuda()
    x = torch.randn(2, 3, 128, 128)
    with torch.inference_mode():
        compiled = torch.compile(fused, fullgraph=True)
        assert_logits_match(compiled(x.cuda()).cpu(), model(x))


def test_ops_follow_the_current_stream_and_device():
    x = torch.randn(2, 8, 16, 16, device="cuda")
    side = torch.cuda.Stream()
    # x is written by a kernel on the current stream: without this wait the op may read it unfinished.
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        out = sk.ops.channel_shuffle(x, 2, backend="native")
    # out is read back on the current stream, which must in turn wait for the side stream's kernel.
    torch.cuda.current_stream().wait_stream(side)
    assert out.device == x.device
    assert torch.equal(out.cpu(), sk.reference.channel_shuffle(x.cpu(), 2))
