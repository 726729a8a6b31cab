// The host-thread executor of the CUDA backend's ops (ops.h): each body (bodies.cuh) runs over exactly
// the items a GPU launch would give it, on ATen's threads, its vector accesses checked for alignment
// (launch_plan.h). What it runs, and what it logs for the tests and the ledger, is described at the top
// of host_emulation.cpp, which registers its ops (emulated/<family>.cpp compile each family for it).
#pragma once

#include <ATen/Parallel.h>
#include <c10/core/Device.h>

#include <cstdint>
#include <mutex>
#include <string>

#include "launch_plan.h"

namespace shufflekernels::gpu {

// The emulation's switches and logs: shared by every translation unit that runs bodies on host threads,
// set and read by host_emulation.cpp's test hooks.
namespace emulation {

// Per thread: the op plans on the calling thread, so a test's setting reaches only its own calls.
inline thread_local bool g_force_wide_index = false;
inline thread_local bool g_dry_run = false;
inline std::mutex g_log_mutex;
inline std::string g_launch_log;
inline std::string g_traffic_log;

inline void log_traffic(const char* kind, const char* name, const Traffic& t) {
  g_traffic_log +=
      std::string(kind) + " " + name + " " + std::to_string(t.read) + " " + std::to_string(t.written) + "\n";
}

}  // namespace emulation

class HostExec {
 public:
  static constexpr const char* kLibrary = "shufflekernels_cuda_emulated";
  explicit HostExec(const c10::Device&) {}

  template <class Body, typename index_t>
  void run(const Body& body, index_t items) const {
    {
      const std::lock_guard<std::mutex> lock(emulation::g_log_mutex);
      emulation::g_launch_log += std::string(Body::kName) + (Body::kChannelsLast ? " nhwc" : " nchw") + " v" +
                                 std::to_string(Body::kWidth) + " i" + std::to_string(8 * sizeof(index_t)) + "\n";
      emulation::log_traffic("body", Body::kName, body.traffic(static_cast<int64_t>(items)));
    }
    if (emulation::g_dry_run) return;
    at::parallel_for(0, static_cast<int64_t>(items), 1024, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) body(static_cast<index_t>(i));
    });
  }

  bool index32(int64_t max_numel) const { return !emulation::g_force_wide_index && fits_int32(max_numel); }

  // A library call about to be made (library_calls.h, run_library): logged; made unless in a dry run.
  bool library(const char* name, const Traffic& traffic) const {
    const std::lock_guard<std::mutex> lock(emulation::g_log_mutex);
    emulation::log_traffic("library", name, traffic);
    return !emulation::g_dry_run;
  }

  // Host threads have finished their work when run() returns, and capture no graph.
  bool capturing() const { return false; }
  void synchronize() const {}

  // The network (network_ops.h, shufflenet_impl) starts its layer `index` (0: the stem, then each unit,
  // then the head): a "layer <index>" line in the traffic log, so the ledger splits one call by layer.
  void begin_layer(int index) const {
    const std::lock_guard<std::mutex> lock(emulation::g_log_mutex);
    emulation::g_traffic_log += "layer " + std::to_string(index) + "\n";
  }
};

}  // namespace shufflekernels::gpu
