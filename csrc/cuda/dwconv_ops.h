// The CUDA backend's depthwise 3x3 conv (ops.h): dwconv3x3, and run_dwconv3x3, the units' depthwise
// primitive with its pre-activation on read (unit_ops.h calls it).
#pragma once

#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include <algorithm>
#include <cstdint>
#include <type_traits>

#include "../contract.h"
#include "../index_math.h"
#include "../layout.h"
#include "bodies.cuh"
#include "launch_plan.h"
#include "ops.h"

namespace shufflekernels::gpu {

using at::Tensor;

template <class Exec>
Tensor run_dwconv3x3(Exec& exec, const Tensor& x, Layout layout, const Tensor& weight,
                     const c10::optional<Tensor>& bias, int64_t stride, bool relu, const c10::optional<Tensor>& in_bias,
                     bool in_relu) {
  const int64_t N = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3);
  const int64_t Ho = dwconv3x3_out_size(H, stride), Wo = dwconv3x3_out_size(W, stride);
  Tensor out = at::empty({N, C, Ho, Wo}, x.options().memory_format(memory_format_of(layout)));
  if (out.numel() == 0) return out;
  const Tensor b = bias.has_value() ? bias->contiguous() : Tensor();
  const Tensor ib = in_bias.has_value() ? in_bias->contiguous() : Tensor();
  const int64_t es = x.element_size();
  const int width = layout == Layout::NHWC ? vector_width(es, {C}, {x.const_data_ptr(), out.const_data_ptr()})
                                           : vector_width(es, {W, Wo}, {x.const_data_ptr(), out.const_data_ptr()});
  const bool index32 = exec.index32(std::max(out.numel(), x.numel()));
  with_float_type(x.scalar_type(), [&](auto type) {
    using T = decltype(type);
    with_layout(layout, [&](auto nhwc) {
      with_width_and_index<sizeof(T)>(width, index32, [&](auto v, auto index) {
        constexpr int V = decltype(v)::value;
        using index_t = decltype(index);
        auto go = [&](auto s) {
          DwConv3x3Body<T, index_t, V, decltype(nhwc)::value, decltype(s)::value> body{
              x.const_data_ptr<T>(),
              out.data_ptr<T>(),
              weight.const_data_ptr<T>(),
              b.defined() ? b.const_data_ptr<T>() : nullptr,
              ib.defined() ? ib.const_data_ptr<T>() : nullptr,
              in_relu,
              relu,
              static_cast<index_t>(C),
              static_cast<index_t>(H),
              static_cast<index_t>(W),
              static_cast<index_t>(Ho),
              static_cast<index_t>(Wo),
              static_cast<index_t>(weight.stride(0)),
              static_cast<index_t>(weight.stride(2)),
              static_cast<index_t>(weight.stride(3))};
          exec.run(body, static_cast<index_t>(out.numel() / V));
        };
        stride == 1 ? go(std::integral_constant<int, 1>{}) : go(std::integral_constant<int, 2>{});
      });
    });
  });
  return out;
}

template <class Exec>
Tensor dwconv3x3_impl(const Tensor& x_in, const Tensor& weight, const c10::optional<Tensor>& bias, int64_t stride,
                      bool relu) {
  check_dwconv3x3(x_in, weight, bias, stride);
  [[maybe_unused]] Exec exec(x_in.device());
  auto [x, layout] = in_kernel_layout(x_in);
  return run_dwconv3x3(exec, x, layout, weight, bias, stride, relu, c10::nullopt, false);
}

template <class Exec>
void register_dwconv_ops(torch::Library& m) {
  m.impl("dwconv3x3", &dwconv3x3_impl<Exec>);
}

}  // namespace shufflekernels::gpu
