// The whole network (network_ops.h) on host threads (host_exec.h): the family's own translation unit, where its
// functions that other translation units call are instantiated (ops.h).
#include "../host_exec.h"
#include "../network_ops.h"

namespace shufflekernels::gpu {

template void register_network_ops<HostExec>(torch::Library&);

}  // namespace shufflekernels::gpu
