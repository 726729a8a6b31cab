"""FusedShuffleNetV2 against ONNX Runtime, OpenVINO, MNN, ExecuTorch (XNNPACK), torch.compile (with and
without Inductor freezing) and torch eager on the CPU, each runtime in its own process (thread pools of
two runtimes in one process steal from each other), rounds alternating between them, medians. Peers
that are not installed are left out with a note.

    python benchmarks/compare_runtimes.py [--widths 1.0] [--batches 1,16] [--threads 2] [--rounds 15]
        [--providers fused,ort,openvino,mnn,executorch,compile-freeze,eager,compile] [--json FILE]
        [--python-for executorch=/path/to/venv/bin/python]

A peer whose package lives in another environment (ExecuTorch: see requirements-peers.txt) runs its
worker with that environment's Python: `--python-for KEY=PYTHON`, or SK_<KEY>_PYTHON in the environment
(SK_EXECUTORCH_PYTHON for `executorch`). That worker imports this project from where the driver does.

Each worker builds its model once from the same seeded weights, checks its logits against the
reference (relative error), then answers "run one round" requests from this driver: a round is
about 0.1 s of forwards, each forward timed inside the worker, with an idle gap before the next
runtime's round. The table gives the median of the round means (ms/batch, img/s) and, over every single
forward of every round, p50 and p90 latency and their ratio: the jitter a user feels at batch 1.
While one worker runs its round every other worker is stopped (SIGSTOP): an idle runtime's thread
pool may keep spinning (ONNX Runtime's does, by default) and would take a core from the one being
timed. Each runtime keeps its own settings; it just never shares the cores with another.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import multiprocessing as mp
import multiprocessing.spawn
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

PROVIDERS = {
    "fused": "FusedShuffleNetV2 (native)",
    "ort": "ONNX Runtime",
    "openvino": "OpenVINO",
    "mnn": "MNN (CPU, precision normal)",
    "executorch": "ExecuTorch + XNNPACK",
    "compile-freeze": "torch.compile, Inductor freezing",
    "eager": "torch eager (channels_last)",
    "compile": "torch.compile",
}
NEEDS = {
    "ort": ("onnxruntime", "onnxscript"),
    "openvino": ("openvino", "onnxscript"),
    "mnn": ("MNN", "_tools", "onnxscript"),  # _tools: MNN's converter module, in the mnn wheel
    "executorch": ("executorch",),
}


def _build(provider: str, model, x, threads: int):
    import torch

    import shufflekernels as sk

    from providers import compile_freezing, executorch_method, mnn_module, onnx_file, openvino_model, ort_session

    if os.environ.get("SK_INDUCTOR_SIMDLEN"):  # --isa: Inductor's generated loops at that vector width
        torch._inductor.config.cpp.simdlen = int(os.environ["SK_INDUCTOR_SIMDLEN"])
    if provider == "fused":
        return sk.FusedShuffleNetV2.from_reference(model, backend="native")
    if provider == "ort":
        return ort_session(onnx_file(model, x), threads)
    if provider == "openvino":
        return openvino_model(onnx_file(model, x), threads, hint="LATENCY" if x.shape[0] == 1 else "THROUGHPUT")
    if provider == "mnn":
        return mnn_module(onnx_file(model, x), threads)
    if provider == "executorch":
        return executorch_method(model, x, threads)
    if provider == "compile-freeze":
        return compile_freezing(model)
    if provider == "eager":
        cl = model.to(memory_format=torch.channels_last)
        return lambda t: cl(t.contiguous(memory_format=torch.channels_last))
    return torch.compile(model)


def _worker(provider: str, width: float, batch: int, threads: int, conn, sys_path: list[str] | None = None) -> None:
    # The tables go to stdout; what runtimes print from native code (MNN's CPU features, converter and
    # exporter progress) goes to stderr with the rest of the chatter.
    os.dup2(2, 1)
    if sys_path is not None:  # another environment's Python: spawn gave it the driver's sys.path
        sys.path[:] = sys_path
    sys.path.insert(0, str(Path(__file__).parent))
    # --isa on a runtime with no switch: import it from a copy that sees no wider ISA (xcr0_cap.py).
    cap = os.environ.get("SK_XCR0_CAP") if provider in XCR0_CAPPED else None
    if cap:
        from xcr0_cap import capped_copy

        try:
            copy = capped_copy(XCR0_CAPPED[provider], cap)
            sys.path.insert(0, str(copy))
        except (OSError, RuntimeError, subprocess.SubprocessError) as e:
            print(f"  {PROVIDERS[provider]}: left uncapped ({e})", file=sys.stderr)
            cap = None
    import torch

    from providers import randomized_model

    torch.set_num_threads(threads)
    model = randomized_model(width)
    x = torch.randn(batch, 3, 224, 224, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        expected = model(x)
        try:
            fn = _build(provider, model, x, threads)
            got = torch.as_tensor(fn(x))
        except Exception as e:  # an optional peer that cannot build is left out, not the whole comparison
            conn.send(("failed", f"{type(e).__name__}: {e}"))
            return
        err = ((got - expected).norm() / expected.norm()).item()
        if cap:  # every part of the runtime imported so far must come from the capped copy
            from xcr0_cap import loaded_from

            stray = [
                name
                for name, module in list(sys.modules.items())
                if name.split(".")[0] in XCR0_CAPPED[provider]
                and getattr(module, "__file__", None)
                and not loaded_from(module, copy)
            ]
            if stray:
                conn.send(("failed", f"the {cap} cap did not take: {', '.join(stray[:3])} imported from elsewhere"))
                return
        for _ in range(3):
            fn(x)
        conn.send(("ready", (err, bool(cap))))
        while True:
            iters = conn.recv()
            if iters is None:
                return
            latencies = []
            for _ in range(iters):
                t0 = time.perf_counter()
                fn(x)
                latencies.append(time.perf_counter() - t0)
            conn.send(latencies)


def _python_for(provider: str, pythons: dict[str, str]) -> str | None:
    python = pythons.get(provider) or os.environ.get(f"SK_{provider.upper().replace('-', '_')}_PYTHON")
    # The shell leaves a ~ after `executorch=` unexpanded.
    return os.path.expanduser(python) if python else None


def _probe(python: str | None, modules: tuple[str, ...]) -> tuple[list[str], list[str] | None]:
    """The modules missing in `python`'s environment (this one's if None), and that Python's own
    sys.path with this project's root first, so its worker imports the same shufflekernels."""
    if python is None:
        return [m for m in modules if importlib.util.find_spec(m) is None], None
    code = (
        "import importlib.util, json, sys; "
        "print(json.dumps([[m for m in sys.argv[1:] if importlib.util.find_spec(m) is None], sys.path]))"
    )
    run = subprocess.run([python, "-c", code, *modules], capture_output=True, text=True, check=True)
    missing, path = json.loads(run.stdout.strip().splitlines()[-1])
    spec = importlib.util.find_spec("shufflekernels")
    root = [str(Path(spec.origin).parents[1])] if spec and spec.origin else []
    return missing, root + [p for p in path if p and p not in root]


def _percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0-100) of values, interpolated between the nearest ranks."""
    s = sorted(values)
    pos = (len(s) - 1) * q / 100
    lo = int(pos)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


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


def compare(
    width: float, batch: int, threads: int, rounds: int, providers: list[str], pythons: dict[str, str] | None = None
) -> list[dict]:
    ctx = mp.get_context("spawn")
    default_python = multiprocessing.spawn.get_executable()
    workers = {}
    for p in providers:
        python = _python_for(p, pythons or {})
        where = f" in {python}" if python else ""
        try:
            missing, sys_path = _probe(python, NEEDS.get(p, ()))
        except (OSError, subprocess.CalledProcessError) as e:
            print(f"  {PROVIDERS[p]}: {python} does not run ({e}), left out", file=sys.stderr)
            continue
        if missing:
            print(f"  {PROVIDERS[p]}: not installed{where} ({', '.join(missing)} missing), left out", file=sys.stderr)
            continue
        parent, child = ctx.Pipe()
        proc = ctx.Process(target=_worker, args=(p, width, batch, threads, child, sys_path), daemon=True)
        # spawn starts the child with the executable set at start(); set it for this worker only
        ctx.set_executable(python or default_python)
        try:
            proc.start()
        finally:
            ctx.set_executable(default_python)
        child.close()  # else a worker that dies never gives this end an EOF, and recv() waits forever
        workers[p] = (proc, parent)
    errors, capped = {}, {}
    for p, (proc, conn) in list(workers.items()):  # workers build in parallel; wait for each in turn
        try:
            status, detail = conn.recv()
        except EOFError:  # it died without a word (a segfault in a runtime, say)
            proc.join(timeout=30)
            status, detail = "failed", f"worker exited with code {proc.exitcode}"
        if status != "ready":
            print(f"  {PROVIDERS[p]}: could not be built ({detail}), left out", file=sys.stderr)
            proc.join(timeout=30)
            del workers[p]
            continue
        errors[p], capped[p] = detail
    # A round lasts about a tenth of a second. The other workers are stopped during it (_run_alone):
    # an idle ONNX Runtime pool keeps spinning, and measured alongside it the fused model's x0.5 batch 1
    # went from 0.92 ms to 1.70 ms. The short wait before each round lets the machine settle.
    iters = {}
    try:
        for p, (_, conn) in workers.items():
            _run_alone(workers, p)
            # Sized on the median of 5 forwards: one slow first forward would leave a round with a
            # forward or two, too few for a p90.
            conn.send(5)
            iters[p] = max(1, round(0.1 / statistics.median(conn.recv())))
    finally:
        for proc, _ in workers.values():
            _resume(proc)
    times: dict[str, list[float]] = {p: [] for p in workers}  # mean per round
    latencies: dict[str, list[float]] = {p: [] for p in workers}  # every forward of every round
    try:
        for r in range(rounds):
            order = list(workers) if r % 2 == 0 else list(reversed(workers))  # alternate who goes first
            for p in order:
                _run_alone(workers, p)
                time.sleep(0.05)
                workers[p][1].send(iters[p])
                forwards = workers[p][1].recv()
                times[p].append(sum(forwards) / len(forwards))
                latencies[p] += forwards
    finally:  # a stopped worker would ignore the SIGTERM multiprocessing ends daemons with, and hang
        for proc, _ in workers.values():
            _resume(proc)
    for proc, conn in workers.values():
        conn.send(None)
        proc.join(timeout=30)
    results = []
    for p in workers:
        median = statistics.median(times[p])
        p50, p90 = _percentile(latencies[p], 50), _percentile(latencies[p], 90)
        results.append(
            {
                "provider": PROVIDERS[p],
                "key": p,
                "width": width,
                "batch": batch,
                "threads": threads,
                "median_ms": median * 1e3,
                "img_per_s": batch / median,
                "rel_err": errors[p],
                "xcr0_capped": capped[p],  # run from a copy that sees no AVX-512 (xcr0_cap.py)
                "p50_ms": p50 * 1e3,
                "p90_ms": p90 * 1e3,
                "p90_over_p50": p90 / p50,
                "forwards": len(latencies[p]),
            }
        )
    return results


# --isa avx2: what caps each runtime's vector code to AVX2 on an AVX-512 machine (set for every worker),
# and the providers it reaches. ONNX Runtime (MLAS) and XNNPACK choose their kernels from the hardware
# with no such switch: their workers import a copy whose XGETBV reports no AVX-512 state (xcr0_cap.py;
# a worker that cannot make one runs uncapped and is not starred). MNN's wheel has no AVX-512 code (no
# zmm instruction in _mnncengine), so it runs its AVX2 kernels either way.
ISA_CAPS = {
    "avx2": {
        "SK_ENGINE_ISA": "avx2",
        "MKL_ENABLE_INSTRUCTIONS": "AVX2",
        "ONEDNN_MAX_CPU_ISA": "AVX2",
        "SK_INDUCTOR_SIMDLEN": "256",
    },
}
CAPPED = {
    "fused": "engine (SK_ENGINE_ISA)",
    "openvino": "oneDNN (ONEDNN_MAX_CPU_ISA)",
    "compile-freeze": "oneDNN/MKL, Inductor's loops (cpp.simdlen 256)",
    "eager": "oneDNN/MKL (ONEDNN_MAX_CPU_ISA, MKL_ENABLE_INSTRUCTIONS)",
    "compile": "oneDNN/MKL, Inductor's loops (cpp.simdlen 256)",
}
XCR0_CAPPED = {"ort": ("onnxruntime",), "executorch": ("executorch",)}  # provider: the modules copied


def cpu_description() -> str:
    """The CPU model (and family, where the name is generic) and its widest vector ISA, from /proc/cpuinfo."""
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        return "unknown CPU"
    first = info.split("\n\n", 1)[0]  # the first processor's block
    fields = {k.strip(): v.strip() for k, v in (line.split(":", 1) for line in first.splitlines() if ":" in line)}
    flags = fields.get("flags", "").split()
    isa = "AVX-512" if "avx512f" in flags else "AVX2" if "avx2" in flags else "no AVX2"
    return f"{fields.get('model name', '?')} (family {fields.get('cpu family', '?')}, model {fields.get('model', '?')}), {isa}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--widths", default="1.0")
    ap.add_argument("--batches", default="1,16")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--providers", default=",".join(PROVIDERS))
    ap.add_argument(
        "--python-for",
        action="append",
        default=[],
        metavar="KEY=PYTHON",
        help="run that provider's worker with another environment's Python (repeatable)",
    )
    ap.add_argument(
        "--isa",
        choices=sorted(ISA_CAPS),
        help="cap every runtime to this instruction set (ISA_CAPS, XCR0_CAPPED): the AVX2 "
        "path measured on an AVX-512 machine",
    )
    ap.add_argument("--json")
    args = ap.parse_args()
    cpu = cpu_description()
    print(f"CPU: {cpu}", file=sys.stderr)
    if args.isa:
        os.environ.update(ISA_CAPS[args.isa], SK_XCR0_CAP=args.isa)  # spawned workers inherit it
        how = {**CAPPED, **{p: "a copy whose XGETBV reports no AVX-512 state" for p in XCR0_CAPPED}}
        print(f"capped to {args.isa}: " + "; ".join(f"{PROVIDERS[p]}: {h}" for p, h in how.items()), file=sys.stderr)
    providers = args.providers.split(",")
    unknown = [p for p in providers if p not in PROVIDERS]
    if unknown:
        ap.error(f"unknown providers {unknown}; known: {', '.join(PROVIDERS)}")
    if any("=" not in item for item in args.python_for):
        ap.error("--python-for takes KEY=PYTHON, e.g. executorch=/path/to/venv/bin/python")
    pythons = dict(item.split("=", 1) for item in args.python_for)
    all_results = []
    for width in map(float, args.widths.split(",")):
        for batch in map(int, args.batches.split(",")):
            print(
                f"x{width} batch {batch}, {args.threads} threads, {args.rounds} rounds ...", file=sys.stderr, flush=True
            )
            results = compare(width, batch, args.threads, args.rounds, providers, pythons)
            fused = next((r for r in results if r["key"] == "fused"), None)
            print(
                f"\nShuffleNetV2 x{width}, batch {batch}, fp32 224x224, {args.threads} threads, same run "
                "(ms/batch: median of round means; p50, p90: over single forwards)\n"
                f"CPU: {cpu}" + (f"; capped to {args.isa} where marked *" if args.isa else "")
            )
            print(
                f"{'provider':32} {'ms/batch':>9} {'img/s':>7} {'p50 ms':>8} {'p90 ms':>8} {'p90/p50':>7} "
                f"{'fused vs it':>11} {'rel err':>8}"
            )
            for r in results:
                ratio = f"{r['median_ms'] / fused['median_ms']:.2f}x" if fused else "-"
                name = r["provider"] + (" *" if args.isa and (r["key"] in CAPPED or r["xcr0_capped"]) else "")
                print(
                    f"{name:32} {r['median_ms']:9.2f} {r['img_per_s']:7.0f} {r['p50_ms']:8.2f} "
                    f"{r['p90_ms']:8.2f} {r['p90_over_p50']:7.2f} {ratio:>11} {r['rel_err']:8.1e}"
                )
            all_results += results
    if args.json:
        Path(args.json).write_text(json.dumps(all_results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
