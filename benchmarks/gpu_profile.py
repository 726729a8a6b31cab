"""One forward under torch.profiler: which kernels each model launches, how many, and for how long.

    python benchmarks/gpu_profile.py --out DIR [--dtype float16] [--batches 256,1] [--rehearse]

For the fused model (native, Triton) and eager channels_last, each warmed up first (Triton autotunes
then): the launches and device time of one forward at every batch, then the per-kernel table at the
first batch. These are the figures the launch ledger predicts (`python -m shufflekernels ledger` where
built). Writes DIR/gpu_profile.md.

``--rehearse`` profiles on the CPU as ``gpu_bench.py --rehearse`` runs (emulated CUDA kernels, Triton's
interpreter, small sizes): the rows are then the CPU ops the profiler sees, and the native model's
launches are those the CUDA kernels' host executor logs.
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from pathlib import Path

import torch
from gpu_bench import BASELINE, Models, Rig, example, model_name
from torch.autograd import DeviceType
from torch.profiler import ProfilerActivity, profile


def kernel_name(name: str) -> str:
    """A CUDA kernel's signature without its parameter list (the last balanced parentheses; an earlier
    "(anonymous namespace)" is part of the name) and the return type."""
    if name.endswith(")"):
        depth = 0
        for i in range(len(name) - 1, -1, -1):
            depth += {")": 1, "(": -1}.get(name[i], 0)
            if depth == 0:
                name = name[:i].rstrip()
                break
    return name.removeprefix("void ").replace("(anonymous namespace)::", "")


def _display(name: str, width: int = 120) -> str:
    """Template arguments at the end often tell two instantiations apart: keep both ends."""
    return name if len(name) <= width else f"{name[: width - 41]}...{name[-38:]}"


def profile_once(rig: Rig, fn, x: torch.Tensor, emulated: bool) -> tuple[int | None, dict[str, list[float]]]:
    """(launches, {kernel: [microseconds per launch]}) of one call of ``fn``; ``emulated``: ``fn`` runs the
    emulated CUDA kernels, whose launch log then counts the launches."""
    if emulated:
        torch.ops.shufflekernels_cuda_emulated.launch_log()  # drop the warm-up's launches
    activities = [ProfilerActivity.CPU] + ([] if rig.rehearse else [ProfilerActivity.CUDA])
    with profile(activities=activities) as prof:
        fn(x)
        rig.sync()
    kernels: dict[str, list[float]] = defaultdict(list)
    if rig.rehearse:
        for avg in prof.key_averages():
            kernels[avg.key] = [avg.self_cpu_time_total / max(avg.count, 1)] * avg.count
        launches = len(torch.ops.shufflekernels_cuda_emulated.launch_log().splitlines()) if emulated else None
        return launches, kernels
    for event in prof.events():
        if event.device_type == DeviceType.CUDA:
            kernels[kernel_name(event.name)].append(event.time_range.elapsed_us())
    return sum(len(t) for t in kernels.values()), kernels


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True)
    p.add_argument("--dtype", default=None, help="default float16 (rehearsal: float32, as gpu_bench.py)")
    p.add_argument("--batches", default=None, help="default 256,1 (rehearsal: 1)")
    p.add_argument("--top", type=int, default=None, help="kernels listed per model (default 25; rehearsal: 10)")
    p.add_argument("--rehearse", action="store_true")
    args = p.parse_args()
    if not args.rehearse and not torch.cuda.is_available():
        print("gpu_profile: no CUDA device visible to torch; nothing to profile (--rehearse runs it on the CPU)")
        return 0
    # Model and input sizes as gpu_bench.py uses them, so the two reports describe the same forwards.
    sizes = argparse.Namespace(width=1.0, image=16 if args.rehearse else 224, num_classes=10 if args.rehearse else 1000)
    # The rehearsal profiles one batch: the interpreter takes seconds per Triton forward.
    batches = [int(b) for b in (args.batches or ("1" if args.rehearse else "256,1")).split(",")]
    args.dtype = args.dtype or ("float32" if args.rehearse else "float16")
    rig = Rig(args.rehearse)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    lines = [
        f"One forward of {model_name(sizes.width, rig.rehearse)} ({args.dtype}, {sizes.image}x{sizes.image}) on {rig.name}:",
        "",
        "| model | batch | launches | device ms | kernels (distinct) |",
        "|---|---|---|---|---|",
    ]
    tables: list[list[str]] = []

    def write() -> str:
        text = "\n".join(lines + [line for table in tables for line in ["", *table]]) + "\n"
        (out / "gpu_profile.md").write_text(text)
        return text

    if rig.rehearse:
        lines[1:1] = [
            "",
            (
                "CPU rehearsal: the kernels below are CPU ops (self time), not GPU kernels; the native "
                "model's launches are the emulated CUDA launches."
            ),
        ]
    try:
        with torch.inference_mode():
            models = Models(rig, sizes, getattr(torch, args.dtype))
            # Triton last: it autotunes on its first call (and is slowest under the rehearsal's interpreter).
            candidates = {
                "fused native": models.fused.get("native"),
                BASELINE: models.eager_cl,
                "fused triton": models.fused.get("triton"),
            }
            for name, fn in candidates.items():
                if fn is None:
                    lines.append(f"| {name} | | not usable here | | |")
                    continue
                for i, batch in enumerate(batches):
                    x = example(models, batch)
                    try:
                        for _ in range(1 if rig.rehearse else 2):  # warm-up: autotuning, cuDNN/cuBLAS heuristics
                            fn(x)
                        rig.sync()
                        launches, kernels = profile_once(rig, fn, x, emulated=rig.rehearse and name == "fused native")
                    except Exception as exc:  # noqa: BLE001  a failing model is reported, the others still profiled
                        lines.append(
                            f"| {name} | {batch} | FAILED: {type(exc).__name__}: {str(exc).splitlines()[0][:120]} | | |"
                        )
                        continue
                    total_ms = sum(sum(t) for t in kernels.values()) / 1e3
                    lines.append(
                        f"| {name} | {batch} | {launches if launches is not None else 'n/a'} | "
                        f"{'n/a' if rig.rehearse else f'{total_ms:.3f}'} | {len(kernels)} |"
                    )
                    if i == 0:
                        tables.append(
                            kernel_table(name, batch, kernels, args.top or (10 if rig.rehearse else 25), rig.rehearse)
                        )
                    write()  # after every forward, so a time limit keeps what was profiled
    except KeyboardInterrupt:
        lines.append("| (stopped by the time limit) | | | | |")
        write()
        return 124
    print(write())
    return 0


def kernel_table(name: str, batch: int, kernels: dict[str, list[float]], top: int, rehearse: bool) -> list[str]:
    unit = "self CPU us" if rehearse else "us"
    rows = sorted(kernels.items(), key=lambda kv: -sum(kv[1]))
    total = sum(sum(t) for t in kernels.values()) or 1.0
    lines = [
        f"### {name}, batch {batch}",
        "",
        f"| kernel | launches | total {unit} | {unit} per launch | share |",
        "|---|---|---|---|---|",
    ]
    for kernel, times in rows[:top]:
        lines.append(
            f"| `{_display(kernel)}` | {len(times)} | {sum(times):.1f} | {sum(times) / len(times):.1f} | "
            f"{100 * sum(times) / total:.1f}% |"
        )
    rest = rows[top:]
    if rest:
        lines.append(
            f"| ({len(rest)} more kernels) | {sum(len(t) for _, t in rest)} | {sum(sum(t) for _, t in rest):.1f} | | |"
        )
    return lines


if __name__ == "__main__":
    sys.exit(main())
