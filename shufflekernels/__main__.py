"""Command line: ``python -m shufflekernels {info,check,bench,ledger}``.

info    what is built and usable here, and why not
check   a quick parity check of every usable backend against the reference, as a table
bench   the fused model against reference eager and torch.compile: latency, img/s, speed-up, relative error
        (with no command: ``bench`` on the default model, the README's demo)
ledger  launches per forward and global-memory bytes per image on the GPU paths, per layer, counted on
        the CPU (shufflekernels/ledger.py), next to the floor and the issue's budgets
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable

import torch

import shufflekernels as sk
from shufflekernels import reference as ref
from shufflekernels import registry, tolerances


def _table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    line = lambda r: "  ".join(str(c).ljust(w) for c, w in zip(r, widths))  # noqa: E731
    return "\n".join([line(header), line(["-" * w for w in widths]), *map(line, rows)])


# --------------------------------------------------------------------------------------------------
# info
# --------------------------------------------------------------------------------------------------


def cmd_info(args: argparse.Namespace) -> int:
    info = sk.build_info()
    print(
        f"shufflekernels {sk.__version__}, torch {torch.__version__}, "
        f"CPU capability {torch.backends.cpu.get_cpu_capability()}, threads {torch.get_num_threads()}, "
        f"CUDA device: {torch.cuda.get_device_name() if torch.cuda.is_available() else 'none'}"
    )
    if info:
        print("native library: " + ", ".join(f"{k}={v}" for k, v in info.items()))
    rows = [
        [name, "yes" if e["built"] else "no", "yes" if e["usable"] else "no", e["why"]]
        for name, e in sk.backends().items()
    ]
    print(_table(rows, ["backend", "built", "usable", "details"]))
    return 0


# --------------------------------------------------------------------------------------------------
# check
# --------------------------------------------------------------------------------------------------


def _check_targets() -> list[tuple[str, str]]:
    report = sk.backends()
    targets = []
    if report["native-cpu"]["usable"]:
        targets.append(("native", "cpu"))
    if report["native-cuda"]["usable"]:
        targets.append(("native", "cuda"))
    if report["triton"]["usable"]:
        targets.append(("triton", "cuda" if torch.cuda.is_available() else "cpu"))
    return targets


def cmd_check(args: argparse.Namespace) -> int:
    """Every op of the registry on every usable backend, at its network-shaped example case."""
    targets = _check_targets()
    if not targets:
        print("no accelerated backend is usable here; see `python -m shufflekernels info`")
        return 1
    rows, failures = [], 0
    with torch.inference_mode():
        for backend, device in targets:
            dtypes = [torch.float32] if device == "cpu" and backend == "triton" else [torch.float32, torch.float16]
            for dtype in dtypes:
                for name, spec in registry.OPS.items():
                    if backend not in spec.backends:
                        continue
                    inputs = registry.example_args(name, device=device, dtype=dtype)
                    try:
                        got = sk.ops.call(name, *inputs, backend=backend)
                        expected = sk.ops.call(name, *inputs, backend="reference")
                        err = (got.float() - expected.float()).abs().max().item() if got.numel() else 0.0
                        shown = f"{err:.2e}"
                        tolerances.assert_op_close(spec.kind, got, expected.to(got.dtype))
                        ok, result = True, "ok"
                    except AssertionError:  # outside the tolerance of tests and CLI alike (tolerances.py)
                        ok, result = False, "FAIL"
                    except Exception as exc:  # a failing backend is reported, not fatal to the table
                        ok, result, shown = False, f"ERROR {type(exc).__name__}: {exc}"[:80], "-"
                    rows.append([backend, device, str(dtype).replace("torch.", ""), name, shown, result])
                    failures += not ok
    print(_table(rows, ["backend", "device", "dtype", "op", "max abs err", "result"]))
    print(f"\n{len(rows) - failures} passed, {failures} failed")
    return 1 if failures else 0


# --------------------------------------------------------------------------------------------------
# bench
# --------------------------------------------------------------------------------------------------


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def _providers(args, model: ref.ShuffleNetV2, device: str, compiled: bool) -> dict[str, Callable]:
    providers: dict[str, Callable] = {"reference eager": model}
    if compiled:
        providers["reference torch.compile"] = torch.compile(model)
    report = sk.backends()
    if report[f"native-{device}"]["usable"]:
        providers["fused native"] = sk.FusedShuffleNetV2.from_reference(model, backend="native")
    if report["triton"]["usable"] and (device == "cuda" or args.triton_on_cpu):
        providers["fused triton"] = sk.FusedShuffleNetV2.from_reference(model, backend="triton")
    return providers


def run_bench(args: argparse.Namespace, compiled: bool) -> list[dict]:
    """Every provider's median time and error against reference eager, in one interleaved run;
    ``compiled`` adds torch.compile (its warm-up compiles the model: a minute or more on 2 cores)."""
    device, dtype = args.device, getattr(torch, args.dtype)
    if device == "cpu":
        torch.set_num_threads(args.threads)
    model = ref.demo_model(args.width).to(device=device, dtype=dtype)
    x = torch.randn(args.batch, 3, args.size, args.size, generator=torch.Generator().manual_seed(1)).to(
        device=device, dtype=dtype
    )
    results = []
    with torch.inference_mode():
        expected = model(x).float()
        providers = _providers(args, model, device, compiled)
        times: dict[str, list[float]] = {name: [] for name in providers}
        errors: dict[str, float] = {}
        for name, fn in providers.items():
            print(f"  warming up {name} ...", file=sys.stderr, flush=True)
            t0 = time.perf_counter()
            out = fn(x).float()
            for _ in range(args.warmup):
                fn(x)
            errors[name] = tolerances.relative_error(out, expected)
            print(f"    ready in {time.perf_counter() - t0:.1f} s", file=sys.stderr, flush=True)
        # Rounds alternate between providers, so a slow spell of a shared machine hits all of them.
        for r in range(args.rounds):
            for name, fn in providers.items():
                _sync(device)
                t0 = time.perf_counter()
                for _ in range(args.iters):
                    fn(x)
                _sync(device)
                times[name].append((time.perf_counter() - t0) / args.iters)
            if sys.stderr.isatty() or (r + 1) % max(1, args.rounds // 5) == 0:
                print(f"  round {r + 1}/{args.rounds}", file=sys.stderr, flush=True)
    base = statistics.median(times["reference eager"])
    for name in providers:
        median = statistics.median(times[name])
        results.append(
            {
                "provider": name,
                "width": args.width,
                "batch": args.batch,
                "device": device,
                "dtype": args.dtype,
                "threads": args.threads if device == "cpu" else None,
                "median_ms": median * 1e3,
                "img_per_s": args.batch / median,
                "speedup_vs_eager": base / median,
                "rel_err": errors[name],
            }
        )
    return results


def _plot(results: list[dict], path: str) -> None:
    try:
        import matplotlib
    except ImportError as exc:
        raise SystemExit(f"bench: --plot needs matplotlib ({exc}); pip install matplotlib") from exc

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [r["provider"] for r in results]
    speed = [r["speedup_vs_eager"] for r in results]
    fig, ax = plt.subplots(figsize=(7, 0.6 * len(names) + 1.5))
    bars = ax.barh(names, speed, color=["#999999" if n.startswith("reference") else "#2a7ab0" for n in names])
    for bar, r in zip(bars, results):
        ax.text(
            bar.get_width(),
            bar.get_y() + bar.get_height() / 2,
            f" {r['median_ms']:.2f} ms, {r['img_per_s']:.0f} img/s",
            va="center",
        )
    r0 = results[0]
    ax.set_xlabel("speed-up over reference eager (same run, medians)")
    ax.set_title(f"ShuffleNetV2 x{r0['width']}, batch {r0['batch']}, {r0['device']} {r0['dtype']}")
    ax.invert_yaxis()
    ax.set_xlim(0, max(speed) * 1.6)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def _report(results: list[dict], dtype: str) -> bool:
    """Prints the providers' table and the parity line; whether every error is within the limit."""
    rows = [
        [
            r["provider"],
            f"{r['median_ms']:.2f}",
            f"{r['img_per_s']:.0f}",
            f"{r['speedup_vs_eager']:.2f}x",
            f"{r['rel_err']:.1e}",
        ]
        for r in results
    ]
    print(_table(rows, ["provider", "latency ms", "img/s", "vs eager", "rel err"]))
    worst = max(r["rel_err"] for r in results)
    tolerance = tolerances.MODEL[getattr(torch, dtype)]
    ok = worst <= tolerance
    print(
        f"parity: relative error {worst:.1e} against reference eager ({'ok' if ok else 'FAIL'}, limit {tolerance:.0e})"
    )
    return ok


def cmd_bench(args: argparse.Namespace) -> int:
    if args.device == "cuda" and not torch.cuda.is_available():
        print("bench: --device cuda asked for, but torch sees no CUDA device", file=sys.stderr)
        return 2
    print(
        f"ShuffleNetV2 x{args.width}, batch {args.batch}, {args.size}x{args.size}, {args.device} {args.dtype}"
        + (f", {args.threads} threads" if args.device == "cpu" else ""),
        file=sys.stderr,
    )
    # The fused model against eager first: its answer is ready in seconds. torch.compile's warm-up
    # compiles the model (a minute or more on 2 cores), so its comparison is a second run that follows.
    results = run_bench(args, compiled=False)
    ok = _report(results, args.dtype)
    if not args.no_compile:
        print("\nand against torch.compile (compiling the reference model first; --no-compile leaves this out):")
        results = run_bench(args, compiled=True)
        ok = _report(results, args.dtype) and ok
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
    if args.plot:
        _plot(results, args.plot)
        print(f"plot written to {args.plot}")
    return 0 if ok else 1


def _bench_parser(p: argparse.ArgumentParser) -> None:
    p.add_argument("--width", type=float, default=1.0, choices=sorted(ref.WIDTHS))
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--size", type=int, default=224, help="input height and width")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--dtype", default="float32", choices=["float32", "float16", "bfloat16"])
    p.add_argument("--threads", type=int, default=2, help="CPU threads (torch.set_num_threads)")
    p.add_argument("--rounds", type=int, default=15, help="timing rounds, providers interleaved")
    p.add_argument("--iters", type=int, default=3, help="forwards per round")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--no-compile", action="store_true", help="leave out torch.compile (saves its compile time)")
    p.add_argument("--triton-on-cpu", action="store_true", help="include the Triton interpreter on CPU (slow)")
    p.add_argument("--json", help="write the results as JSON to this file")
    p.add_argument("--plot", help="write a bar chart (PNG) to this file")


# --------------------------------------------------------------------------------------------------
# ledger
# --------------------------------------------------------------------------------------------------


def cmd_ledger(args: argparse.Namespace) -> int:
    from shufflekernels import _backend_selection, ledger

    if "shufflenet" not in _backend_selection.DEFINED_OPS:
        print("the ledger counts the native CUDA path on its emulation, in the native library: not loaded here")
        return 1
    triton = _backend_selection.TRITON_INSTALLED and not args.no_triton
    for batch in args.batch:
        result = ledger.ledger(args.width, getattr(torch, args.dtype), batch, triton=triton)
        print(f"\nx{args.width} {args.dtype}, batch {batch}, {ledger.IMAGE}x{ledger.IMAGE} NCHW input")
        print(ledger.format_table(result))
        print(ledger.format_notes(result))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m shufflekernels", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command")
    sub.add_parser("info", help="what is built and usable here").set_defaults(func=cmd_info)
    sub.add_parser("check", help="parity of every usable backend against the reference").set_defaults(func=cmd_check)
    bench = sub.add_parser("bench", help="the fused model against eager and torch.compile")
    _bench_parser(bench)
    bench.set_defaults(func=cmd_bench)
    led = sub.add_parser("ledger", help="launches and global-memory bytes of the GPU paths, counted on CPU")
    led.add_argument("--width", type=float, default=1.0, choices=sorted(ref.WIDTHS))
    led.add_argument("--dtype", default="float16", choices=["float32", "float16", "bfloat16"])
    led.add_argument("--batch", type=int, nargs="+", default=[256, 1])
    led.add_argument("--no-triton", action="store_true", help="leave out the Triton path (importing triton is slow)")
    led.set_defaults(func=cmd_ledger)
    args = parser.parse_args(argv)
    if args.command is None:  # the demo: what is here, then parity and speed on the default model
        cmd_info(args)
        print()
        args = parser.parse_args(["bench", *([] if argv is None else argv)])
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
