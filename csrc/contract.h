// The op contract for native calls: every input check of every op, and the output sizes.
//
// These checks are the contract (docs/design.md, "Bad input"). shufflekernels/contract.py runs the
// same rules, in the same order and with the same messages, for the reference and Triton paths and
// the fake kernels; tests/test_contract.py holds the two equal case by case. Every message names the
// op and the argument and says what was expected and what was got, in torch's Python spelling
// (dtypes as torch.float32, shapes as [N, C, H, W]), so that a message reads the same whatever path
// raised it.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "index_math.h"
#include "network_params.h"

namespace shufflekernels {

// torch's Python name of a dtype.
inline std::string dtype_name(at::ScalarType t) {
  switch (t) {
    case at::kFloat: return "torch.float32";
    case at::kDouble: return "torch.float64";
    case at::kHalf: return "torch.float16";
    case at::kBFloat16: return "torch.bfloat16";
    case at::kByte: return "torch.uint8";
    case at::kChar: return "torch.int8";
    case at::kShort: return "torch.int16";
    case at::kInt: return "torch.int32";
    case at::kLong: return "torch.int64";
    case at::kBool: return "torch.bool";
    case at::kComplexHalf: return "torch.complex32";
    case at::kComplexFloat: return "torch.complex64";
    case at::kComplexDouble: return "torch.complex128";
    default: return std::string("torch.") + c10::toString(t);
  }
}

inline void check_float_dtype(const char* op, const std::string& arg, const at::Tensor& t) {
  const auto dt = t.scalar_type();
  TORCH_CHECK_TYPE(dt == at::kFloat || dt == at::kHalf || dt == at::kBFloat16, "shufflekernels.", op, ": argument '",
                   arg, "' expected dtype float32, float16 or bfloat16, got ", dtype_name(dt));
}

inline void check_rank(const char* op, const std::string& arg, const at::Tensor& t, int64_t rank) {
  TORCH_CHECK_VALUE(t.dim() == rank, "shufflekernels.", op, ": argument '", arg, "' expected a ", rank,
                    "-D tensor, got ", t.dim(), "-D with shape ", t.sizes());
}

// An activation: a float tensor [N, C, H, W].
inline void check_activation(const char* op, const std::string& arg, const at::Tensor& t) {
  check_float_dtype(op, arg, t);
  check_rank(op, arg, t, 4);
}

// A tensor that must match `like` (named like_arg) in device and dtype, and have the given shape.
inline void check_like(const char* op, const std::string& arg, const at::Tensor& t, const char* like_arg,
                       const at::Tensor& like, at::IntArrayRef shape) {
  TORCH_CHECK_VALUE(t.device() == like.device(), "shufflekernels.", op, ": argument '", arg, "' expected device ",
                    like.device(), ", got ", t.device());
  TORCH_CHECK_TYPE(t.scalar_type() == like.scalar_type(), "shufflekernels.", op, ": argument '", arg,
                   "' expected dtype ", dtype_name(like.scalar_type()), " (that of ", like_arg, "), got ",
                   dtype_name(t.scalar_type()));
  TORCH_CHECK_VALUE(t.sizes() == shape, "shufflekernels.", op, ": argument '", arg, "' expected shape ", shape,
                    ", got ", t.sizes());
}

inline void check_spatial(const char* op, const at::Tensor& x) {
  TORCH_CHECK_VALUE(x.size(2) >= 1 && x.size(3) >= 1, "shufflekernels.", op,
                    ": argument 'x' expected H >= 1 and W >= 1 for a 3x3 window with padding 1, got shape ", x.sizes());
}

// A depthwise weight [C, 1, 3, 3] and its bias [C] (optional).
inline void check_dw_params(const char* op, const char* weight_arg, const char* bias_arg, const at::Tensor& x,
                            const at::Tensor& weight, const c10::optional<at::Tensor>& bias, int64_t channels) {
  check_like(op, weight_arg, weight, "x", x, {channels, 1, 3, 3});
  if (bias.has_value()) check_like(op, bias_arg, *bias, "x", x, {channels});
}

// A pointwise weight [Cout, Cin, 1, 1] and its bias [Cout].
inline void check_pw_params(const char* op, const char* weight_arg, const char* bias_arg, const at::Tensor& x,
                            const at::Tensor& weight, const at::Tensor& bias, int64_t c_out, int64_t c_in) {
  check_like(op, weight_arg, weight, "x", x, {c_out, c_in, 1, 1});
  check_like(op, bias_arg, bias, "x", x, {c_out});
}

// ---------------------------------------------------------------------------------------------------
// One check per op, in the order shufflekernels/contract.py runs them.
// ---------------------------------------------------------------------------------------------------

inline void check_channel_shuffle(const at::Tensor& x, int64_t groups) {
  const char* op = "channel_shuffle";
  check_activation(op, "x", x);
  TORCH_CHECK_VALUE(groups >= 1, "shufflekernels.channel_shuffle: argument 'groups' expected >= 1, got ", groups);
  TORCH_CHECK_VALUE(x.size(1) % groups == 0, "shufflekernels.channel_shuffle: argument 'groups' expected a divisor ",
                    "of the channel count ", x.size(1), ", got ", groups);
}

inline void check_shuffle_cat(at::TensorList tensors) {
  const char* op = "shuffle_cat";
  TORCH_CHECK_VALUE(
      !tensors.empty(),
      "shufflekernels.shuffle_cat: argument 'tensors' expected at least one tensor, got an empty sequence");
  check_activation(op, "tensors[0]", tensors[0]);
  for (size_t i = 1; i < tensors.size(); ++i) {
    check_like(op, "tensors[" + std::to_string(i) + "]", tensors[i], "tensors[0]", tensors[0], tensors[0].sizes());
  }
}

inline void check_dwconv3x3(const at::Tensor& x, const at::Tensor& weight, const c10::optional<at::Tensor>& bias,
                            int64_t stride) {
  const char* op = "dwconv3x3";
  check_activation(op, "x", x);
  TORCH_CHECK_VALUE(stride == 1 || stride == 2, "shufflekernels.dwconv3x3: argument 'stride' expected 1 or 2, got ",
                    stride);
  check_spatial(op, x);
  check_dw_params(op, "weight", "bias", x, weight, bias, x.size(1));
}

inline void check_pointwise(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias) {
  const char* op = "pointwise";
  check_activation(op, "x", x);
  check_rank(op, "weight", weight, 4);
  check_pw_params(op, "weight", "bias", x, weight, bias, weight.size(0), x.size(1));
  // torch's conv2d returns [N, 0, H, W] for zero input channels, not its bias: no answer to match.
  TORCH_CHECK_VALUE(x.size(1) > 0, "shufflekernels.pointwise: argument 'x' expected at least one channel, got 0");
}

inline void check_stem(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias) {
  const char* op = "stem";
  check_activation(op, "x", x);
  check_spatial(op, x);
  check_rank(op, "weight", weight, 4);
  check_like(op, "weight", weight, "x", x, {weight.size(0), x.size(1), 3, 3});
  check_like(op, "bias", bias, "x", x, {weight.size(0)});
}

// Returns the branch channel count.
inline int64_t check_split_unit(const at::Tensor& x, const at::Tensor& pw1_w, const at::Tensor& pw1_b,
                                const at::Tensor& dw_w, const at::Tensor& dw_b, const at::Tensor& pw2_w,
                                const at::Tensor& pw2_b) {
  const char* op = "split_unit";
  check_activation(op, "x", x);
  TORCH_CHECK_VALUE(x.size(1) % 2 == 0, "shufflekernels.split_unit: argument 'x' expected an even channel count, got ",
                    x.size(1));
  check_spatial(op, x);
  const int64_t cb = x.size(1) / 2;
  check_pw_params(op, "pw1_weight", "pw1_bias", x, pw1_w, pw1_b, cb, cb);
  check_dw_params(op, "dw_weight", "dw_bias", x, dw_w, dw_b, cb);
  check_pw_params(op, "pw2_weight", "pw2_bias", x, pw2_w, pw2_b, cb, cb);
  return cb;
}

// Returns the branch channel count (pw1_weight's output channels).
inline int64_t check_down_unit(const at::Tensor& x, const at::Tensor& dw1_w, const at::Tensor& dw1_b,
                               const at::Tensor& pw3_w, const at::Tensor& pw3_b, const at::Tensor& pw1_w,
                               const at::Tensor& pw1_b, const at::Tensor& dw2_w, const at::Tensor& dw2_b,
                               const at::Tensor& pw2_w, const at::Tensor& pw2_b) {
  const char* op = "down_unit";
  check_activation(op, "x", x);
  check_spatial(op, x);
  check_rank(op, "pw1_weight", pw1_w, 4);
  const int64_t c_in = x.size(1), cb = pw1_w.size(0);
  check_dw_params(op, "dw1_weight", "dw1_bias", x, dw1_w, dw1_b, c_in);
  check_pw_params(op, "pw3_weight", "pw3_bias", x, pw3_w, pw3_b, cb, c_in);
  check_pw_params(op, "pw1_weight", "pw1_bias", x, pw1_w, pw1_b, cb, c_in);
  check_dw_params(op, "dw2_weight", "dw2_bias", x, dw2_w, dw2_b, cb);
  check_pw_params(op, "pw2_weight", "pw2_bias", x, pw2_w, pw2_b, cb, cb);
  return cb;
}

// The whole network: each parameter's shape follows from those before it (network_params.h: the list's
// order). Each weight's rank is checked before its output channels set the shapes after it.
inline void check_shufflenet(const at::Tensor& x, at::TensorList params, at::IntArrayRef stage_repeats) {
  const char* op = "shufflenet";
  check_activation(op, "x", x);
  check_spatial(op, x);
  bool positive = !stage_repeats.empty();
  for (int64_t r : stage_repeats) positive = positive && r >= 1;
  TORCH_CHECK_VALUE(positive, "shufflekernels.shufflenet: argument 'stage_repeats' expected at least one stage, ",
                    "each of at least one unit, got ", stage_repeats);
  const int64_t count = network_param_count(stage_repeats);
  TORCH_CHECK_VALUE(static_cast<int64_t>(params.size()) == count,
                    "shufflekernels.shufflenet: argument 'params' expected ", count, " tensors for stage_repeats ",
                    stage_repeats, ", got ", params.size());
  auto expect = [&](const at::Tensor& p, at::IntArrayRef shape) {
    check_like(op, param_name(params, p), p, "x", x, shape);
  };
  auto width = [&](const at::Tensor& p) {  // output channels of a weight, which set the shapes after it
    check_rank(op, param_name(params, p), p, 4);
    return p.size(0);
  };
  using Shapes = std::initializer_list<std::pair<const at::Tensor*, std::vector<int64_t>>>;
  const NetworkParams net = parse_network_params(params, stage_repeats);
  int64_t c = width(net.stem.weight), b = 0;  // the channels between units; a unit's branch width
  expect(net.stem.weight, {c, x.size(1), 3, 3});
  expect(net.stem.bias, {c});
  for (const UnitParams& unit : net.units) {
    if (unit.kind() == UnitKind::Down) {
      const DownUnitParams& d = unit.down();
      b = width(d.pw3_w);
      for (const auto& [p, shape] : Shapes{{&d.dw1_w, {c, 1, 3, 3}},
                                           {&d.dw1_b, {c}},
                                           {&d.pw3_w, {b, c, 1, 1}},
                                           {&d.pw3_b, {b}},
                                           {&d.pw1_w, {b, c, 1, 1}},
                                           {&d.pw1_b, {b}},
                                           {&d.dw2_w, {b, 1, 3, 3}},
                                           {&d.dw2_b, {b}},
                                           {&d.pw2_w, {b, b, 1, 1}},
                                           {&d.pw2_b, {b}}}) {
        expect(*p, shape);
      }
      c = 2 * b;
    } else {
      const SplitUnitParams& s = unit.split();
      for (const auto& [p, shape] : Shapes{{&s.pw1_w, {b, b, 1, 1}},
                                           {&s.pw1_b, {b}},
                                           {&s.dw_w, {b, 1, 3, 3}},
                                           {&s.dw_b, {b}},
                                           {&s.pw2_w, {b, b, 1, 1}},
                                           {&s.pw2_b, {b}}}) {
        expect(*p, shape);
      }
    }
  }
  const HeadParams& head = net.head;
  const int64_t c5 = width(head.conv5_w);
  expect(head.conv5_w, {c5, c, 1, 1});
  expect(head.conv5_b, {c5});
  const int64_t classes = width(head.fc_w);
  expect(head.fc_w, {classes, c5, 1, 1});
  expect(head.fc_b, {classes});
}

// ---------------------------------------------------------------------------------------------------
// Output sizes (shufflekernels/contract.py has the same).
// ---------------------------------------------------------------------------------------------------

// The stem: conv 3x3/2 then max-pool 3x3/2, both with padding 1 (the kernels keep the conv's size for
// their scratch rows).
inline int64_t stem_conv_out_size(int64_t in_size) { return dwconv3x3_out_size(in_size, 2); }
inline int64_t stem_out_size(int64_t in_size) { return dwconv3x3_out_size(stem_conv_out_size(in_size), 2); }

}  // namespace shufflekernels
