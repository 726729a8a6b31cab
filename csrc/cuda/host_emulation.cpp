// The CUDA backend's ops (ops_impl.h) and their kernel bodies (bodies.cuh) run on host threads,
// registered as the CPU kernels of a second op library, shufflekernels_cuda_emulated, with the same
// schemas as shufflekernels. Each body runs over exactly the items a GPU launch would give it, so on a
// machine without a GPU the tests prove the CUDA backend's index math, vector-width and index-type
// planning, alignment (checked on every vector access here) and epilogues against the reference, and
// the sanitizer build checks its bounds. What it cannot prove is the GPU's side: launch
// configuration, streams, and the hardware itself.
//
// Compiled by the host compiler in every build, CUDA or not. Two test hooks come with it:
// launch_log() lists the launches since the last call (body, layout, vector width, index bits), and
// force_wide_index(on) makes every launch plan as if its tensors had 2^31 elements or more.
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <mutex>
#include <string>

#include "../schema.h"
#include "ops_impl.h"

namespace shufflekernels::gpu {
namespace {

// Per thread: the op plans on the calling thread, so a test's setting reaches only its own calls.
thread_local bool g_force_wide_index = false;
std::mutex g_log_mutex;
std::string g_launch_log;

class HostExec {
 public:
  static constexpr const char* kLibrary = "shufflekernels_cuda_emulated";
  explicit HostExec(const c10::Device&) {}

  template <class Body, typename index_t>
  void run(const Body& body, index_t items) const {
    {
      const std::lock_guard<std::mutex> lock(g_log_mutex);
      g_launch_log += std::string(Body::kName) + (Body::kChannelsLast ? " nhwc" : " nchw") + " v" +
                      std::to_string(Body::kWidth) + " i" + std::to_string(8 * sizeof(index_t)) + "\n";
    }
    at::parallel_for(0, static_cast<int64_t>(items), 1024, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) body(static_cast<index_t>(i));
    });
  }

  bool index32(int64_t max_numel) const { return !g_force_wide_index && fits_int32(max_numel); }
};

std::string launch_log() {
  const std::lock_guard<std::mutex> lock(g_log_mutex);
  std::string log;
  log.swap(g_launch_log);
  return log;
}

void force_wide_index(bool on) { g_force_wide_index = on; }

}  // namespace

TORCH_LIBRARY(shufflekernels_cuda_emulated, m) {
  define_op_schemas(m);
  // Test hooks (see the top of this file).
  m.def("launch_log() -> str", &launch_log);
  m.def("force_wide_index(bool on) -> ()", &force_wide_index);
}

TORCH_LIBRARY_IMPL(shufflekernels_cuda_emulated, CPU, m) { register_ops<HostExec>(m); }

}  // namespace shufflekernels::gpu
