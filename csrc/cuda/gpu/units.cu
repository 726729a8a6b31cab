// The units (unit_ops.h) on the GPU (cuda_exec.cuh): the family's own translation unit, where its functions
// that other translation units call are instantiated (ops.h).
#include "../cuda_exec.cuh"
#include "../unit_ops.h"

namespace shufflekernels::gpu {

template void register_unit_ops<CudaExec>(torch::Library&);

}  // namespace shufflekernels::gpu
