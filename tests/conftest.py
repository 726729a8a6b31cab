"""Shared test helpers: which backends are built here, input layouts, the guard on global state.

Tests skip by what is *registered* (is a kernel for this device built and a device present?), never by
guessing the hardware at collection time, so a CPU-only machine collects and runs everything it can.
"""

from __future__ import annotations

import pytest
import torch

import shufflekernels as sk
from shufflekernels import _backend_selection, registry

import global_state

NATIVE_CPU = "cpu" in _backend_selection.NATIVE_KERNELS and bool(_backend_selection.NATIVE_KERNELS["cpu"])
CUDA_USABLE = bool(_backend_selection.NATIVE_KERNELS["cuda"]) and torch.cuda.is_available()

requires_native_cpu = pytest.mark.skipif(not NATIVE_CPU, reason="native CPU kernels are not built")
requires_cuda = pytest.mark.skipif(not CUDA_USABLE, reason="CUDA kernels not built or no CUDA device")


@pytest.fixture(autouse=True, scope="session")
def exact_float32_references():
    """Float32 parity is checked to 1e-4 or tighter, but on a GPU torch runs conv2d (the references, the
    CUDA stem) in TF32 by default, a 10-bit mantissa. The tests compare exact float32 on both sides."""
    saved = global_state.snapshot()
    global_state.set_tf32(matmul=False, conv=False)
    yield
    global_state.restore(saved)


@pytest.fixture(autouse=True)
def leaves_no_global_state():
    """Fails a test that leaves a torch flag, the thread count, an environment variable or a backend
    table changed (and puts it back, so that the next test starts from the session's state)."""
    before = global_state.snapshot()
    yield
    changed = global_state.differences(before, global_state.snapshot())
    if changed:
        global_state.restore(before)
        pytest.fail("the test left global state changed: " + "; ".join(changed), pytrace=False)


def photographs(size: int = 224) -> torch.Tensor:
    """Real photographs, resized and normalised as for ImageNet models: ``[4, 3, size, size]``, Grace
    Hopper (shipped with matplotlib; skips where matplotlib is not installed), then mirrored, then two
    crops of her (the face, the uniform), each resized from its own region."""
    cbook = pytest.importorskip("matplotlib.cbook")
    image = pytest.importorskip("matplotlib.image")
    with cbook.get_sample_data("grace_hopper.jpg") as f:
        pixels = torch.from_numpy(image.imread(f, format="jpg").copy()).permute(2, 0, 1).float()[None] / 255
    height, width = pixels.shape[2:]
    regions = [
        pixels,
        pixels.flip(3),
        pixels[:, :, : height // 2, width // 4 : 3 * width // 4],
        pixels[:, :, height // 2 :],
    ]
    resize = lambda t: torch.nn.functional.interpolate(t, size=(size, size), mode="bilinear", antialias=True)  # noqa: E731
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    return (torch.cat([resize(r) for r in regions]) - mean) / std


def calibrate_bn(model: torch.nn.Module, images: torch.Tensor) -> torch.nn.Module:
    """BatchNorm statistics measured on ``images`` (train-mode passes, one image at a time, averaged), as a
    trained network has them: per-channel means and variances far from 0 and 1, which activations of
    random weights on real images give and unit-variance statistics do not. Returns the model in eval."""
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None  # a cumulative average over the passes
    model.train()
    with torch.no_grad():
        for image in images:
            model(image[None])
    return model.eval()


def native_devices() -> list:
    """Devices whose native kernels are built and usable here, as pytest params."""
    return [
        pytest.param("cpu", marks=requires_native_cpu),
        pytest.param("cuda", marks=requires_cuda),
    ]


# The CUDA backend's kernels run on host threads over CPU tensors (csrc/cuda/host_emulation.cpp): the op
# tables prove the CUDA kernels' index math, vector planning and epilogues on machines without a GPU.
# "-i64" plans every launch as if its tensors were too large for 32-bit indices.
EMULATED_CUDA = "cuda-emulated"
EMULATED_CUDA_I64 = "cuda-emulated-i64"
# Built unless SK_HOST_EMULATION=0 (setup.py).
CUDA_EMULATION_BUILT = NATIVE_CPU and registry.defined_in(registry.EMULATED_NS, "split_unit")
requires_cuda_emulation = pytest.mark.skipif(not CUDA_EMULATION_BUILT, reason="the native library is not built")


def kernel_devices() -> list:
    """native_devices() plus the emulated CUDA kernels, as pytest params."""
    return native_devices() + [
        pytest.param(EMULATED_CUDA, marks=requires_cuda_emulation),
        pytest.param(EMULATED_CUDA_I64, marks=requires_cuda_emulation),
    ]


def tensor_device(device: str) -> str:
    """Where a kernel_devices() param's tensors live."""
    return "cpu" if device.startswith(EMULATED_CUDA) else device


def run_native(device: str, op: str, *args):
    """The native op for a kernel_devices() param, arguments in schema order: through shufflekernels.ops,
    or the emulated CUDA op."""
    if not device.startswith(EMULATED_CUDA):
        return sk.ops.call(op, *args, backend="native")
    emulated = torch.ops.shufflekernels_cuda_emulated
    emulated.force_wide_index(device == EMULATED_CUDA_I64)
    try:
        return getattr(emulated, op)(*args)
    finally:
        emulated.force_wide_index(False)


def make_layout(x: torch.Tensor, layout: str) -> torch.Tensor:
    """The same values in another memory layout.

    nchw: contiguous; nhwc: channels_last; strided: a view dense in neither (every other column of a
    tensor twice as wide, so the kernels must not trust the strides they were written for).
    """
    if layout == "nchw":
        return x.contiguous()
    if layout == "nhwc":
        return x.contiguous(memory_format=torch.channels_last)
    if layout == "strided":
        n, c, h, w = x.shape
        wide = torch.zeros(n, c, h, 2 * w, dtype=x.dtype, device=x.device)
        wide[..., ::2] = x
        view = wide[..., ::2]
        if view.numel() > 0 and w > 1:  # an empty or one-column view is dense whatever its strides
            assert not view.is_contiguous() and not view.is_contiguous(memory_format=torch.channels_last)
        return view
    raise ValueError(layout)


LAYOUTS = ["nchw", "nhwc", "strided"]


def assert_same_format(out: torch.Tensor, inp: torch.Tensor) -> None:
    """The output keeps a dense input's memory format."""
    if inp.is_contiguous():
        assert out.is_contiguous()
    elif inp.is_contiguous(memory_format=torch.channels_last):
        assert out.is_contiguous(memory_format=torch.channels_last)


def _release(version: str) -> tuple[int, int]:
    return tuple(int(part) for part in version.split(".")[:2])


def _skip_interpreter_that_cannot_run() -> None:
    """Triton before 3.7 runs ``range()`` over a kernel argument with ``int()`` of a one-element array,
    which numpy 2.4 removed: every kernel with a loop over a runtime bound fails under its interpreter.
    That pair is refused with the fix (CI's oldest environment installs numpy < 2.4, .ci/compat.sh)."""
    triton = pytest.importorskip("triton")
    numpy = pytest.importorskip("numpy")
    if _release(triton.__version__) < (3, 7) and _release(numpy.__version__) >= (2, 4):
        pytest.skip(
            f"the Triton {triton.__version__} interpreter cannot run with numpy {numpy.__version__}: "
            'pip install "numpy<2.4" (compiled Triton kernels, on a GPU, are not affected)'
        )


@pytest.fixture(scope="module")
def triton_backend():
    """Triton usable for a module: without a GPU, the interpreter (TRITON_INTERPRET=1) for that module's
    duration, with the cached Triton status dropped before and after so that other modules see this
    machine's real status. Set before the Triton library is first imported: triton.jit reads it when
    it decorates the kernels, once per process."""
    env = pytest.MonkeyPatch()
    if not torch.cuda.is_available():
        _skip_interpreter_that_cannot_run()
        env.setenv("TRITON_INTERPRET", "1")
    _backend_selection.triton_status.cache_clear()
    yield
    env.undo()
    _backend_selection.triton_status.cache_clear()
