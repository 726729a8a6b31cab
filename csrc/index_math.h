// Index math shared by the CPU and CUDA kernels (and so exercised by the CPU tests).
//
// Channel shuffle with g groups over C channels (C = g * cpg): the input is seen as
// [N, g, cpg, H, W] and the output as [N, cpg, g, H, W], so
//     out[n, j*g + i] = x[n, i*cpg + j].
// shuffle_cat of g tensors x_0..x_{g-1} of C channels each is the same map with x_i as group i:
//     out[n, j*g + i] = x_i[n, j].
// Depthwise 3x3 with padding 1 and stride s: out_size = (in_size + 2 - 3) / s + 1.
#pragma once

#include <cstdint>

#if defined(__CUDACC__)
#define SK_HOST_DEVICE __host__ __device__ __forceinline__
#else
#define SK_HOST_DEVICE inline
#endif

namespace shufflekernels {

// Output channel -> source (group, channel within group) of a shuffle with `groups` groups. Generic
// over the index type so that 32-bit GPU launches do 32-bit divisions.
template <typename I>
struct ShuffleSource {
  I group;
  I channel;
};

template <typename I>
SK_HOST_DEVICE ShuffleSource<I> shuffle_source(I out_channel, I groups) {
  return {out_channel % groups, out_channel / groups};
}

// Input channel -> output channel of the same shuffle (the inverse map of shuffle_source).
template <typename I>
SK_HOST_DEVICE I shuffle_destination(I group, I channel, I groups) {
  return channel * groups + group;
}

SK_HOST_DEVICE int64_t dwconv3x3_out_size(int64_t in_size, int64_t stride) {
  return (in_size + 2 * 1 - 3) / stride + 1;
}

}  // namespace shufflekernels
