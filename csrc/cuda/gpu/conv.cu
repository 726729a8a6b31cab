// Pointwise and the stem (conv_ops.h) on the GPU (cuda_exec.cuh): the family's own translation unit, where its
// functions that other translation units call are instantiated (ops.h).
#include "../conv_ops.h"
#include "../cuda_exec.cuh"

namespace shufflekernels::gpu {

template void register_conv_ops<CudaExec>(torch::Library&);
template Tensor run_stem<CudaExec>(CudaExec&, const Tensor&, Layout, Layout, const Tensor&, const Tensor&);

}  // namespace shufflekernels::gpu
