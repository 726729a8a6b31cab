"""GPU benchmark of the fused model: native CUDA and Triton, each with and without CUDA-graph replay,
against eager channels_last (with and without a CUDA graph) and torch.compile of that model.

    python benchmarks/gpu_bench.py --out DIR [--cases float16:256,float16:1] [--label headline] [--append]
    python benchmarks/gpu_bench.py --out DIR --rehearse   # the same code on the CPU (see below)

Order, most valuable first: every case (dtype:batch, in the order given) for the providers that cost
nothing to set up, then torch.compile for every case. Each dtype's models, torch.compile included, are
built once and reused for every batch; Triton autotunes once per kernel key in the process. Results go to
``DIR/gpu_bench.json`` and ``DIR/gpu_bench.md`` (one section per label) after every case, so a time
limit, or Ctrl-C (SIGINT), keeps what was measured.

Timing: CUDA events around ``iters`` forwards, ``rounds`` rounds with the providers interleaved, medians.
Errors: relative L2 error of the logits against the float32 eager model without TF32.

``--rehearse`` runs everything on the CPU at small sizes, for CI: the "native" model calls the CUDA
kernels' host executor (``torch.ops.shufflekernels_cuda_emulated``), Triton runs under its interpreter
(TRITON_INTERPRET=1 must be set before Python starts), torch.compile uses the eager backend, wall-clock
timers replace CUDA events, and CUDA-graph providers are listed as not run.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

import shufflekernels as sk
import shufflekernels.model as sk_model
from shufflekernels import reference as ref
from shufflekernels.cuda_graphs import graphed

BASELINE = "eager channels_last"

# The rehearsal's network: ShuffleNetV2's stem, both kinds of unit and its head, with one or two units per
# stage and a narrow head, so that Triton's interpreter runs a forward in about two seconds.
REHEARSAL_NET = ([2, 2, 1], [24, 48, 96, 192, 256])


def make_model(width: float, num_classes: int, rehearse: bool) -> ref.ShuffleNetV2:
    """The benchmarked network, with the same weights on every call."""
    if not rehearse:
        return ref.demo_model(width, num_classes=num_classes)
    torch.manual_seed(0)
    model = ref.ShuffleNetV2(*REHEARSAL_NET, num_classes=num_classes)
    with torch.no_grad():  # non-trivial BatchNorm statistics, as demo_model's
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)
    return model.eval()


def model_name(width: float, rehearse: bool) -> str:
    return (
        f"ShuffleNetV2 with units {REHEARSAL_NET[0]}, channels {REHEARSAL_NET[1]}"
        if rehearse
        else f"ShuffleNetV2 x{width}"
    )


class Rig:
    """What differs between the GPU and the CPU rehearsal: the device, the timer, CUDA graphs, compile."""

    def __init__(self, rehearse: bool) -> None:
        self.rehearse = rehearse
        self.device = "cpu" if rehearse else "cuda"
        self.name = "CPU rehearsal" if rehearse else torch.cuda.get_device_name()
        report = sk.backends()
        if rehearse:
            self.native = torch._C._dispatch_has_kernel_for_dispatch_key(
                "shufflekernels_cuda_emulated::split_unit", "CPU"
            )
            if self.native:
                # The test hook of shufflekernels.model: the network runs the CUDA kernels' bodies on host threads.
                sk_model._native_ops = torch.ops.shufflekernels_cuda_emulated
        else:
            self.native = report["native-cuda"]["usable"]
        self.triton = report["triton"]["usable"]
        self.why = {"native": report["native-cuda"]["why"], "triton": report["triton"]["why"]}

    def time_ms(self, fn: Callable, x: torch.Tensor, iters: int) -> float:
        if self.rehearse:
            t0 = time.perf_counter()
            for _ in range(iters):
                fn(x)
            return (time.perf_counter() - t0) * 1e3 / iters
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(iters):
            fn(x)
        end.record()
        end.synchronize()
        return start.elapsed_time(end) / iters

    def graph(self, fn: Callable, example: torch.Tensor) -> Callable | None:
        return None if self.rehearse else graphed(fn, example)

    def compile(self, model: torch.nn.Module) -> Callable:
        # Default mode: max-autotune would spend minutes per shape. Static shapes: each batch gets the
        # graph a deployment at that batch would get, rather than one dynamic graph for all.
        return torch.compile(model, dynamic=False, backend="eager" if self.rehearse else "inductor")

    def sync(self) -> None:
        if not self.rehearse:
            torch.cuda.synchronize()


@contextlib.contextmanager
def no_tf32():
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


class Models:
    """One dtype's models, built once: every batch and torch.compile reuse them."""

    def __init__(self, rig: Rig, args: argparse.Namespace, dtype: torch.dtype) -> None:
        self.rig, self.args, self.dtype = rig, args, dtype

        def make():
            return make_model(args.width, args.num_classes, rig.rehearse)

        self.reference = make().to(rig.device)
        self.eager_cl = make().to(rig.device, dtype).to(memory_format=torch.channels_last)
        self.fused = {}
        for backend in ("native", "triton"):
            if getattr(rig, backend):
                self.fused[backend] = sk.FusedShuffleNetV2.from_reference(make(), backend=backend).to(rig.device, dtype)
        if rig.native and rig.triton and not rig.rehearse:
            # What backend="auto" runs on CUDA: the native stem and head around one Triton kernel a unit.
            self.fused["auto"] = sk.FusedShuffleNetV2.from_reference(make(), backend="auto").to(rig.device, dtype)
        self._compiled = None

    @property
    def compiled(self) -> Callable:
        if self._compiled is None:
            self._compiled = self.rig.compile(self.eager_cl)
        return self._compiled


def measure(
    models: Models,
    label: str,
    batch: int,
    builders: dict[str, Callable[[], Callable | None]],
    baseline_ms: float | None,
    notes: list[str],
) -> list[dict]:
    """Builds each provider (timing its setup: graph capture, autotune, compile), checks its logits, then
    times all of them interleaved. A builder returns None for a provider that cannot run here."""
    rig, args, dtype_name = models.rig, models.args, str(models.dtype).removeprefix("torch.")
    x = example(models, batch, seed=batch)
    with no_tf32():
        expected = models.reference(x.float()).float()
    fns, setup_s, errors = {}, {}, {}
    for name, build in builders.items():
        t0 = time.perf_counter()
        try:
            fn = build()
            if fn is None:  # only the rehearsal's CUDA graphs: said once
                note = "the providers with a CUDA graph: not run (no CUDA graphs on the CPU)"
                notes += [] if note in notes else [note]
                continue
            got = fn(x).float()
            rig.sync()
        except Exception as exc:  # noqa: BLE001  one provider failing must not cost the others their numbers
            notes.append(
                f"{dtype_name} b{batch}: {name} FAILED: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
            )
            continue
        setup_s[name] = time.perf_counter() - t0
        errors[name] = ((got - expected).norm() / expected.norm().clamp_min(1e-30)).item()
        fns[name] = fn
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(args.rounds):  # interleaved, so a slow spell of the machine hits every provider
        for name, fn in fns.items():
            times[name].append(rig.time_ms(fn, x, args.iters))
    medians = {name: statistics.median(t) for name, t in times.items()}
    base = medians.get(BASELINE, baseline_ms)
    return [
        {
            "label": label,
            "provider": name,
            "dtype": dtype_name,
            "batch": batch,
            "width": args.width,
            "image": args.image,
            "median_ms": ms,
            "img_per_s": batch / ms * 1e3,
            "speedup_vs_eager_cl": (base / ms) if base else None,
            "rel_err_vs_fp32": errors[name],
            "setup_s": setup_s[name],
        }
        for name, ms in medians.items()
    ]


def write(out_dir: Path, rig: Rig, rows: list[dict], notes: dict[str, list[str]]) -> None:
    meta = {"device": rig.name, "torch": torch.__version__, "rehearsal": rig.rehearse}
    (out_dir / "gpu_bench.json").write_text(json.dumps({**meta, "results": rows, "notes": notes}, indent=1))
    lines = [
        f"# {model_name(rows[0]['width'] if rows else 1.0, rig.rehearse)} on {rig.name} (torch {torch.__version__})"
    ]
    for label in dict.fromkeys(r["label"] for r in rows) | dict.fromkeys(notes):
        lines += [
            "",
            f"### {label}",
            "",
            "| dtype | batch | provider | ms | img/s | vs eager CL | rel err vs fp32 | setup s |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for r in (r for r in rows if r["label"] == label):
            speedup = f"{r['speedup_vs_eager_cl']:.2f}x" if r["speedup_vs_eager_cl"] else "-"
            lines.append(
                f"| {r['dtype']} | {r['batch']} | {r['provider']} | {r['median_ms']:.3f} | {r['img_per_s']:.0f} | "
                f"{speedup} | {r['rel_err_vs_fp32']:.1e} | {r['setup_s']:.1f} |"
            )
        lines += [f"- {note}" for note in notes.get(label, [])]
    (out_dir / "gpu_bench.md").write_text("\n".join(lines) + "\n")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True)
    p.add_argument("--cases", default=None, help="dtype:batch,... in order of value (default float16:256,float16:1)")
    p.add_argument("--label", default="headline", help="the section of gpu_bench.md these rows go to")
    p.add_argument("--append", action="store_true", help="keep the rows already in DIR/gpu_bench.json")
    p.add_argument("--width", type=float, default=None)
    p.add_argument("--image", type=int, default=None)
    p.add_argument("--rounds", type=int, default=None)
    p.add_argument("--iters", type=int, default=None)
    p.add_argument("--no-compile", action="store_true")
    p.add_argument(
        "--rehearse", action="store_true", help="CPU: emulated CUDA kernels, Triton interpreter, small sizes"
    )
    args = p.parse_args()
    # The rehearsal's sizes keep the Triton interpreter (numpy per program) to seconds per forward, and
    # its cases are float32: eager float16 convolutions on a CPU take seconds too.
    defaults = (
        {"cases": "float32:2,float32:1", "width": 1.0, "image": 16, "rounds": 1, "iters": 1, "num_classes": 10}
        if args.rehearse
        else {
            "cases": "float16:256,float16:1",
            "width": 1.0,
            "image": 224,
            "rounds": 7,
            "iters": 10,
            "num_classes": 1000,
        }
    )
    for key, value in defaults.items():
        if getattr(args, key, None) is None:
            setattr(args, key, value)
    if not args.rehearse and not torch.cuda.is_available():
        print("gpu_bench: no CUDA device visible to torch; nothing to measure (--rehearse runs it on the CPU)")
        return 0
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    cases = [(d, int(b)) for d, b in (c.split(":") for c in args.cases.split(","))]
    rig = Rig(args.rehearse)
    rows, notes = [], {}
    if args.append and (out_dir / "gpu_bench.json").exists():
        try:
            saved = json.loads((out_dir / "gpu_bench.json").read_text())
            rows, notes = saved["results"], saved.get("notes", {})
        except (ValueError, KeyError):  # a run killed while writing it: its rows are in gpu_bench.md still
            pass
    timer = "wall clock" if args.rehearse else "CUDA events"
    about = (
        f"{model_name(args.width, args.rehearse)}, {args.image}x{args.image} channels_last input, on {rig.name}, "
        f"torch {torch.__version__}: medians of {args.rounds} rounds of {args.iters} forwards ({timer}); "
        "the error is relative to the float32 eager model without TF32"
    )
    notes[args.label] = mine = [about]
    for backend in ("native", "triton"):
        if not getattr(rig, backend):
            mine.append(f"fused {backend}: not usable here ({rig.why[backend]})")
    models: dict[str, Models] = {}

    def models_for(dtype_name: str) -> Models:
        if dtype_name not in models:
            models[dtype_name] = Models(rig, args, getattr(torch, dtype_name))
        return models[dtype_name]

    baselines: dict[tuple[str, int], float] = {}
    started = time.perf_counter()
    try:
        with torch.inference_mode():
            for dtype_name, batch in cases:
                t0 = time.perf_counter()
                m = models_for(dtype_name)
                new = measure(m, args.label, batch, eager_and_fused(m, batch), None, mine)
                rows += new
                baselines[dtype_name, batch] = next((r["median_ms"] for r in new if r["provider"] == BASELINE), None)
                write(out_dir, rig, rows, notes)
                print(
                    f"{dtype_name} batch {batch}: {len(new)} providers in {time.perf_counter() - t0:.0f} s", flush=True
                )
            if not args.no_compile:
                for dtype_name, batch in cases:
                    t0 = time.perf_counter()
                    m = models_for(dtype_name)
                    new = measure(m, args.label, batch, compiled(m, batch), baselines.get((dtype_name, batch)), mine)
                    rows += new
                    write(out_dir, rig, rows, notes)
                    print(f"{dtype_name} batch {batch}: torch.compile in {time.perf_counter() - t0:.0f} s", flush=True)
    except KeyboardInterrupt:  # the time limit: keep what was measured, say where it stopped
        mine.append(f"stopped by the time limit after {time.perf_counter() - started:.0f} s")
        write(out_dir, rig, rows, notes)
        print("gpu_bench: interrupted; the results so far are in gpu_bench.md", flush=True)
        return 124
    write(out_dir, rig, rows, notes)
    print((out_dir / "gpu_bench.md").read_text())
    return 0


def eager_and_fused(m: Models, batch: int) -> dict[str, Callable[[], Callable | None]]:
    """The providers that cost (almost) nothing to set up, baseline first."""
    builders = {
        BASELINE: lambda: m.eager_cl,
        f"{BASELINE} + CUDA graph": lambda: m.rig.graph(m.eager_cl, example(m, batch)),
    }
    for backend, fused in m.fused.items():
        builders[f"fused {backend}"] = lambda fused=fused: fused
        builders[f"fused {backend} + CUDA graph"] = lambda fused=fused: m.rig.graph(fused, example(m, batch))
    return builders


def compiled(m: Models, batch: int) -> dict[str, Callable[[], Callable | None]]:
    """torch.compile of the dtype's channels_last model: compiled once per batch shape, then reused."""
    return {
        "torch.compile": lambda: m.compiled,
        "torch.compile + CUDA graph": lambda: m.rig.graph(m.compiled, example(m, batch)),
    }


def example(m: Models, batch: int, seed: int = 0) -> torch.Tensor:
    """An input of the case's shape, dtype and layout (channels_last: what a deployment feeds)."""
    x = torch.randn(batch, 3, m.args.image, m.args.image, generator=torch.Generator().manual_seed(seed))
    return x.to(m.rig.device, m.dtype).contiguous(memory_format=torch.channels_last)


if __name__ == "__main__":
    sys.exit(main())
