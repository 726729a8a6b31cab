// The engine compiled for AVX-512 (16 floats a vector, 12-row micro-tiles: 24 of 32 registers hold
// accumulators). Standard headers come before the target pragma so that nothing shared with other
// translation units is compiled for AVX-512; only this variant's own functions are.
#include <algorithm>
#include <cstdint>
#include <vector>

#include "engine.h"

#if defined(__x86_64__) && defined(__GNUC__)
#pragma GCC push_options
#pragma GCC target("avx512f,avx512vl,avx512dq,avx512bw,avx2,fma")
// Vector a*b+c fuses into one FMA only with contraction on (ISO C++ modes turn it off).
#pragma GCC optimize("fp-contract=fast")
#define SK_ENGINE_NS avx512
#define SK_VL 16
#define SK_MR 12
#define SK_ISA "avx512"
#include "engine_impl.inc"
#pragma GCC pop_options

namespace shufflekernels::cpu {
const Kernels* kernels_avx512() { return avx512::get(); }
}  // namespace shufflekernels::cpu
#else
namespace shufflekernels::cpu {
const Kernels* kernels_avx512() { return nullptr; }
}  // namespace shufflekernels::cpu
#endif
