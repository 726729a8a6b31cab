// The `shufflenet` op (the whole network, docs/design.md "The whole network") as its layers' ops, called
// through the dispatcher in one namespace: what the CUDA backend, the emulated CUDA library and the CPU
// dtypes that the CPU plan does not serve run. The layer ops check their own inputs; the network's
// check (contract.h) has run before, so they cannot fail on shapes.
#pragma once

#include <ATen/core/Tensor.h>
#include <ATen/core/dispatch/Dispatcher.h>

#include <string>

namespace shufflekernels {

inline at::Tensor shufflenet_composite(const std::string& ns, const at::Tensor& x, at::TensorList params,
                                       at::IntArrayRef stage_repeats) {
  using at::Tensor;
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
  Tensor out = stem.call(x.contiguous(at::MemoryFormat::ChannelsLast), params[0], params[1]);
  size_t i = 2;
  for (int64_t repeats : stage_repeats) {
    out = down.call(out, params[i], params[i + 1], params[i + 2], params[i + 3], params[i + 4], params[i + 5],
                    params[i + 6], params[i + 7], params[i + 8], params[i + 9]);
    i += 10;
    for (int64_t u = 1; u < repeats; ++u) {
      out = split.call(out, params[i], params[i + 1], params[i + 2], params[i + 3], params[i + 4], params[i + 5]);
      i += 6;
    }
  }
  out = pointwise.call(out, params[i], params[i + 1], true);
  const Tensor logits = pointwise.call(out.mean({2, 3}, /*keepdim=*/true), params[i + 2], params[i + 3], false);
  return logits.flatten(1);
}

}  // namespace shufflekernels
