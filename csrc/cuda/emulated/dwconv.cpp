// The depthwise conv (dwconv_ops.h) on host threads (host_exec.h): the family's own translation unit, where its
// functions that other translation units call are instantiated (ops.h).
#include "../dwconv_ops.h"
#include "../host_exec.h"

namespace shufflekernels::gpu {

template void register_dwconv_ops<HostExec>(torch::Library&);
template Tensor run_dwconv3x3<HostExec>(HostExec&, const Tensor&, Layout, const Tensor&, const c10::optional<Tensor>&,
                                        int64_t, bool, const c10::optional<Tensor>&, bool);

}  // namespace shufflekernels::gpu
