// The `shufflenet` op (the whole network, docs/design.md "The whole network") as its layers' ops, called
// through the dispatcher in one namespace: what the CUDA backend, the emulated CUDA library and the CPU
// dtypes that the CPU plan does not serve run. The layer ops check their own inputs; the network's
// check (contract.h) has run before, so they cannot fail on shapes.
#pragma once

#include <ATen/core/Tensor.h>
#include <ATen/core/dispatch/Dispatcher.h>

#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>

#include <cstdint>
#include <functional>
#include <string>

#include "network_params.h"

namespace shufflekernels {

// Told of each ATen kernel the composite launches itself (the input's channels_last copy, the global
// mean) with the bytes it reads and writes; returns whether to run it (the CUDA emulation counts them
// for the ledger, and skips them in its dry run).
using LibraryCall = std::function<bool(const char* name, int64_t read, int64_t written)>;

inline at::Tensor shufflenet_composite(const std::string& ns, const at::Tensor& x, at::TensorList params,
                                       at::IntArrayRef stage_repeats, const LibraryCall& library = nullptr) {
  using at::Tensor;
  auto run = [&](const char* name, int64_t read, int64_t written) { return !library || library(name, read, written); };
  const int64_t es = x.element_size();
  auto op = [&](const char* name) {
    return c10::Dispatcher::singleton().findSchemaOrThrow((ns + "::" + name).c_str(), "");
  };
  const auto stem = op("stem").typed<Tensor(const Tensor&, const Tensor&, const Tensor&)>();
  const auto pointwise = op("pointwise").typed<Tensor(const Tensor&, const Tensor&, const Tensor&, bool)>();
  const auto split = op("split_unit")
                         .typed<Tensor(const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&,
                                       const Tensor&, const Tensor&)>();
  const auto down =
      op("down_unit")
          .typed<Tensor(const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&,
                        const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&)>();
  // The network runs channels_last inside, as FusedShuffleNetV2 does.
  Tensor in = x;
  if (!x.is_contiguous(at::MemoryFormat::ChannelsLast)) {
    in = run("copy", x.numel() * es, x.numel() * es) ? x.contiguous(at::MemoryFormat::ChannelsLast)
                                                     : at::empty_like(x, at::MemoryFormat::ChannelsLast);
  }
  const NetworkParams net = parse_network_params(params, stage_repeats);
  Tensor out = stem.call(in, net.stem.weight, net.stem.bias);
  for (const UnitParams& unit : net.units) {
    if (unit.kind() == UnitKind::Down) {
      const DownUnitParams& d = unit.down();
      out = down.call(out, d.dw1_w, d.dw1_b, d.pw3_w, d.pw3_b, d.pw1_w, d.pw1_b, d.dw2_w, d.dw2_b, d.pw2_w, d.pw2_b);
    } else {
      const SplitUnitParams& s = unit.split();
      out = split.call(out, s.pw1_w, s.pw1_b, s.dw_w, s.dw_b, s.pw2_w, s.pw2_b);
    }
  }
  out = pointwise.call(out, net.head.conv5_w, net.head.conv5_b, true);
  const int64_t N = out.size(0), C = out.size(1);
  const Tensor features = run("mean", out.numel() * es, N * C * es) ? out.mean({2, 3}, /*keepdim=*/true)
                                                                    : at::empty({N, C, 1, 1}, out.options());
  const Tensor logits = pointwise.call(features, net.head.fc_w, net.head.fc_b, false);
  return logits.flatten(1);
}

}  // namespace shufflekernels
