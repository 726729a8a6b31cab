// The 1x1 convolutions of the units, as GEMMs through ATen (MKL/oneDNN on CPU, cuBLAS on CUDA).
// They write raw products; bias and ReLU are applied by whichever of our kernels reads them next.
#pragma once

#include <ATen/ATen.h>

#include "checks.h"

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

// Elements between consecutive pixels (NHWC) or images (NCHW) of a dense tensor or a channel slice.
inline int64_t branch_stride(const at::Tensor& t, Layout layout) {
  return layout == Layout::NHWC ? t.stride(3) : t.stride(0);
}

// Checks shared by the CPU and CUDA entry points of the units; returns the branch channel count.
inline int64_t check_split_unit(const at::Tensor& x, const at::Tensor& pw1_w, const at::Tensor& pw1_b,
                                const at::Tensor& dw_w, const at::Tensor& dw_b, const at::Tensor& pw2_w,
                                const at::Tensor& pw2_b) {
  const char* op = "split_unit";
  check_rank(op, "x", x, 4);
  check_float_dtype(op, "x", x);
  TORCH_CHECK_VALUE(x.size(1) % 2 == 0, "shufflekernels.split_unit: argument 'x' expected an even channel count, got ",
                    x.size(1));
  const int64_t cb = x.size(1) / 2;
  check_pw_params(op, "pw1_weight", "pw1_bias", x, pw1_w, pw1_b, cb, cb);
  check_same(op, "dw_weight", dw_w, x);
  check_shape(op, "dw_weight", dw_w, {cb, 1, 3, 3});
  check_same(op, "dw_bias", dw_b, x);
  check_shape(op, "dw_bias", dw_b, {cb});
  check_pw_params(op, "pw2_weight", "pw2_bias", x, pw2_w, pw2_b, cb, cb);
  return cb;
}

inline int64_t check_down_unit(const at::Tensor& x, const at::Tensor& dw1_w, const at::Tensor& dw1_b,
                               const at::Tensor& pw3_w, const at::Tensor& pw3_b, const at::Tensor& pw1_w,
                               const at::Tensor& pw1_b, const at::Tensor& dw2_w, const at::Tensor& dw2_b,
                               const at::Tensor& pw2_w, const at::Tensor& pw2_b) {
  const char* op = "down_unit";
  check_rank(op, "x", x, 4);
  check_float_dtype(op, "x", x);
  check_spatial(op, x);
  check_rank(op, "pw1_weight", pw1_w, 4);
  const int64_t c_in = x.size(1), cb = pw1_w.size(0);
  check_dw_params(op, "dw1_weight", "dw1_bias", x, dw1_w, dw1_b);
  check_pw_params(op, "pw3_weight", "pw3_bias", x, pw3_w, pw3_b, cb, c_in);
  check_pw_params(op, "pw1_weight", "pw1_bias", x, pw1_w, pw1_b, cb, c_in);
  check_same(op, "dw2_weight", dw2_w, x);
  check_shape(op, "dw2_weight", dw2_w, {cb, 1, 3, 3});
  check_same(op, "dw2_bias", dw2_b, x);
  check_shape(op, "dw2_bias", dw2_b, {cb});
  check_pw_params(op, "pw2_weight", "pw2_bias", x, pw2_w, pw2_b, cb, cb);
  return cb;
}

}  // namespace shufflekernels
