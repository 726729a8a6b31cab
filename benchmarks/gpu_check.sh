#!/usr/bin/env bash
# One command on a GPU machine (at most ~8 minutes on an H200): build the extension for this GPU, run
# the CUDA and Triton tests and the parity table, and benchmark the fused model against eager,
# torch.compile and CUDA-graph replay at batch 1, 64 and 256 in fp32 and fp16.
#
#   benchmarks/gpu_check.sh            # report into $OUT when set, else ./gpu-check-results
#
# Writes gpu_check.md (the summary), gpu_bench.md/.json, tests.log and build.log into that folder.
# Without a GPU it says so and exits 0 (CI runs that path).
set -uo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-$PWD/gpu-check-results}"
mkdir -p "$out"
summary="$out/gpu_check.md"

if ! python -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
  echo "gpu_check: no CUDA device visible to torch here; nothing to check (build, tests and benchmark need a GPU)"
  echo "no CUDA device: nothing checked" > "$summary"
  exit 0
fi

status=0
arch=$(python -c "import torch; print('%d.%d' % torch.cuda.get_device_capability())")
echo "# GPU check: $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null | head -1), sm_${arch/./}" > "$summary"

echo "== build (TORCH_CUDA_ARCH_LIST=$arch)"
if TORCH_CUDA_ARCH_LIST="$arch" SK_CUDA=1 MAX_JOBS="$(nproc)" pip install --no-build-isolation -e . > "$out/build.log" 2>&1; then
  echo "- build: ok" >> "$summary"
else
  echo "- build: FAILED (build.log)" >> "$summary"; tail -30 "$out/build.log"; exit 1
fi

echo "== parity table"
timeout 90 python -m shufflekernels check | tee "$out/check.txt" || status=1
echo "- parity table: $(tail -1 "$out/check.txt")" >> "$summary"

echo "== CUDA and Triton tests"
# Each stage has a time limit, so the report arrives within the budget even if a stage hangs.
# The emulated CUDA kernels run on the host (CI covers them); this stage is for the GPU.
timeout 240 python -m pytest tests -q -p no:cacheprovider -k "(cuda or triton) and not emulat" > "$out/tests.log" 2>&1 || status=1
tail -3 "$out/tests.log"
echo "- tests: $(tail -1 "$out/tests.log")" >> "$summary"

echo "== benchmark"
timeout 200 python benchmarks/gpu_bench.py --out "$out" ${GPU_BENCH_ARGS:-} || status=1
[ -f "$out/gpu_bench.md" ] && { echo; cat "$out/gpu_bench.md"; } >> "$summary"

echo "== summary ($summary)"
cat "$summary"
exit $status
