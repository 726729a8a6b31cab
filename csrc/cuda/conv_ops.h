// The CUDA backend's dense convolutions (ops.h): pointwise (one GEMM, library_calls.h, with the bias and
// ReLU in cuBLASLt's epilogue, or in one pass of ours over an NCHW result) and the stem (one kernel,
// StemBody; run_stem is also the network's first layer).
#pragma once

#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <c10/util/Exception.h>
#include <torch/library.h>

#include <algorithm>
#include <cstdint>
#include <type_traits>

#include "../contract.h"
#include "../layout.h"
#include "bodies.cuh"
#include "launch_plan.h"
#include "library_calls.h"
#include "ops.h"

namespace shufflekernels::gpu {

using at::Tensor;

template <class Exec>
Tensor pointwise_impl(const Tensor& x_in, const Tensor& weight, const Tensor& bias, bool relu) {
  check_pointwise(x_in, weight, bias);
  [[maybe_unused]] Exec exec(x_in.device());
  auto [x, layout] = in_kernel_layout(x_in);
  if (x.numel() == 0)
    return at::empty({x.size(0), weight.size(0), x.size(2), x.size(3)},
                     x.options().memory_format(memory_format_of(layout)));
  const int64_t H = x.size(2), W = x.size(3);
  const Tensor b = bias.contiguous();
  if (layout == Layout::NHWC || H * W == 1) return gemm_bias_act(exec, x, layout, weight, b, relu);
  // NCHW with pixels: a batched GEMM, then bias and ReLU in one in-place pass over its result.
  Tensor y = gemm_raw(exec, x, layout, weight);
  if (y.numel() == 0) return y;
  const int64_t C = y.size(1), HW = y.size(2) * y.size(3);
  const int width = vector_width(y.element_size(), {HW}, {y.const_data_ptr()});
  with_float_type(y.scalar_type(), [&](auto type) {
    using T = decltype(type);
    with_width_and_index<sizeof(T)>(width, exec.index32(y.numel()), [&](auto v, auto index) {
      constexpr int V = decltype(v)::value;
      using index_t = decltype(index);
      BiasActBody<T, index_t, V, false> body{y.data_ptr<T>(), b.const_data_ptr<T>(), relu, static_cast<index_t>(C),
                                             static_cast<index_t>(HW)};
      exec.run(body, static_cast<index_t>(y.numel() / V));
    });
  });
  return y;
}

// The stem in one kernel (StemBody): conv, bias, ReLU and max-pool, no intermediate, no indices; the
// output in `out_layout` (the input's for the stem op; channels_last for the network, which reads an NCHW
// image straight into it).
template <class Exec>
Tensor run_stem(Exec& exec, const Tensor& x, Layout layout, Layout out_layout, const Tensor& weight_in,
                const Tensor& bias_in) {
  const int64_t N = x.size(0), Cin = x.size(1), H = x.size(2), W = x.size(3), Cout = weight_in.size(0);
  const int64_t Hc = stem_conv_out_size(H), Wc = stem_conv_out_size(W), Hp = stem_out_size(H), Wp = stem_out_size(W);
  Tensor out = at::empty({N, Cout, Hp, Wp}, x.options().memory_format(memory_format_of(out_layout)));
  if (out.numel() == 0) return out;
  TORCH_CHECK(layout == out_layout || out_layout == Layout::NHWC,
              "shufflekernels: internal error, the stem writes NCHW only from NCHW");
  const Tensor w = weight_in.contiguous(), b = bias_in.contiguous();
  const int width = out_layout == Layout::NHWC ? vector_width(x.element_size(), {Cout}, {out.const_data_ptr()}) : 1;
  const bool index32 = exec.index32(std::max(out.numel(), x.numel()));
  with_float_type(x.scalar_type(), [&](auto type) {
    using T = decltype(type);
    with_layout(out_layout, [&](auto nhwc) {
      constexpr bool kNHWC = decltype(nhwc)::value;
      with_width_and_index<sizeof(T)>(width, index32, [&](auto v, auto index) {
        constexpr int V = kNHWC ? decltype(v)::value : 1;  // NCHW: one element an item
        using index_t = decltype(index);
        auto go = [&](auto in_nhwc) {
          auto i = [](int64_t value) { return static_cast<index_t>(value); };
          StemBody<T, index_t, V, kNHWC, decltype(in_nhwc)::value> body{x.const_data_ptr<T>(),
                                                                        w.const_data_ptr<T>(),
                                                                        b.const_data_ptr<T>(),
                                                                        out.data_ptr<T>(),
                                                                        i(Cin),
                                                                        i(Cout),
                                                                        i(H),
                                                                        i(W),
                                                                        i(Hc),
                                                                        i(Wc),
                                                                        i(Hp),
                                                                        i(Wp)};
          exec.run(body, static_cast<index_t>(out.numel() / V));
        };
        if constexpr (kNHWC) {
          layout == Layout::NHWC ? go(std::true_type{}) : go(std::false_type{});
        } else {
          go(std::false_type{});
        }
      });
    });
  });
  return out;
}

template <class Exec>
Tensor stem_impl(const Tensor& x_in, const Tensor& weight, const Tensor& bias) {
  check_stem(x_in, weight, bias);
  Exec exec(x_in.device());
  auto [x, layout] = in_kernel_layout(x_in);
  return run_stem(exec, x, layout, layout, weight, bias);
}

template <class Exec>
void register_conv_ops(torch::Library& m) {
  m.impl("pointwise", &pointwise_impl<Exec>);
  m.impl("stem", &stem_impl<Exec>);
}

}  // namespace shufflekernels::gpu
