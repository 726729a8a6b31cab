"""Compiles every Triton kernel variant the GPU path launches for sm_90 (and sm_80), with no GPU, and
fails on a compile error, a register spill, or more shared memory than a block may have.

Triton compiles ahead of time given a target: the whole pipeline down to ptxas (the one in the triton
wheel) runs without a driver. What is compiled is found by running the launch code, not listed here:

- the fused model (FusedShuffleNetV2, every width in reference.WIDTHS, 224x224) runs its forward on
  meta tensors, at batch 1 and 256, in float32, float16 and bfloat16. Each op it hands to the Triton
  backend (split_unit, down_unit, pointwise) goes to the Triton launcher, whose ``kernel[grid](...)``
  is replaced by a recorder: it keeps the arguments and constexprs exactly as the launcher passes them;
- each of those calls again with the input in NCHW (the model runs channels_last, the ops take both);
- the public ops a unit is made of, at that unit's shapes and in both layouts: dwconv3x3 for each of its
  depthwise convs, shuffle_cat of its two branches, channel_shuffle of its output;
- a kernel the network's path does not launch (a new op's), at its op's registry example case, in both
  layouts and every dtype.

Each recorded launch becomes one compile per autotune config (the autotuner benchmarks them all on a
GPU) and per target, specialised as Triton's JIT would at that launch (int divisibility by 16, pointer
alignment, from the tensors' offsets). Identical variants are compiled once. Registers and spill bytes
come from ptxas's verbose log, shared memory from the compiled kernel's metadata.

Run: python .ci/check_triton_sm90.py [--jobs 2] [--all] [--kernel NAME] (--all prints every variant, not
only the per-config summary; --kernel compiles only the named kernels).
"""

from __future__ import annotations

import argparse
import collections
import concurrent.futures
import contextlib
import functools
import importlib
import inspect
import io
import os
import re
import sys
import time

# The kernels of this checkout, whatever shufflekernels is installed.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if os.environ.get("TRITON_INTERPRET") == "1":
    sys.exit("check_triton_sm90: unset TRITON_INTERPRET; under the interpreter the kernels take test configs")

import torch
import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource, make_backend
from triton.runtime.jit import create_function_from_signature

from shufflekernels import model as _model
from shufflekernels import ops, reference, registry
from shufflekernels.triton import recording

# The registry's Triton launchers, and the kernels they launch recorded instead (triton/recording.py).
LAUNCHERS = {op: recording.launcher(op) for op in registry.ops_with("triton")}
# Shared memory one block may have (CUDA C programming guide, per compute capability, with opt-in):
# sm_90 227 KB, sm_80 163 KB. sm_90 is the target of record; sm_80 is checked for shared memory only.
SHARED_LIMIT = {90: 227 * 1024, 80: 163 * 1024}
DTYPES = (torch.float32, torch.float16, torch.bfloat16)
BATCHES = (1, 256)
IMAGE = 224


class _Pointer:
    """What Triton's JIT reads of a tensor argument: its dtype and its address (for the 16-byte
    alignment it specialises on). The address keeps the tensor's offset into its storage, so a channel
    slice is as aligned here as on a GPU, where the caching allocator hands out 512-byte aligned blocks."""

    def __init__(self, t: torch.Tensor) -> None:
        self.dtype = t.dtype
        self.address = 512 + t.storage_offset() * t.element_size()

    def data_ptr(self) -> int:
        return self.address


class _Recorder:
    """Stands in for an autotuned kernel: ``kernel[grid](*args, **kwargs)`` records the launch."""

    def __init__(self, module, name: str, launches: list) -> None:
        self.module, self.name, self.launches = module, name, launches

    def __getitem__(self, grid):
        def launch(*args, **kwargs):
            args = tuple(_Pointer(a) if isinstance(a, torch.Tensor) else a for a in args)
            self.launches.append((self.module.__name__, self.name, args, kwargs))

        return launch


def _recording(launches: list):
    """Kernels record instead of launching; launchers accept meta tensors."""
    return recording.kernels_replaced(lambda module, name, tuner: _Recorder(module, name, launches))


def _launch(op: str, *args, **options):
    """An op on its Triton launcher, with the public op's defaults (ops.<op>'s signature)."""
    bound = inspect.signature(getattr(ops, op)).bind(*args, **options)
    bound.apply_defaults()
    del bound.arguments["backend"]
    return LAUNCHERS[op](*bound.arguments.values())


def _unit_parts(op: str, x: torch.Tensor, params: list[torch.Tensor], out: torch.Tensor):
    """The public ops a unit is made of, at the unit's shapes: (op, args, options)."""
    n, _, h, w = x.shape
    branch = out.shape[1] // 2
    names = (_model.FusedSplitUnit if op == "split_unit" else _model.FusedDownUnit).PARAMS
    p = dict(zip(names, params))
    stride = 1 if op == "split_unit" else 2
    fmt = reference.output_memory_format(x)

    def like(c, hh, ww):
        return torch.empty((n, c, hh, ww), dtype=x.dtype, device="meta", memory_format=fmt)

    for dw in ("dw1", "dw2", "dw"):
        if f"{dw}_weight" in p:
            inp = x if dw == "dw1" else like(branch, h, w)
            yield "dwconv3x3", (inp, p[f"{dw}_weight"], p[f"{dw}_bias"]), {"stride": stride}
    half = like(branch, out.shape[2], out.shape[3])
    yield "shuffle_cat", ([half, half.clone()],), {}
    yield "channel_shuffle", (out, 2), {}


def trace_launches() -> list:
    """Every kernel launch of the Triton path at the network's shapes (see the module docstring)."""
    launches: list = []
    original_run = _model._run

    def run(op, backend, x, *params, **options):
        params = [p.to(device="meta", dtype=x.dtype) for p in params]
        if op == "stem":  # no Triton kernel; its output shape and format is what the units get
            return original_run(op, "reference", x, *params, **options)
        out = _launch(op, x, *params, **options)
        _launch(op, x.contiguous(), *params, **options)
        if op in ("split_unit", "down_unit"):
            for layout in (x, x.contiguous()):
                layout_out = out.contiguous(memory_format=reference.output_memory_format(layout))
                for part, args, kwargs in _unit_parts(op, layout, params, layout_out):
                    _launch(part, *args, **kwargs)
        return out

    with _recording(launches), torch.inference_mode():
        _model._run = run
        try:
            for repeats, channels in reference.WIDTHS.values():
                net = _model.FusedShuffleNetV2.from_reference(
                    reference.ShuffleNetV2(repeats, channels).eval(), backend="reference"
                )
                for p in net.buffers():  # .to(meta) keeps the stored layouts the launchers read
                    assert p.to("meta").stride() == p.stride()
                for dtype in DTYPES:
                    for batch in BATCHES:
                        net(torch.empty(batch, 3, IMAGE, IMAGE, dtype=dtype, device="meta"))
        finally:
            _model._run = original_run
        # A kernel the network's path does not launch (a new op's) at its op's registry example, in
        # both layouts and every dtype, so that it is compiled without a line here. The network's own
        # kernels are held to the network's shapes: the GPU path runs those.
        on_path, network_launches = {launch[1] for launch in launches}, len(launches)
        for op in registry.ops_with("triton"):
            for dtype in DTYPES:
                args = list(registry.example_args(op, device="meta", dtype=dtype))
                for layout in (torch.contiguous_format, torch.channels_last):
                    first = args[0]
                    args[0] = [t.contiguous(memory_format=layout) for t in first] if isinstance(first, list) else (
                        first.contiguous(memory_format=layout))  # fmt: skip
                    LAUNCHERS[op](*args)  # schema order (the wrapper's keyword-only arguments included)
        launches[network_launches:] = [launch for launch in launches[network_launches:] if launch[1] not in on_path]
    return launches


@functools.cache
def _binder(fn, arch: int):
    target = GPUTarget("cuda", arch, 32)
    backend = make_backend(target)
    return target, backend, create_function_from_signature(fn.signature, fn.params, backend)


def _jit_inputs(fn, args, kwargs, arch):
    """What JITFunction.run would compile for this launch on this target: (signature, constexprs,
    attrs, options)."""
    target, backend, binder = _binder(fn, arch)
    kwargs = dict(kwargs)
    kwargs["debug"] = kwargs.get("debug", fn.debug) or triton.knobs.runtime.debug
    kwargs["instrumentation_mode"] = triton.knobs.compilation.instrumentation_mode
    bound, specialization, options = binder(*args, **kwargs)
    return target, fn._pack_args(backend, kwargs, bound, specialization, options)


def variants(launches) -> dict:
    """Deduplicated compile jobs: key -> (module, kernel, args, kwargs, arch, config label)."""
    jobs = {}
    for module, name, args, kwargs in launches:
        tuner = getattr(importlib.import_module(module), name)
        tuner.nargs = dict(zip(tuner.arg_names, args))
        for config in tuner.prune_configs(kwargs):
            full = {**kwargs, **config.all_kwargs()}
            for arch in SHARED_LIMIT:
                _, (options, signature, constexprs, attrs) = _jit_inputs(tuner.fn, args, full, arch)
                # sm_80 is compiled for its shared memory, which the tiles, stages and dtypes decide, not
                # the divisibility attributes: one variant per attribute set is enough there.
                key = (
                    name,
                    arch,
                    repr(sorted(signature.items())),
                    repr(sorted(constexprs.items())),
                    repr(sorted(attrs.items())) if arch == 90 else "",
                    repr(sorted(options.__dict__.items())),
                )
                label = " ".join(f"{k}={v}" for k, v in config.all_kwargs().items())
                jobs.setdefault(key, (module, name, args, full, arch, label, _describe(tuner.fn, args, full)))
    return jobs


def _describe(fn, args, kwargs) -> str:
    """dtype and layout constexprs of a variant, for the table."""
    dtypes = sorted({str(a.dtype).replace("torch.", "") for a in args if isinstance(a, _Pointer)})
    layout = ",".join(
        f"{k.split('_PIXEL')[0].lower()}={'cl' if v else 'nchw'}"
        for k, v in kwargs.items()
        if k.endswith("PIXEL_MAJOR")
    )
    return f"{'/'.join(dtypes)} {layout}"


_PTXAS = {
    "regs": re.compile(r"Used (\d+) registers"),
    "stack": re.compile(r"(\d+) bytes stack frame"),
    "spill_stores": re.compile(r"(\d+) bytes spill stores"),
    "spill_loads": re.compile(r"(\d+) bytes spill loads"),
}


def _init_worker() -> None:
    triton.knobs.nvidia.dump_ptxas_log = True  # printed by make_cubin; captured per compile below
    triton.knobs.compilation.always_compile = True  # a cache hit would skip ptxas and its log


def compile_variant(job) -> dict:
    module, name, args, kwargs, arch, label, what = job
    fn = getattr(importlib.import_module(module), name).fn
    result = {"kernel": name, "arch": arch, "config": label, "what": what}
    try:
        target, (options, signature, constexprs, attrs) = _jit_inputs(fn, args, kwargs, arch)
        log = io.StringIO()
        with contextlib.redirect_stdout(log):
            kernel = triton.compile(
                ASTSource(fn, signature, constexprs, attrs), target=target, options=options.__dict__
            )
    except Exception as exc:  # noqa: BLE001 - every compile failure is a finding
        result["error"] = f"{type(exc).__name__}: {str(exc).strip().splitlines()[-1] if str(exc).strip() else ''}"
        return result
    text = log.getvalue()
    for field, pattern in _PTXAS.items():
        match = pattern.search(text)
        result[field] = int(match.group(1)) if match else None
    result["shared"] = kernel.metadata.shared
    return result


def problems(r) -> list[str]:
    if "error" in r:
        return [r["error"]]
    found = []
    if r["regs"] is None:
        found.append("no ptxas log")
    if r["arch"] == 90 and (r["spill_stores"] or r["spill_loads"] or r["stack"]):
        found.append(f"spills {r['spill_stores']} B stored, {r['spill_loads']} B loaded (stack {r['stack']} B)")
    if r["shared"] > SHARED_LIMIT[r["arch"]]:
        found.append(f"{r['shared']} B shared > sm_{r['arch']} limit {SHARED_LIMIT[r['arch']]} B")
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--all", action="store_true", help="print every variant")
    parser.add_argument("--kernel", action="append", help="compile only this kernel (repeatable), e.g. _unit_kernel")
    opts = parser.parse_args()
    started = time.time()
    launches = trace_launches()
    if opts.kernel:
        launches = [launch for launch in launches if launch[1] in opts.kernel]
    jobs = variants(launches)
    print(
        f"check_triton_sm90: {len(launches)} launches traced, {len(jobs)} distinct variants to compile "
        f"({sum(1 for k in jobs if k[1] == 90)} for sm_90) [{time.time() - started:.0f}s]",
        flush=True,
    )
    with concurrent.futures.ProcessPoolExecutor(opts.jobs, initializer=_init_worker) as pool:
        # Largest kernels first, so that the pool does not end on one long compile.
        order = sorted(jobs.values(), key=lambda j: j[1] != "_unit_kernel")
        results = list(pool.map(compile_variant, order, chunksize=1))

    bad = [(r, p) for r in results if (p := problems(r))]
    if opts.all:
        for r in sorted(results, key=lambda r: (r["kernel"], r["arch"], r["config"], r["what"])):
            print(
                f"  sm_{r['arch']} {r['kernel']:24} {r['config']:48} {r['what']:40} regs={r.get('regs')} "
                f"spill={r.get('spill_stores')} shared={r.get('shared')}"
            )
    groups = collections.defaultdict(list)
    for r in results:
        groups[(r["kernel"], r["config"])].append(r)
    print(
        f"\n{'kernel':26}{'config':52}{'variants':>9}{'regs':>6}{'spilled':>9}{'spill B':>9}{'smem90':>8}{'smem80':>8}"
    )
    for (kernel, config), rs in sorted(groups.items()):
        s90 = [r for r in rs if r["arch"] == 90 and "error" not in r]
        s80 = [r for r in rs if r["arch"] == 80 and "error" not in r]
        spilled = [r for r in s90 if r["spill_stores"] or r["spill_loads"] or r["stack"]]
        print(
            f"{kernel:26}{config:52}{len(s90):>9}{max((r['regs'] or 0) for r in s90) if s90 else '-':>6}"
            f"{len(spilled):>9}{max((r['spill_stores'] or 0) for r in s90) if s90 else '-':>9}"
            f"{max(r['shared'] for r in s90) if s90 else '-':>8}{max(r['shared'] for r in s80) if s80 else '-':>8}"
        )
    for r, found in bad:
        print(f"FAIL sm_{r['arch']} {r['kernel']} {r['config']} {r['what']}: {'; '.join(found)}")
    # The headroom under this compiler: the kernels are held below 255 registers, not at it.
    for kernel in sorted({r["kernel"] for r in results}):
        worst = max((r for r in results if r["kernel"] == kernel and r["arch"] == 90 and r.get("regs")),
                    key=lambda r: r["regs"], default=None)  # fmt: skip
        if worst:
            print(f"worst sm_90 {kernel} under Triton {triton.__version__}: {worst['regs']} registers "
                  f"({worst['config']}, {worst['what']})")  # fmt: skip
    n90 = sum(1 for r in results if r["arch"] == 90)
    print(
        f"check_triton_sm90: {n90} sm_90 variants (+{len(results) - n90} sm_80), {len(bad)} problems, "
        f"{time.time() - started:.0f}s"
    )
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
