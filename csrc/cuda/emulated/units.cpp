// The units (unit_ops.h) on host threads (host_exec.h): the family's own translation unit, where its functions
// that other translation units call are instantiated (ops.h).
#include "../host_exec.h"
#include "../unit_ops.h"

namespace shufflekernels::gpu {

template void register_unit_ops<HostExec>(torch::Library&);

}  // namespace shufflekernels::gpu
