// Facts about the build, written by setup.py / CMakeLists.txt into sk_build_config.h.
#pragma once

#if __has_include("sk_build_config.h")
#include "sk_build_config.h"
#endif

#ifndef SK_WITH_CUDA
#define SK_WITH_CUDA 0
#endif
#ifndef SK_CUDA_ARCHS
#define SK_CUDA_ARCHS ""
#endif
#ifndef SK_CUDA_VERSION
#define SK_CUDA_VERSION ""
#endif
#ifndef SK_CUDA_TOOLKIT_VERSION
#define SK_CUDA_TOOLKIT_VERSION ""
#endif
#ifndef SK_TORCH_VERSION
#define SK_TORCH_VERSION "unknown"
#endif
#ifndef SK_BUILD_TYPE
#define SK_BUILD_TYPE "release"
#endif

namespace shufflekernels {

// The widest vector ISA the CPU kernels were compiled for.
inline const char* compiled_simd_level() {
#if defined(__AVX512F__)
  return "avx512";
#elif defined(__AVX2__)
  return "avx2";
#elif defined(__AVX__)
  return "avx";
#elif defined(__SSE4_2__) || defined(__x86_64__)
  return "sse";
#elif defined(__ARM_NEON)
  return "neon";
#else
  return "scalar";
#endif
}

}  // namespace shufflekernels
