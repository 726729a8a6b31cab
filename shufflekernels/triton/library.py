"""The Triton kernels as dispatcher ops, ``torch.ops.shufflekernels_triton.*``, with the native schemas
(registry.py), so a call's arguments, names included, are the same on every backend.

Each op is defined from its registry schema and implemented for the CUDA key (compiled kernels) and
the CPU key (the interpreter, TRITON_INTERPRET=1); the fake kernels and the permutations' autograd
come from the registry like every namespace's. Not ``triton_op``: torch.compile traces into a
``triton_op``'s kernels with fake tensors, which fails for CPU tensors under the interpreter, while an
op with a fake kernel stays opaque and compiles on every device. Each implementation runs the
contract's check first, so a direct ``torch.ops`` call is checked as the wrapper's is.

Importing this module imports triton and decorates the kernels, so it is imported on first use only
and TRITON_INTERPRET must be set before then.
"""

from __future__ import annotations

import torch

from .. import registry
from .common import registered_launcher

LAUNCHERS = {name: registered_launcher(name) for name in registry.ops_with("triton")}


def _checked(name: str):
    spec, launch = registry.OPS[name], LAUNCHERS[name]

    def run(*args):
        args = spec.complete(args)
        spec.check(*args)
        return launch(*args)

    return run


_lib = torch.library.Library(registry.TRITON_NS, "DEF")
for _name in registry.ops_with("triton"):
    _lib.define(registry.OPS[_name].schema)
    for _key in ("CUDA", "CPU"):
        _lib.impl(_name, _checked(_name), _key)
registry.register_namespace(registry.TRITON_NS)
