// Input layout decisions shared by the CPU and CUDA entry points: which of the two dense layouts a
// kernel reads, and what a channel permutation reads and writes. The input checks are contract.h.
#pragma once

#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>

#include <utility>
#include <vector>

#include "contract.h"

namespace shufflekernels {

// The two layouts the kernels read: dense NCHW, or dense channels_last (NHWC in memory).
enum class Layout { NCHW, NHWC };

inline at::MemoryFormat memory_format_of(Layout layout) {
  return layout == Layout::NHWC ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous;
}

// The layout is decided from the tensor's strides; a tensor dense in neither layout (a slice, a
// permutation) is copied once into the layout torch suggests for it, so no kernel reads strides it
// was not written for.
inline std::pair<at::Tensor, Layout> in_kernel_layout(const at::Tensor& x) {
  const auto fmt = x.suggest_memory_format();
  const Layout layout = fmt == at::MemoryFormat::ChannelsLast ? Layout::NHWC : Layout::NCHW;
  return {x.contiguous(fmt), layout};
}

// Elements between consecutive pixels (NHWC) or images (NCHW) of a dense tensor or a channel slice.
inline int64_t branch_stride(const at::Tensor& t, Layout layout) {
  return layout == Layout::NHWC ? t.stride(3) : t.stride(0);
}

// What every backend's channel permutation reads and writes: output channel j*g + i of image p (NCHW)
// or pixel p (NHWC) is element p * src_stride + j * (NCHW ? HW : 1) of srcs[i] (elem_size bytes each).
struct Permutation {
  at::Tensor out;
  Layout layout;
  std::vector<at::Tensor> inputs;  // what srcs point into, in the kernel's layout
  std::vector<const char*> srcs;
  int64_t N, cpg, HW, src_stride, source_numel, elem_size;
};

// channel_shuffle(x, groups): source i is the i-th block of C/groups channels of x.
inline Permutation channel_shuffle_permutation(const at::Tensor& x_in, int64_t groups) {
  auto [x, layout] = in_kernel_layout(x_in);
  const int64_t N = x.size(0), C = x.size(1), HW = x.size(2) * x.size(3), cpg = C / groups;
  Permutation p{at::empty(x.sizes(), x.options().memory_format(memory_format_of(layout))),
                layout,
                {x},
                {},
                N,
                cpg,
                HW,
                layout == Layout::NCHW ? C * HW : C,
                x.numel(),
                x.element_size()};
  const int64_t group_bytes = (layout == Layout::NCHW ? cpg * HW : cpg) * p.elem_size;
  const char* base = static_cast<const char*>(x.const_data_ptr());
  for (int64_t i = 0; i < groups; ++i) p.srcs.push_back(base + i * group_bytes);
  return p;
}

// shuffle_cat(tensors): the first tensor decides the layout; the others are read in it (copied once if
// needed).
inline Permutation shuffle_cat_permutation(at::TensorList tensors) {
  auto [x0, layout] = in_kernel_layout(tensors[0]);
  const auto fmt = memory_format_of(layout);
  const int64_t g = static_cast<int64_t>(tensors.size());
  const int64_t N = x0.size(0), cpg = x0.size(1), H = x0.size(2), W = x0.size(3);
  Permutation p{at::empty({N, cpg * g, H, W}, x0.options().memory_format(fmt)),
                layout,
                {x0},
                {},
                N,
                cpg,
                H * W,
                layout == Layout::NCHW ? cpg * H * W : cpg,
                x0.numel(),
                x0.element_size()};
  for (int64_t i = 1; i < g; ++i) p.inputs.push_back(tensors[i].contiguous(fmt));
  for (const at::Tensor& t : p.inputs) p.srcs.push_back(static_cast<const char*>(t.const_data_ptr()));
  return p;
}

}  // namespace shufflekernels
