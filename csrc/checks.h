// Input checks and input layout decisions shared by the CPU and CUDA entry points. The Python wrappers
// in shufflekernels/ops.py check the same contract first; these keep a direct torch.ops call from ever
// reading out of bounds. Every message names the op and the argument and says what was expected and
// what was got.
#pragma once

#include <ATen/ATen.h>
#include <c10/util/Exception.h>

#include <vector>

namespace shufflekernels {

inline void check_float_dtype(const char* op, const char* arg, const at::Tensor& t) {
  const auto dt = t.scalar_type();
  TORCH_CHECK_TYPE(dt == at::kFloat || dt == at::kHalf || dt == at::kBFloat16, "shufflekernels.", op,
                   ": argument '", arg, "' expected dtype float32, float16 or bfloat16, got ", dt);
}

inline void check_rank(const char* op, const char* arg, const at::Tensor& t, int64_t rank) {
  TORCH_CHECK_VALUE(t.dim() == rank, "shufflekernels.", op, ": argument '", arg, "' expected a ", rank,
                    "-D tensor, got ", t.dim(), "-D with shape ", t.sizes());
}

inline void check_same(const char* op, const char* arg, const at::Tensor& t, const at::Tensor& like) {
  TORCH_CHECK_VALUE(t.device() == like.device(), "shufflekernels.", op, ": argument '", arg,
                    "' expected device ", like.device(), ", got ", t.device());
  TORCH_CHECK_TYPE(t.scalar_type() == like.scalar_type(), "shufflekernels.", op, ": argument '", arg,
                   "' expected dtype ", like.scalar_type(), ", got ", t.scalar_type());
}

inline void check_shape(const char* op, const char* arg, const at::Tensor& t, at::IntArrayRef expected) {
  TORCH_CHECK_VALUE(t.sizes() == expected, "shufflekernels.", op, ": argument '", arg,
                    "' expected shape ", expected, ", got ", t.sizes());
}

inline void check_stride_arg(const char* op, int64_t stride) {
  TORCH_CHECK_VALUE(stride == 1 || stride == 2, "shufflekernels.", op,
                    ": argument 'stride' expected 1 or 2, got ", stride);
}

inline void check_spatial(const char* op, const at::Tensor& x) {
  TORCH_CHECK_VALUE(x.size(2) >= 1 && x.size(3) >= 1, "shufflekernels.", op,
                    ": argument 'x' expected H >= 1 and W >= 1 for a 3x3 window with padding 1, got ",
                    x.sizes());
}

// Checks a depthwise weight [C, 1, 3, 3] and optional bias [C] against x [N, C, H, W].
inline void check_dw_params(const char* op, const char* weight_arg, const char* bias_arg, const at::Tensor& x,
                            const at::Tensor& weight, const c10::optional<at::Tensor>& bias) {
  check_same(op, weight_arg, weight, x);
  check_shape(op, weight_arg, weight, {x.size(1), 1, 3, 3});
  if (bias.has_value()) {
    check_same(op, bias_arg, *bias, x);
    check_shape(op, bias_arg, *bias, {x.size(1)});
  }
}

// Checks a pointwise weight [Cout, Cin, 1, 1] and its bias [Cout].
inline void check_pw_params(const char* op, const char* weight_arg, const char* bias_arg, const at::Tensor& like,
                            const at::Tensor& weight, const at::Tensor& bias, int64_t c_out, int64_t c_in) {
  check_same(op, weight_arg, weight, like);
  check_shape(op, weight_arg, weight, {c_out, c_in, 1, 1});
  check_same(op, bias_arg, bias, like);
  check_shape(op, bias_arg, bias, {c_out});
}

inline void check_channel_shuffle(const at::Tensor& x, int64_t groups) {
  const char* op = "channel_shuffle";
  check_rank(op, "x", x, 4);
  check_float_dtype(op, "x", x);
  TORCH_CHECK_VALUE(groups >= 1, "shufflekernels.channel_shuffle: argument 'groups' expected >= 1, got ", groups);
  TORCH_CHECK_VALUE(x.size(1) % groups == 0, "shufflekernels.channel_shuffle: argument 'groups' expected to divide ",
                    "the channel count ", x.size(1), ", got ", groups);
}

inline void check_shuffle_cat(at::TensorList tensors) {
  const char* op = "shuffle_cat";
  TORCH_CHECK_VALUE(!tensors.empty(), "shufflekernels.shuffle_cat: argument 'tensors' expected at least one tensor, got 0");
  check_rank(op, "tensors[0]", tensors[0], 4);
  check_float_dtype(op, "tensors[0]", tensors[0]);
  for (size_t i = 1; i < tensors.size(); ++i) {
    check_same(op, "tensors[i]", tensors[i], tensors[0]);
    check_shape(op, "tensors[i]", tensors[i], tensors[0].sizes());
  }
}

inline void check_dwconv3x3(const at::Tensor& x, const at::Tensor& weight, const c10::optional<at::Tensor>& bias,
                            int64_t stride) {
  const char* op = "dwconv3x3";
  check_rank(op, "x", x, 4);
  check_float_dtype(op, "x", x);
  check_stride_arg(op, stride);
  check_spatial(op, x);
  check_dw_params(op, "weight", "bias", x, weight, bias);
}

inline void check_pointwise(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias) {
  const char* op = "pointwise";
  check_rank(op, "x", x, 4);
  check_float_dtype(op, "x", x);
  check_rank(op, "weight", weight, 4);
  check_pw_params(op, "weight", "bias", x, weight, bias, weight.size(0), x.size(1));
  // torch's conv2d returns [N, 0, H, W] for zero input channels, not its bias: no answer to match.
  TORCH_CHECK_VALUE(x.size(1) > 0, "shufflekernels.pointwise: argument 'x' expected at least one channel, got 0");
}

inline void check_stem(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias) {
  const char* op = "stem";
  check_rank(op, "x", x, 4);
  check_float_dtype(op, "x", x);
  check_spatial(op, x);
  check_rank(op, "weight", weight, 4);
  check_same(op, "weight", weight, x);
  check_shape(op, "weight", weight, {weight.size(0), x.size(1), 3, 3});
  check_same(op, "bias", bias, x);
  check_shape(op, "bias", bias, {weight.size(0)});
}

// The stem in ATen ops: what the backends without a kernel of their own for it compute.
inline at::Tensor stem_composite(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias) {
  return at::max_pool2d(at::relu(at::conv2d(x, weight, bias, 2, 1)), 3, 2, 1);
}

// The two layouts the kernels read: dense NCHW, or dense channels_last (NHWC in memory).
enum class Layout { NCHW, NHWC };

inline at::MemoryFormat memory_format_of(Layout layout) {
  return layout == Layout::NHWC ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous;
}

// The layout is decided from the tensor's strides; a tensor dense in neither layout (a slice, a
// permutation) is copied once into the layout torch suggests for it, so no kernel reads strides it
// was not written for.
inline std::pair<at::Tensor, Layout> in_kernel_layout(const at::Tensor& x) {
  const auto fmt = x.suggest_memory_format();
  const Layout layout = fmt == at::MemoryFormat::ChannelsLast ? Layout::NHWC : Layout::NCHW;
  return {x.contiguous(fmt), layout};
}

// What every backend's channel permutation reads and writes: output channel j*g + i of image p (NCHW)
// or pixel p (NHWC) is element p * src_stride + j * (NCHW ? HW : 1) of srcs[i] (elem_size bytes each).
struct Permutation {
  at::Tensor out;
  Layout layout;
  std::vector<at::Tensor> inputs;  // what srcs point into, in the kernel's layout
  std::vector<const char*> srcs;
  int64_t N, cpg, HW, src_stride, source_numel, elem_size;
};

// channel_shuffle(x, groups): source i is the i-th block of C/groups channels of x.
inline Permutation channel_shuffle_permutation(const at::Tensor& x_in, int64_t groups) {
  auto [x, layout] = in_kernel_layout(x_in);
  const int64_t N = x.size(0), C = x.size(1), HW = x.size(2) * x.size(3), cpg = C / groups;
  Permutation p{at::empty(x.sizes(), x.options().memory_format(memory_format_of(layout))), layout, {x}, {},
                N, cpg, HW, layout == Layout::NCHW ? C * HW : C, x.numel(), x.element_size()};
  const int64_t group_bytes = (layout == Layout::NCHW ? cpg * HW : cpg) * p.elem_size;
  const char* base = static_cast<const char*>(x.const_data_ptr());
  for (int64_t i = 0; i < groups; ++i) p.srcs.push_back(base + i * group_bytes);
  return p;
}

// shuffle_cat(tensors): the first tensor decides the layout; the others are read in it (copied once if
// needed).
inline Permutation shuffle_cat_permutation(at::TensorList tensors) {
  auto [x0, layout] = in_kernel_layout(tensors[0]);
  const auto fmt = memory_format_of(layout);
  const int64_t g = static_cast<int64_t>(tensors.size());
  const int64_t N = x0.size(0), cpg = x0.size(1), H = x0.size(2), W = x0.size(3);
  Permutation p{at::empty({N, cpg * g, H, W}, x0.options().memory_format(fmt)), layout, {x0}, {},
                N, cpg, H * W, layout == Layout::NCHW ? cpg * H * W : cpg, x0.numel(), x0.element_size()};
  for (int64_t i = 1; i < g; ++i) p.inputs.push_back(tensors[i].contiguous(fmt));
  for (const at::Tensor& t : p.inputs) p.srcs.push_back(static_cast<const char*>(t.const_data_ptr()));
  return p;
}

}  // namespace shufflekernels
