"""xcr0_cap: a copied package's xgetbv reads XCR0 without the AVX-512 state, and the original is untouched.

A tiny package with one shared library that returns XCR0's low byte stands in for a runtime: built with
the C compiler, read through ctypes before and after the copy is patched."""

from __future__ import annotations

import ctypes
import platform
import shutil
import subprocess

import pytest
import xcr0_cap

SOURCE = """
unsigned xcr0_low(void) {
  unsigned lo, hi;
  __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
  return lo & 0xff;
}
"""

pytestmark = pytest.mark.skipif(
    platform.machine() not in ("x86_64", "AMD64") or not (shutil.which("cc") and shutil.which("objdump")),
    reason="needs x86-64, a C compiler and objdump",
)


def _os_saves_avx() -> bool:
    """Linux lists avx only where the OS saves its state (XCR0 bits 1-2), which xgetbv then reports."""
    try:
        info = open("/proc/cpuinfo").read()
    except OSError:
        return False
    return any(line.startswith("flags") and "avx" in line.split() for line in info.splitlines())


@pytest.fixture
def fake_runtime(tmp_path, monkeypatch):
    package = tmp_path / "site" / "sk_fake_runtime"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (tmp_path / "probe.c").write_text(SOURCE)
    subprocess.run(
        ["cc", "-O2", "-shared", "-fPIC", "-o", str(package / "probe.so"), str(tmp_path / "probe.c")], check=True
    )
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return package


@pytest.mark.skipif(not _os_saves_avx(), reason="the OS does not enable XSAVE state here")
def test_the_copy_reads_xcr0_without_avx512_state(fake_runtime):
    original = ctypes.CDLL(str(fake_runtime / "probe.so")).xcr0_low()
    assert original & 0x7 == 0x7  # x87, SSE and AVX state, as on every AVX machine

    copy = xcr0_cap.capped_copy(("sk_fake_runtime",), "avx2")

    assert ctypes.CDLL(str(copy / "sk_fake_runtime" / "probe.so")).xcr0_low() == 0x7
    assert ctypes.CDLL(str(fake_runtime / "probe.so")).xcr0_low() == original  # the installed one is untouched
    assert xcr0_cap.capped_copy(("sk_fake_runtime",), "avx2") == copy  # cached: made once per install


def test_a_package_without_xgetbv_is_refused(fake_runtime):
    # Its kernels are chosen some other way: a copy would claim a cap that does not hold.
    (fake_runtime / "probe.so").unlink()
    with pytest.raises(RuntimeError, match="no xgetbv"):
        xcr0_cap.capped_copy(("sk_fake_runtime",), "avx2")


def test_an_unknown_isa_names_the_argument():
    with pytest.raises(ValueError, match=r"isa expected one of \['avx2'\], got 'sse'"):
        xcr0_cap.capped_copy(("sk_fake_runtime",), "sse")
