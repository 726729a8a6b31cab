// CPU kernels of the depthwise 3x3 conv (padding 1, stride 1 or 2, optional ReLU epilogue).
//
// Index model: out[n, c, oh, ow] = bias[c] + sum_{kh,kw} w[c, kh, kw] * act(in[n, c, oh*s-1+kh, ow*s-1+kw]),
// taps outside the image contributing nothing (zero padding), act being the optional pre-activation
// of dwconv.h. Zero padding applies to the activated value, so padded taps are skipped, never
// activated.
//
// Float32 channels_last runs on the engine (engine.h), one output row per step. Every other case runs
// the generic path, one per memory format: NCHW works on whole H*W planes, NHWC on pixels with the
// channel loop innermost, where the compiler vectorises across channels. Float16 and bfloat16
// accumulate in float32.
#include "dwconv.h"

#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <torch/library.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "../contract.h"
#include "../index_math.h"
#include "engine.h"
#include "schedule.h"
#include "weights.h"

namespace shufflekernels::cpu {
namespace {

using at::Tensor;

struct DwParams {
  const float* weight;   // [C, 9] (NCHW) or [9, C] (NHWC), float32
  const float* bias;     // [C] or nullptr
  const float* in_bias;  // [C] or nullptr: pre-activation bias
  bool in_relu;          // pre-activation ReLU
  bool relu;             // ReLU epilogue
  int64_t N, C, H, W, Ho, Wo, stride;
};

template <typename scalar_t>
inline float activate_input(scalar_t v, float in_bias, bool in_relu) {
  float f = static_cast<float>(v) + in_bias;
  return in_relu ? std::max(f, 0.f) : f;
}

template <typename scalar_t>
void dwconv3x3_nchw(const scalar_t* in, scalar_t* out, const DwParams& p) {
  constexpr int64_t kChunk = 256;  // output columns accumulated in one stack buffer
  at::parallel_for(0, p.N * p.C, grain_for(p.Ho * p.Wo * 9), [&](int64_t begin, int64_t end) {
    float acc[kChunk];
    float act_row[3][kChunk * 2 + 3];
    for (int64_t nc = begin; nc < end; ++nc) {
      const int64_t c = nc % p.C;
      const scalar_t* plane = in + nc * p.H * p.W;
      scalar_t* oplane = out + nc * p.Ho * p.Wo;
      const float* w = p.weight + c * 9;
      const float b = p.bias ? p.bias[c] : 0.f;
      const float ib = p.in_bias ? p.in_bias[c] : 0.f;
      const bool pre_act = p.in_bias != nullptr || p.in_relu;
      for (int64_t oh = 0; oh < p.Ho; ++oh) {
        for (int64_t ow0 = 0; ow0 < p.Wo; ow0 += kChunk) {
          const int64_t n_cols = std::min(kChunk, p.Wo - ow0);
          for (int64_t k = 0; k < n_cols; ++k) acc[k] = b;
          // Input columns touched by this chunk: [ow0*s - 1, (ow0+n_cols-1)*s + 1].
          const int64_t iw_first = ow0 * p.stride - 1;
          const int64_t iw_count = (n_cols - 1) * p.stride + 3;
          for (int64_t kh = 0; kh < 3; ++kh) {
            const int64_t ih = oh * p.stride - 1 + kh;
            if (ih < 0 || ih >= p.H) continue;
            const scalar_t* row = plane + ih * p.W;
            // Stage the activated input row (zero outside the image) in float, so the tap loops below
            // have no bounds checks and no conversions.
            float* r = act_row[kh];
            for (int64_t k = 0; k < iw_count; ++k) {
              const int64_t iw = iw_first + k;
              r[k] = (iw < 0 || iw >= p.W) ? 0.f
                     : pre_act             ? activate_input(row[iw], ib, p.in_relu)
                                           : static_cast<float>(row[iw]);
            }
            const float w0 = w[kh * 3], w1 = w[kh * 3 + 1], w2 = w[kh * 3 + 2];
            if (p.stride == 1) {
              for (int64_t k = 0; k < n_cols; ++k) acc[k] += w0 * r[k] + w1 * r[k + 1] + w2 * r[k + 2];
            } else {
              for (int64_t k = 0; k < n_cols; ++k) acc[k] += w0 * r[2 * k] + w1 * r[2 * k + 1] + w2 * r[2 * k + 2];
            }
          }
          scalar_t* orow = oplane + oh * p.Wo + ow0;
          if (p.relu) {
            for (int64_t k = 0; k < n_cols; ++k) orow[k] = static_cast<scalar_t>(std::max(acc[k], 0.f));
          } else {
            for (int64_t k = 0; k < n_cols; ++k) orow[k] = static_cast<scalar_t>(acc[k]);
          }
        }
      }
    }
  });
}

template <typename scalar_t>
void dwconv3x3_nhwc(const scalar_t* in, scalar_t* out, const DwParams& p) {
  const int64_t C = p.C;
  at::parallel_for(0, p.N * p.Ho, grain_for(p.Wo * C * 9), [&](int64_t begin, int64_t end) {
    std::vector<float> acc_buf(C);
    float* __restrict acc = acc_buf.data();
    for (int64_t nh = begin; nh < end; ++nh) {
      const int64_t n = nh / p.Ho, oh = nh % p.Ho;
      for (int64_t ow = 0; ow < p.Wo; ++ow) {
        if (p.bias) {
          std::memcpy(acc, p.bias, C * sizeof(float));
        } else {
          std::fill(acc, acc + C, 0.f);
        }
        for (int64_t kh = 0; kh < 3; ++kh) {
          const int64_t ih = oh * p.stride - 1 + kh;
          if (ih < 0 || ih >= p.H) continue;
          for (int64_t kw = 0; kw < 3; ++kw) {
            const int64_t iw = ow * p.stride - 1 + kw;
            if (iw < 0 || iw >= p.W) continue;
            const scalar_t* __restrict px = in + ((n * p.H + ih) * p.W + iw) * C;
            const float* __restrict wk = p.weight + (kh * 3 + kw) * C;
            if (p.in_bias != nullptr) {
              const float* __restrict ib = p.in_bias;
              if (p.in_relu) {
                for (int64_t c = 0; c < C; ++c) acc[c] += wk[c] * std::max(static_cast<float>(px[c]) + ib[c], 0.f);
              } else {
                for (int64_t c = 0; c < C; ++c) acc[c] += wk[c] * (static_cast<float>(px[c]) + ib[c]);
              }
            } else if (p.in_relu) {
              for (int64_t c = 0; c < C; ++c) acc[c] += wk[c] * std::max(static_cast<float>(px[c]), 0.f);
            } else {
              for (int64_t c = 0; c < C; ++c) acc[c] += wk[c] * static_cast<float>(px[c]);
            }
          }
        }
        scalar_t* __restrict po = out + ((n * p.Ho + oh) * p.Wo + ow) * C;
        if (p.relu) {
          for (int64_t c = 0; c < C; ++c) po[c] = static_cast<scalar_t>(std::max(acc[c], 0.f));
        } else {
          for (int64_t c = 0; c < C; ++c) po[c] = static_cast<scalar_t>(acc[c]);
        }
      }
    }
  });
}

// Float32 copies of the small per-channel parameters, laid out for the chosen path.
struct DwPacked {
  Tensor weight, bias, in_bias;
};

DwPacked pack_dw(const Tensor& weight, const c10::optional<Tensor>& bias, const c10::optional<Tensor>& in_bias,
                 Layout layout) {
  const int64_t C = weight.size(0);
  Tensor w = weight.to(at::kFloat).reshape({C, 9});
  if (layout == Layout::NHWC) w = w.t();  // [9, C]: one tap's weights contiguous across channels
  DwPacked packed;
  packed.weight = w.contiguous();
  if (bias.has_value()) packed.bias = bias->to(at::kFloat).contiguous();
  if (in_bias.has_value()) packed.in_bias = in_bias->to(at::kFloat).contiguous();
  return packed;
}

// The float32 channels_last depthwise conv on the engine: one output row per step, rows split across
// threads. The input is read unpadded.
Tensor dwconv3x3_engine(const Tensor& x, const Tensor& weight, const c10::optional<Tensor>& bias, int64_t stride,
                        bool relu) {
  const Kernels& k = kernels();
  const int64_t N = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3);
  const int64_t Ho = dwconv3x3_out_size(H, stride), Wo = dwconv3x3_out_size(W, stride);
  Tensor out = at::empty({N, C, Ho, Wo}, x.options().memory_format(at::MemoryFormat::ChannelsLast));
  if (out.numel() == 0) return out;
  const TapMajor w9 = tap_major(weight);
  const Tensor b = bias.has_value() ? bias->contiguous() : at::zeros({C}, x.options());
  const float* xp = x.const_data_ptr<float>();
  float* op = out.data_ptr<float>();
  at::parallel_for(0, N * Ho, grain_for(Wo * C * 9), [&](int64_t begin, int64_t end) {
    for (int64_t task = begin; task < end; ++task) {
      const int64_t n = task / Ho, oh = task % Ho, ih = oh * stride - 1;
      const float* image = xp + n * H * W * C;
      auto row = [&](int64_t r) -> const float* { return r >= 0 && r < H ? image + r * W * C : nullptr; };
      k.dw_row({{row(ih), row(ih + 1), row(ih + 2)},
                C,
                W,
                Wo,
                C,
                stride,
                w9.data,
                b.const_data_ptr<float>(),
                op + (n * Ho + oh) * Wo * C,
                C,
                relu});
    }
  });
  return out;
}

}  // namespace

Tensor dwconv3x3_generic(const Tensor& x, Layout layout, const Tensor& weight, const c10::optional<Tensor>& bias,
                         int64_t stride, bool relu, const c10::optional<Tensor>& in_bias, bool in_relu) {
  const int64_t N = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3);
  const int64_t Ho = dwconv3x3_out_size(H, stride), Wo = dwconv3x3_out_size(W, stride);
  Tensor out = at::empty({N, C, Ho, Wo}, x.options().memory_format(memory_format_of(layout)));
  if (out.numel() == 0) return out;
  DwPacked packed = pack_dw(weight, bias, in_bias, layout);
  DwParams p{packed.weight.const_data_ptr<float>(),
             packed.bias.defined() ? packed.bias.const_data_ptr<float>() : nullptr,
             packed.in_bias.defined() ? packed.in_bias.const_data_ptr<float>() : nullptr,
             in_relu,
             relu,
             N,
             C,
             H,
             W,
             Ho,
             Wo,
             stride};
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "shufflekernels.dwconv3x3", [&] {
    if (layout == Layout::NCHW) {
      dwconv3x3_nchw<scalar_t>(x.const_data_ptr<scalar_t>(), out.data_ptr<scalar_t>(), p);
    } else {
      dwconv3x3_nhwc<scalar_t>(x.const_data_ptr<scalar_t>(), out.data_ptr<scalar_t>(), p);
    }
  });
  return out;
}

namespace {

Tensor dwconv3x3_cpu(const Tensor& x_in, const Tensor& weight, const c10::optional<Tensor>& bias, int64_t stride,
                     bool relu) {
  check_dwconv3x3(x_in, weight, bias, stride);
  auto [x, layout] = in_kernel_layout(x_in);
  if (layout == Layout::NHWC && x.scalar_type() == at::kFloat) return dwconv3x3_engine(x, weight, bias, stride, relu);
  return dwconv3x3_generic(x, layout, weight, bias, stride, relu, c10::nullopt, false);
}

}  // namespace

TORCH_LIBRARY_IMPL(shufflekernels, CPU, m) { m.impl("dwconv3x3", &dwconv3x3_cpu); }

}  // namespace shufflekernels::cpu
