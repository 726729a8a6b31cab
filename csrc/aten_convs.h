// The convolutions left to ATen: the units' 1x1 convolutions as GEMMs (MKL/oneDNN on CPU, cuBLAS on
// CUDA), and the stem as ATen's conv, ReLU and max-pool where a backend has no kernel of its own.
// pointwise_raw writes raw products, whose bias and ReLU the kernel reading them applies (the CUDA units on
// channels_last take cuBLASLt's epilogue instead: cuda/library_calls.h, gemm_bias_act).
#pragma once

#include <ATen/core/Tensor.h>
#include <ATen/ops/conv2d.h>
#include <ATen/ops/matmul.h>
#include <ATen/ops/max_pool2d.h>
#include <ATen/ops/mm.h>
#include <ATen/ops/relu.h>

#include "layout.h"

namespace shufflekernels {

// Raw 1x1 convolution (no bias, no activation) of x_view, whose channels are consecutive channels of
// a tensor dense in `layout` (the tensor itself or a channel slice of it). Returns a tensor dense in
// the same layout.
// NHWC: x is a [pixels, Cin] matrix whose row stride is the parent's channel count -> x @ W^T.
// NCHW: each image is a [Cin, H*W] matrix -> W @ x, batched.
inline at::Tensor pointwise_raw(const at::Tensor& x_view, Layout layout, const at::Tensor& weight) {
  const int64_t N = x_view.size(0), H = x_view.size(2), W = x_view.size(3);
  const int64_t c_out = weight.size(0), c_in = weight.size(1);
  at::Tensor w2d = weight.reshape({c_out, c_in});
  if (layout == Layout::NHWC) {
    // A channel slice of a channels_last tensor, permuted to [N, H, W, Cin], has unit channel stride
    // and one pixel stride, so it flattens to a matrix without a copy.
    at::Tensor x2d = x_view.permute({0, 2, 3, 1}).reshape({N * H * W, c_in});
    at::Tensor y = at::mm(x2d, w2d.t());
    return y.view({N, H, W, c_out}).permute({0, 3, 1, 2});
  }
  at::Tensor y = at::matmul(w2d, x_view.reshape({N, c_in, H * W}));
  return y.view({N, c_out, H, W});
}

// The stem, maxpool3x3/2(relu(conv3x3/2(x) + bias)), in ATen ops: what the backends without a kernel
// of their own for it (and every dtype but the CPU engine's float32) compute.
inline at::Tensor stem_composite(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias) {
  return at::max_pool2d(at::relu(at::conv2d(x, weight, bias, 2, 1)), 3, 2, 1);
}

}  // namespace shufflekernels
