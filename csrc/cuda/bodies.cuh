// The CUDA kernel bodies of every op, written once for two executors:
//   - CudaExec (cuda_exec.cuh): each body runs as a grid-stride __global__ kernel on the current
//     stream of the input's device;
//   - HostExec (host_exec.h): the same bodies run over the same item ranges on host threads,
//     so the CPU tests exercise the index math, the vector-width and index-type planning and the
//     epilogues of the CUDA kernels on machines without a GPU (and ASan checks their bounds).
// Everything here is the CUDA backend's code; only the executor differs. The host side of each op
// (planning, launches, registration) is a header per op family (ops.h lists them).
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

#include <cstdint>

#include "../index_math.h"
#include "launch_plan.h"

namespace shufflekernels::gpu {

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

  // Every item moves V words.
  Traffic traffic(int64_t items) const {
    const int64_t bytes = items * V * int64_t{sizeof(W)};
    return {bytes, bytes};
  }

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

// The taps of a depthwise 3x3 (padding 1, stride kStride) at output pixel (oh, ow) of one NHWC image,
// for channels c0 .. c0 + V - 1: acc[t] += tap(c0 + t, kh, kw) * act(t, image[ih, iw, c0 + t]) for every
// tap inside the image (outside it, padding: the activated input is zero there). `image` is the image's
// pixel (0, 0), channel 0; its pixels are pixel_stride elements apart (a dense tensor or a channel slice).
template <int V, int kStride, typename T, typename index_t, class Tap, class Act>
SK_HOST_DEVICE void dw3x3_nhwc_accumulate(const T* image, index_t pixel_stride, index_t c0, index_t oh, index_t ow,
                                          index_t H, index_t W, const Tap& tap, const Act& act, float (&acc)[V]) {
  SK_UNROLL
  for (int kh = 0; kh < 3; ++kh) {
    const index_t ih = oh * kStride - 1 + kh;
    if (ih < 0 || ih >= H) continue;
    SK_UNROLL
    for (int kw = 0; kw < 3; ++kw) {
      const index_t iw = ow * kStride - 1 + kw;
      if (iw < 0 || iw >= W) continue;
      const T* px = image + (ih * W + iw) * pixel_stride + c0;
      if constexpr (V == 1) {
        acc[0] += tap(c0, kh, kw) * act(0, px[0]);
      } else {
        const Pack<T, V> x = load_pack<V>(px);
        SK_UNROLL
        for (int t = 0; t < V; ++t) acc[t] += tap(c0 + t, kh, kw) * act(t, x.v[t]);
      }
    }
  }
}

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

  // The whole input (padding 1 and a 3-wide window at stride 1 or 2 reach every row and column), the
  // taps and biases once, every output once.
  Traffic traffic(int64_t items) const {
    const int64_t outputs = items * V, images = outputs / (int64_t{C} * Ho * Wo);
    const int64_t params = (9 + (bias ? 1 : 0) + (in_bias ? 1 : 0)) * int64_t{C};
    return {(images * C * H * W + params) * int64_t{sizeof(T)}, outputs * int64_t{sizeof(T)}};
  }

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
      dw3x3_nhwc_accumulate<V, kStride>(
          in + n * H * W * C, C, c0, oh, ow, H, W, [&](index_t c, int kh, int kw) { return tap(c, kh, kw); },
          [&](int t, T x) { return act(x, in_b[t]); }, acc);
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

// A unit's middle step in the network (network_ops.h, shufflenet_impl), channels_last, in one launch: the
// tensor z = [part a | part b] that the unit's one final GEMM reads, Ca + Cb channels an output pixel.
//   part b: the depthwise 3x3 (stride kStride, bias, no ReLU) of branch 2's first 1x1 output;
//   part a: the depthwise of the unit's input (the down unit's branch 1), or, without weights, a copy of
//           it (the split unit's identity half, at stride 1).
// The final GEMM's weights interleave the branches (UnitGemms), so no other pass touches them.
// item = (output pixel, block of V channels of z); Ca and Cb are multiples of V, so a block lies in one
// part.
template <typename T, typename index_t, int V, int kStride>
struct UnitDepthwiseBody {
  static constexpr const char* kName = "unit_dwconv";
  static constexpr int kWidth = V;
  static constexpr bool kChannelsLast = true;
  struct Part {
    const T* in;  // [N, channels, H, W] channels_last, a dense tensor or a channel slice
    index_t pixel_stride, channels;
    const T* weight;  // weight[c, 0, kh, kw] at c * w_c + kh * w_h + kw * w_w; nullptr: a copy
    index_t w_c, w_h, w_w;
    const T* bias;  // [channels]
  };
  Part a, b;
  T* out;  // [N, Ca + Cb, Ho, Wo] channels_last
  index_t H, W, Ho, Wo;

  // Each part's input once (the whole of it for a depthwise, whose windows reach every pixel; the
  // copied pixels for a copy), its taps and biases once, every output once.
  Traffic traffic(int64_t items) const {
    const int64_t outputs = items * V, C = int64_t{a.channels} + b.channels;
    const int64_t images = outputs / (C * Ho * Wo);
    int64_t read = 0;
    for (const Part& p : {a, b}) {
      read += p.weight ? images * H * W * p.channels + 10 * int64_t{p.channels} : images * Ho * Wo * p.channels;
    }
    return {read * int64_t{sizeof(T)}, outputs * int64_t{sizeof(T)}};
  }

  SK_HOST_DEVICE void operator()(index_t item) const {
    const index_t blocks = (a.channels + b.channels) / V;
    const index_t cz = (item % blocks) * V, pix = item / blocks;
    const index_t ow = pix % Wo, oh = (pix / Wo) % Ho, n = pix / (Wo * Ho);
    // Selected whole, not indexed: an array of parts indexed at run time would send the kernel's
    // parameters to local memory (see Interleave2Body).
    const bool in_a = cz < a.channels;
    const Part p = in_a ? a : b;
    const index_t c0 = in_a ? cz : cz - a.channels;
    const T* image = p.in + n * H * W * p.pixel_stride;
    Pack<T, V> y;
    if (p.weight == nullptr) {  // a copy: stride 1, H == Ho
      const T* px = image + (oh * W + ow) * p.pixel_stride + c0;
      if constexpr (V == 1) {
        y.v[0] = px[0];
      } else {
        y = load_pack<V>(px);
      }
    } else {
      float acc[V];
      SK_UNROLL
      for (int t = 0; t < V; ++t) acc[t] = static_cast<float>(p.bias[c0 + t]);
      dw3x3_nhwc_accumulate<V, kStride>(
          image, p.pixel_stride, c0, oh, ow, H, W,
          [&](index_t c, int kh, int kw) { return static_cast<float>(p.weight[c * p.w_c + kh * p.w_h + kw * p.w_w]); },
          [](int, T x) { return static_cast<float>(x); }, acc);
      SK_UNROLL
      for (int t = 0; t < V; ++t) y.v[t] = static_cast<T>(acc[t]);
    }
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

  // One source element per output, the biases once.
  Traffic traffic(int64_t items) const {
    const int64_t outputs = items * (kNHWC ? 2 * V : V);
    const int64_t biases = ((bias[0] ? 1 : 0) + (bias[1] ? 1 : 0)) * int64_t{cpg};
    return {(outputs + biases) * int64_t{sizeof(T)}, outputs * int64_t{sizeof(T)}};
  }

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

  Traffic traffic(int64_t items) const {
    const int64_t elements = items * V;
    return {(elements + C) * int64_t{sizeof(T)}, elements * int64_t{sizeof(T)}};
  }

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

// The stem, maxpool3x3/2(relu(conv3x3/2(x, weight) + bias)) with padding 1 for both, in one pass: no
// conv output and no max-pool index goes to memory. An item is one pooled position and V channels: it
// evaluates the conv at the (up to) nine positions of its pool window, recomputing what neighbouring
// items share (Cin is 3: 27 taps an output), in float32, and keeps the running maximum, rounded once
// (rounding is monotonic, so this is the maximum of the rounded conv outputs). The output layout (kNHWC)
// sets the items: NHWC: item = (n, ph, pw, block of V channels), one V-wide store; NCHW: item = (n, c,
// ph, pw), V = 1. The input is read in its own layout (kInNHWC): the network reads an NCHW image straight
// into its channels_last stem output, with no layout copy before it.
template <typename T, typename index_t, int V, bool kNHWC, bool kInNHWC = kNHWC>
struct StemBody {
  static_assert(kNHWC || V == 1, "the NCHW stem stores one element an item");
  static constexpr const char* kName = "stem";
  static constexpr int kWidth = V;
  static constexpr bool kChannelsLast = kNHWC;
  const T* in;      // [N, Cin, H, W], dense in the input layout
  const T* weight;  // [Cout, Cin, 3, 3], contiguous
  const T* bias;    // [Cout]
  T* out;           // [N, Cout, Hp, Wp], dense in the layout
  index_t Cin, Cout, H, W, Hc, Wc, Hp, Wp;

  // The whole input (the pool windows cover every conv output, whose taps cover every input pixel),
  // the weights once, every output once.
  Traffic traffic(int64_t items) const {
    const int64_t outputs = items * V, images = outputs / (int64_t{Cout} * Hp * Wp);
    const int64_t params = int64_t{Cout} * Cin * 9 + Cout;
    return {(images * Cin * H * W + params) * int64_t{sizeof(T)}, outputs * int64_t{sizeof(T)}};
  }

  SK_HOST_DEVICE void operator()(index_t item) const {
    index_t n, c0, ph, pw;
    if constexpr (kNHWC) {
      const index_t blocks = Cout / V, pix = item / blocks;
      c0 = (item % blocks) * V;
      pw = pix % Wp, ph = (pix / Wp) % Hp, n = pix / (Wp * Hp);
    } else {
      pw = item % Wp, ph = (item / Wp) % Hp, c0 = (item / (Wp * Hp)) % Cout, n = item / (Wp * Hp * Cout);
    }
    // ReLU'd values are >= 0 (or NaN), and the window always holds its centre, so 0 is the identity of
    // the maximum here; NaN wins, as in torch's max-pool.
    float best[V], b[V];
    SK_UNROLL
    for (int t = 0; t < V; ++t) best[t] = 0.f, b[t] = static_cast<float>(bias[c0 + t]);
    for (int i = 0; i < 3; ++i) {
      const index_t ch = ph * 2 - 1 + i;
      if (ch < 0 || ch >= Hc) continue;  // max-pool padding: not a candidate
      for (int j = 0; j < 3; ++j) {
        const index_t cw = pw * 2 - 1 + j;
        if (cw < 0 || cw >= Wc) continue;
        float acc[V];
        SK_UNROLL
        for (int t = 0; t < V; ++t) acc[t] = b[t];
        for (index_t ci = 0; ci < Cin; ++ci) {
          SK_UNROLL
          for (int kh = 0; kh < 3; ++kh) {
            const index_t ih = ch * 2 - 1 + kh;
            if (ih < 0 || ih >= H) continue;  // conv padding: zero
            SK_UNROLL
            for (int kw = 0; kw < 3; ++kw) {
              const index_t iw = cw * 2 - 1 + kw;
              if (iw < 0 || iw >= W) continue;
              const float x = static_cast<float>(kInNHWC ? in[((n * H + ih) * W + iw) * Cin + ci]
                                                         : in[((n * Cin + ci) * H + ih) * W + iw]);
              const T* w = weight + (c0 * Cin + ci) * 9 + kh * 3 + kw;
              SK_UNROLL
              for (int t = 0; t < V; ++t) acc[t] += static_cast<float>(w[t * Cin * 9]) * x;
            }
          }
        }
        SK_UNROLL
        for (int t = 0; t < V; ++t) {
          const float v = relu_keep_nan(acc[t]);
          best[t] = v > best[t] || v != v ? v : best[t];
        }
      }
    }
    Pack<T, V> y;
    SK_UNROLL
    for (int t = 0; t < V; ++t) y.v[t] = static_cast<T>(best[t]);
    if constexpr (V == 1) {
      out[item] = y.v[0];
    } else {
      store_pack<V>(out + item * V, y);
    }
  }
};

// ------------------------------------------------------------------------------------------------
// Planning: vector width, index type, compile-time dispatch
}  // namespace shufflekernels::gpu
