"""GPU benchmark of the fused model: native CUDA and Triton against eager, torch.compile and CUDA-graph
replay, at several batches and dtypes. Writes a markdown table and JSON into the output folder.

    python benchmarks/gpu_bench.py --out DIR [--batches 1,64,256] [--dtypes float32,float16]

Timing: CUDA events around `iters` forwards, `rounds` rounds with the providers interleaved, medians.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

import torch

import shufflekernels as sk
from shufflekernels.__main__ import demo_model
from shufflekernels.cuda_graphs import graphed


def providers(width: float, dtype: torch.dtype, example: torch.Tensor, with_compile: bool) -> dict[str, Callable]:
    model = demo_model(width).to("cuda", dtype)
    model_cl = demo_model(width).to("cuda", dtype).to(memory_format=torch.channels_last)
    out: dict[str, Callable] = {"eager": model, "eager channels_last": model_cl}
    if with_compile:
        # Default mode: max-autotune would spend minutes per shape and dtype.
        out["torch.compile"] = torch.compile(demo_model(width).to("cuda", dtype))
    out["eager + CUDA graph"] = graphed(model_cl, example.contiguous(memory_format=torch.channels_last))
    report = sk.backends()
    if report["native-cuda"]["usable"]:
        fused = sk.FusedShuffleNetV2.from_reference(demo_model(width), backend="native").to("cuda", dtype)
        out["fused native"] = fused
        out["fused native + CUDA graph"] = graphed(fused, example)
    if report["triton"]["usable"]:
        fused_t = sk.FusedShuffleNetV2.from_reference(demo_model(width), backend="triton").to("cuda", dtype)
        out["fused triton"] = fused_t
        out["fused triton + CUDA graph"] = graphed(fused_t, example)
    return out


def time_providers(fns: dict[str, Callable], x: torch.Tensor, rounds: int, iters: int) -> dict[str, float]:
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            for _ in range(iters):
                fn(x)
            end.record()
            end.synchronize()
            times[name].append(start.elapsed_time(end) / iters)
    return {name: statistics.median(t) for name, t in times.items()}


def _write(out_dir: Path, width: float, rows: list[dict]) -> None:
    device = torch.cuda.get_device_name()
    (out_dir / "gpu_bench.json").write_text(json.dumps({"device": device, "torch": torch.__version__, "results": rows}, indent=2))
    lines = [f"# ShuffleNetV2 x{width} on {device} (torch {torch.__version__})", "",
             "| dtype | batch | provider | ms | img/s | vs eager | rel err vs fp32 |", "|---|---|---|---|---|---|---|"]
    lines += [f"| {r['dtype']} | {r['batch']} | {r['provider']} | {r['median_ms']:.3f} | {r['img_per_s']:.0f} | "
              f"{r['speedup_vs_eager']:.2f}x | {r['rel_err_vs_fp32_eager']:.1e} |" for r in rows]
    (out_dir / "gpu_bench.md").write_text("\n".join(lines) + "\n")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True)
    p.add_argument("--width", type=float, default=1.0)
    p.add_argument("--batches", default="1,64,256")
    p.add_argument("--dtypes", default="float32,float16")
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--iters", type=int, default=10)
    p.add_argument("--no-compile", action="store_true")
    args = p.parse_args()
    if not torch.cuda.is_available():
        print("gpu_bench: no CUDA device visible to torch; nothing to measure")
        return 0
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    with torch.inference_mode():
        for dtype_name in args.dtypes.split(","):
            dtype = getattr(torch, dtype_name)
            for batch in map(int, args.batches.split(",")):
                t0 = time.time()
                x = torch.randn(batch, 3, 224, 224, device="cuda", dtype=dtype)
                reference = demo_model(args.width).cuda()(x.float()).float()
                fns = providers(args.width, dtype, x, with_compile=not args.no_compile)
                errors = {}
                for name, fn in fns.items():
                    got = fn(x).float()
                    errors[name] = ((got - reference).norm() / reference.norm()).item()
                medians = time_providers(fns, x, args.rounds, args.iters)
                base = medians["eager"]
                for name, ms in medians.items():
                    rows.append({"provider": name, "dtype": dtype_name, "batch": batch, "width": args.width,
                                 "median_ms": ms, "img_per_s": batch / ms * 1e3, "speedup_vs_eager": base / ms,
                                 "rel_err_vs_fp32_eager": errors[name]})
                print(f"{dtype_name} batch {batch}: {len(fns)} providers in {time.time() - t0:.0f} s", flush=True)
                _write(out_dir, args.width, rows)  # after every case, so a time limit keeps what was measured
    print((out_dir / "gpu_bench.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
