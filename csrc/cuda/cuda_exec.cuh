// The GPU executor of the CUDA backend's ops (ops.h): each body (bodies.cuh) runs as a grid-stride kernel
// of 256-thread blocks on the current stream of the input's device, under a device guard, and every
// launch is checked. Compiled by nvcc only (gpu/*.cu, kernels_cuda.cu).
#pragma once

#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include <algorithm>
#include <cstdint>

#include "launch_plan.h"

namespace shufflekernels::gpu {

constexpr int kThreads = 256;

// The loop counter is 64-bit whatever index_t is: with a grid covering every item, i + stride would
// overflow a 32-bit counter for launches near 2^31 items. No __launch_bounds__: with it ptxas aims at
// full occupancy (32 registers) and spills the NCHW stride-2 depthwise bodies to the stack.
template <class Body, typename index_t>
__global__ void run_body(const Body body, index_t items) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < items; i += stride) {
    body(static_cast<index_t>(i));
  }
}

class CudaExec {
 public:
  static constexpr const char* kLibrary = "shufflekernels";
  explicit CudaExec(const c10::Device& device) : guard_(device), stream_(c10::cuda::getCurrentCUDAStream()) {}

  template <class Body, typename index_t>
  void run(const Body& body, index_t items) const {
    if (items == 0) return;  // a grid of zero blocks is a launch error
    // In 64 bits: items + kThreads - 1 can pass 2^31 for a 32-bit launch.
    const int64_t wanted = (static_cast<int64_t>(items) + kThreads - 1) / kThreads;
    const auto blocks = static_cast<unsigned int>(std::min<int64_t>(wanted, 1 << 30));
    run_body<Body, index_t><<<blocks, kThreads, 0, stream_>>>(body, items);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }

  bool index32(int64_t max_numel) const { return fits_int32(max_numel); }
  // Library calls are always made here; only the emulation counts them (host_emulation.cpp).
  bool library(const char*, const Traffic&) const { return true; }
  // Where the network's layers start: for the emulation's ledger only.
  void begin_layer(int) const {}

  bool capturing() const {
    cudaStreamCaptureStatus status = cudaStreamCaptureStatusNone;
    C10_CUDA_CHECK(cudaStreamIsCapturing(stream_, &status));
    return status != cudaStreamCaptureStatusNone;
  }
  void synchronize() const { C10_CUDA_CHECK(cudaStreamSynchronize(stream_)); }

 private:
  c10::cuda::CUDAGuard guard_;
  c10::cuda::CUDAStream stream_;
};

}  // namespace shufflekernels::gpu
