"""FusedShuffleNetV2 against the reference model (and torchvision's, where installed)."""

from __future__ import annotations

import threading

import pytest
import torch

import shufflekernels as sk
from shufflekernels import reference as ref
from shufflekernels import tolerances

from conftest import photographs, requires_native_cpu


def randomize_bn(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Non-trivial BatchNorm statistics, so folding is really tested (fresh BN is the identity)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                n = m.num_features
                m.running_mean.copy_(torch.rand(n, generator=g) * 0.4 - 0.2)
                m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
                m.weight.copy_(torch.rand(n, generator=g) + 0.5)
                m.bias.copy_(torch.rand(n, generator=g) * 0.4 - 0.2)
    return model.eval()


def reference_model(width: float, num_classes: int = 1000, seed: int = 0) -> ref.ShuffleNetV2:
    torch.manual_seed(seed)
    repeats, channels = ref.WIDTHS[width]
    return randomize_bn(ref.ShuffleNetV2(repeats, channels, num_classes=num_classes), seed)


def assert_logits_match(got: torch.Tensor, expected: torch.Tensor) -> None:
    """Float32 logits: within the model tolerance, and the same top-1 class."""
    err = tolerances.relative_error(got, expected)
    assert err <= tolerances.MODEL[torch.float32], f"relative error {err:.2e}"
    assert torch.equal(got.argmax(1), expected.argmax(1))


# (width, batch, image size, layout): every width; batch 1 and larger; both layouts. Images are
# small where the width is large, to keep the reference's eager time down on a 2-core machine.
MODEL_CASES = [
    (0.5, 1, 224, "nchw"),  # the real input size
    (0.5, 3, 96, "nhwc"),
    (1.0, 1, 224, "nhwc"),
    (1.0, 2, 64, "nchw"),
    (1.5, 2, 64, "nhwc"),
    (2.0, 1, 64, "nchw"),
    (1.0, 1, 33, "nchw"),  # odd size: every stride-2 stage sees an odd H and W
    (0.5, 2, 16, "nhwc"),  # stage4 runs at 1x1
]


@requires_native_cpu
@pytest.mark.parametrize("case", MODEL_CASES, ids=str)
def test_model_parity(case):
    width, batch, size, layout = case
    model = reference_model(width)
    fused = sk.FusedShuffleNetV2.from_reference(model, backend="native")
    x = torch.randn(batch, 3, size, size)
    if layout == "nhwc":
        x = x.contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        assert_logits_match(fused(x), model(x))


def test_model_reference_backend():
    model = reference_model(0.5)
    fused = sk.FusedShuffleNetV2.from_reference(model, backend="reference")
    x = torch.randn(2, 3, 64, 64)
    with torch.inference_mode():
        assert_logits_match(fused(x), model(x))


def test_custom_stage_configuration():
    # Any configuration the reference accepts: one unit per stage, narrow channels, 10 classes.
    torch.manual_seed(0)
    model = randomize_bn(ref.ShuffleNetV2([1, 2, 1], [8, 16, 32, 64, 128], num_classes=10))
    fused = sk.FusedShuffleNetV2.from_reference(model)
    x = torch.randn(2, 3, 40, 40)
    with torch.inference_mode():
        assert_logits_match(fused(x), model(x))
    assert "channels=[8, 16, 32, 64, 128]" in repr(fused)


def test_state_dict_round_trip():
    model = reference_model(0.5, num_classes=10)
    x = torch.randn(2, 3, 64, 64)
    fused = sk.FusedShuffleNetV2.from_state_dict(model.state_dict(), width=0.5, num_classes=10)
    again = sk.FusedShuffleNetV2.from_state_dict(model.state_dict(), width=0.5, num_classes=10)
    # Its own state_dict reloads into a model of the same structure and gives the same logits.
    with torch.no_grad():
        for t in again.state_dict().values():
            t.zero_()
    again.load_state_dict(fused.state_dict())
    with torch.inference_mode():
        expected = model(x)
        assert_logits_match(fused(x), expected)
        assert torch.equal(again(x), fused(x))


def test_reference_state_dict_keys_are_torchvisions():
    keys = list(ref.shufflenet_v2_x1_0().state_dict())
    assert keys[:6] == [
        "conv1.0.weight",
        "conv1.1.weight",
        "conv1.1.bias",
        "conv1.1.running_mean",
        "conv1.1.running_var",
        "conv1.1.num_batches_tracked",
    ]
    assert "stage2.0.branch1.0.weight" in keys and "stage2.0.branch1.2.weight" in keys
    assert "stage4.3.branch2.7.weight" not in keys and "stage4.3.branch2.5.weight" in keys
    assert keys[-2:] == ["fc.weight", "fc.bias"]
    # conv1 (conv + BN: 1 + 5 keys), 16 units' branch2 (3 convs, 3 BNs), 3 down units' branch1 (2 + 2),
    # conv5 (1 + 5), fc (2).
    assert len(keys) == 6 + 16 * (3 + 15) + 3 * (2 + 10) + 6 + 2


@requires_native_cpu
def test_compile_fullgraph_and_export():
    torch._dynamo.reset()
    model = reference_model(0.5, num_classes=10)
    fused = sk.FusedShuffleNetV2.from_reference(model, backend="native")
    x = torch.randn(1, 3, 64, 64)
    with torch.inference_mode():
        expected = model(x)
        compiled = torch.compile(fused, fullgraph=True, dynamic=False)
        assert_logits_match(compiled(x), expected)
    exported = torch.export.export(fused, (x,))
    targets = {str(n.target) for n in exported.graph.nodes if n.op == "call_function"}
    # On the native backend the whole forward is one op (its fake gives the logits' shape).
    assert "shufflekernels.shufflenet.default" in targets
    with torch.inference_mode():
        assert_logits_match(exported.module()(x), expected)


def test_inference_only():
    fused = sk.FusedShuffleNetV2.from_reference(reference_model(0.5))
    assert not fused.training
    with pytest.raises(RuntimeError, match="inference-only"):
        fused.train()
    fused.eval()  # allowed: it is what the model already is
    with pytest.raises(RuntimeError, match="inference-only.*input requires grad"):
        fused(torch.randn(1, 3, 32, 32, requires_grad=True))
    assert not any(t.requires_grad for t in fused.state_dict().values())


def test_bad_arguments():
    model = reference_model(0.5)
    with pytest.raises(ValueError, match="argument 'backend' expected one of"):
        sk.FusedShuffleNetV2.from_reference(model, backend="onnx")
    with pytest.raises(TypeError, match="from_reference: argument 'model' expected"):
        sk.FusedShuffleNetV2.from_reference(torch.nn.Linear(2, 2))
    with pytest.raises(TypeError, match="from_torchvision: argument 'model' expected a ShuffleNetV2"):
        sk.FusedShuffleNetV2.from_torchvision(torch.nn.Linear(2, 2))
    with pytest.raises(ValueError, match="argument 'width' expected one of"):
        sk.FusedShuffleNetV2.from_state_dict(model.state_dict(), width=0.75)
    with pytest.raises(ValueError, match=r"argument 'x' expected shape \[N, 3, H, W\]"):
        sk.FusedShuffleNetV2.from_reference(model)(torch.randn(1, 4, 32, 32))


def test_repr_shows_width_and_backend():
    fused = sk.FusedShuffleNetV2.from_reference(reference_model(1.0), backend="reference")
    assert repr(fused) == "FusedShuffleNetV2(width=x1.0, units=[4, 8, 4], num_classes=1000, backend='reference')"


@requires_native_cpu
def test_to_dtype():
    model = reference_model(0.5, num_classes=10)
    fused = sk.FusedShuffleNetV2.from_reference(model).to(dtype=torch.bfloat16)
    assert all(t.dtype == torch.bfloat16 for t in fused.state_dict().values())
    x = torch.randn(2, 3, 64, 64)
    with torch.inference_mode():
        got = fused(x.bfloat16()).float()
        expected = model(x)
    # bfloat16 end to end: a loose bound (8 bits of mantissa through ~50 layers).
    assert ((got - expected).norm() / expected.norm()).item() < 0.1


def test_built_under_inference_mode_keeps_normal_buffers():
    # The CPU kernels reuse packed weights only for tensors with a version counter, which inference
    # tensors lack: building or moving the model under inference_mode must not turn its buffers into them.
    model = reference_model(0.5, num_classes=10).eval()
    with torch.inference_mode():
        fused = sk.FusedShuffleNetV2.from_reference(model)
        assert not any(t.is_inference() for t in fused.state_dict().values())
        x = torch.randn(2, 3, 64, 64)
        for _ in range(3):  # the second call onward reads packed weights
            assert_logits_match(fused(x), model(x))
        fused = fused.to(dtype=torch.bfloat16)  # new tensors, made under inference_mode
        assert not any(t.is_inference() for t in fused.state_dict().values())


@requires_native_cpu
def test_threads_share_one_model():
    model = reference_model(0.5, num_classes=10)
    fused = sk.FusedShuffleNetV2.from_reference(model, backend="native")
    inputs = [torch.randn(1, 3, 48, 48, generator=torch.Generator().manual_seed(i)) for i in range(6)]
    with torch.inference_mode():
        expected = [model(x) for x in inputs]
    results: dict[int, torch.Tensor] = {}
    errors: list[BaseException] = []

    def worker(i: int) -> None:
        try:
            with torch.inference_mode():
                for _ in range(3):
                    results[i] = fused(inputs[i])
        except BaseException as exc:  # surfaced below: a thread's exception would otherwise vanish
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(inputs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    for i, e in enumerate(expected):
        assert_logits_match(results[i], e)


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


@requires_native_cpu
@pytest.mark.skipif(not __import__("os").path.exists("/proc/self/statm"), reason="needs /proc to read the resident set")
def test_memory_stays_flat():
    fused = sk.FusedShuffleNetV2.from_reference(reference_model(0.5, num_classes=10), backend="native")
    x = torch.randn(2, 3, 64, 64)
    with torch.inference_mode():
        for _ in range(20):  # warm the allocator and thread pools
            fused(x)
        before = _rss_bytes()
        for _ in range(300):
            fused(x)
        growth = _rss_bytes() - before
    # A leak of even one activation per forward (~100 KB here) would add 30 MB over 300 forwards.
    assert growth < 8 * 2**20, f"resident set grew {growth / 2**20:.1f} MiB over 300 forwards"


# --------------------------------------------------------------------------------------------------
# torchvision's own model, where installed.
# --------------------------------------------------------------------------------------------------


@requires_native_cpu
@pytest.mark.parametrize("width", [0.5, 1.0, 1.5, 2.0])
def test_torchvision_swap_on_a_photograph(width):
    models = pytest.importorskip("torchvision.models")
    name = {0.5: "shufflenet_v2_x0_5", 1.0: "shufflenet_v2_x1_0", 1.5: "shufflenet_v2_x1_5", 2.0: "shufflenet_v2_x2_0"}[
        width
    ]
    torch.manual_seed(0)
    tv = randomize_bn(getattr(models, name)(weights=None))  # no downloads here: seeded weights
    fused = sk.FusedShuffleNetV2.from_torchvision(tv)
    photo = photographs()[:1]
    batch = torch.cat([photo, photo.flip(3), torch.randn(1, 3, 224, 224)])  # batch 3: photo, mirrored, noise
    with torch.inference_mode():
        expected = tv(batch)
        assert_logits_match(fused(photo), expected[:1])
        assert_logits_match(fused(batch.contiguous(memory_format=torch.channels_last)), expected)
    # The reference has torchvision's keys and loads its state_dict as it is.
    reference = getattr(ref, name)()
    assert list(reference.state_dict()) == list(tv.state_dict())
    reference.load_state_dict(tv.state_dict())
    with torch.inference_mode():
        torch.testing.assert_close(reference.eval()(batch), expected)


def test_set_backend_switches_every_layer():
    model = reference_model(0.5, num_classes=10)
    fused = sk.FusedShuffleNetV2.from_reference(model, backend="native")
    assert fused.set_backend("reference") is fused
    assert fused.backend == "reference" and all(unit.backend == "reference" for unit in fused.units)
    x = torch.randn(1, 3, 48, 48)
    with torch.inference_mode():
        assert_logits_match(fused(x), model(x))
    with pytest.raises(ValueError, match="argument 'backend' expected one of"):
        fused.set_backend("cudnn")
