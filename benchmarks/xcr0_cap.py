"""Copies of installed runtimes that see no AVX-512 on an AVX-512 machine: how `compare_runtimes.py --isa
avx2` caps the peers that have no switch of their own (ONNX Runtime's MLAS, XNNPACK under ExecuTorch).

A runtime that picks its kernels at run time asks two things: does CPUID list AVX-512, and does the OS
save the AVX-512 registers, which XGETBV reads from XCR0 (bits 5-7: opmask, upper ZMM halves, ZMM16-31).
Only the second answer can be changed from user space, and only in the runtime's own code: every
`xgetbv` (0f 01 d0) in the copy's shared libraries becomes `mov $0x7, %al; nop`, so XCR0 reads as x87,
SSE and AVX state and the runtime takes its AVX2 path, as it would on a CPU without AVX-512. The caller
puts the copy first on sys.path before importing the runtime.

Measured on a Zen 5 (family 26): ONNX Runtime's 1024^3 MatMul on one thread went from 202 to 112
GFLOP/s, the AVX2 FMA peak being 128; XNNPACK's GEMM micro-kernels run on ymm registers.

This changes which code a runtime runs, not how fast a core runs it: a Zen 5 core executes AVX2 code
with more cache and a wider front end than a Zen 3 core, for every runtime alike. Needs objdump
(binutils); the copies are cached under ~/.cache/shufflekernels (XDG_CACHE_HOME).
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import re
import shutil
import subprocess
from pathlib import Path

# The bytes that replace `xgetbv`, per ISA cap: the same length (3 bytes), the low byte of XCR0 set.
XGETBV = bytes.fromhex("0f01d0")
REPLACEMENT = {"avx2": bytes.fromhex("b00790")}  # mov $0x7,%al (x87 | SSE | AVX state); nop


def _sources(module: str) -> list[Path]:
    """What to copy for an importable module: its package directory, or its extension file and the
    directories next to it that its RPATH names relative to $ORIGIN (auditwheel's `<dist>.libs`)."""
    spec = importlib.util.find_spec(module)
    if spec is None:
        raise ModuleNotFoundError(module)
    if spec.submodule_search_locations:  # a package (a namespace one has no origin): its first location
        return [Path(next(iter(spec.submodule_search_locations)))]
    origin = Path(spec.origin)
    dynamic = subprocess.run(["objdump", "-p", str(origin)], capture_output=True, text=True).stdout
    siblings = []
    for line in dynamic.splitlines():
        fields = line.split()
        if fields[:1] in (["RPATH"], ["RUNPATH"]):
            for entry in fields[1].split(":"):
                if entry.startswith("$ORIGIN/") and (origin.parent / entry[8:]).is_dir():
                    siblings.append(origin.parent / entry[8:])
    return [origin, *siblings]


def _code_offsets(elf: Path) -> list[tuple[int, int, int]]:
    """(vma, file offset, size) of the ELF's sections that hold code."""
    headers = subprocess.run(["objdump", "-h", "-w", str(elf)], capture_output=True, text=True).stdout
    sections = []
    for line in headers.splitlines():
        f = line.split()
        # Idx Name Size VMA LMA File-off Algn Flags
        if len(f) >= 8 and f[0].isdigit() and "CODE" in line:
            sections.append((int(f[3], 16), int(f[5], 16), int(f[2], 16)))
    return sections


def patch_xgetbv(elf: Path, isa: str) -> int:
    """Rewrites every `xgetbv` that objdump disassembles in elf's code; returns how many."""
    data = bytearray(elf.read_bytes())
    if XGETBV not in data:  # most of a package's libraries: no need to disassemble them
        return 0
    listing = subprocess.run(["objdump", "-d", "-w", str(elf)], capture_output=True, text=True).stdout
    addresses = [int(m.group(1), 16) for m in re.finditer(r"^\s*([0-9a-f]+):\s+0f 01 d0\s+xgetbv", listing, re.M)]
    if not addresses:
        return 0
    sections = _code_offsets(elf)
    for vma in addresses:
        offset = next(off + vma - v for v, off, size in sections if v <= vma < v + size)
        if data[offset : offset + 3] != XGETBV:
            raise RuntimeError(f"{elf}: no xgetbv at {vma:#x} (file offset {offset:#x})")
        data[offset : offset + 3] = REPLACEMENT[isa]
    elf.write_bytes(data)
    return len(addresses)


def _is_elf(path: Path) -> bool:
    with path.open("rb") as f:
        return f.read(4) == b"\x7fELF"


def capped_copy(modules: tuple[str, ...], isa: str) -> Path:
    """A directory holding copies of `modules` (as this Python finds them) whose code reads XCR0 without
    the state of any ISA above `isa`; put it first on sys.path before importing them."""
    if isa not in REPLACEMENT:
        raise ValueError(f"xcr0_cap: isa expected one of {sorted(REPLACEMENT)}, got {isa!r}")
    if shutil.which("objdump") is None:
        raise RuntimeError("xcr0_cap: objdump (binutils) not found")
    sources = [s for m in modules for s in _sources(m)]
    key = hashlib.sha256(repr([(str(s), s.stat().st_mtime_ns) for s in sources]).encode()).hexdigest()[:16]
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "shufflekernels" / f"xcr0-{isa}"
    dest = cache / f"{'-'.join(modules)}-{key}"
    if (dest / ".complete").exists():
        return dest
    staging = cache / f".{dest.name}.{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    for s in sources:
        if s.is_dir():
            shutil.copytree(s, staging / s.name, symlinks=True)
        else:
            shutil.copy2(s, staging / s.name)
    patched = 0
    for f in staging.rglob("*"):
        if f.is_file() and not f.is_symlink() and _is_elf(f):
            patched += patch_xgetbv(f, isa)
    if patched == 0:
        shutil.rmtree(staging)
        raise RuntimeError(f"xcr0_cap: no xgetbv in {', '.join(modules)}: their kernels are chosen otherwise")
    (staging / ".complete").write_text(f"{patched} xgetbv patched\n")
    shutil.rmtree(dest, ignore_errors=True)
    staging.rename(dest)
    return dest


def loaded_from(module, directory: Path) -> bool:
    """Whether an imported module (or package) came from `directory`: the check that the cap took."""
    paths = [getattr(module, "__file__", None), *getattr(module, "__path__", [])]
    return any(p and Path(p).resolve().is_relative_to(directory.resolve()) for p in paths)
