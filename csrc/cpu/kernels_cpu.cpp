// CPU kernels for every op of the shufflekernels library.
//
// Index model (csrc/index_math.h): a shuffle with g groups writes out[n, j*g + i] = src_i[n, j], where
// src_i is the i-th channel group of one tensor (channel_shuffle) or the i-th tensor (shuffle_cat).
// Depthwise 3x3: out[n, c, oh, ow] = bias[c] + sum_{kh,kw} w[c, kh, kw] * in[n, c, oh*s-1+kh, ow*s-1+kw],
// taps outside the image contribute nothing (zero padding).
//
// Each op has one path per memory format: NCHW works on whole H*W planes, NHWC (channels_last) on
// pixels with the channel loop innermost, where the compiler vectorises across channels. Float16 and
// bfloat16 accumulate in float32.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/OpMathType.h>
#include <torch/library.h>

#include <algorithm>
#include <cstring>
#include <memory>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "../layout.h"
#include "../index_math.h"
#include "../pointwise.h"
#include "engine.h"

namespace shufflekernels {
namespace {

using at::Tensor;

// Work items smaller than this many elements are not worth a thread.
constexpr int64_t kGrainElements = 32768;

inline int64_t grain_for(int64_t elements_per_item) {
  return std::max<int64_t>(1, kGrainElements / std::max<int64_t>(1, elements_per_item));
}

// ---------------------------------------------------------------------------------------------------
// Interleave: out[n, j*g + i] = src_i[n, j]. A pure permutation, so it moves bytes of the element size
// and serves every dtype without a dispatch.
// ---------------------------------------------------------------------------------------------------

// NCHW: each output channel is one contiguous H*W plane copied from its source plane.
void interleave_nchw(const std::vector<const char*>& srcs, int64_t src_image_stride, int64_t cpg, int64_t N,
                     int64_t HW, char* out, int64_t elem_size) {
  const int64_t g = static_cast<int64_t>(srcs.size());
  const int64_t C = g * cpg;
  const int64_t plane_bytes = HW * elem_size;
  at::parallel_for(0, N * C, grain_for(HW), [&](int64_t begin, int64_t end) {
    for (int64_t nc = begin; nc < end; ++nc) {
      const int64_t n = nc / C;
      const ShuffleSource s = shuffle_source(nc % C, g);
      std::memcpy(out + nc * plane_bytes, srcs[s.group] + (n * src_image_stride + s.channel * HW) * elem_size,
                  plane_bytes);
    }
  });
}

// NHWC, typed by element width so the two-group case compiles to vector interleaves.
template <typename word_t>
void interleave_nhwc_typed(const std::vector<const char*>& srcs, int64_t src_pixel_stride, int64_t cpg,
                           int64_t pixels, char* out_bytes) {
  const int64_t g = static_cast<int64_t>(srcs.size());
  const int64_t C = g * cpg;
  word_t* out = reinterpret_cast<word_t*>(out_bytes);
  at::parallel_for(0, pixels, grain_for(C), [&](int64_t begin, int64_t end) {
    if (g == 2) {
      const word_t* a = reinterpret_cast<const word_t*>(srcs[0]);
      const word_t* b = reinterpret_cast<const word_t*>(srcs[1]);
      for (int64_t p = begin; p < end; ++p) {
        const word_t* __restrict pa = a + p * src_pixel_stride;
        const word_t* __restrict pb = b + p * src_pixel_stride;
        word_t* __restrict po = out + p * C;
        for (int64_t j = 0; j < cpg; ++j) {
          po[2 * j] = pa[j];
          po[2 * j + 1] = pb[j];
        }
      }
      return;
    }
    for (int64_t p = begin; p < end; ++p) {
      word_t* __restrict po = out + p * C;
      for (int64_t i = 0; i < g; ++i) {
        const word_t* __restrict ps = reinterpret_cast<const word_t*>(srcs[i]) + p * src_pixel_stride;
        for (int64_t j = 0; j < cpg; ++j) po[shuffle_destination(i, j, g)] = ps[j];
      }
    }
  });
}

void interleave_nhwc(const std::vector<const char*>& srcs, int64_t src_pixel_stride, int64_t cpg, int64_t pixels,
                     char* out, int64_t elem_size) {
  switch (elem_size) {
    case 4:
      return interleave_nhwc_typed<uint32_t>(srcs, src_pixel_stride, cpg, pixels, out);
    case 2:
      return interleave_nhwc_typed<uint16_t>(srcs, src_pixel_stride, cpg, pixels, out);
    default:
      TORCH_CHECK(false, "shufflekernels: internal error, unsupported element size ", elem_size);
  }
}

void run_permutation(const Permutation& p) {
  char* out = static_cast<char*>(p.out.data_ptr());
  if (p.layout == Layout::NCHW) {
    interleave_nchw(p.srcs, p.src_stride, p.cpg, p.N, p.HW, out, p.elem_size);
  } else {
    interleave_nhwc(p.srcs, p.src_stride, p.cpg, p.N * p.HW, out, p.elem_size);
  }
}

Tensor channel_shuffle_cpu(const Tensor& x, int64_t groups) {
  check_channel_shuffle(x, groups);
  const Permutation p = channel_shuffle_permutation(x, groups);
  if (p.out.numel() > 0) run_permutation(p);
  return p.out;
}

Tensor shuffle_cat_cpu(at::TensorList tensors) {
  check_shuffle_cat(tensors);
  const Permutation p = shuffle_cat_permutation(tensors);
  if (p.out.numel() > 0) run_permutation(p);
  return p.out;
}

// ---------------------------------------------------------------------------------------------------
// Depthwise 3x3. Both paths take an optional "pre-activation" (in_bias, in_relu): the input value is
// read as max(0, in + in_bias[c]) (or in + in_bias[c]) before the convolution. The units use it to
// apply the previous 1x1 convolution's bias and ReLU while reading, instead of in a pass of their own.
// Zero padding applies to the activated value, so padded taps are skipped, never activated.
// ---------------------------------------------------------------------------------------------------

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

// Runs the depthwise conv on x (already dense in `layout`) into a new tensor of the same layout.
Tensor run_dwconv3x3(const Tensor& x, Layout layout, const Tensor& weight, const c10::optional<Tensor>& bias,
                     int64_t stride, bool relu, const c10::optional<Tensor>& in_bias, bool in_relu) {
  const int64_t N = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3);
  const int64_t Ho = dwconv3x3_out_size(H, stride), Wo = dwconv3x3_out_size(W, stride);
  Tensor out = at::empty({N, C, Ho, Wo}, x.options().memory_format(memory_format_of(layout)));
  if (out.numel() == 0) return out;
  DwPacked packed = pack_dw(weight, bias, in_bias, layout);
  DwParams p{packed.weight.const_data_ptr<float>(),
             packed.bias.defined() ? packed.bias.const_data_ptr<float>() : nullptr,
             packed.in_bias.defined() ? packed.in_bias.const_data_ptr<float>() : nullptr,
             in_relu, relu, N, C, H, W, Ho, Wo, stride};
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "shufflekernels.dwconv3x3", [&] {
    if (layout == Layout::NCHW) {
      dwconv3x3_nchw<scalar_t>(x.const_data_ptr<scalar_t>(), out.data_ptr<scalar_t>(), p);
    } else {
      dwconv3x3_nhwc<scalar_t>(x.const_data_ptr<scalar_t>(), out.data_ptr<scalar_t>(), p);
    }
  });
  return out;
}

Tensor dwconv3x3_engine(const Tensor& x, const Tensor& weight, const c10::optional<Tensor>& bias, int64_t stride,
                        bool relu);

Tensor dwconv3x3_cpu(const Tensor& x_in, const Tensor& weight, const c10::optional<Tensor>& bias, int64_t stride,
                     bool relu) {
  check_dwconv3x3(x_in, weight, bias, stride);
  auto [x, layout] = in_kernel_layout(x_in);
  if (layout == Layout::NHWC && x.scalar_type() == at::kFloat) return dwconv3x3_engine(x, weight, bias, stride, relu);
  return run_dwconv3x3(x, layout, weight, bias, stride, relu, c10::nullopt, false);
}

// ---------------------------------------------------------------------------------------------------
// Units. The 1x1 convolutions are GEMMs (at::mm, MKL/oneDNN inside torch) that write raw products;
// their bias and ReLU are applied by the pass that reads them next: the depthwise conv (pre-activation)
// or the final interleave, which writes both branches straight to their shuffled channel positions.
// ---------------------------------------------------------------------------------------------------

// One branch of the final interleave: out channel 2j + slot = relu(src[j] + bias[j]) (every unit
// branch ends in a 1x1 conv + BN + ReLU), or src[j] as it is when bias is null (the split unit's
// identity half). The CUDA interleave (Branch) has the same contract.
struct BranchSource {
  const void* data;
  int64_t stride;      // elements between consecutive pixels (NHWC) or images (NCHW)
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
void interleave2_nchw(const BranchSource& a, const BranchSource& b, int64_t cpg, int64_t N, int64_t HW,
                      scalar_t* out) {
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

// ---------------------------------------------------------------------------------------------------
// The float32 channels_last units on the engine (engine.h): our GEMM with bias+ReLU stored from the
// accumulators, the depthwise conv row by row from an intermediate that stays in cache, and the
// final interleave writing the concat+shuffle. Two parallel passes per unit: the first 1x1 conv over
// all pixels (the depthwise conv of a row needs its neighbours' rows), then, per band of output rows,
// depthwise -> 1x1 -> interleave with every intermediate in a per-thread buffer.
// ---------------------------------------------------------------------------------------------------

// A 1x1 conv weight [Cout, Cin, 1, 1] as the engine's K-major matrix (row k = input channel k). A
// weight stored transposed (strides (1, Cout, ...), as FusedShuffleNetV2 keeps them) is used in
// place; any other is transposed once here.
// A 1x1 weight [Cout, Cin, 1, 1] as the GEMM's B: [Cin][ldb] K-major, or panel-packed (GemmArgs).
struct KMajor {
  Tensor storage;
  const float* data;
  int64_t ldb;
  int64_t panel_stride = 0;
  std::shared_ptr<const std::vector<float>> packed;  // keeps a packed copy alive for the call

  // B for the output columns from n0 on.
  const float* at(int64_t n0) const {
    return panel_stride ? data + (n0 / cpu::kPanelPad) * panel_stride + n0 % cpu::kPanelPad : data + n0;
  }
};

// Panel-packed copies of the 1x1 weights. K-major weights put the rows of one 32-column panel Cout
// floats apart, a page every few rows: the hardware prefetcher does not follow that, and at batch 1 a
// wide model waits on memory (x2.0 streams about 30 MB of weights per forward; packed, its batch-1
// forward took 9.15 ms instead of 11.68 in a same-run comparison).
//
// Packing is opt-in (the prepack op): a weight is packed only after its owner declared it, as
// FusedShuffleNetV2 does for its own buffers, because a packed copy can go stale behind torch's back
// (writes through .data, numpy or another process do not bump the version counter). A declared weight
// is repacked when its version changes (in-place updates through torch, load_state_dict) and
// forgotten when its storage dies (held weakly) or its data pointer moves. Any other weight, and
// inference tensors (no version counter), are read in place on every call.
class PackedWeights {
 public:
  void declare(at::TensorList weights) {
    const std::lock_guard<std::mutex> lock(mutex_);
    purge();
    for (const Tensor& w : weights) {
      if (packable(w)) {
        entries_.insert_or_assign(key_of(w), Entry{w.storage().getWeakStorageImpl(), w.const_data_ptr(), 0, nullptr});
      }
    }
  }

  // The packed copy of a declared w (packed now if it changed since), or null: read w in place.
  std::shared_ptr<const std::vector<float>> find(const Tensor& w) {
    if (!packable(w)) return nullptr;
    const uint32_t version = w.unsafeGetTensorImpl()->version_counter().current_version();
    const std::lock_guard<std::mutex> lock(mutex_);
    auto it = entries_.find(key_of(w));
    if (it == entries_.end()) return nullptr;
    Entry& e = it->second;
    if (e.storage.expired() || e.data != w.const_data_ptr()) {
      entries_.erase(it);
      return nullptr;
    }
    if (!e.packed || e.version != version) {
      e.packed = pack(w);
      e.version = version;
    }
    return e.packed;
  }

 private:
  struct Key {
    const c10::StorageImpl* storage;
    int64_t offset, c_out, c_in, stride_out, stride_in;
    bool operator==(const Key&) const = default;
  };
  struct KeyHash {
    size_t operator()(const Key& k) const {
      size_t h = std::hash<const void*>()(k.storage);
      for (int64_t v : {k.offset, k.c_out, k.c_in, k.stride_out, k.stride_in}) h = h * 1000003u ^ std::hash<int64_t>()(v);
      return h;
    }
  };
  struct Entry {
    c10::weak_intrusive_ptr<c10::StorageImpl> storage;  // keeps the key's address from being reused
    const void* data;
    uint32_t version;
    std::shared_ptr<const std::vector<float>> packed;
  };

  static bool packable(const Tensor& w) {
    return w.device().is_cpu() && w.scalar_type() == at::kFloat && w.dim() == 4 && !w.is_inference();
  }

  static Key key_of(const Tensor& w) {
    return {w.storage().unsafeGetStorageImpl(), w.storage_offset(), w.size(0), w.size(1), w.stride(0), w.stride(1)};
  }

  static std::shared_ptr<const std::vector<float>> pack(const Tensor& w) {
    const int64_t c_out = w.size(0), c_in = w.size(1), P = cpu::kPanelPad, panels = (c_out + P - 1) / P;
    auto out = std::make_shared<std::vector<float>>(static_cast<size_t>(panels * c_in * P), 0.f);
    const float* src = w.const_data_ptr<float>();
    const int64_t so = w.stride(0), si = w.stride(1);
    for (int64_t n = 0; n < c_out; ++n)
      for (int64_t k = 0; k < c_in; ++k) (*out)[(n / P) * c_in * P + k * P + n % P] = src[n * so + k * si];
    return out;
  }

  // Drops the entries (and packed copies) of weights that no longer exist.
  void purge() {
    for (auto it = entries_.begin(); it != entries_.end();) {
      it = it->second.storage.expired() ? entries_.erase(it) : std::next(it);
    }
  }

  std::mutex mutex_;
  std::unordered_map<Key, Entry, KeyHash> entries_;
};

PackedWeights& packed_weights() {
  static PackedWeights* const cache = new PackedWeights();  // never destroyed: ops may run during exit
  return *cache;
}

// prepack(weights): declares 1x1 weights whose packed copies the CPU kernels may keep (see above).
void prepack(at::TensorList weights) { packed_weights().declare(weights); }

KMajor k_major(const Tensor& weight) {
  const int64_t c_out = weight.size(0), c_in = weight.size(1);
  if (auto packed = packed_weights().find(weight)) {
    return {Tensor(), packed->data(), cpu::kPanelPad, c_in * cpu::kPanelPad, packed};
  }
  // Checked on the 4-D strides directly: a reshape would cost a dispatcher call per weight per unit.
  if (weight.stride(0) == 1 && (weight.stride(1) == c_out || c_in == 1)) return {Tensor(), weight.const_data_ptr<float>(), c_out};
  Tensor t = weight.reshape({c_out, c_in}).t().contiguous();
  return {t, t.const_data_ptr<float>(), c_out};
}

// Depthwise weight [C, 1, 3, 3] as [9][C] (tap-major), so one tap's weights are contiguous over
// channels. A weight stored that way already (strides (1, 9C, 3C, C), as FusedShuffleNetV2 keeps them)
// is used in place.
struct TapMajor {
  Tensor storage;
  const float* data;
};

TapMajor tap_major(const Tensor& dw_weight) {
  const int64_t C = dw_weight.size(0);
  // Strides of [C, 1, 3, 3] stored as [9][C]: (1, -, 3C, C). Checked directly, without a reshape.
  if (dw_weight.stride(0) == 1 && ((dw_weight.stride(2) == 3 * C && dw_weight.stride(3) == C) || C == 1))
    return {Tensor(), dw_weight.const_data_ptr<float>()};
  Tensor t = dw_weight.reshape({C, 9}).t().contiguous();
  return {t, t.const_data_ptr<float>()};
}

inline int64_t round_up(int64_t x, int64_t m) { return (x + m - 1) / m * m; }

// A depthwise conv's tap-major weights and bias, zero-padded from C to Cs channels: on rows whose
// pixels are Cs floats apart (the units' intermediates), the depthwise conv then runs whole vectors
// over the padding instead of a scalar tail (58 channels would leave 10 of them scalar).
struct PaddedDw {
  std::vector<float> weight, bias;  // [9][Cs], [Cs]
};

// Built with plain loops through the tensors' strides: at batch 1 a handful of ATen calls per unit
// would cost more than the copy.
PaddedDw padded_dw(const Tensor& dw_weight, const Tensor& dw_bias, int64_t Cs) {
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

// out = relu(A @ W + bias) over `pixels` rows of A, split evenly across threads: by rows where every
// thread gets enough of them for whole micro-tiles, else (the small late-stage images at batch 1) by
// output-channel panels, so neither thread idles.
void pointwise_all_pixels(const cpu::Kernels& k, const float* A, int64_t lda, const KMajor& w, const float* bias,
                          int64_t c_out, int64_t c_in, int64_t pixels, float* out, int64_t ldc, bool relu = true,
                          bool store_padding = false) {
  const int64_t threads = at::get_num_threads();
  constexpr int64_t kMinRowsPerTask = 48, kTargetRowsPerTask = 192, kPanel = cpu::kPanelPad;
  if (threads > 1 && pixels < threads * kMinRowsPerTask) {
    const int64_t panels = (c_out + kPanel - 1) / kPanel;
    at::parallel_for(0, panels, 1, [&](int64_t begin, int64_t end) {
      // n0 on a panel boundary: packed weights (KMajor::at) are addressed by whole panels.
      const int64_t n0 = begin * kPanel, n1 = std::min(c_out, end * kPanel);
      k.gemm({A, lda, w.at(n0), w.ldb, out + n0, ldc, pixels, n1 - n0, c_in, bias + n0, relu, store_padding, w.panel_stride});
    });
    return;
  }
  const int64_t tasks = threads * std::max<int64_t>(1, pixels / (threads * kTargetRowsPerTask));
  at::parallel_for(0, tasks, 1, [&](int64_t begin, int64_t end) {
    const int64_t p0 = pixels * begin / tasks, p1 = pixels * end / tasks;
    k.gemm({A + p0 * lda, lda, w.data, w.ldb, out + p0 * ldc, ldc, p1 - p0, c_out, c_in, bias, relu, store_padding, w.panel_stride});
  });
}

// Bands of output rows for the second pass of a unit: a multiple of the thread count per image (so a
// batch-1 image keeps every thread busy), of about kTargetPixels each. Band b of an image covers rows
// [b*H/bands, (b+1)*H/bands).
struct Bands {
  int64_t per_image, max_rows;
  int64_t first_row(int64_t b, int64_t H) const { return H * b / per_image; }
};

Bands bands_for(int64_t N, int64_t H, int64_t W) {
  constexpr int64_t kTargetPixels = 96;
  const int64_t threads = N >= at::get_num_threads() ? 1 : at::get_num_threads();
  int64_t per_image = threads * std::max<int64_t>(1, H * W / (threads * kTargetPixels));
  per_image = std::min(per_image, H);
  return {per_image, (H + per_image - 1) / per_image};
}

// The float32 channels_last depthwise conv on the engine: one output row per step, rows split across
// threads. Weights and bias zero-padded to whole vectors (padded_dw); the input is read unpadded.
Tensor dwconv3x3_engine(const Tensor& x, const Tensor& weight, const c10::optional<Tensor>& bias, int64_t stride,
                        bool relu) {
  const cpu::Kernels& k = cpu::kernels();
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
      k.dw_row({{row(ih), row(ih + 1), row(ih + 2)}, C, W, Wo, C, stride, w9.data, b.const_data_ptr<float>(),
                op + (n * Ho + oh) * Wo * C, C, relu});
    }
  });
  return out;
}

// A unit's second pass runs per band of rows, on an image whose first pass (t1) is complete. With at
// least one image per thread, each thread runs whole images, both passes, so an image's intermediate
// stays in its core's cache; with fewer (batch 1), every thread shares each pass of every image.
template <class Pass1, class Band>
void run_unit(int64_t N, int64_t pass1_rows, int64_t t1_floats_per_image, int64_t band_floats, const Bands& bands,
              int64_t out_rows, const Tensor& like, Pass1 pass1, Band band) {
  if (N >= at::get_num_threads()) {
    at::parallel_for(0, N, 1, [&](int64_t begin, int64_t end) {
      std::vector<float> t1(t1_floats_per_image), scratch(band_floats);
      for (int64_t n = begin; n < end; ++n) {
        pass1(n * pass1_rows, (n + 1) * pass1_rows, t1.data(), /*parallel=*/false);
        for (int64_t b = 0; b < bands.per_image; ++b)
          band(n, bands.first_row(b, out_rows), bands.first_row(b + 1, out_rows), t1.data(), scratch.data());
      }
    });
    return;
  }
  Tensor t1 = at::empty({N * t1_floats_per_image}, like.options());
  float* t1p = t1.data_ptr<float>();
  pass1(0, N * pass1_rows, t1p, /*parallel=*/true);
  at::parallel_for(0, N * bands.per_image, 1, [&](int64_t begin, int64_t end) {
    std::vector<float> scratch(band_floats);
    for (int64_t task = begin; task < end; ++task) {
      const int64_t n = task / bands.per_image, b = task % bands.per_image;
      band(n, bands.first_row(b, out_rows), bands.first_row(b + 1, out_rows), t1p + n * t1_floats_per_image,
           scratch.data());
    }
  });
}

Tensor split_unit_engine(const Tensor& x, const Tensor& pw1_w, const Tensor& pw1_b, const Tensor& dw_w,
                         const Tensor& dw_b, const Tensor& pw2_w, const Tensor& pw2_b) {
  const cpu::Kernels& k = cpu::kernels();
  const int64_t N = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3), B = C / 2, Bs = round_up(B, cpu::kPanelPad);
  Tensor out = at::empty(x.sizes(), x.options().memory_format(at::MemoryFormat::ChannelsLast));
  const KMajor w1 = k_major(pw1_w), w2 = k_major(pw2_w);
  const PaddedDw dw = padded_dw(dw_w, dw_b, Bs);
  const Tensor b1 = pw1_b.contiguous(), b2 = pw2_b.contiguous();
  const float* xp = x.const_data_ptr<float>();
  float* op = out.data_ptr<float>();
  const Bands bands = bands_for(N, H, W);
  const int64_t band_floats = bands.max_rows * W * Bs;
  // Pass 1: t1 = relu(pw1(x2)) for pixels [p0, p1) (counted over the batch); x2 is the second half of
  // each pixel's channels.
  auto pass1 = [&](int64_t p0, int64_t p1, float* t1, bool parallel) {
    if (parallel) {
      pointwise_all_pixels(k, xp + p0 * C + B, C, w1, b1.const_data_ptr<float>(), B, B, p1 - p0, t1, Bs, true, true);
    } else {
      k.gemm({xp + p0 * C + B, C, w1.data, w1.ldb, t1, Bs, p1 - p0, B, B, b1.const_data_ptr<float>(), true, true, w1.panel_stride});
    }
  };
  // Pass 2, rows [h0, h1) of image n: d = dw(t1), y = relu(pw2(d)), out = interleave(x1, y).
  auto band = [&](int64_t n, int64_t h0, int64_t h1, const float* t1_image, float* scratch) {
    float* d = scratch;
    float* y = scratch + band_floats;
    for (int64_t h = h0; h < h1; ++h) {
      k.dw_row({{h > 0 ? t1_image + (h - 1) * W * Bs : nullptr, t1_image + h * W * Bs,
                 h + 1 < H ? t1_image + (h + 1) * W * Bs : nullptr},
                Bs, W, W, Bs, 1, dw.weight.data(), dw.bias.data(),
                d + (h - h0) * W * Bs, Bs});
    }
    const int64_t pixels = (h1 - h0) * W, p0 = (n * H + h0) * W;
    k.gemm({d, Bs, w2.data, w2.ldb, y, Bs, pixels, B, B, b2.const_data_ptr<float>(), true, false, w2.panel_stride});
    k.interleave({xp + p0 * C, C, y, Bs, B, pixels, op + p0 * C});
  };
  run_unit(N, H * W, H * W * Bs, 2 * band_floats, bands, H, x, pass1, band);
  return out;
}

Tensor down_unit_engine(const Tensor& x, int64_t B, const Tensor& dw1_w, const Tensor& dw1_b, const Tensor& pw3_w,
                        const Tensor& pw3_b, const Tensor& pw1_w, const Tensor& pw1_b, const Tensor& dw2_w,
                        const Tensor& dw2_b, const Tensor& pw2_w, const Tensor& pw2_b) {
  const cpu::Kernels& k = cpu::kernels();
  const int64_t N = x.size(0), Cin = x.size(1), H = x.size(2), W = x.size(3);
  const int64_t Ho = dwconv3x3_out_size(H, 2), Wo = dwconv3x3_out_size(W, 2);
  const int64_t Cs = round_up(Cin, cpu::kPanelPad), Bs = round_up(B, cpu::kPanelPad);
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
      k.gemm({xp + p0 * Cin, Cin, w1.data, w1.ldb, t1, Bs, p1 - p0, B, Cin, b1.const_data_ptr<float>(), true, true, w1.panel_stride});
    }
  };
  // Pass 2, output rows [h0, h1) of image n: both branches' depthwise (stride 2) and 1x1, then the
  // interleave.
  auto band = [&](int64_t n, int64_t h0, int64_t h1, const float* t1_image, float* scratch) {
    float* d1 = scratch;
    float* d2 = d1 + R * Wo * Cs;
    float* y1 = d2 + R * Wo * Bs;
    float* y2 = y1 + R * Wo * Bs;
    const float* x_image = xp + n * H * W * Cin;
    auto row = [&](const float* image, int64_t stride_px, int64_t r) -> const float* {
      return r >= 0 && r < H ? image + r * W * stride_px : nullptr;
    };
    for (int64_t oh = h0; oh < h1; ++oh) {
      const int64_t ih = 2 * oh - 1;  // first input row of the window
      k.dw_row({{row(x_image, Cin, ih), row(x_image, Cin, ih + 1), row(x_image, Cin, ih + 2)}, Cin, W, Wo, Cin, 2,
                w9_1.data, bd1.const_data_ptr<float>(), d1 + (oh - h0) * Wo * Cs, Cs});
      k.dw_row({{row(t1_image, Bs, ih), row(t1_image, Bs, ih + 1), row(t1_image, Bs, ih + 2)}, Bs, W, Wo, Bs, 2,
                dw2.weight.data(), dw2.bias.data(), d2 + (oh - h0) * Wo * Bs, Bs});
    }
    const int64_t pixels = (h1 - h0) * Wo, p0 = (n * Ho + h0) * Wo;
    k.gemm({d1, Cs, w3.data, w3.ldb, y1, Bs, pixels, B, Cin, b3.const_data_ptr<float>(), true, false, w3.panel_stride});
    k.gemm({d2, Bs, w2.data, w2.ldb, y2, Bs, pixels, B, B, b2.const_data_ptr<float>(), true, false, w2.panel_stride});
    k.interleave({y1, Bs, y2, Bs, B, pixels, op + p0 * 2 * B});
  };
  run_unit(N, H * W, H * W * Bs, R * Wo * (Cs + 3 * Bs), bands, Ho, x, pass1, band);
  return out;
}

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
    pointwise_all_pixels(cpu::kernels(), x.const_data_ptr<float>(), c_in, w, b.const_data_ptr<float>(), c_out, c_in,
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
  const int64_t Hc = dwconv3x3_out_size(H, 2), Wc = dwconv3x3_out_size(W, 2);
  const int64_t Hp = dwconv3x3_out_size(Hc, 2), Wp = dwconv3x3_out_size(Wc, 2);
  Tensor out = at::empty({N, Cout, Hp, Wp}, x.options().memory_format(at::MemoryFormat::ChannelsLast));
  if (out.numel() == 0) return out.contiguous(memory_format_of(layout));
  const cpu::Kernels& k = cpu::kernels();
  const int64_t Cpad = round_up(Cout, k.stem_channel_block);
  // Weights as [Cin*9][Cpad] (one tap's output channels contiguous), zero-padded like the bias.
  Tensor w = at::zeros({Cin * 9, Cpad}, x.options());
  w.narrow(1, 0, Cout).copy_(weight.permute({1, 2, 3, 0}).reshape({Cin * 9, Cout}));
  Tensor b = at::zeros({Cpad}, x.options());
  b.narrow(0, 0, Cout).copy_(bias);
  const int64_t threads = at::get_num_threads();
  const int64_t bands = std::min<int64_t>(Hp, N >= threads ? 1 : threads);
  at::parallel_for(0, N * bands, 1, [&](int64_t begin, int64_t end) {
    std::vector<float> scratch(3 * Wc * Cpad);
    for (int64_t task = begin; task < end; ++task) {
      const int64_t n = task / bands, band = task % bands;
      cpu::StemArgs a{x.const_data_ptr<float>() + n * x.stride(0), x.stride(1), x.stride(2), x.stride(3), Cin, H, W,
                      w.const_data_ptr<float>(), b.const_data_ptr<float>(), Cout, Cpad, Hc, Wc, Hp, Wp,
                      Hp * band / bands, Hp * (band + 1) / bands, scratch.data(),
                      out.data_ptr<float>() + n * Hp * Wp * Cout};
      k.stem(a);
    }
  });
  // The engine writes channels_last; an NCHW input gets its output in NCHW, as every op promises.
  return layout == Layout::NHWC ? out : out.contiguous();
}

Tensor split_unit_cpu(const Tensor& x_in, const Tensor& pw1_w, const Tensor& pw1_b, const Tensor& dw_w,
                      const Tensor& dw_b, const Tensor& pw2_w, const Tensor& pw2_b) {
  const int64_t cb = check_split_unit(x_in, pw1_w, pw1_b, dw_w, dw_b, pw2_w, pw2_b);
  auto [x, layout] = in_kernel_layout(x_in);
  const int64_t N = x.size(0), H = x.size(2), W = x.size(3);
  if (x.numel() == 0) return at::empty(x.sizes(), x.options().memory_format(memory_format_of(layout)));
  // float32 runs on the channels_last engine; an NCHW input is converted once each way, which costs
  // far less than the unfused NCHW path below.
  if (x.scalar_type() == at::kFloat) {
    Tensor out = split_unit_engine(x.contiguous(at::MemoryFormat::ChannelsLast), pw1_w, pw1_b, dw_w, dw_b, pw2_w, pw2_b);
    return layout == Layout::NHWC ? out : out.contiguous();
  }
  Tensor x1 = x.narrow(1, 0, cb), x2 = x.narrow(1, cb, cb);
  Tensor t1 = pointwise_raw(x2, layout, pw1_w);
  Tensor b1 = pw1_b.to(at::kFloat);
  Tensor t2 = run_dwconv3x3(t1, layout, dw_w, dw_b, 1, false, b1, true);
  Tensor y = pointwise_raw(t2, layout, pw2_w);
  Tensor b2 = pw2_b.to(at::kFloat).contiguous();
  BranchSource identity{x1.const_data_ptr(), branch_stride(x, layout), nullptr};
  BranchSource branch{y.const_data_ptr(), branch_stride(y, layout), b2.const_data_ptr<float>()};
  return interleave2(identity, branch, N, cb, H, W, layout, x.options());
}

Tensor down_unit_cpu(const Tensor& x_in, const Tensor& dw1_w, const Tensor& dw1_b, const Tensor& pw3_w,
                     const Tensor& pw3_b, const Tensor& pw1_w, const Tensor& pw1_b, const Tensor& dw2_w,
                     const Tensor& dw2_b, const Tensor& pw2_w, const Tensor& pw2_b) {
  const int64_t cb = check_down_unit(x_in, dw1_w, dw1_b, pw3_w, pw3_b, pw1_w, pw1_b, dw2_w, dw2_b, pw2_w, pw2_b);
  auto [x, layout] = in_kernel_layout(x_in);
  const int64_t N = x.size(0);
  const int64_t Ho = dwconv3x3_out_size(x.size(2), 2), Wo = dwconv3x3_out_size(x.size(3), 2);
  if (N == 0) return at::empty({0, 2 * cb, Ho, Wo}, x.options().memory_format(memory_format_of(layout)));
  if (x.scalar_type() == at::kFloat) {  // as in split_unit_cpu
    Tensor out = down_unit_engine(x.contiguous(at::MemoryFormat::ChannelsLast), cb, dw1_w, dw1_b, pw3_w, pw3_b, pw1_w,
                                  pw1_b, dw2_w, dw2_b, pw2_w, pw2_b);
    return layout == Layout::NHWC ? out : out.contiguous();
  }
  // Branch 1: depthwise stride 2 (bias, no ReLU), then raw 1x1.
  Tensor d1 = run_dwconv3x3(x, layout, dw1_w, dw1_b, 2, false, c10::nullopt, false);
  Tensor r1 = pointwise_raw(d1, layout, pw3_w);
  // Branch 2: raw 1x1, depthwise stride 2 reading relu(. + pw1 bias), raw 1x1.
  Tensor t1 = pointwise_raw(x, layout, pw1_w);
  Tensor d2 = run_dwconv3x3(t1, layout, dw2_w, dw2_b, 2, false, pw1_b.to(at::kFloat), true);
  Tensor r2 = pointwise_raw(d2, layout, pw2_w);
  Tensor b3 = pw3_b.to(at::kFloat).contiguous(), b2 = pw2_b.to(at::kFloat).contiguous();
  BranchSource s1{r1.const_data_ptr(), branch_stride(r1, layout), b3.const_data_ptr<float>()};
  BranchSource s2{r2.const_data_ptr(), branch_stride(r2, layout), b2.const_data_ptr<float>()};
  return interleave2(s1, s2, N, cb, Ho, Wo, layout, x.options());
}

}  // namespace

// Not part of the op contract (ops.py): a hint to the CPU kernels, with no effect on results; a no-op
// for tensors they would not pack. Registered for every backend so that a model can call it anywhere.
TORCH_LIBRARY_FRAGMENT(shufflekernels, m) {
  m.def("prepack(Tensor[] weights) -> ()", &prepack);
}

TORCH_LIBRARY_IMPL(shufflekernels, CPU, m) {
  m.impl("channel_shuffle", &channel_shuffle_cpu);
  m.impl("shuffle_cat", &shuffle_cat_cpu);
  m.impl("dwconv3x3", &dwconv3x3_cpu);
  m.impl("pointwise", &pointwise_cpu);
  m.impl("stem", &stem_cpu);
  m.impl("split_unit", &split_unit_cpu);
  m.impl("down_unit", &down_unit_cpu);
}

}  // namespace shufflekernels
