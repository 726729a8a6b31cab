"""The CPU engine's GEMM on the network's 1x1 shapes against MKL (torch.mm) and the FMA peak, per ISA.

    python benchmarks/gemm_efficiency.py [--width 1.0] [--batch 1] [--threads 2] [--isas avx512,avx2]

For each instruction set, one worker process runs with the engine capped to it (SK_ENGINE_ISA) and MKL
capped the same way (MKL_ENABLE_INSTRUCTIONS), so both sides use the same vector width. In the worker,
every shape is timed for the engine (``torch.ops.shufflekernels.pointwise`` on channels_last input with
the weight stored K-major and declared for panel packing, as the fused model keeps and declares it:
bias and ReLU included) and for MKL
(``torch.mm`` of the same [pixels, Cin] x [Cin, Cout] matrices, no bias), rounds interleaved, medians.
The peak is the ISA's float32 FLOPs per cycle and core at the clock /proc/cpuinfo reports (a virtual
machine reports its nominal clock, not the boost one: pass --ghz to use another): two 256-bit FMA
pipes give 32 for AVX2 on Zen 3, 4 and 5 and for AVX-512 on Zen 3/4 (which run 512-bit FMAs as two
halves); Zen 5 has 512-bit pipes, 64 for AVX-512. Other CPUs: pass --flops-per-cycle.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

MKL_CAP = {"avx512": "AVX512", "avx2": "AVX2", "baseline": "SSE4_2"}


def network_shapes(width: float, batch: int) -> list[tuple[str, int, int, int]]:
    """(layer, M = pixels, K = Cin, N = Cout) of every distinct 1x1 conv of the network at 224x224."""
    from shufflekernels import reference as ref

    _, channels = ref.WIDTHS[width]
    shapes, hw, c_in = [], 56, channels[0]
    for stage, c_out in zip(("stage2", "stage3", "stage4"), channels[1:4]):
        b = c_out // 2
        shapes.append((f"{stage} down pw1/pw3", batch * hw * hw, c_in, b))
        hw = (hw - 1) // 2 + 1
        shapes.append((f"{stage} down pw2, split pw1/pw2", batch * hw * hw, b, b))
        c_in = c_out
    shapes.append(("conv5", batch * hw * hw, c_in, channels[4]))
    return shapes


def worker(args) -> None:
    import torch

    import shufflekernels as sk

    torch.set_num_threads(args.threads)
    rows = []
    g = torch.Generator().manual_seed(0)
    for name, m, k, n in network_shapes(args.width, args.batch):
        x = torch.randn(1, k, 1, m, generator=g).contiguous(memory_format=torch.channels_last)
        w = (torch.randn(n, k, 1, 1, generator=g) / k**0.5).reshape(n, k).t().contiguous().t().reshape(n, k, 1, 1)
        torch.ops.shufflekernels.prepack([w])  # as FusedShuffleNetV2 declares its 1x1 weights
        bias = torch.randn(n, generator=g)
        a, b = x.permute(0, 2, 3, 1).reshape(m, k), w.reshape(n, k).t()
        engine = lambda: torch.ops.shufflekernels.pointwise(x, w, bias, True)  # noqa: E731
        mkl = lambda: torch.mm(a, b)  # noqa: E731
        torch.testing.assert_close(
            engine().permute(0, 2, 3, 1).reshape(m, n), torch.relu(mkl() + bias), atol=1e-4, rtol=1e-4
        )
        iters = max(1, int(2e7 // (m * k * n)))
        times = {"engine": [], "mkl": []}
        for _ in range(args.rounds):
            for label, fn in (("engine", engine), ("mkl", mkl)):
                t0 = time.perf_counter()
                for _ in range(iters):
                    fn()
                times[label].append((time.perf_counter() - t0) / iters)
        flops = 2.0 * m * k * n
        rows.append({"layer": name, "M": m, "K": k, "N": n,
                     **{f"{label}_gflops": flops / statistics.median(t) / 1e9 for label, t in times.items()}})  # fmt: skip
    print(json.dumps({"isa": sk.build_info()["cpu_engine_isa"], "rows": rows}))


def cpu_ghz() -> float:
    try:
        mhz = [float(line.split(":")[1]) for line in open("/proc/cpuinfo") if line.startswith("cpu MHz")]
        return max(mhz) / 1000
    except (OSError, ValueError):
        return float("nan")


def flops_per_cycle(isa: str) -> float:
    """float32 FLOPs per cycle and core at full FMA throughput, for the AMD families this runs on."""
    try:
        family = next(int(line.split(":")[1]) for line in open("/proc/cpuinfo") if line.startswith("cpu family"))
        vendor = next(line.split(":")[1].strip() for line in open("/proc/cpuinfo") if line.startswith("vendor_id"))
    except (OSError, StopIteration, ValueError):
        return float("nan")
    if vendor != "AuthenticAMD" or family < 25:
        return float("nan")
    return 64.0 if isa == "avx512" and family >= 26 else 32.0 if isa != "baseline" else 16.0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--width", type=float, default=1.0)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=9)
    p.add_argument("--isas", default="avx512,avx2")
    p.add_argument("--ghz", type=float, help="the clock for the peak (default: /proc/cpuinfo's)")
    p.add_argument("--flops-per-cycle", type=float, help="float32 FLOPs per cycle and core (default: by CPU family)")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        worker(args)
        return 0
    flags = open("/proc/cpuinfo").read().split() if os.path.exists("/proc/cpuinfo") else []
    model = next(
        (line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), "?"
    )
    ghz = args.ghz or cpu_ghz()
    print(
        f"CPU: {model}, avx512f: {'avx512f' in flags}, {args.threads} threads at {ghz:.2f} GHz; x{args.width}, batch {args.batch}"
    )
    for isa in args.isas.split(","):
        env = {**os.environ, "SK_ENGINE_ISA": isa, "MKL_ENABLE_INSTRUCTIONS": MKL_CAP[isa]}
        cmd = [sys.executable, __file__, "--worker", f"--width={args.width}", f"--batch={args.batch}",
               f"--threads={args.threads}", f"--rounds={args.rounds}"]  # fmt: skip
        result = json.loads(subprocess.run(cmd, env=env, check=True, capture_output=True, text=True).stdout)
        per_cycle = args.flops_per_cycle or flops_per_cycle(isa)
        peak = per_cycle * ghz * args.threads
        print(
            f"\n{isa} (engine reports {result['isa']}; MKL capped to {MKL_CAP[isa]}); FMA peak {peak:.0f} GFLOP/s "
            f"({per_cycle:.0f} FLOP/cycle/core)"
        )
        print(f"{'layer':34} {'M':>6} {'K':>5} {'N':>5}  {'engine GF/s':>11} {'MKL GF/s':>9} {'engine/MKL':>10} "
              f"{'engine/peak':>11}")  # fmt: skip
        for r in result["rows"]:
            print(f"{r['layer']:34} {r['M']:6} {r['K']:5} {r['N']:5}  {r['engine_gflops']:11.1f} {r['mkl_gflops']:9.1f} "
                  f"{r['engine_gflops'] / r['mkl_gflops']:10.2f} {r['engine_gflops'] / peak:11.0%}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
