// Panel-packed copies of the 1x1 weights their owners declared through the prepack op (why and when:
// packed_weights.cpp).
#pragma once

#include <ATen/core/Tensor.h>

#include <memory>
#include <vector>

namespace shufflekernels::cpu {

// The packed copy of a declared weight (packed now if it changed since), or null: read it in place.
// Layout: GemmArgs::b_panel_stride (engine.h), panels of kPanelPad columns, c_in * kPanelPad apart.
std::shared_ptr<const std::vector<float>> find_packed(const at::Tensor& weight);

}  // namespace shufflekernels::cpu
