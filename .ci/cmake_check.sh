#!/usr/bin/env bash
# CI check of the CMake build (CMakeLists.txt): configure, build, run the C++ tests with ctest, then load
# the library into a fresh Python process through torch.ops.load_library and call an op.
#
# CPU only by default: the configure still runs torch's CUDA setup (a CUDA build of torch asks for it),
# but compiling the CUDA kernels is left to the setup.py build, which already proves they compile.
# SK_CMAKE_CUDA=1 also builds and tests a CPU + CUDA configuration (TORCH_CUDA_ARCH_LIST, default 9.0,
# one arch to keep it to about two minutes here).
#
# Environment: PYTHON (default: python), SK_CMAKE_BUILD_DIR (default: build/cmake), SK_CMAKE_CUDA,
# CMAKE_BUILD_PARALLEL_LEVEL (default: 2).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
python_bin=$(command -v "${PYTHON:-python}")
jobs=${CMAKE_BUILD_PARALLEL_LEVEL:-2}

check() {  # check BUILD_DIR [cmake args...]
  local dir=$1
  shift
  echo "== cmake configure ($dir: $*)"
  cmake -S . -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE=Release -DSK_PYTHON="$python_bin" "$@"
  echo "== cmake build ($dir)"
  cmake --build "$dir" -j"$jobs"
  echo "== ctest ($dir)"
  (cd "$dir" && ctest --output-on-failure)
  echo "== torch.ops.load_library ($dir)"
  # A fresh process that never imports the shufflekernels package: its extension registers the same
  # schemas, and loading both into one process fails.
  "$python_bin" - "$dir/libshufflekernels_ops.so" <<'PY'
import sys

import torch

torch.ops.load_library(sys.argv[1])
assert "shufflekernels" not in sys.modules, "the shufflekernels package got imported"
out = torch.ops.shufflekernels.channel_shuffle(torch.arange(8.0).view(1, 8, 1, 1), 2).flatten()
print(out)
assert out.tolist() == [0, 4, 1, 5, 2, 6, 3, 7], out
PY
}

check "${SK_CMAKE_BUILD_DIR:-build/cmake}" -DSK_WITH_CUDA=OFF
if [[ "${SK_CMAKE_CUDA:-0}" == 1 ]]; then
  TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-9.0} check "${SK_CMAKE_BUILD_DIR:-build/cmake}-cuda" -DSK_WITH_CUDA=ON
fi
echo "== cmake check passed"
