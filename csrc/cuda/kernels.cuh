// The CUDA kernels of every op, written once for two executors:
//   - CudaExec (kernels_cuda.cu): each body runs as a grid-stride __global__ kernel on the current
//     stream of the input's device;
//   - HostExec (host_emulation.cpp): the same bodies run over the same item ranges on host threads,
//     so the CPU tests exercise the index math, the vector-width and index-type planning and the
//     epilogues of the CUDA kernels on machines without a GPU (and ASan checks their bounds).
// Everything here is the CUDA backend's code; only the executor differs.
//
// Index model (csrc/index_math.h, shared with the CPU kernels): a shuffle with g groups writes
// out[n, j*g + i] = src_i[n, j]. Depthwise 3x3: out[n,c,oh,ow] = bias[c] + sum w[c,kh,kw] *
// act(in[n,c,oh*s-1+kh,ow*s-1+kw]) over taps inside the image, act being the optional pre-activation
// act(v) = relu?(v + in_bias[c]) that lets a unit apply the previous 1x1 conv's bias and ReLU on read.
//
// A body computes one *item*: V consecutive elements along the layout's contiguous dimension, moved
// with one V-wide load or store where the planner (vector_width) has proven every such access aligned
// and in range (16, 8 or 4 bytes), else one element (V = 1). Consecutive items touch consecutive memory, so a warp's
// accesses coalesce. Indices are 32-bit when every tensor of the launch has fewer than 2^31 elements,
// 64-bit (and scalar) otherwise. Float16 and bfloat16 accumulate in float32.
#pragma once

#include <ATen/ATen.h>
#include <c10/util/Exception.h>

#include <cstdint>
#include <initializer_list>
#include <limits>
#include <type_traits>
#include <vector>

#include "../layout.h"
#include "../index_math.h"
#include "../pointwise.h"

// Loops over vector lanes and taps have compile-time trip counts; unrolled, their arrays stay in
// registers on the GPU.
#if defined(__CUDACC__)
#define SK_UNROLL _Pragma("unroll")
#else
#define SK_UNROLL _Pragma("GCC unroll 16")
#endif

namespace shufflekernels::gpu {

using at::Tensor;

// ------------------------------------------------------------------------------------------------
// Vector access
// ------------------------------------------------------------------------------------------------

template <typename T, int V>
struct alignas(sizeof(T) * V) Pack {
  T v[V];
};

#if !defined(__CUDA_ARCH__)
// On the host a misaligned vector access would go unnoticed (x86 forgives it); on a GPU it faults. The
// emulation checks every one, so a planning mistake fails a CPU test instead of a GPU run.
inline void check_vector_alignment(const void* p, size_t bytes) {
  TORCH_CHECK(reinterpret_cast<uintptr_t>(p) % bytes == 0, "shufflekernels: internal error, ", bytes,
              "-byte vector access at misaligned address ", p);
}
#endif

template <int V, typename T>
SK_HOST_DEVICE Pack<T, V> load_pack(const T* p) {
#if !defined(__CUDA_ARCH__)
  check_vector_alignment(p, sizeof(Pack<T, V>));
#endif
  return *reinterpret_cast<const Pack<T, V>*>(p);
}

template <int V, typename T>
SK_HOST_DEVICE void store_pack(T* p, const Pack<T, V>& x) {
#if !defined(__CUDA_ARCH__)
  check_vector_alignment(p, sizeof(Pack<T, V>));
#endif
  *reinterpret_cast<Pack<T, V>*>(p) = x;
}

// ReLU that keeps NaN (as torch.relu does; fmaxf would turn it into 0).
SK_HOST_DEVICE float relu_keep_nan(float v) { return v <= 0.f ? 0.f : v; }

// ------------------------------------------------------------------------------------------------
// Bodies
// ------------------------------------------------------------------------------------------------

// Sources one interleave launch reads; more groups are handled by further launches.
constexpr int kMaxSourcesPerLaunch = 16;

// channel_shuffle / shuffle_cat: writes output channels j*groups + (first + k), k < count, from
// sources src[k] (each of cpg channels). A permutation, so it moves words of the element size (W).
// NCHW: item = (n, k, j, block of V pixels): a V-wide copy of part of one channel plane.
// NHWC: V = 1: item = (pixel, j, k); V > 1 (only when one launch covers every group): item = (pixel,
// block of V output channels), gathered element-wise (consecutive items read consecutive words of
// each source) and stored V-wide.
template <typename W, typename index_t, int V, bool kNHWC>
struct InterleaveBody {
  static constexpr const char* kName = "interleave";
  static constexpr int kWidth = V;
  static constexpr bool kChannelsLast = kNHWC;
  const W* src[kMaxSourcesPerLaunch];
  int first, count, groups;
  index_t cpg, HW, src_stride;
  W* out;

  SK_HOST_DEVICE void operator()(index_t item) const {
    if constexpr (!kNHWC) {
      const index_t blocks = HW / V;
      const index_t hw = (item % blocks) * V;
      const index_t j = (item / blocks) % cpg;
      const index_t k = (item / (blocks * cpg)) % count;
      const index_t n = item / (blocks * cpg * count);
      const W* s = src[k] + n * src_stride + j * HW + hw;
      W* d = out + (n * cpg * groups + shuffle_destination<index_t>(first + k, j, groups)) * HW + hw;
      if constexpr (V == 1) {
        *d = *s;
      } else {
        store_pack<V>(d, load_pack<V>(s));
      }
    } else if constexpr (V == 1) {
      const index_t k = item % count;
      const index_t j = (item / count) % cpg;
      const index_t p = item / (count * cpg);
      out[p * cpg * groups + shuffle_destination<index_t>(first + k, j, groups)] = src[k][p * src_stride + j];
    } else {
      const index_t C = cpg * groups;
      const index_t c0 = (item * V) % C, p = (item * V) / C;
      Pack<W, V> pack;
SK_UNROLL
      for (int t = 0; t < V; ++t) {
        const ShuffleSource from = shuffle_source<index_t>(c0 + t, groups);
        pack.v[t] = src[from.group][p * src_stride + from.channel];
      }
      store_pack<V>(out + item * V, pack);
    }
  }
};

// Depthwise 3x3 (stride kStride, padding 1) with optional pre-activation and ReLU epilogue. Weights
// and biases are read in the input's dtype where they lie (any weight strides, as the model stores
// them tap-major), so a call launches no conversion kernels; they are widened to float32 on read.
// NHWC: item = (n, oh, ow, block of V channels). NCHW: item = (n, c, oh, block of V output columns):
// each input row is read as a window of V*kStride columns (V-wide loads) plus the halo columns.
template <typename T, typename index_t, int V, bool kNHWC, int kStride>
struct DwConv3x3Body {
  static constexpr const char* kName = "dwconv3x3";
  static constexpr int kWidth = V;
  static constexpr bool kChannelsLast = kNHWC;
  const T* in;
  T* out;
  const T* weight;   // weight[c, 0, kh, kw] at c * w_c + kh * w_h + kw * w_w
  const T* bias;     // [C] or nullptr
  const T* in_bias;  // [C] or nullptr
  bool in_relu, relu;
  index_t C, H, W, Ho, Wo;
  index_t w_c, w_h, w_w;

  SK_HOST_DEVICE float tap(index_t c, int kh, int kw) const {
    return static_cast<float>(weight[c * w_c + kh * w_h + kw * w_w]);
  }

  SK_HOST_DEVICE float act(T x, float in_b) const {
    const float v = static_cast<float>(x) + in_b;
    return in_relu ? relu_keep_nan(v) : v;
  }

  SK_HOST_DEVICE void operator()(index_t item) const {
    float acc[V];
    if constexpr (kNHWC) {
      const index_t blocks = C / V;
      const index_t c0 = (item % blocks) * V, pix = item / blocks;
      const index_t ow = pix % Wo, oh = (pix / Wo) % Ho, n = pix / (Wo * Ho);
      float in_b[V];
SK_UNROLL
      for (int t = 0; t < V; ++t) {
        acc[t] = bias ? static_cast<float>(bias[c0 + t]) : 0.f;
        in_b[t] = in_bias ? static_cast<float>(in_bias[c0 + t]) : 0.f;
      }
SK_UNROLL
      for (int kh = 0; kh < 3; ++kh) {
        const index_t ih = oh * kStride - 1 + kh;
        if (ih < 0 || ih >= H) continue;  // padding: the activated input is zero there
SK_UNROLL
        for (int kw = 0; kw < 3; ++kw) {
          const index_t iw = ow * kStride - 1 + kw;
          if (iw < 0 || iw >= W) continue;
          const T* px = in + ((n * H + ih) * W + iw) * C + c0;
          if constexpr (V == 1) {
            acc[0] += tap(c0, kh, kw) * act(px[0], in_b[0]);
          } else {
            const Pack<T, V> x = load_pack<V>(px);
SK_UNROLL
            for (int t = 0; t < V; ++t) acc[t] += tap(c0 + t, kh, kw) * act(x.v[t], in_b[t]);
          }
        }
      }
    } else {
      const index_t blocks = Wo / V;
      const index_t ow0 = (item % blocks) * V, rest = item / blocks;
      const index_t oh = rest % Ho, c = (rest / Ho) % C, n = rest / (Ho * C);
      const float b = bias ? static_cast<float>(bias[c]) : 0.f;
      const float in_b = in_bias ? static_cast<float>(in_bias[c]) : 0.f;
SK_UNROLL
      for (int t = 0; t < V; ++t) acc[t] = b;
      // win[q] holds input column ow0*kStride - 1 + q (zero outside the image): output t, tap kw
      // reads win[t*kStride + kw].
      constexpr int kSpan = (V - 1) * kStride + 3;
      const index_t iw0 = ow0 * kStride - 1;
SK_UNROLL
      for (int kh = 0; kh < 3; ++kh) {
        const index_t ih = oh * kStride - 1 + kh;
        if (ih < 0 || ih >= H) continue;
        const T* row = in + ((n * C + c) * H + ih) * W;
        float win[kSpan];
        if constexpr (V == 1) {
SK_UNROLL
          for (int q = 0; q < kSpan; ++q) {
            const index_t iw = iw0 + q;
            win[q] = iw >= 0 && iw < W ? act(row[iw], in_b) : 0.f;
          }
        } else {
          // The planner guarantees W % V == 0 and Wo % V == 0, so columns ow0*kStride ..
          // ow0*kStride + V*kStride - 1 are inside the row and V-aligned: kStride V-wide loads. Only
          // the column left of them, and for stride 1 the one right of them, can fall outside.
          win[0] = iw0 >= 0 ? act(row[iw0], in_b) : 0.f;
SK_UNROLL
          for (int part = 0; part < kStride; ++part) {
            const Pack<T, V> x = load_pack<V>(row + iw0 + 1 + part * V);
SK_UNROLL
            for (int t = 0; t < V; ++t) {
              if (1 + part * V + t < kSpan) win[1 + part * V + t] = act(x.v[t], in_b);
            }
          }
          if constexpr (1 + V * kStride < kSpan) {
            const index_t iw = iw0 + 1 + V * kStride;
            win[1 + V * kStride] = iw < W ? act(row[iw], in_b) : 0.f;
          }
        }
        const float w[3] = {tap(c, kh, 0), tap(c, kh, 1), tap(c, kh, 2)};
SK_UNROLL
        for (int t = 0; t < V; ++t) {
SK_UNROLL
          for (int kw = 0; kw < 3; ++kw) acc[t] += w[kw] * win[t * kStride + kw];
        }
      }
    }
    // Both layouts: this item's V outputs are out[item*V ..].
    Pack<T, V> y;
SK_UNROLL
    for (int t = 0; t < V; ++t) y.v[t] = static_cast<T>(relu ? relu_keep_nan(acc[t]) : acc[t]);
    if constexpr (V == 1) {
      out[item] = y.v[0];
    } else {
      store_pack<V>(out + item * V, y);
    }
  }
};

// A branch of a unit's final interleave: cpg channels read at `data` (a dense tensor or a channel
// slice of one), stride elements between pixels (NHWC) or images (NCHW), and the bias whose add and
// ReLU are applied on the way (nullptr: copied as is, the split unit's identity half).
template <typename T>
struct Branch {
  const T* data;
  int64_t stride;
  const T* bias;
};

// The units' last step: out channel 2j + s = relu(src_s[j] + bias_s[j]) (or src_s[j] without bias).
// NHWC: item = (pixel, block of V channels j of both branches): two V-wide loads, two V-wide stores of
// the 2V interleaved outputs. NCHW: item = (n, out channel, block of V pixels).
template <typename T, typename index_t, int V, bool kNHWC>
struct Interleave2Body {
  static constexpr const char* kName = "interleave2";
  static constexpr int kWidth = V;
  static constexpr bool kChannelsLast = kNHWC;
  const T* src[2];
  index_t src_stride[2];
  const T* bias[2];
  index_t cpg, HW;
  T* out;

  static SK_HOST_DEVICE T apply(const T* b, T x, index_t j) {
    return b ? static_cast<T>(relu_keep_nan(static_cast<float>(x) + static_cast<float>(b[j]))) : x;
  }

  SK_HOST_DEVICE void operator()(index_t item) const {
    if constexpr (kNHWC) {
      const index_t blocks = cpg / V;
      const index_t j0 = (item % blocks) * V, p = item / blocks;
      Pack<T, V> in[2];
SK_UNROLL
      for (int s = 0; s < 2; ++s) {
        const T* from = src[s] + p * src_stride[s] + j0;
        if constexpr (V == 1) {
          in[s].v[0] = *from;
        } else {
          in[s] = load_pack<V>(from);
        }
      }
      Pack<T, V> outs[2];  // out channels 2*j0 .. 2*j0 + 2V - 1, V at a time
SK_UNROLL
      for (int t = 0; t < V; ++t) {
SK_UNROLL
        for (int s = 0; s < 2; ++s) {
          const int e = shuffle_destination<int>(s, t, 2);
          outs[e / V].v[e % V] = apply(bias[s], in[s].v[t], j0 + t);
        }
      }
      T* to = out + p * 2 * cpg + 2 * j0;
SK_UNROLL
      for (int h = 0; h < 2; ++h) {
        if constexpr (V == 1) {
          to[h] = outs[h].v[0];
        } else {
          store_pack<V>(to + h * V, outs[h]);
        }
      }
    } else {
      const index_t blocks = HW / V;
      const index_t hw = (item % blocks) * V;
      const index_t c = (item / blocks) % (2 * cpg), n = item / (blocks * 2 * cpg);
      const ShuffleSource from = shuffle_source<index_t>(c, 2);
      const index_t j = from.channel;
      // Selected, not indexed: indexing the body's arrays with a run-time value here made nvcc copy
      // this kernel's parameters to local memory and turn the loads below into generic ones (caught
      // by .ci/check_sass.py; InterleaveBody's indexed sources compile to indexed constant loads).
      const bool first = from.group == 0;
      const T* b = first ? bias[0] : bias[1];
      const T* in = (first ? src[0] : src[1]) + n * (first ? src_stride[0] : src_stride[1]) + j * HW + hw;
      if constexpr (V == 1) {
        out[item] = apply(b, *in, j);
      } else {
        Pack<T, V> x = load_pack<V>(in);
SK_UNROLL
        for (int t = 0; t < V; ++t) x.v[t] = apply(b, x.v[t], j);
        store_pack<V>(out + item * V, x);
      }
    }
  }
};

// pointwise's epilogue on the cuBLAS product, in place: y = relu?(y + bias[c]).
// NHWC: item = (pixel, block of V channels). NCHW: item = (n, c, block of V pixels).
template <typename T, typename index_t, int V, bool kNHWC>
struct BiasActBody {
  static constexpr const char* kName = "bias_act";
  static constexpr int kWidth = V;
  static constexpr bool kChannelsLast = kNHWC;
  T* data;
  const T* bias;
  bool relu;
  index_t C, HW;

  SK_HOST_DEVICE void operator()(index_t item) const {
    const index_t first = item * V;
    Pack<T, V> x;
    if constexpr (V == 1) {
      x.v[0] = data[first];
    } else {
      x = load_pack<V>(data + first);
    }
    // NHWC: C % V == 0, so the V channels are consecutive within one pixel; NCHW: HW % V == 0, so
    // they are pixels of one channel.
    const index_t c0 = kNHWC ? first % C : (first / HW) % C;
SK_UNROLL
    for (int t = 0; t < V; ++t) {
      const index_t c = kNHWC ? c0 + t : c0;
      const float v = static_cast<float>(x.v[t]) + static_cast<float>(bias[c]);
      x.v[t] = static_cast<T>(relu ? relu_keep_nan(v) : v);
    }
    if constexpr (V == 1) {
      data[first] = x.v[0];
    } else {
      store_pack<V>(data + first, x);
    }
  }
};

// ------------------------------------------------------------------------------------------------
// Planning: vector width, index type, compile-time dispatch
// ------------------------------------------------------------------------------------------------

// The widest vector, in elements of an E-byte type, that every count is a multiple of and every
// pointer is aligned to: 16 bytes, else 8, else 4 (a pair of 2-byte elements), else one element.
inline int vector_width(int64_t elem_size, std::initializer_list<int64_t> counts,
                        std::initializer_list<const void*> pointers) {
  for (int64_t bytes : {16, 8, 4}) {
    const int64_t v = bytes / elem_size;
    if (v < 2) continue;
    bool ok = true;
    for (int64_t n : counts) ok = ok && n % v == 0;
    for (const void* p : pointers) ok = ok && reinterpret_cast<uintptr_t>(p) % bytes == 0;
    if (ok) return static_cast<int>(v);
  }
  return 1;
}

inline bool fits_int32(int64_t n) { return n < std::numeric_limits<int32_t>::max(); }

// Calls f(std::integral_constant<int, V>, index_t{}) with the planned width and index type. Vector
// widths run with 32-bit indices only: a launch over 2^31 or more elements takes the scalar 64-bit path.
template <int64_t kElemSize, class F>
void with_width_and_index(int width, bool index32, F&& f) {
  constexpr int kWide = 16 / kElemSize, kNarrow = 8 / kElemSize, kPair = 4 / kElemSize;
  if (!index32) return f(std::integral_constant<int, 1>{}, int64_t{});
  if (width == kWide) return f(std::integral_constant<int, kWide>{}, int32_t{});
  if constexpr (kNarrow >= 2) {
    if (width == kNarrow) return f(std::integral_constant<int, kNarrow>{}, int32_t{});
  }
  if constexpr (kPair >= 2) {
    if (width == kPair) return f(std::integral_constant<int, kPair>{}, int32_t{});
  }
  f(std::integral_constant<int, 1>{}, int32_t{});
}

template <class F>
void with_layout(Layout layout, F&& f) {
  if (layout == Layout::NHWC) {
    f(std::true_type{});
  } else {
    f(std::false_type{});
  }
}

// The three dtypes of the contract (DESIGN.md), without AT_DISPATCH's double instantiations.
template <class F>
void with_float_type(at::ScalarType type, F&& f) {
  switch (type) {
    case at::kFloat: return f(float{});
    case at::kHalf: return f(c10::Half{});
    case at::kBFloat16: return f(c10::BFloat16{});
    default: TORCH_CHECK(false, "shufflekernels: internal error, unsupported dtype ", type);
  }
}

// ------------------------------------------------------------------------------------------------
// Ops, on either executor. Exec(device) holds what a launch needs (device guard, stream); exec.run(body,
// items) runs body(i) for every i < items; exec.index32(n) says whether 32-bit indices may be used for
// a launch whose largest tensor has n elements.
// ------------------------------------------------------------------------------------------------

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
                     const c10::optional<Tensor>& bias, int64_t stride, bool relu,
                     const c10::optional<Tensor>& in_bias, bool in_relu) {
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
              x.const_data_ptr<T>(), out.data_ptr<T>(), weight.const_data_ptr<T>(),
              b.defined() ? b.const_data_ptr<T>() : nullptr, ib.defined() ? ib.const_data_ptr<T>() : nullptr,
              in_relu, relu, static_cast<index_t>(C), static_cast<index_t>(H), static_cast<index_t>(W),
              static_cast<index_t>(Ho), static_cast<index_t>(Wo), static_cast<index_t>(weight.stride(0)),
              static_cast<index_t>(weight.stride(2)), static_cast<index_t>(weight.stride(3))};
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
          {a.data, b.data}, {static_cast<index_t>(a.stride), static_cast<index_t>(b.stride)}, {a.bias, b.bias},
          static_cast<index_t>(cpg), static_cast<index_t>(HW), out.data_ptr<T>()};
      // An NHWC item writes V channels of each branch: 2V outputs.
      exec.run(body, static_cast<index_t>(out.numel() / (kNHWC ? 2 * V : V)));
    });
  });
  return out;
}

template <class Exec>
Tensor pointwise_impl(const Tensor& x_in, const Tensor& weight, const Tensor& bias, bool relu) {
  check_pointwise(x_in, weight, bias);
  [[maybe_unused]] Exec exec(x_in.device());
  auto [x, layout] = in_kernel_layout(x_in);
  if (x.numel() == 0)
    return at::empty({x.size(0), weight.size(0), x.size(2), x.size(3)}, x.options().memory_format(memory_format_of(layout)));
  // cuBLAS through ATen, then bias and ReLU in one in-place pass over its result.
  Tensor y = pointwise_raw(x, layout, weight);
  if (y.numel() == 0) return y;
  const Tensor b = bias.contiguous();
  const int64_t C = y.size(1), HW = y.size(2) * y.size(3);
  const int width = vector_width(y.element_size(), {layout == Layout::NHWC ? C : HW}, {y.const_data_ptr()});
  with_float_type(y.scalar_type(), [&](auto type) {
    using T = decltype(type);
    with_layout(layout, [&](auto nhwc) {
      with_width_and_index<sizeof(T)>(width, exec.index32(y.numel()), [&](auto v, auto index) {
        constexpr int V = decltype(v)::value;
        using index_t = decltype(index);
        BiasActBody<T, index_t, V, decltype(nhwc)::value> body{y.data_ptr<T>(), b.const_data_ptr<T>(), relu,
                                                               static_cast<index_t>(C), static_cast<index_t>(HW)};
        exec.run(body, static_cast<index_t>(y.numel() / V));
      });
    });
  });
  return y;
}

// The stem is cuDNN's conv and ATen's ReLU and max-pool (it is not one of the fused families);
// registered so that a model on CUDA runs every layer through the same ops.
template <class Exec>
Tensor stem_impl(const Tensor& x, const Tensor& weight, const Tensor& bias) {
  check_stem(x, weight, bias);
  [[maybe_unused]] Exec exec(x.device());
  return stem_composite(x, weight, bias);
}

// Units: cuBLAS GEMMs (through ATen) write raw products; the depthwise kernel applies the first 1x1
// conv's bias and ReLU on read, and the final interleave applies the last ones while writing both
// branches to their shuffled channel positions.
template <class Exec>
Tensor split_unit_impl(const Tensor& x_in, const Tensor& pw1_w, const Tensor& pw1_b, const Tensor& dw_w,
                       const Tensor& dw_b, const Tensor& pw2_w, const Tensor& pw2_b) {
  const int64_t cb = check_split_unit(x_in, pw1_w, pw1_b, dw_w, dw_b, pw2_w, pw2_b);
  [[maybe_unused]] Exec exec(x_in.device());
  auto [x, layout] = in_kernel_layout(x_in);
  if (x.numel() == 0) return at::empty(x.sizes(), x.options().memory_format(memory_format_of(layout)));
  const Tensor x1 = x.narrow(1, 0, cb), x2 = x.narrow(1, cb, cb);
  const Tensor t1 = pointwise_raw(x2, layout, pw1_w);
  const Tensor t2 = run_dwconv3x3(exec, t1, layout, dw_w, dw_b, 1, false, pw1_b, true);
  const Tensor y = pointwise_raw(t2, layout, pw2_w);
  const Tensor b2 = pw2_b.contiguous();
  Tensor out;
  with_float_type(x.scalar_type(), [&](auto type) {
    using T = decltype(type);
    const Branch<T> identity{x1.const_data_ptr<T>(), branch_stride(x, layout), nullptr};
    const Branch<T> branch{y.const_data_ptr<T>(), branch_stride(y, layout), b2.const_data_ptr<T>()};
    out = interleave2(exec, identity, branch, x.size(0), cb, x.size(2), x.size(3), layout, x.options());
  });
  return out;
}

template <class Exec>
Tensor down_unit_impl(const Tensor& x_in, const Tensor& dw1_w, const Tensor& dw1_b, const Tensor& pw3_w,
                      const Tensor& pw3_b, const Tensor& pw1_w, const Tensor& pw1_b, const Tensor& dw2_w,
                      const Tensor& dw2_b, const Tensor& pw2_w, const Tensor& pw2_b) {
  const int64_t cb = check_down_unit(x_in, dw1_w, dw1_b, pw3_w, pw3_b, pw1_w, pw1_b, dw2_w, dw2_b, pw2_w, pw2_b);
  [[maybe_unused]] Exec exec(x_in.device());
  auto [x, layout] = in_kernel_layout(x_in);
  const int64_t Ho = dwconv3x3_out_size(x.size(2), 2), Wo = dwconv3x3_out_size(x.size(3), 2);
  if (x.size(0) == 0) return at::empty({0, 2 * cb, Ho, Wo}, x.options().memory_format(memory_format_of(layout)));
  const Tensor d1 = run_dwconv3x3(exec, x, layout, dw1_w, dw1_b, 2, false, c10::nullopt, false);
  const Tensor r1 = pointwise_raw(d1, layout, pw3_w);
  const Tensor t1 = pointwise_raw(x, layout, pw1_w);
  const Tensor d2 = run_dwconv3x3(exec, t1, layout, dw2_w, dw2_b, 2, false, pw1_b, true);
  const Tensor r2 = pointwise_raw(d2, layout, pw2_w);
  const Tensor b3 = pw3_b.contiguous(), b2 = pw2_b.contiguous();
  Tensor out;
  with_float_type(x.scalar_type(), [&](auto type) {
    using T = decltype(type);
    const Branch<T> s1{r1.const_data_ptr<T>(), branch_stride(r1, layout), b3.const_data_ptr<T>()};
    const Branch<T> s2{r2.const_data_ptr<T>(), branch_stride(r2, layout), b2.const_data_ptr<T>()};
    out = interleave2(exec, s1, s2, x.size(0), cb, Ho, Wo, layout, x.options());
  });
  return out;
}

// Registers every op of one library on one dispatch key with the executor Exec.
#define SK_REGISTER_GPU_OPS(m, Exec)                                         \
  do {                                                                       \
    (m).impl("channel_shuffle", &::shufflekernels::gpu::channel_shuffle_impl<Exec>); \
    (m).impl("shuffle_cat", &::shufflekernels::gpu::shuffle_cat_impl<Exec>);         \
    (m).impl("dwconv3x3", &::shufflekernels::gpu::dwconv3x3_impl<Exec>);             \
    (m).impl("pointwise", &::shufflekernels::gpu::pointwise_impl<Exec>);             \
    (m).impl("stem", &::shufflekernels::gpu::stem_impl<Exec>);                       \
    (m).impl("split_unit", &::shufflekernels::gpu::split_unit_impl<Exec>);           \
    (m).impl("down_unit", &::shufflekernels::gpu::down_unit_impl<Exec>);             \
  } while (0)

}  // namespace shufflekernels::gpu
