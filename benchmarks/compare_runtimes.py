"""FusedShuffleNetV2 against ONNX Runtime, OpenVINO, torch eager and torch.compile on the CPU, each
runtime in its own process (thread pools of two runtimes in one process steal from each other), rounds
alternating between them, medians. Peers that are not installed are left out with a note.

    python benchmarks/compare_runtimes.py [--widths 1.0] [--batches 1,16] [--threads 2] [--rounds 15]
                                          [--providers fused,ort,openvino,eager,compile] [--json FILE]

Each worker builds its model once from the same seeded weights, checks its logits against the
reference (relative error), then answers "run one round" requests from this driver: a round is
about 0.1 s of forwards, timed inside the worker, with an idle gap before the next runtime's round.
While one worker runs its round every other worker is stopped (SIGSTOP): an idle runtime's thread
pool may keep spinning (ONNX Runtime's does, by default) and would take a core from the one being
timed. Each runtime keeps its own settings; it just never shares the cores with another.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import multiprocessing as mp
import os
import signal
import statistics
import sys
import time
from pathlib import Path

PROVIDERS = {
    "fused": "FusedShuffleNetV2 (native)",
    "ort": "ONNX Runtime",
    "openvino": "OpenVINO",
    "eager": "torch eager (channels_last)",
    "compile": "torch.compile",
}
NEEDS = {"ort": ("onnxruntime", "onnxscript"), "openvino": ("openvino", "onnxscript")}


def _worker(provider: str, width: float, batch: int, threads: int, conn) -> None:
    import torch

    sys.path.insert(0, str(Path(__file__).parent))
    from providers import onnx_file, openvino_model, ort_session, randomized_model

    import shufflekernels as sk

    torch.set_num_threads(threads)
    model = randomized_model(width)
    x = torch.randn(batch, 3, 224, 224, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        expected = model(x)
        if provider == "fused":
            fn = sk.FusedShuffleNetV2.from_reference(model, backend="native")
        elif provider == "ort":
            fn = ort_session(onnx_file(model, x), threads)
        elif provider == "openvino":
            fn = openvino_model(onnx_file(model, x), threads, hint="LATENCY" if batch == 1 else "THROUGHPUT")
        elif provider == "eager":
            cl = model.to(memory_format=torch.channels_last)
            fn = lambda t: cl(t.contiguous(memory_format=torch.channels_last))  # noqa: E731
        else:
            fn = torch.compile(model)
        got = torch.as_tensor(fn(x))
        err = ((got - expected).norm() / expected.norm()).item()
        for _ in range(3):
            fn(x)
        conn.send(("ready", err))
        while True:
            iters = conn.recv()
            if iters is None:
                return
            t0 = time.perf_counter()
            for _ in range(iters):
                fn(x)
            conn.send((time.perf_counter() - t0) / iters)


def _resume(proc) -> None:
    if hasattr(signal, "SIGCONT"):
        os.kill(proc.pid, signal.SIGCONT)


def _run_alone(workers: dict, active: str) -> None:
    """Stops every worker but `active` (and resumes that one), so no idle thread pool spins on the cores
    the timed round needs. Where signals cannot stop processes, the rounds still alternate."""
    if not hasattr(signal, "SIGSTOP"):
        return
    for p, (proc, _) in workers.items():
        if p != active:
            os.kill(proc.pid, signal.SIGSTOP)
    _resume(workers[active][0])


def compare(width: float, batch: int, threads: int, rounds: int, providers: list[str]) -> list[dict]:
    ctx = mp.get_context("spawn")
    workers = {}
    for p in providers:
        missing = [m for m in NEEDS.get(p, ()) if importlib.util.find_spec(m) is None]
        if missing:
            print(f"  {PROVIDERS[p]}: not installed ({', '.join(missing)} missing), left out", file=sys.stderr)
            continue
        parent, child = ctx.Pipe()
        proc = ctx.Process(target=_worker, args=(p, width, batch, threads, child), daemon=True)
        proc.start()
        workers[p] = (proc, parent)
    errors = {}
    for p, (proc, conn) in workers.items():  # workers build in parallel; wait for each in turn
        status, err = conn.recv()
        errors[p] = err
    # A round lasts about a tenth of a second. The other workers are stopped during it (_run_alone):
    # an idle ONNX Runtime pool keeps spinning, and measured alongside it the fused model's x0.5 batch 1
    # went from 0.92 ms to 1.70 ms. The short wait before each round lets the machine settle.
    iters = {}
    try:
        for p, (_, conn) in workers.items():
            _run_alone(workers, p)
            conn.send(1)
            iters[p] = max(1, round(0.1 / conn.recv()))
    finally:
        for proc, _ in workers.values():
            _resume(proc)
    times: dict[str, list[float]] = {p: [] for p in workers}
    try:
        for r in range(rounds):
            order = list(workers) if r % 2 == 0 else list(reversed(workers))  # alternate who goes first
            for p in order:
                _run_alone(workers, p)
                time.sleep(0.05)
                workers[p][1].send(iters[p])
                times[p].append(workers[p][1].recv())
    finally:  # a stopped worker would ignore the SIGTERM multiprocessing ends daemons with, and hang
        for proc, _ in workers.values():
            _resume(proc)
    for proc, conn in workers.values():
        conn.send(None)
        proc.join(timeout=30)
    results = []
    for p in workers:
        median = statistics.median(times[p])
        results.append({"provider": PROVIDERS[p], "key": p, "width": width, "batch": batch, "threads": threads,
                        "median_ms": median * 1e3, "img_per_s": batch / median, "rel_err": errors[p]})
    return results


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--widths", default="1.0")
    ap.add_argument("--batches", default="1,16")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--providers", default="fused,ort,openvino,eager,compile")
    ap.add_argument("--json")
    args = ap.parse_args()
    providers = args.providers.split(",")
    all_results = []
    for width in map(float, args.widths.split(",")):
        for batch in map(int, args.batches.split(",")):
            print(f"x{width} batch {batch}, {args.threads} threads, {args.rounds} rounds ...", file=sys.stderr, flush=True)
            results = compare(width, batch, args.threads, args.rounds, providers)
            fused = next((r for r in results if r["key"] == "fused"), None)
            print(f"\nShuffleNetV2 x{width}, batch {batch}, fp32 224x224, {args.threads} threads (medians, same run)")
            print(f"{'provider':30} {'ms/batch':>9} {'img/s':>7} {'fused vs it':>11} {'rel err':>8}")
            for r in results:
                ratio = f"{r['median_ms'] / fused['median_ms']:.2f}x" if fused else "-"
                print(f"{r['provider']:30} {r['median_ms']:9.2f} {r['img_per_s']:7.0f} {ratio:>11} {r['rel_err']:8.1e}")
            all_results += results
    if args.json:
        Path(args.json).write_text(json.dumps(all_results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
