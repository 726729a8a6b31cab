// CUDA kernels for every op of the shufflekernels library.
//
// Index model (csrc/index_math.h, shared with the CPU kernels): a shuffle with g groups writes
// out[n, j*g + i] = src_i[n, j]. Depthwise 3x3: out[n,c,oh,ow] = bias[c] + sum w[c,kh,kw] *
// act(in[n,c,oh*s-1+kh,ow*s-1+kw]) over taps inside the image, act being the optional pre-activation
// act(v) = relu?(v + in_bias[c]) that lets a unit apply the previous 1x1 conv's bias and ReLU on read.
//
// One thread per output element; the innermost index is the one contiguous in memory for that
// layout, so reads and writes coalesce. Indices are 32-bit when every tensor of the launch has fewer
// than 2^31 elements, 64-bit otherwise. Every launch runs on the current stream, under a device guard,
// and is checked. Float16 and bfloat16 accumulate in float32.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <algorithm>
#include <limits>
#include <vector>

#include "../checks.h"
#include "../index_math.h"
#include "../pointwise.h"

namespace shufflekernels {
namespace {

using at::Tensor;

constexpr int kThreads = 256;
// Sources one interleave launch reads; more groups are handled by further launches.
constexpr int kMaxSourcesPerLaunch = 16;

inline unsigned int blocks_for(int64_t n) {
  return static_cast<unsigned int>(std::min<int64_t>((n + kThreads - 1) / kThreads, 1 << 30));
}

inline bool fits_int32(int64_t n) { return n < std::numeric_limits<int32_t>::max(); }

// ------------------------------------------------------------------------------------------------
// Interleave (channel_shuffle, shuffle_cat): a permutation, so it moves words of the element size.
// ------------------------------------------------------------------------------------------------

struct Sources {
  const void* ptr[kMaxSourcesPerLaunch];
};

// Writes out channels j*g + (first + k) for k < count, from sources ptr[k].
// NCHW: index = ((n*count + k)*cpg + j)*HW + hw; source offset n*src_stride + j*HW + hw.
// NHWC: index = (p*cpg + j)*count + k;            source offset p*src_stride + j.
template <typename word_t, typename index_t, bool kNHWC>
__global__ void interleave_kernel(Sources src, int first, int count, int groups, index_t cpg, index_t HW,
                                  index_t src_stride, index_t total, word_t* __restrict__ out) {
  for (index_t idx = blockIdx.x * static_cast<index_t>(blockDim.x) + threadIdx.x; idx < total;
       idx += static_cast<index_t>(gridDim.x) * blockDim.x) {
    if (kNHWC) {
      const index_t k = idx % count;
      const index_t j = (idx / count) % cpg;
      const index_t p = idx / (count * cpg);
      const word_t* s = static_cast<const word_t*>(src.ptr[k]);
      out[p * cpg * groups + shuffle_destination(first + k, j, groups)] = s[p * src_stride + j];
    } else {
      const index_t hw = idx % HW;
      const index_t j = (idx / HW) % cpg;
      const index_t k = (idx / (HW * cpg)) % count;
      const index_t n = idx / (HW * cpg * count);
      const word_t* s = static_cast<const word_t*>(src.ptr[k]);
      out[(n * cpg * groups + shuffle_destination(first + k, j, groups)) * HW + hw] = s[n * src_stride + j * HW + hw];
    }
  }
}

template <typename word_t, typename index_t>
void launch_interleave(const std::vector<const void*>& srcs, Layout layout, int64_t N, int64_t cpg, int64_t HW,
                       int64_t src_stride, void* out) {
  const int groups = static_cast<int>(srcs.size());
  auto stream = c10::cuda::getCurrentCUDAStream();
  for (int first = 0; first < groups; first += kMaxSourcesPerLaunch) {
    const int count = std::min(kMaxSourcesPerLaunch, groups - first);
    Sources s{};
    for (int k = 0; k < count; ++k) s.ptr[k] = srcs[first + k];
    const int64_t total = N * count * cpg * HW;
    if (layout == Layout::NHWC) {
      interleave_kernel<word_t, index_t, true><<<blocks_for(total), kThreads, 0, stream>>>(
          s, first, count, groups, cpg, HW, src_stride, total, static_cast<word_t*>(out));
    } else {
      interleave_kernel<word_t, index_t, false><<<blocks_for(total), kThreads, 0, stream>>>(
          s, first, count, groups, cpg, HW, src_stride, total, static_cast<word_t*>(out));
    }
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }
}

void interleave(const std::vector<const void*>& srcs, Layout layout, int64_t N, int64_t cpg, int64_t HW,
                int64_t src_stride, int64_t source_numel, void* out, int64_t elem_size) {
  const int64_t out_numel = N * cpg * HW * static_cast<int64_t>(srcs.size());
  const bool small = fits_int32(out_numel) && fits_int32(source_numel);
  if (elem_size == 4) {
    small ? launch_interleave<uint32_t, int32_t>(srcs, layout, N, cpg, HW, src_stride, out)
          : launch_interleave<uint32_t, int64_t>(srcs, layout, N, cpg, HW, src_stride, out);
  } else {
    TORCH_CHECK(elem_size == 2, "shufflekernels: internal error, unsupported element size ", elem_size);
    small ? launch_interleave<uint16_t, int32_t>(srcs, layout, N, cpg, HW, src_stride, out)
          : launch_interleave<uint16_t, int64_t>(srcs, layout, N, cpg, HW, src_stride, out);
  }
}

Tensor channel_shuffle_cuda(const Tensor& x_in, int64_t groups) {
  check_channel_shuffle(x_in, groups);
  const c10::cuda::CUDAGuard guard(x_in.device());
  auto [x, layout] = in_kernel_layout(x_in);
  Tensor out = at::empty(x.sizes(), x.options().memory_format(memory_format_of(layout)));
  if (out.numel() == 0) return out;
  const int64_t N = x.size(0), C = x.size(1), HW = x.size(2) * x.size(3), cpg = C / groups;
  const int64_t es = x.element_size();
  const char* base = static_cast<const char*>(x.const_data_ptr());
  std::vector<const void*> srcs(groups);
  const int64_t group_offset = layout == Layout::NCHW ? cpg * HW : cpg;
  for (int64_t i = 0; i < groups; ++i) srcs[i] = base + i * group_offset * es;
  const int64_t src_stride = layout == Layout::NCHW ? C * HW : C;
  interleave(srcs, layout, N, cpg, HW, src_stride, x.numel(), out.data_ptr(), es);
  return out;
}

Tensor shuffle_cat_cuda(at::TensorList tensors_in) {
  check_shuffle_cat(tensors_in);
  const c10::cuda::CUDAGuard guard(tensors_in[0].device());
  auto [x0, layout] = in_kernel_layout(tensors_in[0]);
  const auto fmt = memory_format_of(layout);
  std::vector<Tensor> xs{x0};
  for (size_t i = 1; i < tensors_in.size(); ++i) xs.push_back(tensors_in[i].contiguous(fmt));
  const int64_t g = static_cast<int64_t>(xs.size());
  const int64_t N = x0.size(0), cpg = x0.size(1), H = x0.size(2), W = x0.size(3);
  Tensor out = at::empty({N, cpg * g, H, W}, x0.options().memory_format(fmt));
  if (out.numel() == 0) return out;
  std::vector<const void*> srcs(g);
  for (int64_t i = 0; i < g; ++i) srcs[i] = xs[i].const_data_ptr();
  const int64_t src_stride = layout == Layout::NCHW ? cpg * H * W : cpg;
  interleave(srcs, layout, N, cpg, H * W, src_stride, x0.numel(), out.data_ptr(), x0.element_size());
  return out;
}

// ------------------------------------------------------------------------------------------------
// Depthwise 3x3 with optional pre-activation and ReLU epilogue.
// ------------------------------------------------------------------------------------------------

struct DwArgs {
  const float* weight;   // [C, 9] float32
  const float* bias;     // [C] or nullptr
  const float* in_bias;  // [C] or nullptr
  bool in_relu, relu;
  int stride;
};

template <typename scalar_t, typename index_t, bool kNHWC>
__global__ void dwconv3x3_kernel(const scalar_t* __restrict__ in, scalar_t* __restrict__ out, DwArgs a, index_t C,
                                 index_t H, index_t W, index_t Ho, index_t Wo, index_t total) {
  for (index_t idx = blockIdx.x * static_cast<index_t>(blockDim.x) + threadIdx.x; idx < total;
       idx += static_cast<index_t>(gridDim.x) * blockDim.x) {
    index_t n, c, oh, ow;
    if (kNHWC) {
      c = idx % C;
      ow = (idx / C) % Wo;
      oh = (idx / (C * Wo)) % Ho;
      n = idx / (C * Wo * Ho);
    } else {
      ow = idx % Wo;
      oh = (idx / Wo) % Ho;
      c = (idx / (Wo * Ho)) % C;
      n = idx / (Wo * Ho * C);
    }
    const float* w = a.weight + c * 9;
    const float in_bias = a.in_bias ? a.in_bias[c] : 0.f;
    float acc = a.bias ? a.bias[c] : 0.f;
#pragma unroll
    for (int kh = 0; kh < 3; ++kh) {
      const index_t ih = oh * a.stride - 1 + kh;
      if (ih < 0 || ih >= H) continue;
#pragma unroll
      for (int kw = 0; kw < 3; ++kw) {
        const index_t iw = ow * a.stride - 1 + kw;
        if (iw < 0 || iw >= W) continue;
        const index_t offset = kNHWC ? ((n * H + ih) * W + iw) * C + c : ((n * C + c) * H + ih) * W + iw;
        float v = static_cast<float>(in[offset]) + in_bias;
        if (a.in_relu) v = fmaxf(v, 0.f);
        acc = fmaf(w[kh * 3 + kw], v, acc);
      }
    }
    if (a.relu) acc = fmaxf(acc, 0.f);
    out[idx] = static_cast<scalar_t>(acc);
  }
}

Tensor run_dwconv3x3(const Tensor& x, Layout layout, const Tensor& weight, const c10::optional<Tensor>& bias,
                     int64_t stride, bool relu, const c10::optional<Tensor>& in_bias, bool in_relu) {
  const int64_t N = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3);
  const int64_t Ho = dwconv3x3_out_size(H, stride), Wo = dwconv3x3_out_size(W, stride);
  Tensor out = at::empty({N, C, Ho, Wo}, x.options().memory_format(memory_format_of(layout)));
  if (out.numel() == 0) return out;
  Tensor w = weight.to(at::kFloat).reshape({C, 9}).contiguous();
  Tensor b = bias.has_value() ? bias->to(at::kFloat).contiguous() : Tensor();
  Tensor ib = in_bias.has_value() ? in_bias->to(at::kFloat).contiguous() : Tensor();
  DwArgs a{w.const_data_ptr<float>(), b.defined() ? b.const_data_ptr<float>() : nullptr,
           ib.defined() ? ib.const_data_ptr<float>() : nullptr, in_relu, relu, static_cast<int>(stride)};
  const int64_t total = out.numel();
  const bool small = fits_int32(total) && fits_int32(x.numel());
  auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "shufflekernels.dwconv3x3", [&] {
    const scalar_t* src = x.const_data_ptr<scalar_t>();
    scalar_t* dst = out.data_ptr<scalar_t>();
    if (layout == Layout::NHWC) {
      if (small) {
        dwconv3x3_kernel<scalar_t, int32_t, true><<<blocks_for(total), kThreads, 0, stream>>>(src, dst, a, C, H, W, Ho, Wo, total);
      } else {
        dwconv3x3_kernel<scalar_t, int64_t, true><<<blocks_for(total), kThreads, 0, stream>>>(src, dst, a, C, H, W, Ho, Wo, total);
      }
    } else {
      if (small) {
        dwconv3x3_kernel<scalar_t, int32_t, false><<<blocks_for(total), kThreads, 0, stream>>>(src, dst, a, C, H, W, Ho, Wo, total);
      } else {
        dwconv3x3_kernel<scalar_t, int64_t, false><<<blocks_for(total), kThreads, 0, stream>>>(src, dst, a, C, H, W, Ho, Wo, total);
      }
    }
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return out;
}

Tensor dwconv3x3_cuda(const Tensor& x_in, const Tensor& weight, const c10::optional<Tensor>& bias, int64_t stride,
                      bool relu) {
  check_dwconv3x3(x_in, weight, bias, stride);
  const c10::cuda::CUDAGuard guard(x_in.device());
  auto [x, layout] = in_kernel_layout(x_in);
  return run_dwconv3x3(x, layout, weight, bias, stride, relu, c10::nullopt, false);
}

// ------------------------------------------------------------------------------------------------
// Units: cuBLAS GEMMs (through ATen) write raw products; the depthwise kernel applies the first 1x1
// conv's bias and ReLU on read, and the final interleave applies the last ones while writing both
// branches to their shuffled channel positions.
// ------------------------------------------------------------------------------------------------

struct Branch {
  const void* data;
  int64_t stride;     // elements between pixels (NHWC) or images (NCHW)
  const float* bias;  // nullptr: copied as is (the split unit's identity half)
};

// out channel 2j + slot = relu(src_slot[j] + bias_slot[j]) (or src_slot[j] when bias_slot is null).
template <typename scalar_t, typename index_t, bool kNHWC>
__global__ void interleave2_kernel(Branch a, Branch b, index_t cpg, index_t HW, index_t total,
                                   scalar_t* __restrict__ out) {
  for (index_t idx = blockIdx.x * static_cast<index_t>(blockDim.x) + threadIdx.x; idx < total;
       idx += static_cast<index_t>(gridDim.x) * blockDim.x) {
    index_t n_or_p, c, hw = 0;
    if (kNHWC) {
      c = idx % (2 * cpg);
      n_or_p = idx / (2 * cpg);
    } else {
      hw = idx % HW;
      c = (idx / HW) % (2 * cpg);
      n_or_p = idx / (HW * 2 * cpg);
    }
    const ShuffleSource s = shuffle_source(c, 2);
    const Branch& src = s.group == 0 ? a : b;
    const index_t j = static_cast<index_t>(s.channel);
    const index_t offset = kNHWC ? n_or_p * src.stride + j : n_or_p * src.stride + j * HW + hw;
    const scalar_t v = static_cast<const scalar_t*>(src.data)[offset];
    out[idx] = src.bias ? static_cast<scalar_t>(fmaxf(static_cast<float>(v) + src.bias[j], 0.f)) : v;
  }
}

Tensor interleave2(const Branch& a, const Branch& b, int64_t N, int64_t cpg, int64_t H, int64_t W, Layout layout,
                   const at::TensorOptions& options) {
  Tensor out = at::empty({N, 2 * cpg, H, W}, options.memory_format(memory_format_of(layout)));
  if (out.numel() == 0) return out;
  const int64_t total = out.numel();
  // Sources are channel slices of tensors no larger than twice the output.
  const bool small = fits_int32(2 * total);
  auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, out.scalar_type(), "shufflekernels.unit", [&] {
    scalar_t* dst = out.data_ptr<scalar_t>();
    if (layout == Layout::NHWC) {
      if (small) {
        interleave2_kernel<scalar_t, int32_t, true><<<blocks_for(total), kThreads, 0, stream>>>(a, b, cpg, H * W, total, dst);
      } else {
        interleave2_kernel<scalar_t, int64_t, true><<<blocks_for(total), kThreads, 0, stream>>>(a, b, cpg, H * W, total, dst);
      }
    } else {
      if (small) {
        interleave2_kernel<scalar_t, int32_t, false><<<blocks_for(total), kThreads, 0, stream>>>(a, b, cpg, H * W, total, dst);
      } else {
        interleave2_kernel<scalar_t, int64_t, false><<<blocks_for(total), kThreads, 0, stream>>>(a, b, cpg, H * W, total, dst);
      }
    }
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return out;
}

Tensor pointwise_cuda(const Tensor& x_in, const Tensor& weight, const Tensor& bias, bool relu) {
  check_pointwise(x_in, weight, bias);
  const c10::cuda::CUDAGuard guard(x_in.device());
  auto [x, layout] = in_kernel_layout(x_in);
  if (x.numel() == 0)
    return at::empty({x.size(0), weight.size(0), x.size(2), x.size(3)}, x.options().memory_format(memory_format_of(layout)));
  // cuBLAS through ATen, then bias and ReLU in one in-place pass over its result.
  Tensor y = pointwise_raw(x, layout, weight).add_(bias.view({1, weight.size(0), 1, 1}));
  return relu ? y.relu_() : y;
}

// The stem on CUDA is cuDNN's conv and ATen's ReLU and max-pool (it is not one of the fused families);
// registered so that a model on CUDA runs every layer through the same ops.
Tensor stem_cuda(const Tensor& x, const Tensor& weight, const Tensor& bias) {
  check_stem(x, weight, bias);
  const c10::cuda::CUDAGuard guard(x.device());
  return stem_composite(x, weight, bias);
}

Tensor split_unit_cuda(const Tensor& x_in, const Tensor& pw1_w, const Tensor& pw1_b, const Tensor& dw_w,
                       const Tensor& dw_b, const Tensor& pw2_w, const Tensor& pw2_b) {
  const int64_t cb = check_split_unit(x_in, pw1_w, pw1_b, dw_w, dw_b, pw2_w, pw2_b);
  const c10::cuda::CUDAGuard guard(x_in.device());
  auto [x, layout] = in_kernel_layout(x_in);
  if (x.numel() == 0) return at::empty(x.sizes(), x.options().memory_format(memory_format_of(layout)));
  Tensor x1 = x.narrow(1, 0, cb), x2 = x.narrow(1, cb, cb);
  Tensor t1 = pointwise_raw(x2, layout, pw1_w);
  Tensor t2 = run_dwconv3x3(t1, layout, dw_w, dw_b, 1, false, pw1_b, true);
  Tensor y = pointwise_raw(t2, layout, pw2_w);
  Tensor b2 = pw2_b.to(at::kFloat).contiguous();
  Branch identity{x1.const_data_ptr(), branch_stride(x, layout), nullptr};
  Branch branch{y.const_data_ptr(), branch_stride(y, layout), b2.const_data_ptr<float>()};
  return interleave2(identity, branch, x.size(0), cb, x.size(2), x.size(3), layout, x.options());
}

Tensor down_unit_cuda(const Tensor& x_in, const Tensor& dw1_w, const Tensor& dw1_b, const Tensor& pw3_w,
                      const Tensor& pw3_b, const Tensor& pw1_w, const Tensor& pw1_b, const Tensor& dw2_w,
                      const Tensor& dw2_b, const Tensor& pw2_w, const Tensor& pw2_b) {
  const int64_t cb = check_down_unit(x_in, dw1_w, dw1_b, pw3_w, pw3_b, pw1_w, pw1_b, dw2_w, dw2_b, pw2_w, pw2_b);
  const c10::cuda::CUDAGuard guard(x_in.device());
  auto [x, layout] = in_kernel_layout(x_in);
  const int64_t Ho = dwconv3x3_out_size(x.size(2), 2), Wo = dwconv3x3_out_size(x.size(3), 2);
  if (x.size(0) == 0) return at::empty({0, 2 * cb, Ho, Wo}, x.options().memory_format(memory_format_of(layout)));
  Tensor d1 = run_dwconv3x3(x, layout, dw1_w, dw1_b, 2, false, c10::nullopt, false);
  Tensor r1 = pointwise_raw(d1, layout, pw3_w);
  Tensor t1 = pointwise_raw(x, layout, pw1_w);
  Tensor d2 = run_dwconv3x3(t1, layout, dw2_w, dw2_b, 2, false, pw1_b, true);
  Tensor r2 = pointwise_raw(d2, layout, pw2_w);
  Tensor b3 = pw3_b.to(at::kFloat).contiguous(), b2 = pw2_b.to(at::kFloat).contiguous();
  Branch s1{r1.const_data_ptr(), branch_stride(r1, layout), b3.const_data_ptr<float>()};
  Branch s2{r2.const_data_ptr(), branch_stride(r2, layout), b2.const_data_ptr<float>()};
  return interleave2(s1, s2, x.size(0), cb, Ho, Wo, layout, x.options());
}

}  // namespace

TORCH_LIBRARY_IMPL(shufflekernels, CUDA, m) {
  m.impl("channel_shuffle", &channel_shuffle_cuda);
  m.impl("shuffle_cat", &shuffle_cat_cuda);
  m.impl("dwconv3x3", &dwconv3x3_cuda);
  m.impl("pointwise", &pointwise_cuda);
  m.impl("stem", &stem_cuda);
  m.impl("split_unit", &split_unit_cuda);
  m.impl("down_unit", &down_unit_cuda);
}

}  // namespace shufflekernels
