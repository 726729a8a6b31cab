// The whole network (network_ops.h) on the GPU (cuda_exec.cuh): the family's own translation unit, where its functions
// that other translation units call are instantiated (ops.h).
#include "../cuda_exec.cuh"
#include "../network_ops.h"

namespace shufflekernels::gpu {

template void register_network_ops<CudaExec>(torch::Library&);

}  // namespace shufflekernels::gpu
