// The ShuffleNetV2 units as a sequence of primitives, written once for every backend that runs them
// op by op: the CPU kernels for every dtype but float32 (csrc/cpu/units.cpp; float32 has the engine's
// fused path) and the CUDA kernels on both executors (csrc/cuda/unit_ops.h).
//
// Semantics: docs/design.md, "Split unit" and "Down unit". A 1x1 convolution either applies its bias
// and ReLU itself, in the GEMM's epilogue (the CUDA kernels on channels_last: cuBLASLt adds the bias in
// float32 before the product is rounded), or writes the raw product, and then the primitive that reads
// it next applies them: the depthwise conv as a pre-activation on read, or the final interleave, which
// writes both branches to their shuffled channel positions. Either way no pass exists only to add a
// bias.
//
// A backend's Prims provides, every tensor dense in `layout` or a channel slice of such a tensor:
//   PointwiseResult pointwise(const Tensor& x, Layout layout, const Tensor& weight, const Tensor& bias);
//       relu(conv1x1(x, weight) + bias) (activated) or conv1x1(x, weight) without bias or activation;
//   Tensor dwconv(const Tensor& x, Layout layout, const Tensor& weight, const c10::optional<Tensor>& bias,
//                 int64_t stride, bool relu, const c10::optional<Tensor>& in_bias, bool in_relu);
//       depthwise 3x3 (padding 1) of relu?(x + in_bias) (in_bias absent: x), then + bias, relu?;
//   Tensor interleave2(const UnitBranch& a, const UnitBranch& b, int64_t N, int64_t cpg, int64_t H,
//                      int64_t W, Layout layout, const at::TensorOptions& options);
//       out[:, 2j] from a, out[:, 2j + 1] from b, each relu(v + bias[j]) or v as it is without bias.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>

#include "index_math.h"
#include "layout.h"

namespace shufflekernels {

// One branch of a unit's final interleave: cpg channels of `data` (a dense tensor or a channel slice
// of one), `stride` elements between its pixels (NHWC) or images (NCHW), and the bias of the 1x1
// conv that produced it (undefined: copied as is, the split unit's identity half).
struct UnitBranch {
  at::Tensor data;
  int64_t stride;
  at::Tensor bias;
};

// A 1x1 conv's result: `activated` when the GEMM applied its bias and ReLU, else the raw product.
struct PointwiseResult {
  at::Tensor y;
  bool activated;
};

// The branch of a 1x1 conv's result as the interleave takes it: its bias still to apply, unless applied.
inline UnitBranch branch_of(const PointwiseResult& r, Layout layout, const at::Tensor& bias) {
  return UnitBranch{r.y, branch_stride(r.y, layout), r.activated ? at::Tensor() : bias};
}

// The depthwise conv of a 1x1 conv's result: relu(. + bias) on read unless the GEMM applied it.
template <class Prims>
at::Tensor dwconv_of(Prims& prims, const PointwiseResult& t, Layout layout, const at::Tensor& dw_w,
                     const at::Tensor& dw_b, int64_t stride, const at::Tensor& pw_b) {
  if (t.activated) return prims.dwconv(t.y, layout, dw_w, dw_b, stride, false, c10::nullopt, false);
  return prims.dwconv(t.y, layout, dw_w, dw_b, stride, false, pw_b, true);
}

// x: dense in `layout`, not empty, with 2 * cb channels (check_split_unit has passed).
template <class Prims>
at::Tensor split_unit_generic(Prims& prims, const at::Tensor& x, Layout layout, int64_t cb, const at::Tensor& pw1_w,
                              const at::Tensor& pw1_b, const at::Tensor& dw_w, const at::Tensor& dw_b,
                              const at::Tensor& pw2_w, const at::Tensor& pw2_b) {
  const at::Tensor x1 = x.narrow(1, 0, cb), x2 = x.narrow(1, cb, cb);
  const PointwiseResult t1 = prims.pointwise(x2, layout, pw1_w, pw1_b);
  const at::Tensor t2 = dwconv_of(prims, t1, layout, dw_w, dw_b, 1, pw1_b);
  const PointwiseResult y = prims.pointwise(t2, layout, pw2_w, pw2_b);
  return prims.interleave2(UnitBranch{x1, branch_stride(x, layout), at::Tensor()}, branch_of(y, layout, pw2_b),
                           x.size(0), cb, x.size(2), x.size(3), layout, x.options());
}

// x: dense in `layout`, with a non-empty batch; cb channels per branch (check_down_unit has passed).
template <class Prims>
at::Tensor down_unit_generic(Prims& prims, const at::Tensor& x, Layout layout, int64_t cb, const at::Tensor& dw1_w,
                             const at::Tensor& dw1_b, const at::Tensor& pw3_w, const at::Tensor& pw3_b,
                             const at::Tensor& pw1_w, const at::Tensor& pw1_b, const at::Tensor& dw2_w,
                             const at::Tensor& dw2_b, const at::Tensor& pw2_w, const at::Tensor& pw2_b) {
  // Branch 1: depthwise stride 2 (bias, no ReLU), then 1x1.
  const at::Tensor d1 = prims.dwconv(x, layout, dw1_w, dw1_b, 2, false, c10::nullopt, false);
  const PointwiseResult r1 = prims.pointwise(d1, layout, pw3_w, pw3_b);
  // Branch 2: 1x1, depthwise stride 2, 1x1.
  const PointwiseResult t1 = prims.pointwise(x, layout, pw1_w, pw1_b);
  const at::Tensor d2 = dwconv_of(prims, t1, layout, dw2_w, dw2_b, 2, pw1_b);
  const PointwiseResult r2 = prims.pointwise(d2, layout, pw2_w, pw2_b);
  const int64_t Ho = dwconv3x3_out_size(x.size(2), 2), Wo = dwconv3x3_out_size(x.size(3), 2);
  return prims.interleave2(branch_of(r1, layout, pw3_b), branch_of(r2, layout, pw2_b), x.size(0), cb, Ho, Wo, layout,
                           x.options());
}

}  // namespace shufflekernels
