// The `shufflenet` op's flat parameter list (docs/design.md, "The whole network"; the order of
// reference.shufflenet), described once: every reader of the list (its check, the CPU plan, the CUDA
// network, the composite of layer ops) parses it here into named views instead of counting offsets.
//
// The list, for stage_repeats [r_0, r_1, ...]: the stem [w, b]; per stage a down unit [dw1_w, dw1_b,
// pw3_w, pw3_b, pw1_w, pw1_b, dw2_w, dw2_b, pw2_w, pw2_b] then r_s - 1 split units [pw1_w, pw1_b, dw_w,
// dw_b, pw2_w, pw2_b]; the head [conv5_w, conv5_b, fc_w, fc_b].
//
// Parsing checks nothing a caller could get wrong: the op's contract (contract.h, check_shufflenet)
// checks the list, with the messages the Python contract shares, before anything parses it.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <variant>
#include <vector>

namespace shufflekernels {

// The views refer to the list's own elements (the list must outlive them), so a view's tensor lies at
// `&tensor - params.data()` in it (param_index; param_name for messages).
struct StemParams {
  static constexpr size_t kCount = 2;
  const at::Tensor &weight, &bias;
};

// The stride-2 unit that opens each stage: branch 1 (dw1, pw3) over the input, branch 2 (pw1, dw2, pw2).
struct DownUnitParams {
  static constexpr size_t kCount = 10;
  const at::Tensor &dw1_w, &dw1_b, &pw3_w, &pw3_b, &pw1_w, &pw1_b, &dw2_w, &dw2_b, &pw2_w, &pw2_b;
};

// A stride-1 unit: branch 2 (pw1, dw, pw2) over the input's second half; the first half passes as is.
struct SplitUnitParams {
  static constexpr size_t kCount = 6;
  const at::Tensor &pw1_w, &pw1_b, &dw_w, &dw_b, &pw2_w, &pw2_b;
};

// conv5 (1x1 + bias + ReLU) and the classifier, a 1x1 conv weight [classes, C5, 1, 1] over the pooled
// features.
struct HeadParams {
  static constexpr size_t kCount = 4;
  const at::Tensor &conv5_w, &conv5_b, &fc_w, &fc_b;
};

enum class UnitKind { Down, Split };

// One unit of the network, in its order.
class UnitParams {
 public:
  UnitParams(int64_t stage, DownUnitParams down) : stage_(stage), params_(down) {}
  UnitParams(int64_t stage, SplitUnitParams split) : stage_(stage), params_(split) {}

  UnitKind kind() const { return std::holds_alternative<DownUnitParams>(params_) ? UnitKind::Down : UnitKind::Split; }
  int64_t stage() const { return stage_; }  // from 0; its first unit is its down unit
  const DownUnitParams& down() const { return std::get<DownUnitParams>(params_); }
  const SplitUnitParams& split() const { return std::get<SplitUnitParams>(params_); }

 private:
  int64_t stage_;
  std::variant<DownUnitParams, SplitUnitParams> params_;
};

struct NetworkParams {
  StemParams stem;
  std::vector<UnitParams> units;
  HeadParams head;
};

// The list's length for these stage_repeats (check_shufflenet compares it, and says so, before parsing).
inline int64_t network_param_count(at::IntArrayRef stage_repeats) {
  int64_t count = StemParams::kCount + HeadParams::kCount;
  for (int64_t repeats : stage_repeats) count += DownUnitParams::kCount + SplitUnitParams::kCount * (repeats - 1);
  return count;
}

inline size_t param_index(at::TensorList params, const at::Tensor& param) {
  return static_cast<size_t>(&param - params.data());
}

// How the op's messages name a tensor of the list (as the Python contract does).
inline std::string param_name(at::TensorList params, const at::Tensor& param) {
  return "params[" + std::to_string(param_index(params, param)) + "]";
}

// The list's views. Its length must be network_param_count(stage_repeats), every repeat at least 1:
// check_shufflenet's rules, which run first (a mismatch here is an internal error).
inline NetworkParams parse_network_params(at::TensorList params, at::IntArrayRef stage_repeats) {
  TORCH_INTERNAL_ASSERT(static_cast<int64_t>(params.size()) == network_param_count(stage_repeats),
                        "shufflekernels: the network's parameters were parsed before they were checked");
  const at::Tensor* p = params.data();
  const StemParams stem{p[0], p[1]};
  p += StemParams::kCount;
  std::vector<UnitParams> units;
  for (int64_t stage = 0; stage < static_cast<int64_t>(stage_repeats.size()); ++stage) {
    units.emplace_back(stage, DownUnitParams{p[0], p[1], p[2], p[3], p[4], p[5], p[6], p[7], p[8], p[9]});
    p += DownUnitParams::kCount;
    for (int64_t u = 1; u < stage_repeats[stage]; ++u) {
      units.emplace_back(stage, SplitUnitParams{p[0], p[1], p[2], p[3], p[4], p[5]});
      p += SplitUnitParams::kCount;
    }
  }
  return {stem, std::move(units), HeadParams{p[0], p[1], p[2], p[3]}};
}

}  // namespace shufflekernels
