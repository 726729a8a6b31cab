// The CUDA backend's ops (ops.h), their bodies launched on the GPU (cuda_exec.cuh): registered as the
// CUDA kernels of shufflekernels. Each op family's code is compiled in its own translation unit
// (gpu/<family>.cu).
#include <torch/library.h>

#include "cuda_exec.cuh"
#include "registration.h"

namespace shufflekernels::gpu {

TORCH_LIBRARY_IMPL(shufflekernels, CUDA, m) { register_ops<CudaExec>(m); }

}  // namespace shufflekernels::gpu
