// CPU kernels of the dense convolutions: pointwise (a 1x1 conv with bias and optional ReLU, the
// network's conv5 and classifier) and the stem (conv 3x3/2 + bias + ReLU + max-pool 3x3/2).
//
// Float32 runs on the engine (engine.h), which writes channels_last; an NCHW input gets its output
// back in NCHW, as every op promises. Other dtypes (and NCHW pointwise) go through ATen
// (csrc/aten_convs.h).
#include <ATen/Parallel.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include <algorithm>
#include <vector>

#include "../aten_convs.h"
#include "../contract.h"
#include "../layout.h"
#include "engine.h"
#include "schedule.h"
#include "weights.h"

namespace shufflekernels::cpu {
namespace {

using at::Tensor;

Tensor pointwise_cpu(const Tensor& x_in, const Tensor& weight, const Tensor& bias, bool relu) {
  check_pointwise(x_in, weight, bias);
  auto [x, layout] = in_kernel_layout(x_in);
  const int64_t N = x.size(0), c_in = x.size(1), H = x.size(2), W = x.size(3), c_out = weight.size(0);
  // Pooled features [N, C, 1, 1] are dense in both layouts (and their output too): the engine reads
  // them as channels_last whichever layout was chosen.
  if ((layout == Layout::NHWC || H * W == 1) && x.scalar_type() == at::kFloat) {
    Tensor out = at::empty({N, c_out, H, W}, x.options().memory_format(at::MemoryFormat::ChannelsLast));
    if (out.numel() == 0) return out;
    const KMajor w = k_major(weight);
    const Tensor b = bias.contiguous();
    pointwise_all_pixels(kernels(), x.const_data_ptr<float>(), c_in, w, b.const_data_ptr<float>(), c_out, c_in,
                         N * H * W, out.data_ptr<float>(), c_out, relu);
    return out;
  }
  // NCHW and low precision: the GEMM through ATen, bias and ReLU in one in-place pass over its result.
  if (x.numel() == 0) return at::empty({N, c_out, H, W}, x.options().memory_format(memory_format_of(layout)));
  Tensor y = pointwise_raw(x, layout, weight).add_(bias.view({1, c_out, 1, 1}));
  return relu ? y.relu_() : y;
}

Tensor stem_cpu(const Tensor& x_in, const Tensor& weight, const Tensor& bias) {
  check_stem(x_in, weight, bias);
  if (x_in.scalar_type() != at::kFloat) return stem_composite(x_in, weight, bias);
  auto [x, layout] = in_kernel_layout(x_in);
  const int64_t N = x.size(0), Cin = x.size(1), H = x.size(2), W = x.size(3), Cout = weight.size(0);
  const int64_t Hc = stem_conv_out_size(H), Wc = stem_conv_out_size(W), Hp = stem_out_size(H), Wp = stem_out_size(W);
  Tensor out = at::empty({N, Cout, Hp, Wp}, x.options().memory_format(at::MemoryFormat::ChannelsLast));
  if (out.numel() == 0) return out.contiguous(memory_format_of(layout));
  const Kernels& k = kernels();
  const StemWeights sw = stem_weights(k, weight, bias);
  const int64_t Cpad = sw.c_pad;
  const int64_t threads = at::get_num_threads();
  const int64_t bands = std::min<int64_t>(Hp, N >= threads ? 1 : threads);
  at::parallel_for(0, N * bands, 1, [&](int64_t begin, int64_t end) {
    std::vector<float> scratch(3 * Wc * Cpad);
    for (int64_t task = begin; task < end; ++task) {
      const int64_t n = task / bands, band = task % bands;
      StemArgs a{x.const_data_ptr<float>() + n * x.stride(0),
                 x.stride(1),
                 x.stride(2),
                 x.stride(3),
                 Cin,
                 H,
                 W,
                 sw.weight.data(),
                 sw.bias.data(),
                 Cout,
                 Cpad,
                 Hc,
                 Wc,
                 Hp,
                 Wp,
                 Hp * band / bands,
                 Hp * (band + 1) / bands,
                 scratch.data(),
                 out.data_ptr<float>() + n * Hp * Wp * Cout};
      k.stem(a);
    }
  });
  // The engine writes channels_last; an NCHW input gets its output in NCHW, as every op promises.
  return layout == Layout::NHWC ? out : out.contiguous();
}

}  // namespace

TORCH_LIBRARY_IMPL(shufflekernels, CPU, m) {
  m.impl("pointwise", &pointwise_cpu);
  m.impl("stem", &stem_cpu);
}

}  // namespace shufflekernels::cpu
