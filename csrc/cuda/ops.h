// The host side of the CUDA backend's ops, written once for both executors (bodies.cuh says which):
// input checks (csrc/contract.h), the layout each kernel reads, launch planning (launch_plan.h), and
// the launches of the bodies. As csrc/cpu, it is a header per op family, each registering its own ops,
// and each compiled in a translation unit of its own per executor (gpu/<family>.cu for the GPU,
// emulated/<family>.cpp for host threads), so a build compiles the families in parallel:
//   permute_ops.h   the channel permutations
//   dwconv_ops.h    the depthwise conv
//   conv_ops.h      the dense convs, 1x1 and the stem (library_calls.h: the GEMMs through ATen, which
//                   any family calls)
//   unit_ops.h      the units
//   network_ops.h   the whole network's plan
// registration.h registers every family on one library and dispatch key.
//
// This header declares what crosses a family's translation unit: each family's registration, and the
// launches another family's code makes. Each is defined in its family's header and explicitly
// instantiated for both executors in the family's two translation units.
//
// Exec(device) holds what a launch needs (device guard, stream); exec.run(body, items) runs body(i) for
// every i < items; exec.index32(n) says whether 32-bit indices may be used for a launch whose largest
// tensor has n elements; exec.library(name, traffic) is told of each library call before it is made
// and says whether to make it (library_calls.h, run_library); exec.capturing() says whether its stream
// is capturing a CUDA graph, exec.synchronize() waits for the work queued on it; exec.begin_layer(i)
// marks where the network's layer i starts (for the emulation's ledger); Exec::kLibrary names the op
// library its kernels are registered in. The executors: CudaExec (cuda_exec.cuh) and HostExec
// (host_exec.h).
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/Optional.h>
#include <torch/library.h>

#include <cstdint>

#include "../layout.h"

namespace shufflekernels::gpu {

// dwconv_ops.h: the depthwise kernel, with its optional pre-activation relu?(x + in_bias) on read (the
// units' primitive).
template <class Exec>
at::Tensor run_dwconv3x3(Exec& exec, const at::Tensor& x, Layout layout, const at::Tensor& weight,
                         const c10::optional<at::Tensor>& bias, int64_t stride, bool relu,
                         const c10::optional<at::Tensor>& in_bias, bool in_relu);

// conv_ops.h: the stem kernel, its output in out_layout (the network's: channels_last from any input).
template <class Exec>
at::Tensor run_stem(Exec& exec, const at::Tensor& x, Layout layout, Layout out_layout, const at::Tensor& weight,
                    const at::Tensor& bias);

// Each family's ops on one library and key.
template <class Exec>
void register_permute_ops(torch::Library& m);
template <class Exec>
void register_dwconv_ops(torch::Library& m);
template <class Exec>
void register_conv_ops(torch::Library& m);
template <class Exec>
void register_unit_ops(torch::Library& m);
template <class Exec>
void register_network_ops(torch::Library& m);

}  // namespace shufflekernels::gpu
