// The CUDA backend's ops (ops.h) and their kernel bodies (bodies.cuh) run on host threads,
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
#include <torch/library.h>

#include <mutex>
#include <string>

#include "../schema.h"
#include "host_exec.h"
#include "registration.h"

namespace shufflekernels::gpu {
namespace {

std::string launch_log() {
  const std::lock_guard<std::mutex> lock(emulation::g_log_mutex);
  std::string log;
  log.swap(emulation::g_launch_log);
  return log;
}

std::string traffic_log() {
  const std::lock_guard<std::mutex> lock(emulation::g_log_mutex);
  std::string log;
  log.swap(emulation::g_traffic_log);
  return log;
}

void force_wide_index(bool on) { emulation::g_force_wide_index = on; }
void dry_run(bool on) { emulation::g_dry_run = on; }

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
