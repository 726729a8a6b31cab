// Every op schema of the library, declared once. csrc/schema.cpp defines them under
// TORCH_LIBRARY(shufflekernels); csrc/cuda/host_emulation.cpp defines the op schemas (not the hints)
// under TORCH_LIBRARY(shufflekernels_cuda_emulated), whose CPU kernels are the CUDA kernel bodies run
// on host threads (for tests on machines without a GPU). Each backend registers its kernels against
// them in the file of the op's family (csrc/cpu/*.cpp, csrc/cuda/*_ops.h).
#pragma once

#include <torch/library.h>

namespace shufflekernels {

inline void define_op_schemas(torch::Library& m) {
  // out[n, j*g + i] = x[n, i*(C/g) + j]; x [N, C, H, W], C % groups == 0.
  m.def("channel_shuffle(Tensor x, int groups) -> Tensor");
  // channel_shuffle(cat(tensors, 1), len(tensors)) without the intermediate.
  m.def("shuffle_cat(Tensor[] tensors) -> Tensor");
  // Depthwise 3x3, padding 1, stride 1 or 2; weight [C, 1, 3, 3], bias [C]; optional ReLU.
  m.def("dwconv3x3(Tensor x, Tensor weight, Tensor? bias, int stride, bool relu) -> Tensor");
  // conv1x1(x, weight) + bias, then ReLU when relu: weight [Cout, Cin, 1, 1], bias [Cout] (a folded
  // BatchNorm). The network's conv5 (with ReLU) and its classifier on pooled features (without).
  m.def("pointwise(Tensor x, Tensor weight, Tensor bias, bool relu=True) -> Tensor");
  // The network's stem: maxpool3x3/2(relu(conv3x3/2(x, weight) + bias)), padding 1 for both;
  // weight [Cout, Cin, 3, 3], bias [Cout] (a folded BatchNorm).
  m.def("stem(Tensor x, Tensor weight, Tensor bias) -> Tensor");
  // Stride-1 ShuffleNetV2 unit on folded parameters (docs/design.md, "Split unit"):
  // x1, x2 = x.chunk(2, 1); y = relu(pw2(dw(relu(pw1(x2))))); out = shuffle_cat([x1, y]).
  m.def(
      "split_unit(Tensor x, Tensor pw1_weight, Tensor pw1_bias, Tensor dw_weight, Tensor dw_bias, "
      "Tensor pw2_weight, Tensor pw2_bias) -> Tensor");
  // Stride-2 ShuffleNetV2 unit on folded parameters (docs/design.md, "Down unit"):
  // b1 = relu(pw3(dw_s2(x))); b2 = relu(pw2(dw_s2(relu(pw1(x))))); out = shuffle_cat([b1, b2]).
  m.def(
      "down_unit(Tensor x, Tensor dw1_weight, Tensor dw1_bias, Tensor pw3_weight, Tensor pw3_bias, "
      "Tensor pw1_weight, Tensor pw1_bias, Tensor dw2_weight, Tensor dw2_bias, Tensor pw2_weight, "
      "Tensor pw2_bias) -> Tensor");
  // The whole network on folded parameters (docs/design.md, "The whole network"): stem, per stage a
  // down unit and repeats - 1 split units, conv5, global mean, classifier; params flat, in that order
  // (the classifier's weight as a 1x1 conv). Returns logits [N, classes].
  m.def("shufflenet(Tensor x, Tensor[] params, int[] stage_repeats) -> Tensor");
}

// Hints: ops outside the op contract, which change how the kernels work but never what they compute.
inline void define_hint_schemas(torch::Library& m) {
  // Declares 1x1 weights [Cout, Cin, 1, 1] whose packed copies the CPU kernels may keep and reuse
  // (csrc/cpu/packed_weights.cpp); ignores the tensors they would not pack, on any device.
  m.def("prepack(Tensor[] weights) -> ()");
}

}  // namespace shufflekernels
