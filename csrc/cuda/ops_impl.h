// The host side of the CUDA backend's ops, written once for both executors (bodies.cuh says which):
// input checks (csrc/contract.h), the layout each kernel reads, launch planning (plan.h), and the
// launches of the bodies. register_ops<Exec> registers them all on one library and dispatch key.
//
// Exec(device) holds what a launch needs (device guard, stream); exec.run(body, items) runs body(i) for
// every i < items; exec.index32(n) says whether 32-bit indices may be used for a launch whose largest
// tensor has n elements; exec.library(name, traffic) is told of each library call before it is made
// and says whether to make it (run_library); Exec::kLibrary names the op library its kernels are
// registered in.
#pragma once

#include <ATen/core/Tensor.h>
#include <ATen/ops/_addmm_activation.h>
#include <ATen/ops/addmm.h>
#include <ATen/ops/empty.h>
#include <c10/util/Exception.h>
#include <torch/library.h>

#include <algorithm>
#include <cstdint>

#include "../aten_convs.h"
#include "../contract.h"
#include "../index_math.h"
#include "../layout.h"
#include "../network_composite.h"
#include "../unit_orchestration.h"
#include "bodies.cuh"
#include "plan.h"

namespace shufflekernels::gpu {

using at::Tensor;

// A library call (cuBLAS, cuDNN or another ATen kernel) that the executor counts as one launch with
// the given traffic (plan.h): `call` makes it; in the emulation's dry run `dry` makes an uninitialised
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
  const int64_t N = x.size(0), c_in = x.size(1), H = x.size(2), W = x.size(3), c_out = weight.size(0);
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

// The stem in one kernel (StemBody): conv, bias, ReLU and max-pool, no intermediate, no indices.
template <class Exec>
Tensor stem_impl(const Tensor& x_in, const Tensor& weight_in, const Tensor& bias_in) {
  check_stem(x_in, weight_in, bias_in);
  Exec exec(x_in.device());
  auto [x, layout] = in_kernel_layout(x_in);
  const int64_t N = x.size(0), Cin = x.size(1), H = x.size(2), W = x.size(3), Cout = weight_in.size(0);
  const int64_t Hc = dwconv3x3_out_size(H, 2), Wc = dwconv3x3_out_size(W, 2);
  const int64_t Hp = dwconv3x3_out_size(Hc, 2), Wp = dwconv3x3_out_size(Wc, 2);
  Tensor out = at::empty({N, Cout, Hp, Wp}, x.options().memory_format(memory_format_of(layout)));
  if (out.numel() == 0) return out;
  const Tensor w = weight_in.contiguous(), b = bias_in.contiguous();
  const int width = layout == Layout::NHWC ? vector_width(x.element_size(), {Cout}, {out.const_data_ptr()}) : 1;
  const bool index32 = exec.index32(std::max(out.numel(), x.numel()));
  with_float_type(x.scalar_type(), [&](auto type) {
    using T = decltype(type);
    with_layout(layout, [&](auto nhwc) {
      constexpr bool kNHWC = decltype(nhwc)::value;
      with_width_and_index<sizeof(T)>(width, index32, [&](auto v, auto index) {
        constexpr int V = kNHWC ? decltype(v)::value : 1;  // NCHW: one element an item
        using index_t = decltype(index);
        auto i = [](int64_t value) { return static_cast<index_t>(value); };
        StemBody<T, index_t, V, kNHWC> body{x.const_data_ptr<T>(),
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
      });
    });
  });
  return out;
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

// Every op of one library on one dispatch key, run by the executor Exec: the CUDA key of shufflekernels
// (kernels_cuda.cu) and the CPU key of shufflekernels_cuda_emulated (host_emulation.cpp).
// The whole network as the layer ops of this executor's library, one after another (CUDA graphs capture
// it as one replay; the CPU runs it from a plan instead, csrc/cpu/network.cpp).
template <class Exec>
Tensor shufflenet_impl(const Tensor& x, at::TensorList params, at::IntArrayRef stage_repeats) {
  check_shufflenet(x, params, stage_repeats);
  Exec exec(x.device());
  return shufflenet_composite(
      Exec::kLibrary, x, params, stage_repeats,
      [&](const char* name, int64_t read, int64_t written) { return exec.library(name, Traffic{read, written}); });
}

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
