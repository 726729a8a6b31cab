"""CUDA-graph replay of an inference callable: one launch for a whole forward, which is what batch-1
latency on a GPU needs (eager ShuffleNetV2 is launch-bound)."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

__all__ = ["graphed"]


def graphed(fn: Callable[[Tensor], Tensor], example: Tensor, warmup: int = 3) -> Callable[[Tensor], Tensor]:
    """``fn`` captured once in a CUDA graph on ``example``'s shape, dtype and device.

    The returned callable copies its input into the captured input buffer and replays the graph; the
    tensor it returns is the graph's output buffer, overwritten by the next call (clone it to keep it).
    Call under ``torch.inference_mode()`` or ``torch.no_grad()``.
    """
    static_x = example.clone()
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):  # capture requires the warm-up on a side stream
        for _ in range(warmup):
            fn(static_x)
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        static_out = fn(static_x)

    def replay(x: Tensor) -> Tensor:
        static_x.copy_(x)
        graph.replay()
        return static_out

    return replay
