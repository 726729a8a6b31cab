// The CUDA backend's channel permutations (ops.h): channel_shuffle and shuffle_cat, one InterleaveBody
// launch per group of up to kMaxSourcesPerLaunch sources. Index model: csrc/index_math.h; what each
// source points at in either layout: csrc/layout.h (Permutation).
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>
#include <torch/library.h>

#include <algorithm>
#include <cstdint>

#include "../contract.h"
#include "../layout.h"
#include "bodies.cuh"
#include "launch_plan.h"
#include "ops.h"

namespace shufflekernels::gpu {

using at::Tensor;

template <class Exec>
void run_permutation(Exec& exec, const Permutation& p) {
  const int groups = static_cast<int>(p.srcs.size());
  const int64_t es = p.elem_size;
  void* out = p.out.data_ptr();
  const bool index32 = exec.index32(std::max(p.out.numel(), p.source_numel));
  int width = 1;
  if (p.layout == Layout::NCHW) {
    width = vector_width(es, {p.HW, p.src_stride}, {out});
    for (const char* s : p.srcs) width = std::min(width, vector_width(es, {p.HW, p.src_stride}, {s}));
  } else if (groups <= kMaxSourcesPerLaunch) {  // the vector NHWC path needs every group in one launch
    width = vector_width(es, {p.cpg * groups}, {out});
  }
  auto launch = [&](auto word) {
    using W = decltype(word);
    with_layout(p.layout, [&](auto nhwc) {
      with_width_and_index<sizeof(W)>(width, index32, [&](auto v, auto index) {
        constexpr int V = decltype(v)::value;
        using index_t = decltype(index);
        for (int first = 0; first < groups; first += kMaxSourcesPerLaunch) {
          InterleaveBody<W, index_t, V, decltype(nhwc)::value> body{};
          body.first = first;
          body.count = std::min(kMaxSourcesPerLaunch, groups - first);
          body.groups = groups;
          for (int k = 0; k < body.count; ++k) body.src[k] = reinterpret_cast<const W*>(p.srcs[first + k]);
          body.cpg = static_cast<index_t>(p.cpg);
          body.HW = static_cast<index_t>(p.HW);
          body.src_stride = static_cast<index_t>(p.src_stride);
          body.out = static_cast<W*>(out);
          exec.run(body, static_cast<index_t>(p.N * body.count * p.cpg * p.HW / V));
        }
      });
    });
  };
  if (es == 4) {
    launch(uint32_t{});
  } else {
    TORCH_CHECK(es == 2, "shufflekernels: internal error, unsupported element size ", es);
    launch(uint16_t{});
  }
}

template <class Exec>
Tensor channel_shuffle_impl(const Tensor& x, int64_t groups) {
  check_channel_shuffle(x, groups);
  Exec exec(x.device());
  const Permutation p = channel_shuffle_permutation(x, groups);
  if (p.out.numel() > 0) run_permutation(exec, p);
  return p.out;
}

template <class Exec>
Tensor shuffle_cat_impl(at::TensorList tensors) {
  check_shuffle_cat(tensors);
  Exec exec(tensors[0].device());
  const Permutation p = shuffle_cat_permutation(tensors);
  if (p.out.numel() > 0) run_permutation(exec, p);
  return p.out;
}

template <class Exec>
void register_permute_ops(torch::Library& m) {
  m.impl("channel_shuffle", &channel_shuffle_impl<Exec>);
  m.impl("shuffle_cat", &shuffle_cat_impl<Exec>);
}

}  // namespace shufflekernels::gpu
