"""The supported torch range is stated once (pyproject.toml's [tool.shufflekernels]) and everything
that repeats it agrees: the package's and the build's requirements, the README, and setup.py's refusal
of an older torch."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _supported() -> tuple[str, str]:
    text = (ROOT / "pyproject.toml").read_text()
    return tuple(re.search(rf'^torch-{end} = "([\d.]+)"$', text, re.M).group(1) for end in ("oldest", "newest"))


def test_requirements_and_readme_state_the_range():
    oldest, newest = _supported()
    pyproject = (ROOT / "pyproject.toml").read_text()
    readme = (ROOT / "README.md").read_text()
    # Every torch requirement, in the build and in the package (and the README's install command).
    found = re.findall(r'"torch([<>=!~][^"]*)"', pyproject)
    assert found and set(found) == {f">={oldest}"}, found
    assert f'"torch>={oldest}"' in readme, "the README's install command asks for another torch"
    assert f"torch {oldest} to {newest}" in readme, "the README does not state the supported range"


# The release just below the oldest, and one far below. (That the oldest itself is taken, CI's build of
# it in .ci/compat.sh shows; run here, setup.py would go on to rewrite the build's generated header.)
@pytest.mark.parametrize("version", ["just below", "2.0.1"])
def test_setup_refuses_an_older_torch_and_names_the_range(version):
    oldest, newest = _supported()
    major, minor = map(int, oldest.split("."))
    version = f"{major}.{minor - 1}.0+cu130" if version == "just below" else version
    # setup.py checks torch.__version__ before it writes or builds anything.
    run = subprocess.run(
        [
            sys.executable,
            "-c",
            f"import sys, runpy, torch; torch.__version__ = {version!r}; sys.argv = ['setup.py', '--name']; "
            "runpy.run_path('setup.py', run_name='__main__')",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "SK_CUDA": "0"},
    )
    assert run.returncode != 0
    assert f"supports torch {oldest} to {newest}" in run.stderr and version in run.stderr, run.stderr
