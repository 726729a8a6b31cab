#!/usr/bin/env bash
# The GPU check: one command on a fresh GPU machine that ends within 540 s of its start (one device call
# may run 600 s), its stages in order of value, each with a time cap:
#
#   1 info     GPU, driver, Python/torch/triton/nvcc versions, cores, build tools
#   2 build    the extension for this GPU's architecture only, on every core; a failed build costs
#              only the native rows of what follows
#   3 tests    every op on CUDA against the reference (fp32/fp16/bf16, both layouts, the network's
#              shapes and odd ones) and the model at every width, then a Triton slice; Triton
#              autotuning pinned to one config (SK_TRITON_AUTOTUNE=0)
#   4 bench    fp16 at batch 256 and 1: fused native, Triton and auto (each also replayed as a CUDA graph)
#              against eager channels_last (with and without a CUDA graph), then torch.compile
#   5 profile  one forward under torch.profiler: kernels, launches, time per kernel
#   6 rest     the time left: fp32 and batch 64, the whole Triton test matrix, the compile tests
#
#   OUT=results benchmarks/gpu_check.sh              # on the GPU machine ($OUT defaults to ./gpu-check-results)
#   OUT=results benchmarks/gpu_check.sh --rehearse   # the same stages on the CPU, for CI: no build (the
#                                                    # installed extension is checked), the emulated CUDA
#                                                    # kernels, Triton's interpreter, small sizes
#
# A stage may also use the time the stages before it left unused (stage k ends by the sum of the caps of
# stages 1..k), never the time of the stages after it. A stage at its end gets SIGINT (pytest and the
# benchmarks then report what they finished) and SIGKILL $GRACE s later, inside its time. $OUT/gpu_check.md gets each stage's section as soon as the stage
# ends, so a run cut off from outside still returns everything done so far. $OUT receives 7 files:
# gpu_check.md (the summary), build.log, tests.log, bench.log, gpu_bench.md, gpu_bench.json, gpu_profile.md.
# Without a GPU and without --rehearse it says so and exits 0. Exit status: 0 when every stage passed.
set -uo pipefail
cd "$(dirname "$0")/.."
repo=$PWD

mode=gpu
case "${1:-}" in
  "") ;;
  --rehearse) mode=rehearse ;;
  -h | --help) sed -n '2,/^set -uo/{/^set -uo/d;s/^# \{0,1\}//;p}' "$0"; exit 0 ;;
  *) echo "usage: $0 [--rehearse]" >&2; exit 2 ;;
esac

TOTAL_CAP=540
GRACE=10 # SIGINT to SIGKILL (an interrupted pytest can take seconds to exit), counted inside the caps
STAGES=(info build tests bench profile rest)
CAPS=(20 215 70 135 40 60) # seconds
sum=0
plan=""
for i in "${!STAGES[@]}"; do
  sum=$((sum + CAPS[i]))
  plan+="$((i + 1)) ${STAGES[i]} ${CAPS[i]} s, "
done
plan="${plan%, } = $sum s of $TOTAL_CAP s"
if ((sum > TOTAL_CAP)); then
  echo "gpu_check: the stage caps add up to $sum s, over the $TOTAL_CAP s cap" >&2
  exit 2
fi
echo "gpu_check ($mode): stages in order, with caps: $plan"

out="${OUT:-$repo/gpu-check-results}"
mkdir -p "$out" && out=$(cd "$out" && pwd)
summary=$out/gpu_check.md
# This tree's package, built or not: a failed build still leaves the Triton and reference paths.
export PYTHONPATH="$repo${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 PIP_DISABLE_PIP_VERSION_CHECK=1
if [ "$mode" = rehearse ]; then
  # The CPU stands in for the GPU even on a machine that has one.
  export CUDA_VISIBLE_DEVICES="" TRITON_INTERPRET=1
  rehearse=(--rehearse)
else
  rehearse=()
fi

# Test selections by keyword and marker, so that they follow tests moved between files. GPU: the op
# tables' "cuda" rows and tests/test_cuda.py. The rehearsal proves the stages, not the kernels (CI's test
# run does): slices of the same tables on the emulated CUDA kernels and the Triton interpreter.
if [ "$mode" = gpu ]; then
  SEL_NATIVE=(tests -k "cuda and not emulat and not compile")
  SEL_TRITON=(tests -m triton -k "float16 and not bfloat16 and nhwc or model")
  SEL_TRITON_ALL=(tests -m triton)
  SEL_COMPILE=(tests -k "cuda and compile and not emulat")
  REST_CASES=float32:256,float32:1,float16:64,float32:64
else
  SEL_NATIVE=(tests -k "cuda-emulated and not i64 and nhwc or test_cuda_emulation and model and 0.5")
  SEL_TRITON=(tests -m triton -k "float16 and not bfloat16 and nhwc and not model and not unit")
  SEL_TRITON_ALL=(tests -m triton -k "shuffle_cat and float32")
  SEL_COMPILE=()
  REST_CASES=float16:1
fi

SECONDS=0
n=0
failed=0

# stage NAME: the next stage. Stage k ends by the sum of the caps of stages 1..k: it has its own cap
# plus whatever the stages before it left unused, and never takes from the stages after it.
stage() {
  n=$((n + 1))
  if [ "${STAGES[n - 1]}" != "$1" ]; then
    echo "gpu_check: stage $1 run out of order (expected ${STAGES[n - 1]})" >&2
    exit 2
  fi
  stage_name=$1 stage_cap=${CAPS[n - 1]} stage_t0=$SECONDS stage_status=ok stage_text=()
  local i
  stage_deadline=0
  for ((i = 0; i < n; i++)); do stage_deadline=$((stage_deadline + CAPS[i])); done
  stage_spare=$((stage_deadline - SECONDS - stage_cap))
  echo
  echo "=== [${SECONDS} s] stage $n: $1 (cap $stage_cap s + $stage_spare s left over, ends by ${stage_deadline} s)"
}

note() { stage_text+=("$@"); }

# A stage's section goes to the summary as soon as the stage ends.
stage_end() {
  [ "$stage_status" = ok ] || failed=1
  {
    echo
    echo "## $n. $stage_name: $stage_status ($((SECONDS - stage_t0)) s of its $stage_cap s cap + $stage_spare s left over; ${SECONDS} s since the start)"
    echo
    printf '%s\n' "${stage_text[@]}"
  } >> "$summary"
  echo "--- stage $n: $stage_name: $stage_status"
}

# worse STATUS: the stage's status becomes STATUS unless it is already worse.
worse() {
  case "$stage_status:$1" in
    ok:*) stage_status=$1 ;;
    "cut by its time limit:FAILED") stage_status=FAILED ;;
  esac
}

# bounded AT_MOST CMD...: CMD for at most AT_MOST seconds, and never past the stage's deadline (less
# the grace). Status 124 or 137: cut off; 200: not started, no time left.
bounded() {
  local t=$((stage_deadline - SECONDS - GRACE))
  (($1 < t)) && t=$1
  if ((t <= 0)); then
    echo "gpu_check: no time left for: ${*:2}"
    return 200
  fi
  shift
  timeout -s INT -k "$GRACE" "$t" "$@"
}

# status_of RC: sets $st to ok, cut by its time limit or FAILED, and the stage's status with it.
status_of() {
  case $1 in
    0) st=ok ;;
    124 | 137) st="cut by its time limit" ;;
    200) st="not run: no time left" ;;
    *) st="FAILED (exit $1)" ;;
  esac
  case $st in
    ok) ;;
    FAILED*) worse FAILED ;;
    *) worse "cut by its time limit" ;;
  esac
}

# run_tests LABEL AT_MOST PYTEST_ARGS...: one pytest run into tests.log; its result line and failures noted.
run_tests() {
  local label=$1 at_most=$2 log rc result
  shift 2
  log=$(mktemp)
  echo "=== [${SECONDS} s] $label: pytest $*" | tee -a "$out/tests.log"
  SK_TRITON_AUTOTUNE=0 bounded "$at_most" python -m pytest -q -p no:cacheprovider -o addopts="" -rfE "$@" > "$log" 2>&1
  rc=$?
  cat "$log" >> "$out/tests.log"
  result=$(grep -E " in [0-9.]+s( \([0-9:]+\))?( =+)?$" "$log" | tail -1 | sed -E 's/^=+ //; s/ =+$//')
  [ "$rc" = 5 ] && rc=1 # nothing selected: the selection no longer matches the tests
  status_of "$rc"
  note "- $label: $st: ${result:-no pytest summary (see tests.log)}"
  while IFS= read -r line; do note "  - $line"; done < <(grep -E "^(FAILED|ERROR) " "$log" | head -20)
  echo "    $result"
  rm -f "$log"
}

# bench_section LABEL: that section of gpu_bench.md (the rows one benchmark run measured).
bench_section() {
  [ -f "$out/gpu_bench.md" ] && awk -v h="### $1" '$0 == h {f = 1; next} /^### / {f = 0} f' "$out/gpu_bench.md"
}

{
  echo "# GPU check, $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo
  if [ "$mode" = rehearse ]; then
    echo "CPU rehearsal: no GPU; the emulated CUDA kernels and Triton's interpreter at small sizes stand in for it."
    echo
  fi
  echo "Stages in order, with caps: $plan."
} > "$summary"

# --------------------------------------------------------------------------------------------------
stage info
info=$(GRACE=3 bounded 100000 python - "$mode" << 'PY' 2>&1
import importlib.util, os, platform, shutil, subprocess, sys

import torch

mode = sys.argv[1]
if mode == "gpu" and not torch.cuda.is_available():
    print("no CUDA device visible to torch")
    sys.exit(3)


def run(*cmd):
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


try:
    import triton
    triton_version = triton.__version__
except ImportError as exc:
    triton_version = f"not importable ({exc})"
if torch.cuda.is_available():
    props = torch.cuda.get_device_properties(0)
    driver = run("nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader").splitlines()[:1]
    print(f"- GPU: {props.name}, sm_{props.major}{props.minor}, {props.total_memory / 2**30:.0f} GiB, "
          f"{props.multi_processor_count} SMs, driver {driver[0] if driver else '?'}")
else:
    print("- GPU: none (rehearsal)")
nvcc = shutil.which("nvcc")
nvcc_version = run(nvcc, "--version").splitlines()[-1:] if nvcc else []
print(f"- Python {platform.python_version()}, torch {torch.__version__} (CUDA {torch.version.cuda}), triton {triton_version}, "
      f"nvcc: {nvcc_version[0] if nvcc_version else 'not found'}")
present = lambda m: "yes" if importlib.util.find_spec(m) else "NO"  # noqa: E731
print(f"- {os.cpu_count()} cores; ninja: {'yes' if shutil.which('ninja') or importlib.util.find_spec('ninja') else 'NO (serial build)'}; "
      f"pytest: {present('pytest')}; torchvision: {present('torchvision')}; numpy: {present('numpy')}")
if torch.cuda.is_available():
    print("arch=%d.%d" % torch.cuda.get_device_capability())
PY
)
rc=$?
if [ "$mode" = gpu ] && [ "$rc" = 3 ]; then
  echo "gpu_check: no CUDA device visible to torch here; nothing to check (--rehearse runs every stage on the CPU)"
  echo "No CUDA device visible to torch: nothing checked." >> "$summary"
  exit 0
fi
arch=$(sed -n 's/^arch=//p' <<< "$info")
note "$(grep -v '^arch=' <<< "$info")"
status_of "$rc"
[ "$rc" = 0 ] || note "- info: $st"
echo "$info"
stage_end

# --------------------------------------------------------------------------------------------------
stage build
build_cmd=(python -m pip install --no-build-isolation --no-deps --no-index -e .)
if [ "$mode" = gpu ]; then
  # Never the default architecture list: four architectures would take four times as long.
  [ -n "$arch" ] || arch=$(GRACE=3 bounded 30 python -c "import torch; print('%d.%d' % torch.cuda.get_device_capability())")
  # SK_HOST_EMULATION=0: the CUDA kernels' host-thread twin (the longest translation unit) is for machines
  # without a GPU; this one runs the real kernels.
  note "- \`TORCH_CUDA_ARCH_LIST=$arch SK_CUDA=1 SK_HOST_EMULATION=0 MAX_JOBS=$(nproc) ${build_cmd[*]}\` (build.log)"
  export TORCH_CUDA_ARCH_LIST=$arch SK_CUDA=1 SK_HOST_EMULATION=0 MAX_JOBS=$(nproc)
  bounded 100000 "${build_cmd[@]}" > "$out/build.log" 2>&1
  rc=$?
  if ((rc != 0 && rc != 124 && rc != 137)) && ! grep -q "^FAILED: " "$out/build.log"; then
    # No compile step failed (ninja names those): pip's packaging did. The same build without it, in place.
    note "- pip failed (exit $rc) with no compile error; built again as \`python setup.py build_ext --inplace\`"
    echo "=== [${SECONDS} s] python setup.py build_ext --inplace" >> "$out/build.log"
    bounded 100000 python setup.py build_ext --inplace >> "$out/build.log" 2>&1
    rc=$?
  fi
  unset TORCH_CUDA_ARCH_LIST SK_CUDA SK_HOST_EMULATION MAX_JOBS
  status_of "$rc"
  note "- build: $st in $((SECONDS - stage_t0)) s"
  if [ "$rc" != 0 ]; then
    note "- the Triton and eager rows still follow; the end of build.log:" '```' "$(tail -15 "$out/build.log")" '```'
  fi
else
  note "- rehearsal: no build (CI built the extension); the device runs \`TORCH_CUDA_ARCH_LIST=<its arch> SK_CUDA=1 SK_HOST_EMULATION=0 MAX_JOBS=\$(nproc) ${build_cmd[*]}\`"
fi
# What loads, built here or before: the native kernels for this device, or the reason they are missing.
loaded=$(GRACE=3 bounded 60 python - "$mode" << 'PY' 2>&1
import sys

import torch

import shufflekernels as sk

info = sk.build_info()
print(f"- loaded: {sk.__file__}; build: {info or 'no native library'}")
if sys.argv[1] == "gpu":
    report = sk.backends()["native-cuda"]
    print(f"- native CUDA usable: {report['usable']} ({report['why']})")
    sys.exit(0 if report["usable"] else 1)
emulated = torch._C._dispatch_has_kernel_for_dispatch_key("shufflekernels_cuda_emulated::split_unit", "CPU")
print(f"- emulated CUDA kernels (torch.ops.shufflekernels_cuda_emulated): {'registered' if emulated else 'MISSING'}")
sys.exit(0 if info and emulated else 1)
PY
)
rc=$?
note "$loaded"
status_of "$rc"
[ "$rc" = 0 ] || note "- load: $st"
echo "$loaded"
stage_end

# --------------------------------------------------------------------------------------------------
stage tests
note "- Triton autotuning pinned to the first config (SK_TRITON_AUTOTUNE=0); full log: tests.log"
# The Triton slice keeps at least 25 s.
run_tests "native ops and model" $((stage_deadline - SECONDS - 25)) "${SEL_NATIVE[@]}"
run_tests "Triton slice" 100000 "${SEL_TRITON[@]}"
stage_end

# --------------------------------------------------------------------------------------------------
stage bench
bounded 100000 python benchmarks/gpu_bench.py --out "$out" --label headline "${rehearse[@]}" >> "$out/bench.log" 2>&1
status_of $?
note "- gpu_bench.py: $st (bench.log)" "$(bench_section headline)"
stage_end

# --------------------------------------------------------------------------------------------------
stage profile
rm -f "$out/gpu_profile.md"
bounded 100000 python benchmarks/gpu_profile.py --out "$out" "${rehearse[@]}" >> "$out/bench.log" 2>&1
status_of $?
note "- gpu_profile.py: $st (bench.log)"
[ -f "$out/gpu_profile.md" ] && note "$(cat "$out/gpu_profile.md")"
stage_end

# --------------------------------------------------------------------------------------------------
stage rest
# Half of what is left for the other dtypes and batches, then the whole Triton matrix, then compile.
bounded $(((stage_deadline - SECONDS) / 2)) python benchmarks/gpu_bench.py --out "$out" --append --label rest \
  --cases "$REST_CASES" "${rehearse[@]}" >> "$out/bench.log" 2>&1
status_of $?
note "- gpu_bench.py $REST_CASES: $st (bench.log)" "$(bench_section rest)"
run_tests "Triton, every test" $((stage_deadline - SECONDS - 45)) "${SEL_TRITON_ALL[@]}"
if [ ${#SEL_COMPILE[@]} -gt 0 ]; then
  run_tests "torch.compile of the fused model on CUDA" 100000 "${SEL_COMPILE[@]}"
else
  note "- torch.compile of the fused model on CUDA: GPU only"
fi
stage_end

# --------------------------------------------------------------------------------------------------
files=$(find "$out" -type f | wc -l)
{
  echo
  echo "## end: $SECONDS s of $TOTAL_CAP s; $files files in OUT: $(cd "$out" && find . -type f | sed 's|^\./||' | sort | tr '\n' ' ')"
} >> "$summary"
echo
echo "=== summary ($summary)"
cat "$summary"
exit $failed
