// The engine compiled for AVX2 + FMA (8 floats a vector, 6-row micro-tiles: 12 of 16 registers hold
// accumulators). Standard headers come before the target pragma, as in engine_avx512.cpp.
#include <algorithm>
#include <cstdint>
#include <vector>

#include "engine.h"

#if defined(__x86_64__) && defined(__GNUC__)
#pragma GCC push_options
#pragma GCC target("avx2,fma")
#pragma GCC optimize("fp-contract=fast")
#define SK_ENGINE_NS avx2
#define SK_VL 8
#define SK_MR 6
#define SK_ISA "avx2"
#include "engine_impl.inc"
#pragma GCC pop_options

namespace shufflekernels::cpu {
const Kernels* kernels_avx2() { return avx2::get(); }
}  // namespace shufflekernels::cpu
#else
namespace shufflekernels::cpu {
const Kernels* kernels_avx2() { return nullptr; }
}  // namespace shufflekernels::cpu
#endif
