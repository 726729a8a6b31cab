#!/usr/bin/env bash
# The supported range, proven: builds the extension (CPU + CUDA for sm_90) and runs the whole test
# suite (native, emulated CUDA, Triton interpreter) and the sm_90 Triton compile check against the
# oldest and the newest torch that pyproject.toml's [tool.shufflekernels] names, each in its own venv.
#
#   .ci/compat.sh oldest|newest
#
# oldest: Python 3.12 (the GPU machine's) with torch <torch-oldest> and the Triton it requires;
# newest: this machine's Python with torch <torch-newest>. Each venv and its build folder are kept
# under $SK_COMPAT_CACHE (default ~/.cache/shufflekernels-compat): a later run reinstalls nothing and
# recompiles only the sources whose bytes changed (they are copied over only then, so ninja sees the
# old timestamps of the rest).
set -euo pipefail
cd "$(dirname "$0")/.."
which=${1:?usage: .ci/compat.sh oldest|newest}
cache=${SK_COMPAT_CACHE:-$HOME/.cache/shufflekernels-compat}
release=$(sed -n "s/^torch-$which = \"\([0-9.]*\)\"$/\1/p" pyproject.toml)
[ -n "$release" ] || { echo "compat: pyproject.toml names no torch-$which"; exit 1; }

case $which in
  oldest) python_version=3.12 ;;
  newest) python_version=$(python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])') ;;
  *) echo "compat: expected oldest or newest, got $which"; exit 2 ;;
esac
# The interpreter: on PATH, else the pyenv version of that release (pyenv's shims answer only for
# the selected version).
python_bin=$(command -v "python$python_version" || true)
if ! "$python_bin" -V >/dev/null 2>&1; then
  python_bin=$(ls -d "$(pyenv root 2>/dev/null || echo "$HOME/.pyenv")"/versions/"$python_version".*/bin/python"$python_version" 2>/dev/null | tail -1)
fi
[ -x "$python_bin" ] || { echo "compat: no Python $python_version found (on PATH or under pyenv)"; exit 1; }

home="$cache/$which-py$python_version-torch$release"
venv="$home/venv"
# The venv is remade when what it is made from changes (the marker holds a digest of that).
packages=("torch==$release.*" torchvision ninja "setuptools>=64" wheel pytest-xdist)
recipe=$(echo "${packages[*]}" | cat - requirements-test.txt | sha256sum | cut -c1-16)
if [ "$(cat "$venv/.installed" 2>/dev/null)" != "$recipe" ]; then
  rm -rf "$venv"
  "$python_bin" -m venv "$venv"
  # The machine's pip configuration may cap torch below the newest release: the constraint is lifted
  # for this venv alone. torchvision is whichever release requires this torch.
  PIP_CONSTRAINT=/dev/null "$venv/bin/pip" install -q "${packages[@]}" -r requirements-test.txt
  # Triton 3.6's interpreter converts one-element arrays to Python ints with int(), which numpy 2.4
  # removed (TypeError: only 0-dimensional arrays can be converted to Python scalars, at any range()
  # over a kernel argument): with that Triton the interpreter tests need numpy < 2.4. Its compiled
  # kernels (what the GPU runs) do not use numpy.
  if "$venv/bin/python" -c 'import sys, triton; sys.exit(tuple(map(int, triton.__version__.split(".")[:2])) >= (3, 7))'; then
    PIP_CONSTRAINT=/dev/null "$venv/bin/pip" install -q "numpy<2.4"
  fi
  echo "$recipe" >"$venv/.installed"
fi
"$venv/bin/python" - <<'PY'
import numpy, sys, torch, triton
print(f"compat: Python {sys.version.split()[0]}, torch {torch.__version__}, triton {triton.__version__}, numpy {numpy.__version__}")
PY

# The checkout's files (tracked, and untracked ones git does not ignore), copied where their bytes differ.
src="$home/src"
mkdir -p "$src"
"$venv/bin/python" - "$src" <<'PY'
import filecmp, os, shutil, subprocess, sys

dst = sys.argv[1]
files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                       capture_output=True, check=True).stdout.decode().split("\0")
files = {f for f in files if f and os.path.isfile(f)}
for f in files:
    target = os.path.join(dst, f)
    if not os.path.exists(target) or not filecmp.cmp(f, target, shallow=False):
        os.makedirs(os.path.dirname(target), exist_ok=True)
        shutil.copy2(f, target)
        os.utime(target)  # newer than every object file, so ninja rebuilds what includes it
kept = ("build/", ".pytest_cache/", "shufflekernels.egg-info/")
for root, _, names in os.walk(dst):
    for name in names:
        path = os.path.relpath(os.path.join(root, name), dst)
        if path not in files and not path.startswith(kept) and "__pycache__" not in path and not path.endswith(".so"):
            os.remove(os.path.join(dst, path))
PY

cd "$src"
export TORCH_CUDA_ARCH_LIST="9.0" SK_CUDA=1 MAX_JOBS=${MAX_JOBS:-2} PYTHONUNBUFFERED=1
started=$(date +%s)
# build_ext --inplace keeps its object files in build/, so a rerun compiles only what changed; the
# package is then importable from this folder, as after the README's editable install.
"$venv/bin/python" setup.py -q build_ext --inplace
"$venv/bin/python" -c 'import shufflekernels as sk; info = sk.build_info(); assert info.get("cuda"), info; print("compat: built", info)'
echo "compat: build $(( $(date +%s) - started ))s"
# Both cores, a test file per worker (a Triton test module sets TRITON_INTERPRET before its process
# first imports the kernels), one torch thread per worker.
OMP_NUM_THREADS=1 "$venv/bin/python" -m pytest -q -p no:cacheprovider -n "$MAX_JOBS" --dist loadfile
"$venv/bin/python" .ci/check_triton_sm90.py --jobs "$MAX_JOBS"
