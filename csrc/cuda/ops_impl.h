// The host side of the CUDA backend's ops, written once for both executors (bodies.cuh says which):
// input checks (csrc/contract.h), the layout each kernel reads, launch planning (launch_plan.h), and the
// launches of the bodies. register_ops<Exec> registers them all on one library and dispatch key.
//
// Exec(device) holds what a launch needs (device guard, stream); exec.run(body, items) runs body(i) for
// every i < items; exec.index32(n) says whether 32-bit indices may be used for a launch whose largest
// tensor has n elements; exec.library(name, traffic) is told of each library call before it is made
// and says whether to make it (run_library); exec.capturing() says whether its stream is capturing a
// CUDA graph, exec.synchronize() waits for the work queued on it; Exec::kLibrary names the op library
// its kernels are registered in.
#pragma once

#include <ATen/Context.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/_addmm_activation.h>
#include <ATen/ops/addmm.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <c10/util/Exception.h>
#include <torch/library.h>

#include <algorithm>
#include <cstdint>
#include <memory>
#include <vector>

#include "../aten_convs.h"
#include "../contract.h"
#include "../index_math.h"
#include "../layout.h"
#include "../network_composite.h"
#include "../network_params.h"
#include "../plan_cache.h"
#include "../unit_orchestration.h"
#include "bodies.cuh"
#include "launch_plan.h"

namespace shufflekernels::gpu {

using at::Tensor;

// A library call (cuBLAS, cuDNN or another ATen kernel) that the executor counts as one launch with
// the given traffic (launch_plan.h): `call` makes it; in the emulation's dry run `dry` makes an uninitialised
// result of the same shape and layout instead.
template <class Exec, class Call, class Dry>
Tensor run_library(const Exec& exec, const char* name, const Traffic& traffic, Call&& call, Dry&& dry) {
  return exec.library(name, traffic) ? call() : dry();
}

// A raw 1x1 conv (aten_convs.h, pointwise_raw) as one cuBLAS GEMM: M*K + K*N + M*N elements.
template <class Exec>
Tensor gemm_raw(const Exec& exec, const Tensor& x, Layout layout, const Tensor& weight) {
  const int64_t N = x.size(0), c_out = weight.size(0), H = x.size(2), W = x.size(3), es = x.element_size();
  const Traffic traffic{(x.numel() + weight.numel()) * es, N * c_out * H * W * es};
  return run_library(
      exec, "gemm", traffic, [&] { return pointwise_raw(x, layout, weight); },
      [&] { return at::empty({N, c_out, H, W}, x.options().memory_format(memory_format_of(layout))); });
}

template <class Exec>
void run_permutation(Exec& exec, const Permutation& p) {
  const int groups = static_cast<int>(p.srcs.size());
  const int64_t es = p.elem_size;
  void* out = p.out.data_ptr();
  const bool index32 = exec.index32(std::max(p.out.numel(), p.source_numel));
  int width = 1;
  if (p.layout == Layout::NCHW) {
    width = vector_width(es, {p.HW, p.src_stride}, {out});
    for (const char* s : p.srcs) width = std::min(width, vector_width(es, {p.HW, p.src_stride}, {s}));
  } else if (groups <= kMaxSourcesPerLaunch) {  // the vector NHWC path needs every group in one launch
    width = vector_width(es, {p.cpg * groups}, {out});
  }
  auto launch = [&](auto word) {
    using W = decltype(word);
    with_layout(p.layout, [&](auto nhwc) {
      with_width_and_index<sizeof(W)>(width, index32, [&](auto v, auto index) {
        constexpr int V = decltype(v)::value;
        using index_t = decltype(index);
        for (int first = 0; first < groups; first += kMaxSourcesPerLaunch) {
          InterleaveBody<W, index_t, V, decltype(nhwc)::value> body{};
          body.first = first;
          body.count = std::min(kMaxSourcesPerLaunch, groups - first);
          body.groups = groups;
          for (int k = 0; k < body.count; ++k) body.src[k] = reinterpret_cast<const W*>(p.srcs[first + k]);
          body.cpg = static_cast<index_t>(p.cpg);
          body.HW = static_cast<index_t>(p.HW);
          body.src_stride = static_cast<index_t>(p.src_stride);
          body.out = static_cast<W*>(out);
          exec.run(body, static_cast<index_t>(p.N * body.count * p.cpg * p.HW / V));
        }
      });
    });
  };
  if (es == 4) {
    launch(uint32_t{});
  } else {
    TORCH_CHECK(es == 2, "shufflekernels: internal error, unsupported element size ", es);
    launch(uint16_t{});
  }
}

template <class Exec>
Tensor channel_shuffle_impl(const Tensor& x, int64_t groups) {
  check_channel_shuffle(x, groups);
  Exec exec(x.device());
  const Permutation p = channel_shuffle_permutation(x, groups);
  if (p.out.numel() > 0) run_permutation(exec, p);
  return p.out;
}

template <class Exec>
Tensor shuffle_cat_impl(at::TensorList tensors) {
  check_shuffle_cat(tensors);
  Exec exec(tensors[0].device());
  const Permutation p = shuffle_cat_permutation(tensors);
  if (p.out.numel() > 0) run_permutation(exec, p);
  return p.out;
}

template <class Exec>
Tensor run_dwconv3x3(Exec& exec, const Tensor& x, Layout layout, const Tensor& weight,
                     const c10::optional<Tensor>& bias, int64_t stride, bool relu, const c10::optional<Tensor>& in_bias,
                     bool in_relu) {
  const int64_t N = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3);
  const int64_t Ho = dwconv3x3_out_size(H, stride), Wo = dwconv3x3_out_size(W, stride);
  Tensor out = at::empty({N, C, Ho, Wo}, x.options().memory_format(memory_format_of(layout)));
  if (out.numel() == 0) return out;
  const Tensor b = bias.has_value() ? bias->contiguous() : Tensor();
  const Tensor ib = in_bias.has_value() ? in_bias->contiguous() : Tensor();
  const int64_t es = x.element_size();
  const int width = layout == Layout::NHWC ? vector_width(es, {C}, {x.const_data_ptr(), out.const_data_ptr()})
                                           : vector_width(es, {W, Wo}, {x.const_data_ptr(), out.const_data_ptr()});
  const bool index32 = exec.index32(std::max(out.numel(), x.numel()));
  with_float_type(x.scalar_type(), [&](auto type) {
    using T = decltype(type);
    with_layout(layout, [&](auto nhwc) {
      with_width_and_index<sizeof(T)>(width, index32, [&](auto v, auto index) {
        constexpr int V = decltype(v)::value;
        using index_t = decltype(index);
        auto go = [&](auto s) {
          DwConv3x3Body<T, index_t, V, decltype(nhwc)::value, decltype(s)::value> body{
              x.const_data_ptr<T>(),
              out.data_ptr<T>(),
              weight.const_data_ptr<T>(),
              b.defined() ? b.const_data_ptr<T>() : nullptr,
              ib.defined() ? ib.const_data_ptr<T>() : nullptr,
              in_relu,
              relu,
              static_cast<index_t>(C),
              static_cast<index_t>(H),
              static_cast<index_t>(W),
              static_cast<index_t>(Ho),
              static_cast<index_t>(Wo),
              static_cast<index_t>(weight.stride(0)),
              static_cast<index_t>(weight.stride(2)),
              static_cast<index_t>(weight.stride(3))};
          exec.run(body, static_cast<index_t>(out.numel() / V));
        };
        stride == 1 ? go(std::integral_constant<int, 1>{}) : go(std::integral_constant<int, 2>{});
      });
    });
  });
  return out;
}

template <class Exec>
Tensor dwconv3x3_impl(const Tensor& x_in, const Tensor& weight, const c10::optional<Tensor>& bias, int64_t stride,
                      bool relu) {
  check_dwconv3x3(x_in, weight, bias, stride);
  [[maybe_unused]] Exec exec(x_in.device());
  auto [x, layout] = in_kernel_layout(x_in);
  return run_dwconv3x3(exec, x, layout, weight, bias, stride, relu, c10::nullopt, false);
}

// Writes the two branches a, b (cpg channels each, H x W) interleaved into a new tensor.
template <class Exec, typename T>
Tensor interleave2(Exec& exec, const Branch<T>& a, const Branch<T>& b, int64_t N, int64_t cpg, int64_t H, int64_t W,
                   Layout layout, const at::TensorOptions& options) {
  Tensor out = at::empty({N, 2 * cpg, H, W}, options.memory_format(memory_format_of(layout)));
  if (out.numel() == 0) return out;
  const int64_t HW = H * W;
  const int width = vector_width(sizeof(T), {layout == Layout::NHWC ? cpg : HW, a.stride, b.stride},
                                 {a.data, b.data, out.const_data_ptr()});
  // Sources are channel slices of tensors no larger than twice the output.
  const bool index32 = exec.index32(2 * out.numel());
  with_layout(layout, [&](auto nhwc) {
    with_width_and_index<sizeof(T)>(width, index32, [&](auto v, auto index) {
      constexpr int V = decltype(v)::value;
      constexpr bool kNHWC = decltype(nhwc)::value;
      using index_t = decltype(index);
      Interleave2Body<T, index_t, V, kNHWC> body{
          {a.data, b.data},         {static_cast<index_t>(a.stride), static_cast<index_t>(b.stride)},
          {a.bias, b.bias},         static_cast<index_t>(cpg),
          static_cast<index_t>(HW), out.data_ptr<T>()};
      // An NHWC item writes V channels of each branch: 2V outputs.
      exec.run(body, static_cast<index_t>(out.numel() / (kNHWC ? 2 * V : V)));
    });
  });
  return out;
}

// relu?(conv1x1(x) + bias) as one GEMM on [pixels, Cin], for x channels_last (or a channel slice of such
// a tensor: unit channel stride, one pixel stride) or pooled features [N, C, 1, 1] (a matrix in either
// layout), with the bias, and the ReLU, in cuBLASLt's epilogue: added in float32 before the product is
// rounded, and no pass over the output after it. Returns the result in x's layout.
template <class Exec>
Tensor gemm_bias_act(const Exec& exec, const Tensor& x, Layout layout, const Tensor& weight, const Tensor& bias,
                     bool relu) {
  const int64_t N = x.size(0), c_in = x.size(1), H = x.size(2), W = x.size(3), c_out = weight.size(0);
  const int64_t M = N * H * W, es = x.element_size();
  const Tensor a = x.permute({0, 2, 3, 1}).reshape({M, c_in}), w = weight.reshape({c_out, c_in}).t();
  const Traffic traffic{(M * c_in + c_in * c_out + c_out) * es, M * c_out * es};
  const Tensor y = run_library(
      exec, relu ? "gemm_bias_relu" : "gemm_bias", traffic,
      [&] { return relu ? at::_addmm_activation(bias, a, w, 1, 1, /*use_gelu=*/false) : at::addmm(bias, a, w); },
      [&] { return at::empty({M, c_out}, x.options()); });
  if (layout == Layout::NCHW) return y.view({N, c_out, 1, 1});
  return y.view({N, H, W, c_out}).permute({0, 3, 1, 2});
}

template <class Exec>
Tensor pointwise_impl(const Tensor& x_in, const Tensor& weight, const Tensor& bias, bool relu) {
  check_pointwise(x_in, weight, bias);
  [[maybe_unused]] Exec exec(x_in.device());
  auto [x, layout] = in_kernel_layout(x_in);
  if (x.numel() == 0)
    return at::empty({x.size(0), weight.size(0), x.size(2), x.size(3)},
                     x.options().memory_format(memory_format_of(layout)));
  const int64_t H = x.size(2), W = x.size(3);
  const Tensor b = bias.contiguous();
  if (layout == Layout::NHWC || H * W == 1) return gemm_bias_act(exec, x, layout, weight, b, relu);
  // NCHW with pixels: a batched GEMM, then bias and ReLU in one in-place pass over its result.
  Tensor y = gemm_raw(exec, x, layout, weight);
  if (y.numel() == 0) return y;
  const int64_t C = y.size(1), HW = y.size(2) * y.size(3);
  const int width = vector_width(y.element_size(), {HW}, {y.const_data_ptr()});
  with_float_type(y.scalar_type(), [&](auto type) {
    using T = decltype(type);
    with_width_and_index<sizeof(T)>(width, exec.index32(y.numel()), [&](auto v, auto index) {
      constexpr int V = decltype(v)::value;
      using index_t = decltype(index);
      BiasActBody<T, index_t, V, false> body{y.data_ptr<T>(), b.const_data_ptr<T>(), relu, static_cast<index_t>(C),
                                             static_cast<index_t>(HW)};
      exec.run(body, static_cast<index_t>(y.numel() / V));
    });
  });
  return y;
}

// The stem in one kernel (StemBody): conv, bias, ReLU and max-pool, no intermediate, no indices; the
// output in `out_layout` (the input's for the stem op; channels_last for the network, which reads an NCHW
// image straight into it).
template <class Exec>
Tensor run_stem(Exec& exec, const Tensor& x, Layout layout, Layout out_layout, const Tensor& weight_in,
                const Tensor& bias_in) {
  const int64_t N = x.size(0), Cin = x.size(1), H = x.size(2), W = x.size(3), Cout = weight_in.size(0);
  const int64_t Hc = stem_conv_out_size(H), Wc = stem_conv_out_size(W), Hp = stem_out_size(H), Wp = stem_out_size(W);
  Tensor out = at::empty({N, Cout, Hp, Wp}, x.options().memory_format(memory_format_of(out_layout)));
  if (out.numel() == 0) return out;
  TORCH_CHECK(layout == out_layout || out_layout == Layout::NHWC,
              "shufflekernels: internal error, the stem writes NCHW only from NCHW");
  const Tensor w = weight_in.contiguous(), b = bias_in.contiguous();
  const int width = out_layout == Layout::NHWC ? vector_width(x.element_size(), {Cout}, {out.const_data_ptr()}) : 1;
  const bool index32 = exec.index32(std::max(out.numel(), x.numel()));
  with_float_type(x.scalar_type(), [&](auto type) {
    using T = decltype(type);
    with_layout(out_layout, [&](auto nhwc) {
      constexpr bool kNHWC = decltype(nhwc)::value;
      with_width_and_index<sizeof(T)>(width, index32, [&](auto v, auto index) {
        constexpr int V = kNHWC ? decltype(v)::value : 1;  // NCHW: one element an item
        using index_t = decltype(index);
        auto go = [&](auto in_nhwc) {
          auto i = [](int64_t value) { return static_cast<index_t>(value); };
          StemBody<T, index_t, V, kNHWC, decltype(in_nhwc)::value> body{x.const_data_ptr<T>(),
                                                                        w.const_data_ptr<T>(),
                                                                        b.const_data_ptr<T>(),
                                                                        out.data_ptr<T>(),
                                                                        i(Cin),
                                                                        i(Cout),
                                                                        i(H),
                                                                        i(W),
                                                                        i(Hc),
                                                                        i(Wc),
                                                                        i(Hp),
                                                                        i(Wp)};
          exec.run(body, static_cast<index_t>(out.numel() / V));
        };
        if constexpr (kNHWC) {
          layout == Layout::NHWC ? go(std::true_type{}) : go(std::false_type{});
        } else {
          go(std::false_type{});
        }
      });
    });
  });
  return out;
}

template <class Exec>
Tensor stem_impl(const Tensor& x_in, const Tensor& weight, const Tensor& bias) {
  check_stem(x_in, weight, bias);
  Exec exec(x_in.device());
  auto [x, layout] = in_kernel_layout(x_in);
  return run_stem(exec, x, layout, layout, weight, bias);
}

// The units' primitives on this backend (csrc/unit_orchestration.h): cuBLAS GEMMs through ATen,
// the depthwise kernel with its pre-activation, and the two-branch interleave. Biases are read in the
// activations' dtype, where they lie.
template <class Exec>
struct GpuPrims {
  Exec& exec;

  // channels_last: one GEMM with bias and ReLU in cuBLASLt's epilogue, the bias added in float32 before
  // the product is rounded. NCHW: the raw batched GEMM, whose bias and ReLU the reader applies (an
  // epilogue there would need a pass of its own over the output).
  PointwiseResult pointwise(const Tensor& x, Layout layout, const Tensor& weight, const Tensor& bias) {
    if (layout == Layout::NHWC) return {gemm_bias_act(exec, x, layout, weight, bias.contiguous(), true), true};
    return {gemm_raw(exec, x, layout, weight), false};
  }
  Tensor dwconv(const Tensor& x, Layout layout, const Tensor& weight, const c10::optional<Tensor>& bias, int64_t stride,
                bool relu, const c10::optional<Tensor>& in_bias, bool in_relu) {
    return run_dwconv3x3(exec, x, layout, weight, bias, stride, relu, in_bias, in_relu);
  }
  Tensor interleave2(const UnitBranch& a, const UnitBranch& b, int64_t N, int64_t cpg, int64_t H, int64_t W,
                     Layout layout, const at::TensorOptions& options) {
    const Tensor bias_a = a.bias.defined() ? a.bias.contiguous() : Tensor();
    const Tensor bias_b = b.bias.defined() ? b.bias.contiguous() : Tensor();
    Tensor out;
    with_float_type(options.dtype().toScalarType(), [&](auto type) {
      using T = decltype(type);
      auto branch = [](const UnitBranch& s, const Tensor& bias) {
        return Branch<T>{s.data.const_data_ptr<T>(), s.stride, bias.defined() ? bias.const_data_ptr<T>() : nullptr};
      };
      out = gpu::interleave2(exec, branch(a, bias_a), branch(b, bias_b), N, cpg, H, W, layout, options);
    });
    return out;
  }
};

template <class Exec>
Tensor split_unit_impl(const Tensor& x_in, const Tensor& pw1_w, const Tensor& pw1_b, const Tensor& dw_w,
                       const Tensor& dw_b, const Tensor& pw2_w, const Tensor& pw2_b) {
  const int64_t cb = check_split_unit(x_in, pw1_w, pw1_b, dw_w, dw_b, pw2_w, pw2_b);
  Exec exec(x_in.device());
  auto [x, layout] = in_kernel_layout(x_in);
  if (x.numel() == 0) return at::empty(x.sizes(), x.options().memory_format(memory_format_of(layout)));
  GpuPrims<Exec> prims{exec};
  return split_unit_generic(prims, x, layout, cb, pw1_w, pw1_b, dw_w, dw_b, pw2_w, pw2_b);
}

template <class Exec>
Tensor down_unit_impl(const Tensor& x_in, const Tensor& dw1_w, const Tensor& dw1_b, const Tensor& pw3_w,
                      const Tensor& pw3_b, const Tensor& pw1_w, const Tensor& pw1_b, const Tensor& dw2_w,
                      const Tensor& dw2_b, const Tensor& pw2_w, const Tensor& pw2_b) {
  const int64_t cb = check_down_unit(x_in, dw1_w, dw1_b, pw3_w, pw3_b, pw1_w, pw1_b, dw2_w, dw2_b, pw2_w, pw2_b);
  Exec exec(x_in.device());
  auto [x, layout] = in_kernel_layout(x_in);
  const int64_t Ho = dwconv3x3_out_size(x.size(2), 2), Wo = dwconv3x3_out_size(x.size(3), 2);
  if (x.size(0) == 0) return at::empty({0, 2 * cb, Ho, Wo}, x.options().memory_format(memory_format_of(layout)));
  GpuPrims<Exec> prims{exec};
  return down_unit_generic(prims, x, layout, cb, dw1_w, dw1_b, pw3_w, pw3_b, pw1_w, pw1_b, dw2_w, dw2_b, pw2_w, pw2_b);
}

// ------------------------------------------------------------------------------------------------
// The whole network (docs/design.md, "The native CUDA network")
// ------------------------------------------------------------------------------------------------

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

// Every op of one library on one dispatch key, run by the executor Exec: the CUDA key of shufflekernels
// (kernels_cuda.cu) and the CPU key of shufflekernels_cuda_emulated (host_emulation.cpp).
template <class Exec>
void register_ops(torch::Library& m) {
  m.impl("channel_shuffle", &channel_shuffle_impl<Exec>);
  m.impl("shuffle_cat", &shuffle_cat_impl<Exec>);
  m.impl("dwconv3x3", &dwconv3x3_impl<Exec>);
  m.impl("pointwise", &pointwise_impl<Exec>);
  m.impl("stem", &stem_impl<Exec>);
  m.impl("split_unit", &split_unit_impl<Exec>);
  m.impl("down_unit", &down_unit_impl<Exec>);
  m.impl("shufflenet", &shufflenet_impl<Exec>);
}

}  // namespace shufflekernels::gpu
