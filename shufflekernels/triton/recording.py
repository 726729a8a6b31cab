"""The Triton path's launches recorded instead of run, for what must see every launch without a GPU:
the ledger (shufflekernels/ledger.py) counts their bytes, and .ci/check_triton_sm90.py compiles them.

``kernels_replaced(make)`` puts ``make(module, name, tuner)`` in place of every autotuned kernel of the
modules holding the registry's Triton launchers; ``kernel[grid](...)`` then calls what it returns, and
the launchers accept meta tensors. For the ledger, a launch's bytes are those of the tensors it is given,
each counted once (the same tensor passed twice, as the split unit's tail gets branch b's weights for the
identity branch it does not compute, is one read): the argument named ``out`` is written, every other
tensor read, whole (a channel slice is its own elements, not its parent's).
"""

from __future__ import annotations

import contextlib
import importlib

import triton

from .. import registry
from . import common

# The modules holding the Triton launchers the registry names ("module:function"): their kernels are
# the ones recorded, so a new kernel file is counted without a list of its own here.
KERNEL_MODULES = tuple(
    importlib.import_module(f"{__package__}.{module}")
    for module in sorted({spec.triton_module for spec in registry.OPS.values() if spec.triton})
)
launcher = common.registered_launcher


class _Recorder:
    def __init__(self, name: str, tuner, launches: list, layer: str, make) -> None:
        self.name, self.arg_names = name, tuner.arg_names
        self.launches, self.layer, self.make = launches, layer, make

    def __getitem__(self, grid):
        def launch(*args, **kwargs):
            read = written = 0
            seen: set[int] = set()
            for arg_name, value in zip(self.arg_names, args):
                if not hasattr(value, "data_ptr") or id(value) in seen:
                    continue
                seen.add(id(value))
                nbytes = value.numel() * value.element_size()
                if arg_name == "out":
                    written += nbytes
                else:
                    read += nbytes
            self.launches.append(self.make(self.layer, self.name, read, written))

        return launch


def autotuned_kernels():
    """(module, name, tuner) of every autotuned kernel of the Triton path."""
    for module in KERNEL_MODULES:
        for name, value in list(vars(module).items()):
            if isinstance(value, triton.runtime.autotuner.Autotuner):
                yield module, name, value


@contextlib.contextmanager
def kernels_replaced(make):
    """Inside: every autotuned kernel is ``make(module, name, tuner)``, and the launchers' device check
    (for the CPU-without-interpreter case, which cannot launch anything) is off."""
    saved = []
    for module, name, tuner in autotuned_kernels():
        saved.append((module, name, tuner))
        setattr(module, name, make(module, name, tuner))
    saved.append((common, "check_device", common.check_device))
    common.check_device = lambda op, t: None
    try:
        yield
    finally:
        for module, name, value in saved:
            setattr(module, name, value)


def recording(launches: list, layer: str, make):
    """Inside: every kernel of the Triton path appends ``make(layer, kernel, read, written)`` to
    launches instead of launching."""
    return kernels_replaced(lambda module, name, tuner: _Recorder(name, tuner, launches, layer, make))


def launch(op: str, x, params, options):
    """The op's Triton launcher on (x, *params), with the op's defaults for what options leaves out."""
    return launcher(op)(*registry.OPS[op].complete((x, *params), options))
