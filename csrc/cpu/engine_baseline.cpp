// The engine for any CPU this library runs on (SSE2 on x86-64, NEON on ARM64: 4 floats a vector),
// and the run-time choice between the variants.
#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <string_view>
#include <vector>

#include "engine.h"

#define SK_ENGINE_NS baseline
#define SK_VL 4
#define SK_MR 6
#define SK_ISA "baseline"
#include "engine_impl.inc"

namespace shufflekernels::cpu {

const Kernels& kernels_baseline() { return *baseline::get(); }

namespace {

const Kernels& choose() {
#if defined(__x86_64__) && defined(__GNUC__)
  __builtin_cpu_init();
  // SK_ENGINE_ISA=avx2|baseline caps the choice (for tests and comparisons); unset: the best there is.
  const char* cap = std::getenv("SK_ENGINE_ISA");
  const bool allow_avx512 = cap == nullptr || std::string_view(cap) == "avx512";
  const bool allow_avx2 = allow_avx512 || std::string_view(cap) == "avx2";
  if (allow_avx512 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
      __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512bw") && kernels_avx512())
    return *kernels_avx512();
  if (allow_avx2 && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && kernels_avx2())
    return *kernels_avx2();
#endif
  return kernels_baseline();
}

}  // namespace

const Kernels& kernels() {
  static const Kernels& chosen = choose();
  return chosen;
}

}  // namespace shufflekernels::cpu
