// The depthwise conv (dwconv_ops.h) on the GPU (cuda_exec.cuh): the family's own translation unit, where its functions
// that other translation units call are instantiated (ops.h).
#include "../cuda_exec.cuh"
#include "../dwconv_ops.h"

namespace shufflekernels::gpu {

template void register_dwconv_ops<CudaExec>(torch::Library&);
template Tensor run_dwconv3x3<CudaExec>(CudaExec&, const Tensor&, Layout, const Tensor&, const c10::optional<Tensor>&,
                                        int64_t, bool, const c10::optional<Tensor>&, bool);

}  // namespace shufflekernels::gpu
