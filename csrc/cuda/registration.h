// Every op of one library on one dispatch key, run by the executor Exec: the CUDA key of shufflekernels
// (kernels_cuda.cu) and the CPU key of shufflekernels_cuda_emulated (host_emulation.cpp). The families
// register their own ops (ops.h); this list keeps the two libraries registering the same ones.
#pragma once

#include <torch/library.h>

#include "ops.h"

namespace shufflekernels::gpu {

template <class Exec>
void register_ops(torch::Library& m) {
  register_permute_ops<Exec>(m);
  register_dwconv_ops<Exec>(m);
  register_conv_ops<Exec>(m);
  register_unit_ops<Exec>(m);
  register_network_ops<Exec>(m);
}

}  // namespace shufflekernels::gpu
