// Library calls (cuBLAS through ATen) made as one counted launch each: the executor is told of each
// with its traffic (launch_plan.h, Traffic) and may skip it (the emulation's dry run). The 1x1 convs'
// GEMMs live here because every family that has a 1x1 conv (pointwise, the units, the network) calls
// them; they launch no body of ours, so each family's translation unit compiles its own.
#pragma once

#include <ATen/core/Tensor.h>
#include <ATen/ops/_addmm_activation.h>
#include <ATen/ops/addmm.h>
#include <ATen/ops/empty.h>

#include <cstdint>

#include "../aten_convs.h"
#include "../layout.h"
#include "launch_plan.h"

namespace shufflekernels::gpu {

using at::Tensor;

// A library call (cuBLAS, cuDNN or another ATen kernel) that the executor counts as one launch with
// the given traffic (launch_plan.h): `call` makes it; in the emulation's dry run `dry` makes an uninitialised
// result of the same shape and layout instead.
template <class Exec, class Call, class Dry>
Tensor run_library(const Exec& exec, const char* name, const Traffic& traffic, Call&& call, Dry&& dry) {
  return exec.library(name, traffic) ? call() : dry();
}

// A raw 1x1 conv (aten_convs.h, pointwise_raw) as one cuBLAS GEMM: M*K + K*N + M*N elements.
template <class Exec>
Tensor gemm_raw(const Exec& exec, const Tensor& x, Layout layout, const Tensor& weight) {
  const int64_t N = x.size(0), c_out = weight.size(0), H = x.size(2), W = x.size(3), es = x.element_size();
  const Traffic traffic{(x.numel() + weight.numel()) * es, N * c_out * H * W * es};
  return run_library(
      exec, "gemm", traffic, [&] { return pointwise_raw(x, layout, weight); },
      [&] { return at::empty({N, c_out, H, W}, x.options().memory_format(memory_format_of(layout))); });
}

// relu?(conv1x1(x) + bias) as one GEMM on [pixels, Cin], for x channels_last (or a channel slice of such
// a tensor: unit channel stride, one pixel stride) or pooled features [N, C, 1, 1] (a matrix in either
// layout), with the bias, and the ReLU, in cuBLASLt's epilogue: added in float32 before the product is
// rounded, and no pass over the output after it. Returns the result in x's layout.
template <class Exec>
Tensor gemm_bias_act(const Exec& exec, const Tensor& x, Layout layout, const Tensor& weight, const Tensor& bias,
                     bool relu) {
  const int64_t N = x.size(0), c_in = x.size(1), H = x.size(2), W = x.size(3), c_out = weight.size(0);
  const int64_t M = N * H * W, es = x.element_size();
  const Tensor a = x.permute({0, 2, 3, 1}).reshape({M, c_in}), w = weight.reshape({c_out, c_in}).t();
  const Traffic traffic{(M * c_in + c_in * c_out + c_out) * es, M * c_out * es};
  const Tensor y = run_library(
      exec, relu ? "gemm_bias_relu" : "gemm_bias", traffic,
      [&] { return relu ? at::_addmm_activation(bias, a, w, 1, 1, /*use_gelu=*/false) : at::addmm(bias, a, w); },
      [&] { return at::empty({M, c_out}, x.options()); });
  if (layout == Layout::NCHW) return y.view({N, c_out, 1, 1});
  return y.view({N, H, W, c_out}).permute({0, 3, 1, 2});
}

}  // namespace shufflekernels::gpu
