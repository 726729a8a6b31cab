// Launch planning for the CUDA kernels (bodies.cuh), shared by both executors: the vector width a
// launch may use (every access aligned and in range), 32- or 64-bit indices, and the compile-time
// dispatch that turns those run-time choices, the layout and the dtype into template arguments.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>

#include <cstdint>
#include <initializer_list>
#include <limits>
#include <type_traits>

#include "../index_math.h"
#include "../layout.h"

// Loops over vector lanes and taps have compile-time trip counts; unrolled, their arrays stay in
// registers on the GPU.
#if defined(__CUDACC__)
#define SK_UNROLL _Pragma("unroll")
#else
#define SK_UNROLL _Pragma("GCC unroll 16")
#endif

namespace shufflekernels::gpu {

// ------------------------------------------------------------------------------------------------
// Traffic
// ------------------------------------------------------------------------------------------------

// The global memory one launch reads and writes, in bytes: every distinct byte its items load or
// store, counted once (what a launch costs in DRAM traffic when the caches serve the reuse between
// neighbouring items, as a depthwise conv's halo rows). Each body computes its own from its fields
// (traffic(items)); library calls (cuBLAS through ATen) count their GEMM's M*K + K*N + M*N elements.
// The emulation logs them (host_emulation.cpp, traffic_log) for the ledger (shufflekernels/ledger.py).
struct Traffic {
  int64_t read = 0, written = 0;
};

// ------------------------------------------------------------------------------------------------
// Vector access
// ------------------------------------------------------------------------------------------------

template <typename T, int V>
struct alignas(sizeof(T) * V) Pack {
  T v[V];
};

#if !defined(__CUDA_ARCH__)
// On the host a misaligned vector access would go unnoticed (x86 forgives it); on a GPU it faults. The
// emulation checks every one, so a planning mistake fails a CPU test instead of a GPU run.
inline void check_vector_alignment(const void* p, size_t bytes) {
  TORCH_CHECK(reinterpret_cast<uintptr_t>(p) % bytes == 0, "shufflekernels: internal error, ", bytes,
              "-byte vector access at misaligned address ", p);
}
#endif

template <int V, typename T>
SK_HOST_DEVICE Pack<T, V> load_pack(const T* p) {
#if !defined(__CUDA_ARCH__)
  check_vector_alignment(p, sizeof(Pack<T, V>));
#endif
  return *reinterpret_cast<const Pack<T, V>*>(p);
}

template <int V, typename T>
SK_HOST_DEVICE void store_pack(T* p, const Pack<T, V>& x) {
#if !defined(__CUDA_ARCH__)
  check_vector_alignment(p, sizeof(Pack<T, V>));
#endif
  *reinterpret_cast<Pack<T, V>*>(p) = x;
}

// ------------------------------------------------------------------------------------------------
// Vector width, index type, compile-time dispatch
// ------------------------------------------------------------------------------------------------

// The widest vector, in elements of an E-byte type, that every count is a multiple of and every
// pointer is aligned to: 16 bytes, else 8, else 4 (a pair of 2-byte elements), else one element.
inline int vector_width(int64_t elem_size, std::initializer_list<int64_t> counts,
                        std::initializer_list<const void*> pointers) {
  for (int64_t bytes : {16, 8, 4}) {
    const int64_t v = bytes / elem_size;
    if (v < 2) continue;
    bool ok = true;
    for (int64_t n : counts) ok = ok && n % v == 0;
    for (const void* p : pointers) ok = ok && reinterpret_cast<uintptr_t>(p) % bytes == 0;
    if (ok) return static_cast<int>(v);
  }
  return 1;
}

inline bool fits_int32(int64_t n) { return n < std::numeric_limits<int32_t>::max(); }

// Calls f(std::integral_constant<int, V>, index_t{}) with the planned width and index type. Vector
// widths run with 32-bit indices only: a launch over 2^31 or more elements takes the scalar 64-bit path.
template <int64_t kElemSize, class F>
void with_width_and_index(int width, bool index32, F&& f) {
  constexpr int kWide = 16 / kElemSize, kNarrow = 8 / kElemSize, kPair = 4 / kElemSize;
  if (!index32) return f(std::integral_constant<int, 1>{}, int64_t{});
  if (width == kWide) return f(std::integral_constant<int, kWide>{}, int32_t{});
  if constexpr (kNarrow >= 2) {
    if (width == kNarrow) return f(std::integral_constant<int, kNarrow>{}, int32_t{});
  }
  if constexpr (kPair >= 2) {
    if (width == kPair) return f(std::integral_constant<int, kPair>{}, int32_t{});
  }
  f(std::integral_constant<int, 1>{}, int32_t{});
}

template <class F>
void with_layout(Layout layout, F&& f) {
  if (layout == Layout::NHWC) {
    f(std::true_type{});
  } else {
    f(std::false_type{});
  }
}

// The three dtypes of the contract (docs/design.md, "Op semantics"), without AT_DISPATCH's double instantiations.
template <class F>
void with_float_type(at::ScalarType type, F&& f) {
  switch (type) {
    case at::kFloat: return f(float{});
    case at::kHalf: return f(c10::Half{});
    case at::kBFloat16: return f(c10::BFloat16{});
    default: TORCH_CHECK(false, "shufflekernels: internal error, unsupported dtype ", type);
  }
}

}  // namespace shufflekernels::gpu
