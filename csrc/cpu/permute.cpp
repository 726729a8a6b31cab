// CPU kernels of the channel permutations: channel_shuffle and shuffle_cat.
//
// Index model (csrc/index_math.h): a shuffle with g groups writes out[n, j*g + i] = src_i[n, j], where
// src_i is the i-th channel group of one tensor (channel_shuffle) or the i-th tensor (shuffle_cat);
// csrc/layout.h (Permutation) says what each source points at in either layout. A pure permutation,
// so it moves bytes of the element size and serves every dtype without a dispatch.
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <cstdint>
#include <cstring>
#include <vector>

#include "../contract.h"
#include "../index_math.h"
#include "../layout.h"
#include "schedule.h"

namespace shufflekernels::cpu {
namespace {

using at::Tensor;

// NCHW: each output channel is one contiguous H*W plane copied from its source plane.
void interleave_nchw(const std::vector<const char*>& srcs, int64_t src_image_stride, int64_t cpg, int64_t N, int64_t HW,
                     char* out, int64_t elem_size) {
  const int64_t g = static_cast<int64_t>(srcs.size());
  const int64_t C = g * cpg;
  const int64_t plane_bytes = HW * elem_size;
  at::parallel_for(0, N * C, grain_for(HW), [&](int64_t begin, int64_t end) {
    for (int64_t nc = begin; nc < end; ++nc) {
      const int64_t n = nc / C;
      const ShuffleSource s = shuffle_source(nc % C, g);
      std::memcpy(out + nc * plane_bytes, srcs[s.group] + (n * src_image_stride + s.channel * HW) * elem_size,
                  plane_bytes);
    }
  });
}

// NHWC, typed by element width so the two-group case compiles to vector interleaves.
template <typename word_t>
void interleave_nhwc_typed(const std::vector<const char*>& srcs, int64_t src_pixel_stride, int64_t cpg, int64_t pixels,
                           char* out_bytes) {
  const int64_t g = static_cast<int64_t>(srcs.size());
  const int64_t C = g * cpg;
  word_t* out = reinterpret_cast<word_t*>(out_bytes);
  at::parallel_for(0, pixels, grain_for(C), [&](int64_t begin, int64_t end) {
    if (g == 2) {
      const word_t* a = reinterpret_cast<const word_t*>(srcs[0]);
      const word_t* b = reinterpret_cast<const word_t*>(srcs[1]);
      for (int64_t p = begin; p < end; ++p) {
        const word_t* __restrict pa = a + p * src_pixel_stride;
        const word_t* __restrict pb = b + p * src_pixel_stride;
        word_t* __restrict po = out + p * C;
        for (int64_t j = 0; j < cpg; ++j) {
          po[2 * j] = pa[j];
          po[2 * j + 1] = pb[j];
        }
      }
      return;
    }
    for (int64_t p = begin; p < end; ++p) {
      word_t* __restrict po = out + p * C;
      for (int64_t i = 0; i < g; ++i) {
        const word_t* __restrict ps = reinterpret_cast<const word_t*>(srcs[i]) + p * src_pixel_stride;
        for (int64_t j = 0; j < cpg; ++j) po[shuffle_destination(i, j, g)] = ps[j];
      }
    }
  });
}

void interleave_nhwc(const std::vector<const char*>& srcs, int64_t src_pixel_stride, int64_t cpg, int64_t pixels,
                     char* out, int64_t elem_size) {
  switch (elem_size) {
    case 4: return interleave_nhwc_typed<uint32_t>(srcs, src_pixel_stride, cpg, pixels, out);
    case 2: return interleave_nhwc_typed<uint16_t>(srcs, src_pixel_stride, cpg, pixels, out);
    default: TORCH_CHECK(false, "shufflekernels: internal error, unsupported element size ", elem_size);
  }
}

void run_permutation(const Permutation& p) {
  char* out = static_cast<char*>(p.out.data_ptr());
  if (p.layout == Layout::NCHW) {
    interleave_nchw(p.srcs, p.src_stride, p.cpg, p.N, p.HW, out, p.elem_size);
  } else {
    interleave_nhwc(p.srcs, p.src_stride, p.cpg, p.N * p.HW, out, p.elem_size);
  }
}

Tensor channel_shuffle_cpu(const Tensor& x, int64_t groups) {
  check_channel_shuffle(x, groups);
  const Permutation p = channel_shuffle_permutation(x, groups);
  if (p.out.numel() > 0) run_permutation(p);
  return p.out;
}

Tensor shuffle_cat_cpu(at::TensorList tensors) {
  check_shuffle_cat(tensors);
  const Permutation p = shuffle_cat_permutation(tensors);
  if (p.out.numel() > 0) run_permutation(p);
  return p.out;
}

}  // namespace

TORCH_LIBRARY_IMPL(shufflekernels, CPU, m) {
  m.impl("channel_shuffle", &channel_shuffle_cpu);
  m.impl("shuffle_cat", &shuffle_cat_cpu);
}

}  // namespace shufflekernels::cpu
