"""Triton kernels for the shufflekernels ops (CUDA tensors; CPU tensors under TRITON_INTERPRET=1).

The kernels become the ops ``torch.ops.shufflekernels_triton.<name>``, with the native schemas, when
``shufflekernels.triton.library`` is imported: ops.py does that on the first call with
``backend="triton"``, which is also when triton.jit reads TRITON_INTERPRET. Importing this package
imports neither triton nor the kernels, so ``import shufflekernels`` stays cheap on any machine.

Modules: common.py (addressing model and helpers, the launchers' preamble), a module per op family
(permute.py, dwconv.py, units.py: the registry's ``triton`` entries name each op's launcher),
library.py (op registration), recording.py (launches recorded instead of run).
"""
