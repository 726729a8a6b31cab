// The CUDA backend's ops (ops_impl.h) and their kernel bodies (bodies.cuh) run on host threads,
// registered as the CPU kernels of a second op library, shufflekernels_cuda_emulated, with the same
// schemas as shufflekernels. Each body runs over exactly the items a GPU launch would give it, so on a
// machine without a GPU the tests prove the CUDA backend's index math, vector-width and index-type
// planning, alignment (checked on every vector access here) and epilogues against the reference, and
// the sanitizer build checks its bounds. What it cannot prove is the GPU's side: launch
// configuration, streams, and the hardware itself.
//
// Compiled by the host compiler in every build, CUDA or not. Test hooks come with it:
// launch_log() lists the body launches since the last call (body, layout, vector width, index bits);
// traffic_log() lists every launch since its last call, library calls (cuBLAS through ATen) included,
// as "body|library <name> <bytes read> <bytes written>" (launch_plan.h, Traffic), and where the network's
// layers start, as "layer <index>", for the ledger;
// force_wide_index(on) makes every launch plan as if its tensors had 2^31 elements or more;
// dry_run(on) makes every launch count without computing (bodies are not run, library calls return
// uninitialised results of the right shape): the ledger counts a batch of 256 this way in seconds.
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
thread_local bool g_dry_run = false;
std::mutex g_log_mutex;
std::string g_launch_log;
std::string g_traffic_log;

void log_traffic(const char* kind, const char* name, const Traffic& t) {
  g_traffic_log +=
      std::string(kind) + " " + name + " " + std::to_string(t.read) + " " + std::to_string(t.written) + "\n";
}

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
      log_traffic("body", Body::kName, body.traffic(static_cast<int64_t>(items)));
    }
    if (g_dry_run) return;
    at::parallel_for(0, static_cast<int64_t>(items), 1024, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) body(static_cast<index_t>(i));
    });
  }

  bool index32(int64_t max_numel) const { return !g_force_wide_index && fits_int32(max_numel); }

  // A library call about to be made (ops_impl.h, run_library): logged; made unless in a dry run.
  bool library(const char* name, const Traffic& traffic) const {
    const std::lock_guard<std::mutex> lock(g_log_mutex);
    log_traffic("library", name, traffic);
    return !g_dry_run;
  }

  // Host threads have finished their work when run() returns, and capture no graph.
  bool capturing() const { return false; }
  void synchronize() const {}

  // The network (ops_impl.h, shufflenet_impl) starts its layer `index` (0: the stem, then each unit,
  // then the head): a "layer <index>" line in the traffic log, so the ledger splits one call by layer.
  void begin_layer(int index) const {
    const std::lock_guard<std::mutex> lock(g_log_mutex);
    g_traffic_log += "layer " + std::to_string(index) + "\n";
  }
};

std::string launch_log() {
  const std::lock_guard<std::mutex> lock(g_log_mutex);
  std::string log;
  log.swap(g_launch_log);
  return log;
}

std::string traffic_log() {
  const std::lock_guard<std::mutex> lock(g_log_mutex);
  std::string log;
  log.swap(g_traffic_log);
  return log;
}

void force_wide_index(bool on) { g_force_wide_index = on; }
void dry_run(bool on) { g_dry_run = on; }

}  // namespace

TORCH_LIBRARY(shufflekernels_cuda_emulated, m) {
  define_op_schemas(m);
  // Test hooks (see the top of this file).
  m.def("launch_log() -> str", &launch_log);
  m.def("traffic_log() -> str", &traffic_log);
  m.def("force_wide_index(bool on) -> ()", &force_wide_index);
  m.def("dry_run(bool on) -> ()", &dry_run);
}

TORCH_LIBRARY_IMPL(shufflekernels_cuda_emulated, CPU, m) { register_ops<HostExec>(m); }

}  // namespace shufflekernels::gpu
