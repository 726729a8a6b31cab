#!/usr/bin/env bash
# The native CPU kernels under AddressSanitizer + UndefinedBehaviorSanitizer: builds a copy of HEAD
# with SK_SANITIZE=1 (CPU only: the sanitizers instrument host code) beside the real build, and runs
# the tests that reach the native CPU kernels against it. Exits non-zero on any sanitizer report.
#
# The CUDA kernels' bodies run here too, on host threads (csrc/cuda/host_emulation.cpp, compiled in every
# build): the sanitizers check their index math for out-of-bounds accesses without a GPU.
#
# Subset: the op, contract, model and CUDA-emulation tests, less the Triton interpreter tests (Python kernels, nothing
# of ours to instrument), the CUDA ones (skipped without a GPU anyway), torch.compile/export/opcheck
# and torchvision (slow under ASan, and exercising torch rather than our kernels), and the resident-
# memory test (ASan's quarantine keeps freed memory resident by design).
set -euo pipefail
cd "$(dirname "$0")/.."
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
git archive HEAD | tar -x -C "$work"
cd "$work"
SK_SANITIZE=1 SK_CUDA=0 MAX_JOBS="${MAX_JOBS:-2}" python setup.py -q build_ext --inplace > build.log 2>&1 || { tail -30 build.log; exit 1; }
# The ASan runtime must come first in the process, and libstdc++ must be loaded when it starts (the
# python binary does not link it), or ASan cannot intercept C++ throws and aborts on the first
# TORCH_CHECK. Leaks are not checked: CPython and torch keep allocations for the life of the process.
export LD_PRELOAD="$(gcc -print-file-name=libasan.so) $(gcc -print-file-name=libstdc++.so)"
export ASAN_OPTIONS="detect_leaks=0:halt_on_error=1:abort_on_error=1:symbolize=1"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1"
python -c "import shufflekernels as sk, sys; assert sk.__file__.startswith('$work'), sk.__file__; b = sk.build_info(); assert 'asan' in b['build_type'], b; print('sanitized build:', b)"
python -m pytest -q -p no:cacheprovider tests/test_ops.py tests/test_contract.py tests/test_model.py tests/test_cuda_emulation.py \
  -k "not torchvision and not compile and not export and not opcheck and not memory_stays_flat" "$@"
