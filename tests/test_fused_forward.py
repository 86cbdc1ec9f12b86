"""The CUDA backend's forward with the generator in the aggregation kernel's prologue (pooling, then
one kernel), against the composed pool + generator + aggregate, as DSA_OPS_FUSED_GENERATOR chooses (auto:
up to 1024 (video, channel) rows). On a GPU: both paths agree with the float64 reference and with each
other bit for bit, in training (running statistics too) and eval, and take the launches they should.
Without a GPU, tests/test_cuda_emulation.py runs the same kernels."""
import copy

import pytest
import torch

from helpers import assert_close, backend_param, configured_pair, make_input

ENV = "DSA_OPS_FUSED_GENERATOR"
pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU (the cuda backend)")


def forward(module, x):
    with torch.no_grad():
        return module(x)


@pytest.mark.parametrize("backend", [backend_param("cuda")])
@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
def test_fused_and_composed_forward_agree(rng, monkeypatch, backend, training, layout, dtype):
    monkeypatch.setenv("DSA_OPS_EVAL_ONE_LAUNCH", "never")
    fused, ref = configured_pair(rng, backend, 24, 4, 3, 0.5, True, training, dtype)
    x = make_input((3 * 4, 24, 2, 5, 5), dtype, layout, rng, device="cuda")
    expected = ref(x.cpu().double())
    outputs, running = {}, {}
    for mode in ("never", "always"):
        monkeypatch.setenv(ENV, mode)
        module = copy.deepcopy(fused)
        outputs[mode] = forward(module, x)
        running[mode] = module.generate[1].running_mean, module.generate[1].running_var
    assert_close(outputs["always"], expected, dtype)
    assert torch.equal(outputs["always"], outputs["never"])
    for fused_stat, composed_stat in zip(running["always"], running["never"]):
        assert torch.equal(fused_stat, composed_stat)
    if training:
        assert_close(running["always"][0].cpu().double(), ref.generate[1].running_mean, torch.float32)


@pytest.mark.parametrize("backend", [backend_param("cuda")])
@pytest.mark.parametrize("mode, launches", [("auto", 2), ("always", 2), ("never", 3)])
@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
def test_fused_forward_launches(rng, monkeypatch, backend, mode, launches, training):
    """The op's kernels (the running-statistics update in training aside): pooling and the fused kernel,
    or pooling, generator and aggregation."""
    monkeypatch.setenv("DSA_OPS_EVAL_ONE_LAUNCH", "never")
    monkeypatch.setenv(ENV, mode)
    module = configured_pair(rng, backend, 16, 4, 3, 1.0, False, training, torch.float32)[0]
    x = make_input((8, 16, 3, 3), generator=rng, device="cuda")
    forward(module, x)
    torch.cuda.synchronize()
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as profile:
        forward(module, x)
        torch.cuda.synchronize()
    names = [e.name for e in profile.events() if e.device_type == torch.autograd.DeviceType.CUDA]
    ours = [name for name in names if "dsa_ops" in name]
    assert len(ours) == launches, names
    assert any("fused_forward_kernel" in name for name in ours) == (launches == 2), ours
