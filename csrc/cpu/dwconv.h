// The CPU depthwise 3x3 for any layout and dtype, which the units' generic path (units.cpp) runs with
// a pre-activation: the input is read as relu?(x + in_bias[c]) (x where in_bias is absent), so the
// previous 1x1 conv's bias and ReLU are applied on read instead of in a pass of their own.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>

#include "../layout.h"

namespace shufflekernels::cpu {

// Runs the depthwise conv (padding 1) on x, dense in `layout`, into a new tensor of the same layout.
at::Tensor dwconv3x3_generic(const at::Tensor& x, Layout layout, const at::Tensor& weight,
                             const c10::optional<at::Tensor>& bias, int64_t stride, bool relu,
                             const c10::optional<at::Tensor>& in_bias, bool in_relu);

}  // namespace shufflekernels::cpu
