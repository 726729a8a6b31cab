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
#include "packed_weights.h"

#include <torch/library.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "engine.h"

namespace shufflekernels::cpu {
namespace {

using at::Tensor;

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
      for (int64_t v : {k.offset, k.c_out, k.c_in, k.stride_out, k.stride_in})
        h = h * 1000003u ^ std::hash<int64_t>()(v);
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
    const int64_t c_out = w.size(0), c_in = w.size(1), P = kPanelPad, panels = (c_out + P - 1) / P;
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

}  // namespace

std::shared_ptr<const std::vector<float>> find_packed(const Tensor& weight) { return packed_weights().find(weight); }

// Not part of the op contract (its schema: define_hint_schemas in csrc/schema.h). Registered as
// CompositeImplicitAutograd, for every dispatch key at once: a model calls it wherever its weights
// live (tensors on other devices are ignored), and an empty list, which has no device to dispatch on,
// must work too.
TORCH_LIBRARY_IMPL(shufflekernels, CompositeImplicitAutograd, m) { m.impl("prepack", &prepack); }

}  // namespace shufflekernels::cpu
