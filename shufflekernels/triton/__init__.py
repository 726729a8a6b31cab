"""Triton kernels for the shufflekernels ops (CUDA tensors; CPU tensors under TRITON_INTERPRET=1).

The kernels become the ops ``torch.ops.shufflekernels_triton.<name>``, with the native schemas, when
``shufflekernels.triton.library`` is imported: ops.py does that on the first call with
``backend="triton"``, which is also when triton.jit reads TRITON_INTERPRET. Importing this package
imports neither triton nor the kernels, so ``import shufflekernels`` stays cheap on any machine.

Modules: common.py (addressing model and helpers), permute.py (channel_shuffle, shuffle_cat),
dwconv.py (dwconv3x3), units.py (pointwise, split_unit, down_unit), library.py (op registration).
"""
