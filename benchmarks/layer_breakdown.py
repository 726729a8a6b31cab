"""Where the time goes: ShuffleNetV2 layer by layer, reference eager vs FusedShuffleNetV2, CPU.

    python benchmarks/layer_breakdown.py [--width 1.0] [--batch 1] [--threads 2] [--json FILE]

Each layer is timed alone on the input it sees inside the network (captured from one forward), in
rounds that alternate between the two models; medians. The fused model's layers are its stem, its
units and its head, matched one to one with the reference's conv1+maxpool, units and conv5+pool+fc.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))

import shufflekernels as sk  # noqa: E402

from providers import randomized_model  # noqa: E402


def reference_layers(model) -> list[tuple[str, Callable]]:
    layers = [("stem (conv1+maxpool)", lambda x: model.maxpool(model.conv1(x)))]
    for stage in ("stage2", "stage3", "stage4"):
        for i, unit in enumerate(getattr(model, stage)):
            layers.append((f"{stage}.{i} {'down' if unit.stride == 2 else 'split'}", unit))
    layers.append(("head (conv5+pool+fc)", lambda x: model.fc(model.conv5(x).mean([2, 3]))))
    return layers


def fused_layers(fused: sk.FusedShuffleNetV2) -> list[tuple[str, Callable]]:
    def stem(x):
        return torch.ops.shufflekernels.stem(
            x.contiguous(memory_format=torch.channels_last), fused.conv1_weight, fused.conv1_bias
        )

    def head(x):
        x = torch.ops.shufflekernels.pointwise(x, fused.conv5_weight, fused.conv5_bias)
        return torch.ops.shufflekernels.pointwise(
            x.mean((2, 3), keepdim=True), fused.fc_weight, fused.fc_bias, False
        ).flatten(1)

    return [("stem", stem), *((f"unit {i}", unit) for i, unit in enumerate(fused.units)), ("head", head)]


def layer_inputs(layers: list[tuple[str, Callable]], x: torch.Tensor) -> list[torch.Tensor]:
    inputs = []
    for _, fn in layers:
        inputs.append(x)
        x = fn(x)
    return inputs


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--width", type=float, default=1.0)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=15)
    p.add_argument("--iters", type=int, default=5)
    p.add_argument("--json")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    model = randomized_model(args.width)
    fused = sk.FusedShuffleNetV2.from_reference(model, backend="native")
    x = torch.randn(args.batch, 3, 224, 224)
    with torch.inference_mode():
        ref_layers, fus_layers = reference_layers(model), fused_layers(fused)
        assert len(ref_layers) == len(fus_layers)
        ref_in, fus_in = layer_inputs(ref_layers, x), layer_inputs(fus_layers, x)
        times = {("ref", i): [] for i in range(len(ref_layers))} | {("fused", i): [] for i in range(len(ref_layers))}
        for _ in range(args.rounds):
            for i in range(len(ref_layers)):
                for kind, layers, inputs in (("ref", ref_layers, ref_in), ("fused", fus_layers, fus_in)):
                    fn, inp = layers[i][1], inputs[i]
                    fn(inp)
                    t0 = time.perf_counter()
                    for _ in range(args.iters):
                        fn(inp)
                    times[(kind, i)].append((time.perf_counter() - t0) / args.iters * 1e3)
    rows = []
    for i, (name, _) in enumerate(ref_layers):
        r, f = statistics.median(times[("ref", i)]), statistics.median(times[("fused", i)])
        rows.append({"layer": name, "shape": list(ref_in[i].shape), "reference_ms": r, "fused_ms": f})
    total_r, total_f = sum(r["reference_ms"] for r in rows), sum(r["fused_ms"] for r in rows)
    print(
        f"x{args.width} batch {args.batch}, {args.threads} threads; each layer alone, medians of {args.rounds} rounds"
    )
    print(f"{'layer':24} {'input':20} {'reference ms':>12} {'fused ms':>9} {'speed-up':>8} {'share of fused':>14}")
    for r in rows:
        print(
            f"{r['layer']:24} {str(tuple(r['shape'][1:])):20} {r['reference_ms']:12.3f} {r['fused_ms']:9.3f} "
            f"{r['reference_ms'] / r['fused_ms']:7.2f}x {100 * r['fused_ms'] / total_f:13.1f}%"
        )
    print(f"{'total':45} {total_r:12.3f} {total_f:9.3f} {total_r / total_f:7.2f}x")
    if args.json:
        Path(args.json).write_text(
            json.dumps({"width": args.width, "batch": args.batch, "threads": args.threads, "layers": rows}, indent=2)
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
