// The CUDA backend's whole network (ops.h): shufflenet, from a plan of unit GEMM weights
// (docs/design.md, "The native CUDA network").
#pragma once

#include <ATen/Context.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <c10/util/Exception.h>
#include <torch/library.h>

#include <algorithm>
#include <cstdint>
#include <memory>
#include <type_traits>
#include <vector>

#include "../contract.h"
#include "../index_math.h"
#include "../layout.h"
#include "../network_composite.h"
#include "../network_params.h"
#include "../plan_cache.h"
#include "bodies.cuh"
#include "launch_plan.h"
#include "library_calls.h"
#include "ops.h"

namespace shufflekernels::gpu {

using at::Tensor;

// z = [part a | part b] of a unit in the network (UnitDepthwiseBody), channels_last: b's depthwise conv
// (b_w, b_b) at `stride`, and a's with (a_w, a_b), or a copied when a_w is undefined (stride 1). a and b
// are channels_last tensors or channel slices of one, of the same image size.
template <class Exec>
Tensor run_unit_dwconv(Exec& exec, const Tensor& a, const Tensor& a_w, const Tensor& a_b, const Tensor& b,
                       const Tensor& b_w, const Tensor& b_b, int64_t stride) {
  const int64_t N = b.size(0), H = b.size(2), W = b.size(3), Ca = a.size(1), Cb = b.size(1);
  const int64_t Ho = dwconv3x3_out_size(H, stride), Wo = dwconv3x3_out_size(W, stride);
  TORCH_CHECK(a_w.defined() || stride == 1, "shufflekernels: internal error, a unit copies its input only at stride 1");
  Tensor out = at::empty({N, Ca + Cb, Ho, Wo}, b.options().memory_format(at::MemoryFormat::ChannelsLast));
  if (out.numel() == 0) return out;
  const Tensor ab = a_b.defined() ? a_b.contiguous() : Tensor(), bb = b_b.contiguous();
  const int64_t sa = branch_stride(a, Layout::NHWC), sb = branch_stride(b, Layout::NHWC);
  const int width =
      vector_width(b.element_size(), {Ca, Cb, sa, sb}, {a.const_data_ptr(), b.const_data_ptr(), out.const_data_ptr()});
  const bool index32 = exec.index32(std::max(out.numel(), N * H * W * std::max(sa, sb)));
  with_float_type(b.scalar_type(), [&](auto type) {
    using T = decltype(type);
    with_width_and_index<sizeof(T)>(width, index32, [&](auto v, auto index) {
      constexpr int V = decltype(v)::value;
      using index_t = decltype(index);
      auto go = [&](auto s) {
        using Body = UnitDepthwiseBody<T, index_t, V, decltype(s)::value>;
        auto i = [](int64_t value) { return static_cast<index_t>(value); };
        auto part = [&](const Tensor& in, int64_t pixel_stride, const Tensor& w, const Tensor& bias) {
          if (!w.defined()) return typename Body::Part{in.const_data_ptr<T>(), i(pixel_stride), i(in.size(1))};
          return typename Body::Part{in.const_data_ptr<T>(), i(pixel_stride), i(in.size(1)),  w.const_data_ptr<T>(),
                                     i(w.stride(0)),         i(w.stride(2)),  i(w.stride(3)), bias.const_data_ptr<T>()};
        };
        Body body{part(a, sa, a_w, ab), part(b, sb, b_w, bb), out.data_ptr<T>(), i(H), i(W), i(Ho), i(Wo)};
        exec.run(body, static_cast<index_t>(out.numel() / V));
      };
      stride == 1 ? go(std::integral_constant<int, 1>{}) : go(std::integral_constant<int, 2>{});
    });
  });
  return out;
}

// A unit's final 1x1 conv in the network: both branches' last 1x1 convs as one GEMM over z (above) that
// writes the unit's shuffled output itself, its output channels interleaved: channel 2j is branch 1's
// channel j (the down unit's pw3 over part a; the split unit's identity, a 1 at input j), 2j + 1 is
// branch 2's (pw2 over part b); the bias interleaved the same way (0 for the identity). So a unit is
// three launches (1x1, depthwise, this GEMM) with no interleave pass, at the price of the zero blocks:
// 4x pw2's multiply-adds in a split unit, 2x pw3's and pw2's in a down unit.
// Its ReLU epilogue covers every output channel: right for the down unit, whose branches both end in a
// ReLU, and for the split unit's identity half because in the network every unit's input is a ReLU's
// output (the stem's max-pool of one, or a unit's), so never negative; relu(x) == x there.
// The identity passes exactly: x * 1 plus products with zero, accumulated in float32 (or TF32's
// rounding, which shufflenet_impl does not use this path under). A product with zero is NaN where z
// holds an infinity or NaN, so a non-finite value at a pixel of z turns every output channel of that
// pixel whose weight row has a zero there into NaN (the other branch's channels, or the identity half),
// where the layer ops keep them finite.
struct UnitGemm {
  Tensor weight;  // [2 cb, Ca + Cb, 1, 1]
  Tensor bias;    // [2 cb]
};

// One UnitGemm a unit, in the network's order: made once per set of weights (plan_cache.h), on their
// device and in their dtype, so a forward makes no weight copies.
struct UnitGemms {
  std::vector<UnitGemm> units;
};

// branch1: [cb, Ca, 1, 1] (and its bias), or undefined for the identity over Ca == cb channels.
inline UnitGemm make_unit_gemm(const Tensor& branch1, const Tensor& branch1_bias, int64_t ca, const Tensor& pw2_w,
                               const Tensor& pw2_b) {
  const int64_t cb = pw2_w.size(0);
  Tensor w = at::zeros({cb, 2, ca + cb}, pw2_w.options().memory_format(at::MemoryFormat::Contiguous));
  Tensor b = at::zeros({cb, 2}, pw2_b.options());
  if (branch1.defined()) {
    w.select(1, 0).narrow(1, 0, ca).copy_(branch1.reshape({cb, ca}));
    b.select(1, 0).copy_(branch1_bias);
  } else {
    w.select(1, 0).narrow(1, 0, ca).diagonal().fill_(1);
  }
  w.select(1, 1).narrow(1, ca, cb).copy_(pw2_w.reshape({cb, cb}));
  b.select(1, 1).copy_(pw2_b);
  return {w.view({2 * cb, ca + cb, 1, 1}), b.view({2 * cb})};
}

inline std::shared_ptr<const UnitGemms> make_unit_gemms(const NetworkParams& net) {
  auto gemms = std::make_shared<UnitGemms>();
  for (const UnitParams& unit : net.units) {
    if (unit.kind() == UnitKind::Down) {
      const DownUnitParams& d = unit.down();
      gemms->units.push_back(make_unit_gemm(d.pw3_w, d.pw3_b, d.dw1_w.size(0), d.pw2_w, d.pw2_b));
    } else {
      const SplitUnitParams& s = unit.split();
      gemms->units.push_back(make_unit_gemm(Tensor(), Tensor(), s.pw2_w.size(0), s.pw2_w, s.pw2_b));
    }
  }
  return gemms;
}

template <class Exec>
PlanCache<UnitGemms>& unit_gemm_plans() {
  static auto* const cache = new PlanCache<UnitGemms>();  // never destroyed: ops may run during exit
  return *cache;
}

// One unit of the network, channels_last, in three launches: its first 1x1 with bias and ReLU in the
// GEMM epilogue, run_unit_dwconv, and its UnitGemm.
template <class Exec>
Tensor run_network_unit(Exec& exec, const Tensor& x, const UnitParams& unit, const UnitGemm& gemm) {
  Tensor z;
  if (unit.kind() == UnitKind::Down) {
    const DownUnitParams& d = unit.down();
    const Tensor t = gemm_bias_act(exec, x, Layout::NHWC, d.pw1_w, d.pw1_b.contiguous(), true);
    z = run_unit_dwconv(exec, x, d.dw1_w, d.dw1_b, t, d.dw2_w, d.dw2_b, 2);
  } else {
    const SplitUnitParams& s = unit.split();
    const int64_t cb = x.size(1) / 2;
    const Tensor t = gemm_bias_act(exec, x.narrow(1, cb, cb), Layout::NHWC, s.pw1_w, s.pw1_b.contiguous(), true);
    z = run_unit_dwconv(exec, x.narrow(1, 0, cb), Tensor(), Tensor(), t, s.dw_w, s.dw_b, 1);
  }
  return gemm_bias_act(exec, z, Layout::NHWC, gemm.weight, gemm.bias, true);
}

// The whole network: the stem (reading the image in its own layout, writing channels_last), each unit
// as three launches (run_network_unit), then conv5 (epilogue), the mean and the classifier: 52 launches
// at ShuffleNetV2's 4/8/4 units (docs/design.md). exec.begin_layer marks where each layer's launches
// start (the ledger reads them from the emulation; on the GPU it does nothing). A CUDA graph captures the
// layer ops (below).
template <class Exec>
Tensor shufflenet_impl(const Tensor& x_in, at::TensorList params, at::IntArrayRef stage_repeats) {
  check_shufflenet(x_in, params, stage_repeats);
  Exec exec(x_in.device());
  // The layer ops instead of the plan:
  // - with TF32 allowed for float32 GEMMs, which would round the identity half;
  // - for an empty batch, which has nothing to compute;
  // - while a CUDA graph is captured: a graph keeps the addresses it was captured with, so the unit
  //   GEMMs' weights would stay as they were at capture when the model's weights are updated in place,
  //   and be freed under it when a later eager call remakes the plan. The layer ops read every weight
  //   where it lies on each replay.
  // TF32 is read through the fp32_precision API, which resolves the legacy flags too: allowTF32CuBLAS()
  // raises when a process has set the two APIs to different values.
  const bool tf32 = x_in.scalar_type() == at::kFloat &&
                    at::globalContext().float32Precision(at::Float32Backend::CUDA, at::Float32Op::MATMUL) ==
                        at::Float32Precision::TF32;
  if (x_in.size(0) == 0 || tf32 || exec.capturing()) {
    return shufflenet_composite(
        Exec::kLibrary, x_in, params, stage_repeats,
        [&](const char* name, int64_t read, int64_t written) { return exec.library(name, Traffic{read, written}); });
  }
  const NetworkParams net = parse_network_params(params, stage_repeats);
  // The unit GEMMs' weights, made on the first call with these weights. Once cached, any thread may read
  // them from any stream, so their kernels finish before they are.
  const auto gemms = unit_gemm_plans<Exec>().get(params, [&] {
    auto made = make_unit_gemms(net);
    exec.synchronize();
    return made;
  });
  const auto [x, layout] = in_kernel_layout(x_in);
  int layer = 0;
  exec.begin_layer(layer++);
  Tensor y = run_stem(exec, x, layout, Layout::NHWC, net.stem.weight, net.stem.bias);
  for (size_t u = 0; u < net.units.size(); ++u) {
    exec.begin_layer(layer++);
    y = run_network_unit(exec, y, net.units[u], gemms->units[u]);
  }
  exec.begin_layer(layer);
  y = gemm_bias_act(exec, y, Layout::NHWC, net.head.conv5_w, net.head.conv5_b.contiguous(), true);
  const int64_t N = y.size(0), C = y.size(1), es = y.element_size();
  const Tensor features = run_library(
      exec, "mean", Traffic{y.numel() * es, N * C * es}, [&] { return y.mean({2, 3}, /*keepdim=*/true); },
      [&] { return at::empty({N, C, 1, 1}, y.options()); });
  return gemm_bias_act(exec, features, Layout::NCHW, net.head.fc_w, net.head.fc_b.contiguous(), false).flatten(1);
}

template <class Exec>
void register_network_ops(torch::Library& m) {
  m.impl("shufflenet", &shufflenet_impl<Exec>);
}

}  // namespace shufflekernels::gpu
