// Pointwise and the stem (conv_ops.h) on host threads (host_exec.h): the family's own translation unit, where its
// functions that other translation units call are instantiated (ops.h).
#include "../conv_ops.h"
#include "../host_exec.h"

namespace shufflekernels::gpu {

template void register_conv_ops<HostExec>(torch::Library&);
template Tensor run_stem<HostExec>(HostExec&, const Tensor&, Layout, Layout, const Tensor&, const Tensor&);

}  // namespace shufflekernels::gpu
