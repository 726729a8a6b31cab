// The weights of the CPU engine's units, as its kernels read them (engine.h): 1x1 weights as the GEMM's
// K-major B (packed where the owner declared them, packed_weights.h), depthwise weights tap-major,
// and both zero-padded to whole vectors where the units' intermediates are padded.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <memory>
#include <vector>

#include "engine.h"
#include "packed_weights.h"

namespace shufflekernels::cpu {

inline int64_t round_up(int64_t x, int64_t m) { return (x + m - 1) / m * m; }

// A 1x1 weight [Cout, Cin, 1, 1] as the GEMM's B: [Cin][ldb] K-major, or panel-packed (GemmArgs).
struct KMajor {
  at::Tensor storage;
  const float* data;
  int64_t ldb;
  int64_t panel_stride = 0;
  std::shared_ptr<const std::vector<float>> packed;  // keeps a packed copy alive for the call

  // B for the output columns from n0 on.
  const float* at(int64_t n0) const {
    return panel_stride ? data + (n0 / kPanelPad) * panel_stride + n0 % kPanelPad : data + n0;
  }
};

// A weight stored transposed (strides (1, Cout, ...), as FusedShuffleNetV2 keeps them) is used in
// place; any other is transposed once here, unless its owner declared it for packing.
inline KMajor k_major(const at::Tensor& weight) {
  const int64_t c_out = weight.size(0), c_in = weight.size(1);
  if (auto packed = find_packed(weight)) {
    return {at::Tensor(), packed->data(), kPanelPad, c_in * kPanelPad, packed};
  }
  // Checked on the 4-D strides directly: a reshape would cost a dispatcher call per weight per unit.
  if (weight.stride(0) == 1 && (weight.stride(1) == c_out || c_in == 1)) {
    return {at::Tensor(), weight.const_data_ptr<float>(), c_out};
  }
  at::Tensor t = weight.reshape({c_out, c_in}).t().contiguous();
  return {t, t.const_data_ptr<float>(), c_out};
}

// Depthwise weight [C, 1, 3, 3] as [9][C] (tap-major), so one tap's weights are contiguous over
// channels. A weight stored that way already (strides (1, 9C, 3C, C), as FusedShuffleNetV2 keeps them)
// is used in place.
struct TapMajor {
  at::Tensor storage;
  const float* data;
};

inline TapMajor tap_major(const at::Tensor& dw_weight) {
  const int64_t C = dw_weight.size(0);
  // Strides of [C, 1, 3, 3] stored as [9][C]: (1, -, 3C, C). Checked directly, without a reshape.
  if (dw_weight.stride(0) == 1 && ((dw_weight.stride(2) == 3 * C && dw_weight.stride(3) == C) || C == 1))
    return {at::Tensor(), dw_weight.const_data_ptr<float>()};
  at::Tensor t = dw_weight.reshape({C, 9}).t().contiguous();
  return {t, t.const_data_ptr<float>()};
}

// A depthwise conv's tap-major weights and bias, zero-padded from C to Cs channels: on rows whose
// pixels are Cs floats apart (the units' intermediates), the depthwise conv then runs whole vectors
// over the padding instead of a scalar tail (58 channels would leave 10 of them scalar).
struct PaddedDw {
  std::vector<float> weight, bias;  // [9][Cs], [Cs]
};

// Built with plain loops through the tensors' strides: at batch 1 a handful of ATen calls per unit
// would cost more than the copy.
inline PaddedDw padded_dw(const at::Tensor& dw_weight, const at::Tensor& dw_bias, int64_t Cs) {
  const int64_t C = dw_weight.size(0);
  PaddedDw p{std::vector<float>(9 * Cs, 0.f), std::vector<float>(Cs, 0.f)};
  const auto w = dw_weight.accessor<float, 4>();
  const auto b = dw_bias.accessor<float, 1>();
  for (int64_t c = 0; c < C; ++c) {
    for (int64_t t = 0; t < 9; ++t) p.weight[t * Cs + c] = w[c][0][t / 3][t % 3];
    p.bias[c] = b[c];
  }
  return p;
}

// The stem's weights and bias as the engine's stem reads them (StemArgs): [Cin * 9][Cpad], one tap's
// output channels contiguous, and [Cpad], both zero-padded from Cout to Cpad, a whole number of the
// engine's channel blocks. Plain loops, as padded_dw: a few hundred floats, fewer than the ATen calls
// it would take.
struct StemWeights {
  int64_t c_out, c_pad;
  std::vector<float> weight, bias;
};

inline StemWeights stem_weights(const Kernels& k, const at::Tensor& weight, const at::Tensor& bias) {
  const int64_t c_out = weight.size(0), c_in = weight.size(1), c_pad = round_up(c_out, k.stem_channel_block);
  StemWeights s{c_out, c_pad, std::vector<float>(c_in * 9 * c_pad, 0.f), std::vector<float>(c_pad, 0.f)};
  const auto w = weight.accessor<float, 4>();
  const auto b = bias.accessor<float, 1>();
  for (int64_t co = 0; co < c_out; ++co) {
    for (int64_t ci = 0; ci < c_in; ++ci)
      for (int64_t t = 0; t < 9; ++t) s.weight[(ci * 9 + t) * c_pad + co] = w[co][ci][t / 3][t % 3];
    s.bias[co] = b[co];
  }
  return s;
}

}  // namespace shufflekernels::cpu
