// The CUDA backend's standalone units (ops.h): split_unit and down_unit, the generic unit
// (csrc/unit_orchestration.h) over this backend's primitives. The network runs its units its own way
// (network_ops.h).
#pragma once

#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <c10/util/Optional.h>
#include <torch/library.h>

#include <cstdint>

#include "../contract.h"
#include "../index_math.h"
#include "../layout.h"
#include "../unit_orchestration.h"
#include "bodies.cuh"
#include "launch_plan.h"
#include "library_calls.h"
#include "ops.h"

namespace shufflekernels::gpu {

using at::Tensor;

// Writes the two branches a, b (cpg channels each, H x W) interleaved into a new tensor.
template <class Exec, typename T>
Tensor interleave2(Exec& exec, const Branch<T>& a, const Branch<T>& b, int64_t N, int64_t cpg, int64_t H, int64_t W,
                   Layout layout, const at::TensorOptions& options) {
  Tensor out = at::empty({N, 2 * cpg, H, W}, options.memory_format(memory_format_of(layout)));
  if (out.numel() == 0) return out;
  const int64_t HW = H * W;
  const int width = vector_width(sizeof(T), {layout == Layout::NHWC ? cpg : HW, a.stride, b.stride},
                                 {a.data, b.data, out.const_data_ptr()});
  // Sources are channel slices of tensors no larger than twice the output.
  const bool index32 = exec.index32(2 * out.numel());
  with_layout(layout, [&](auto nhwc) {
    with_width_and_index<sizeof(T)>(width, index32, [&](auto v, auto index) {
      constexpr int V = decltype(v)::value;
      constexpr bool kNHWC = decltype(nhwc)::value;
      using index_t = decltype(index);
      Interleave2Body<T, index_t, V, kNHWC> body{
          {a.data, b.data},         {static_cast<index_t>(a.stride), static_cast<index_t>(b.stride)},
          {a.bias, b.bias},         static_cast<index_t>(cpg),
          static_cast<index_t>(HW), out.data_ptr<T>()};
      // An NHWC item writes V channels of each branch: 2V outputs.
      exec.run(body, static_cast<index_t>(out.numel() / (kNHWC ? 2 * V : V)));
    });
  });
  return out;
}

// The units' primitives on this backend (csrc/unit_orchestration.h): cuBLAS GEMMs through ATen,
// the depthwise kernel with its pre-activation, and the two-branch interleave. Biases are read in the
// activations' dtype, where they lie.
template <class Exec>
struct GpuPrims {
  Exec& exec;

  // channels_last: one GEMM with bias and ReLU in cuBLASLt's epilogue, the bias added in float32 before
  // the product is rounded. NCHW: the raw batched GEMM, whose bias and ReLU the reader applies (an
  // epilogue there would need a pass of its own over the output).
  PointwiseResult pointwise(const Tensor& x, Layout layout, const Tensor& weight, const Tensor& bias) {
    if (layout == Layout::NHWC) return {gemm_bias_act(exec, x, layout, weight, bias.contiguous(), true), true};
    return {gemm_raw(exec, x, layout, weight), false};
  }
  Tensor dwconv(const Tensor& x, Layout layout, const Tensor& weight, const c10::optional<Tensor>& bias, int64_t stride,
                bool relu, const c10::optional<Tensor>& in_bias, bool in_relu) {
    return run_dwconv3x3(exec, x, layout, weight, bias, stride, relu, in_bias, in_relu);
  }
  Tensor interleave2(const UnitBranch& a, const UnitBranch& b, int64_t N, int64_t cpg, int64_t H, int64_t W,
                     Layout layout, const at::TensorOptions& options) {
    const Tensor bias_a = a.bias.defined() ? a.bias.contiguous() : Tensor();
    const Tensor bias_b = b.bias.defined() ? b.bias.contiguous() : Tensor();
    Tensor out;
    with_float_type(options.dtype().toScalarType(), [&](auto type) {
      using T = decltype(type);
      auto branch = [](const UnitBranch& s, const Tensor& bias) {
        return Branch<T>{s.data.const_data_ptr<T>(), s.stride, bias.defined() ? bias.const_data_ptr<T>() : nullptr};
      };
      out = gpu::interleave2(exec, branch(a, bias_a), branch(b, bias_b), N, cpg, H, W, layout, options);
    });
    return out;
  }
};

template <class Exec>
Tensor split_unit_impl(const Tensor& x_in, const Tensor& pw1_w, const Tensor& pw1_b, const Tensor& dw_w,
                       const Tensor& dw_b, const Tensor& pw2_w, const Tensor& pw2_b) {
  const int64_t cb = check_split_unit(x_in, pw1_w, pw1_b, dw_w, dw_b, pw2_w, pw2_b);
  Exec exec(x_in.device());
  auto [x, layout] = in_kernel_layout(x_in);
  if (x.numel() == 0) return at::empty(x.sizes(), x.options().memory_format(memory_format_of(layout)));
  GpuPrims<Exec> prims{exec};
  return split_unit_generic(prims, x, layout, cb, pw1_w, pw1_b, dw_w, dw_b, pw2_w, pw2_b);
}

template <class Exec>
Tensor down_unit_impl(const Tensor& x_in, const Tensor& dw1_w, const Tensor& dw1_b, const Tensor& pw3_w,
                      const Tensor& pw3_b, const Tensor& pw1_w, const Tensor& pw1_b, const Tensor& dw2_w,
                      const Tensor& dw2_b, const Tensor& pw2_w, const Tensor& pw2_b) {
  const int64_t cb = check_down_unit(x_in, dw1_w, dw1_b, pw3_w, pw3_b, pw1_w, pw1_b, dw2_w, dw2_b, pw2_w, pw2_b);
  Exec exec(x_in.device());
  auto [x, layout] = in_kernel_layout(x_in);
  const int64_t Ho = dwconv3x3_out_size(x.size(2), 2), Wo = dwconv3x3_out_size(x.size(3), 2);
  if (x.size(0) == 0) return at::empty({0, 2 * cb, Ho, Wo}, x.options().memory_format(memory_format_of(layout)));
  GpuPrims<Exec> prims{exec};
  return down_unit_generic(prims, x, layout, cb, dw1_w, dw1_b, pw3_w, pw3_b, pw1_w, pw1_b, dw2_w, dw2_b, pw2_w, pw2_b);
}

template <class Exec>
void register_unit_ops(torch::Library& m) {
  m.impl("split_unit", &split_unit_impl<Exec>);
  m.impl("down_unit", &down_unit_impl<Exec>);
}

}  // namespace shufflekernels::gpu
