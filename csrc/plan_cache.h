// Plans made once per set of weights and reused while those weights stay unchanged: the CPU's network
// plan (csrc/cpu/network.cpp: packed weights and an activation arena) and the CUDA network's unit GEMM
// weights (csrc/cuda/network_ops.h, UnitGemms).
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/core/StorageImpl.h>

#include <algorithm>
#include <cstdint>
#include <memory>
#include <mutex>
#include <vector>

namespace shufflekernels {

// The weights a plan was made from, as they were then: each one's storage (held weakly), data pointer
// and version counter. A plan is stale once any of them changed, so in-place updates through torch
// (load_state_dict, in-place ops) are seen; writes that bypass the version counter (through .data,
// numpy, or to inference tensors in place) are not (docs/design.md, "The whole network").
class WeightSources {
 public:
  explicit WeightSources(at::TensorList weights) {
    for (const at::Tensor& t : weights) {
      sources_.push_back({t.storage().getWeakStorageImpl(), t.const_data_ptr(), version_of(t)});
    }
  }

  // Whether `weights` are still these weights, unchanged.
  bool matches(at::TensorList weights) const {
    if (weights.size() != sources_.size()) return false;
    for (size_t i = 0; i < weights.size(); ++i) {
      const Source& s = sources_[i];
      if (s.storage.expired() || s.data != weights[i].const_data_ptr() || s.version != version_of(weights[i]))
        return false;
    }
    return true;
  }

  bool alive() const {
    return std::none_of(sources_.begin(), sources_.end(), [](const Source& s) { return s.storage.expired(); });
  }

  const void* key() const { return sources_.empty() ? nullptr : sources_[0].data; }

 private:
  struct Source {
    c10::weak_intrusive_ptr<c10::StorageImpl> storage;
    const void* data;
    uint32_t version;
  };
  // Inference tensors have no version counter; the op contract refuses nothing for them, so a plan over
  // them is checked by data pointer only (as the layer-by-layer kernels read them fresh each call).
  static uint32_t version_of(const at::Tensor& t) {
    return t.is_inference() ? 0 : t.unsafeGetTensorImpl()->version_counter().current_version();
  }

  std::vector<Source> sources_;
};

// The plans of the models in use: few (a model per process, usually), so a short list searched by the
// first weight's address; dead ones are dropped when a new plan is made. Keep one in a function-local
// static made with `new` and never destroyed: ops may run during exit.
template <class Plan>
class PlanCache {
 public:
  // The plan for `weights`, made by make() (a std::shared_ptr<const Plan>) if there is none up to date.
  template <class Make>
  std::shared_ptr<const Plan> get(at::TensorList weights, Make&& make) {
    const std::lock_guard<std::mutex> lock(mutex_);
    const void* key = weights.empty() ? nullptr : weights.front().const_data_ptr();
    for (const Entry& e : entries_) {
      if (e.sources.key() == key && e.sources.matches(weights)) return e.plan;
    }
    entries_.erase(std::remove_if(entries_.begin(), entries_.end(),
                                  [&](const Entry& e) { return !e.sources.alive() || e.sources.key() == key; }),
                   entries_.end());
    entries_.push_back(Entry{WeightSources(weights), make()});
    return entries_.back().plan;
  }

 private:
  struct Entry {
    WeightSources sources;
    std::shared_ptr<const Plan> plan;
  };
  std::mutex mutex_;
  std::vector<Entry> entries_;
};

}  // namespace shufflekernels
