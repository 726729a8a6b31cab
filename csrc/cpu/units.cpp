// CPU kernels of the ShuffleNetV2 units: split_unit (stride 1) and down_unit (stride 2), whose
// semantics are docs/design.md, "Split unit" and "Down unit".
//
// Two paths. Float32 runs fused on the channels_last engine (engine.h): our GEMM with bias+ReLU
// stored from the accumulators, the depthwise conv row by row from an intermediate that stays in
// cache, and the final interleave writing the concat+shuffle; an NCHW input is converted once each
// way, which costs far less than the unfused path. Two parallel passes per unit (schedule.h): the
// first 1x1 conv over all pixels (the depthwise conv of a row needs its neighbours' rows), then, per
// band of output rows, depthwise -> 1x1 -> interleave with every intermediate in a per-thread buffer.
//
// Every other dtype runs the op-by-op orchestration shared with the CUDA kernels
// (csrc/unit_orchestration.h) on the primitives below: ATen's GEMM, the generic depthwise conv
// (dwconv.h) and a two-branch interleave that applies the last bias and ReLU.
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "../aten_convs.h"
#include "../contract.h"
#include "../index_math.h"
#include "../layout.h"
#include "../unit_orchestration.h"
#include "dwconv.h"
#include "engine.h"
#include "schedule.h"
#include "unit_bands.h"
#include "weights.h"

namespace shufflekernels::cpu {
namespace {

using at::Tensor;

// ---------------------------------------------------------------------------------------------------
// The fused float32 channels_last units on the engine.
// ---------------------------------------------------------------------------------------------------

Tensor split_unit_engine(const Tensor& x, const Tensor& pw1_w, const Tensor& pw1_b, const Tensor& dw_w,
                         const Tensor& dw_b, const Tensor& pw2_w, const Tensor& pw2_b) {
  const Kernels& k = kernels();
  const int64_t N = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3), B = C / 2, Bs = round_up(B, kPanelPad);
  Tensor out = at::empty(x.sizes(), x.options().memory_format(at::MemoryFormat::ChannelsLast));
  const KMajor w1 = k_major(pw1_w), w2 = k_major(pw2_w);
  const PaddedDw dw = padded_dw(dw_w, dw_b, Bs);
  const Tensor b1 = pw1_b.contiguous(), b2 = pw2_b.contiguous();
  const float* xp = x.const_data_ptr<float>();
  float* op = out.data_ptr<float>();
  const Bands bands = bands_for(N, H, W);
  // Pass 1: t1 = relu(pw1(x2)) for pixels [p0, p1) (counted over the batch); x2 is the second half of
  // each pixel's channels.
  auto pass1 = [&](int64_t p0, int64_t p1, float* t1, bool parallel) {
    if (parallel) {
      pointwise_all_pixels(k, xp + p0 * C + B, C, w1, b1.const_data_ptr<float>(), B, B, p1 - p0, t1, Bs, true, true);
    } else {
      k.gemm({xp + p0 * C + B, C, w1.data, w1.ldb, t1, Bs, p1 - p0, B, B, b1.const_data_ptr<float>(), true, true,
              w1.panel_stride});
    }
  };
  // Pass 2, rows [h0, h1) of image n (unit_bands.h).
  const GemmB g2{w2.data, w2.ldb, w2.panel_stride, b2.const_data_ptr<float>()};
  auto band = [&](int64_t n, int64_t h0, int64_t h1, const float* t1_image, float* scratch) {
    split_band(k, xp + n * H * W * C, t1_image, op + n * H * W * C, H, W, B, Bs, dw.weight.data(), dw.bias.data(), g2,
               h0, h1, bands.max_rows, scratch);
  };
  run_unit(N, H * W, H * W * Bs, split_band_floats(bands.max_rows, W, Bs), bands, H, x, pass1, band);
  return out;
}

Tensor down_unit_engine(const Tensor& x, int64_t B, const Tensor& dw1_w, const Tensor& dw1_b, const Tensor& pw3_w,
                        const Tensor& pw3_b, const Tensor& pw1_w, const Tensor& pw1_b, const Tensor& dw2_w,
                        const Tensor& dw2_b, const Tensor& pw2_w, const Tensor& pw2_b) {
  const Kernels& k = kernels();
  const int64_t N = x.size(0), Cin = x.size(1), H = x.size(2), W = x.size(3);
  const int64_t Ho = dwconv3x3_out_size(H, 2), Wo = dwconv3x3_out_size(W, 2);
  const int64_t Cs = round_up(Cin, kPanelPad), Bs = round_up(B, kPanelPad);
  Tensor out = at::empty({N, 2 * B, Ho, Wo}, x.options().memory_format(at::MemoryFormat::ChannelsLast));
  const KMajor w1 = k_major(pw1_w), w2 = k_major(pw2_w), w3 = k_major(pw3_w);
  // Branch 1's depthwise reads x itself (pixels Cin floats apart, no padding to run over); branch 2's
  // reads the padded intermediate.
  const TapMajor w9_1 = tap_major(dw1_w);
  const PaddedDw dw2 = padded_dw(dw2_w, dw2_b, Bs);
  const Tensor bd1 = dw1_b.contiguous(), b1 = pw1_b.contiguous(), b2 = pw2_b.contiguous(), b3 = pw3_b.contiguous();
  const float* xp = x.const_data_ptr<float>();
  float* op = out.data_ptr<float>();
  const Bands bands = bands_for(N, Ho, Wo);
  const int64_t R = bands.max_rows;
  // Pass 1: t1 = relu(pw1(x)) at full resolution (branch 2's depthwise input), pixels [p0, p1).
  auto pass1 = [&](int64_t p0, int64_t p1, float* t1, bool parallel) {
    if (parallel) {
      pointwise_all_pixels(k, xp + p0 * Cin, Cin, w1, b1.const_data_ptr<float>(), B, Cin, p1 - p0, t1, Bs, true, true);
    } else {
      k.gemm({xp + p0 * Cin, Cin, w1.data, w1.ldb, t1, Bs, p1 - p0, B, Cin, b1.const_data_ptr<float>(), true, true,
              w1.panel_stride});
    }
  };
  // Pass 2, output rows [h0, h1) of image n (unit_bands.h).
  const GemmB g2{w2.data, w2.ldb, w2.panel_stride, b2.const_data_ptr<float>()};
  const GemmB g3{w3.data, w3.ldb, w3.panel_stride, b3.const_data_ptr<float>()};
  auto band = [&](int64_t n, int64_t h0, int64_t h1, const float* t1_image, float* scratch) {
    down_band(k, xp + n * H * W * Cin, t1_image, op + n * Ho * Wo * 2 * B, H, W, Wo, Cin, B, w9_1.data,
              bd1.const_data_ptr<float>(), dw2.weight.data(), dw2.bias.data(), g3, g2, h0, h1, R, scratch);
  };
  run_unit(N, H * W, H * W * Bs, down_band_floats(R, Wo, Cs, Bs), bands, Ho, x, pass1, band);
  return out;
}

// ---------------------------------------------------------------------------------------------------
// The primitives of the generic path (any dtype, either layout).
// ---------------------------------------------------------------------------------------------------

// One branch of the final interleave: out channel 2j + slot = relu(src[j] + bias[j]) (every unit
// branch ends in a 1x1 conv + BN + ReLU), or src[j] as it is when bias is null (the split unit's
// identity half).
struct BranchSource {
  const void* data;
  int64_t stride;  // elements between consecutive pixels (NHWC) or images (NCHW)
  const float* bias;
};

template <typename scalar_t>
inline scalar_t finish(scalar_t v, const BranchSource& s, int64_t j) {
  if (s.bias == nullptr) return v;
  return static_cast<scalar_t>(std::max(static_cast<float>(v) + s.bias[j], 0.f));
}

template <typename scalar_t>
void interleave2_nhwc(const BranchSource& a, const BranchSource& b, int64_t cpg, int64_t pixels, scalar_t* out) {
  at::parallel_for(0, pixels, grain_for(2 * cpg), [&](int64_t begin, int64_t end) {
    for (int64_t p = begin; p < end; ++p) {
      const scalar_t* __restrict pa = static_cast<const scalar_t*>(a.data) + p * a.stride;
      const scalar_t* __restrict pb = static_cast<const scalar_t*>(b.data) + p * b.stride;
      scalar_t* __restrict po = out + p * 2 * cpg;
      for (int64_t j = 0; j < cpg; ++j) {
        po[2 * j] = finish(pa[j], a, j);
        po[2 * j + 1] = finish(pb[j], b, j);
      }
    }
  });
}

template <typename scalar_t>
void interleave2_nchw(const BranchSource& a, const BranchSource& b, int64_t cpg, int64_t N, int64_t HW, scalar_t* out) {
  at::parallel_for(0, N * 2 * cpg, grain_for(HW), [&](int64_t begin, int64_t end) {
    for (int64_t nc = begin; nc < end; ++nc) {
      const int64_t n = nc / (2 * cpg);
      const ShuffleSource s = shuffle_source<int64_t>(nc % (2 * cpg), 2);
      const BranchSource& src = s.group == 0 ? a : b;
      const scalar_t* __restrict plane = static_cast<const scalar_t*>(src.data) + n * src.stride + s.channel * HW;
      scalar_t* __restrict oplane = out + nc * HW;
      if (src.bias == nullptr) {
        std::memcpy(oplane, plane, HW * sizeof(scalar_t));
        continue;
      }
      const float bias = src.bias[s.channel];
      for (int64_t k = 0; k < HW; ++k) {
        float f = static_cast<float>(plane[k]) + bias;
        oplane[k] = static_cast<scalar_t>(std::max(f, 0.f));
      }
    }
  });
}

Tensor interleave2(const BranchSource& a, const BranchSource& b, int64_t N, int64_t cpg, int64_t H, int64_t W,
                   Layout layout, const at::TensorOptions& options) {
  Tensor out = at::empty({N, 2 * cpg, H, W}, options.memory_format(memory_format_of(layout)));
  if (out.numel() == 0) return out;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, out.scalar_type(), "shufflekernels.unit", [&] {
    if (layout == Layout::NHWC) {
      interleave2_nhwc<scalar_t>(a, b, cpg, N * H * W, out.data_ptr<scalar_t>());
    } else {
      interleave2_nchw<scalar_t>(a, b, cpg, N, H * W, out.data_ptr<scalar_t>());
    }
  });
  return out;
}

struct CpuPrims {
  // The raw product (ATen's GEMM); the depthwise conv or the interleave adds the bias in float32.
  PointwiseResult pointwise(const Tensor& x, Layout layout, const Tensor& weight, const Tensor&) {
    return {shufflekernels::pointwise_raw(x, layout, weight), false};
  }
  Tensor dwconv(const Tensor& x, Layout layout, const Tensor& weight, const c10::optional<Tensor>& bias, int64_t stride,
                bool relu, const c10::optional<Tensor>& in_bias, bool in_relu) {
    return dwconv3x3_generic(x, layout, weight, bias, stride, relu, in_bias, in_relu);
  }
  // The biases are read as float32, whatever the activations' dtype.
  Tensor interleave2(const UnitBranch& a, const UnitBranch& b, int64_t N, int64_t cpg, int64_t H, int64_t W,
                     Layout layout, const at::TensorOptions& options) {
    const Tensor bias_a = a.bias.defined() ? a.bias.to(at::kFloat).contiguous() : Tensor();
    const Tensor bias_b = b.bias.defined() ? b.bias.to(at::kFloat).contiguous() : Tensor();
    auto source = [](const UnitBranch& s, const Tensor& bias) {
      return BranchSource{s.data.const_data_ptr(), s.stride, bias.defined() ? bias.const_data_ptr<float>() : nullptr};
    };
    return cpu::interleave2(source(a, bias_a), source(b, bias_b), N, cpg, H, W, layout, options);
  }
};

// ---------------------------------------------------------------------------------------------------
// Entry points.
// ---------------------------------------------------------------------------------------------------

Tensor split_unit_cpu(const Tensor& x_in, const Tensor& pw1_w, const Tensor& pw1_b, const Tensor& dw_w,
                      const Tensor& dw_b, const Tensor& pw2_w, const Tensor& pw2_b) {
  const int64_t cb = check_split_unit(x_in, pw1_w, pw1_b, dw_w, dw_b, pw2_w, pw2_b);
  auto [x, layout] = in_kernel_layout(x_in);
  if (x.numel() == 0) return at::empty(x.sizes(), x.options().memory_format(memory_format_of(layout)));
  if (x.scalar_type() == at::kFloat) {
    Tensor out =
        split_unit_engine(x.contiguous(at::MemoryFormat::ChannelsLast), pw1_w, pw1_b, dw_w, dw_b, pw2_w, pw2_b);
    return layout == Layout::NHWC ? out : out.contiguous();
  }
  CpuPrims prims;
  return split_unit_generic(prims, x, layout, cb, pw1_w, pw1_b, dw_w, dw_b, pw2_w, pw2_b);
}

Tensor down_unit_cpu(const Tensor& x_in, const Tensor& dw1_w, const Tensor& dw1_b, const Tensor& pw3_w,
                     const Tensor& pw3_b, const Tensor& pw1_w, const Tensor& pw1_b, const Tensor& dw2_w,
                     const Tensor& dw2_b, const Tensor& pw2_w, const Tensor& pw2_b) {
  const int64_t cb = check_down_unit(x_in, dw1_w, dw1_b, pw3_w, pw3_b, pw1_w, pw1_b, dw2_w, dw2_b, pw2_w, pw2_b);
  auto [x, layout] = in_kernel_layout(x_in);
  const int64_t Ho = dwconv3x3_out_size(x.size(2), 2), Wo = dwconv3x3_out_size(x.size(3), 2);
  if (x.size(0) == 0) return at::empty({0, 2 * cb, Ho, Wo}, x.options().memory_format(memory_format_of(layout)));
  if (x.scalar_type() == at::kFloat) {
    Tensor out = down_unit_engine(x.contiguous(at::MemoryFormat::ChannelsLast), cb, dw1_w, dw1_b, pw3_w, pw3_b, pw1_w,
                                  pw1_b, dw2_w, dw2_b, pw2_w, pw2_b);
    return layout == Layout::NHWC ? out : out.contiguous();
  }
  CpuPrims prims;
  return down_unit_generic(prims, x, layout, cb, dw1_w, dw1_b, pw3_w, pw3_b, pw1_w, pw1_b, dw2_w, dw2_b, pw2_w, pw2_b);
}

}  // namespace

TORCH_LIBRARY_IMPL(shufflekernels, CPU, m) {
  m.impl("split_unit", &split_unit_cpu);
  m.impl("down_unit", &down_unit_cpu);
}

}  // namespace shufflekernels::cpu
