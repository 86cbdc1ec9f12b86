"""The CUDA backend's fused paths, the generator run in the prologue of the aggregation kernel: the
forward as pooling + one kernel, the backward as grad_weight + one kernel; against the composed paths
(pool, generator, aggregate; grad_weight, generator_backward, aggregate), as DSA_OPS_FUSED_GENERATOR
chooses (auto: up to 1024 (video, channel) rows). On a GPU: both agree with the float64 reference, the
forwards bit for bit with each other (running statistics too), and they take the launches they should.
Without a GPU, tests/test_cuda_emulation.py runs the same kernels."""
import copy

import pytest
import torch

from helpers import assert_close, backend_param, configured_pair, make_input, run_module

ENV = "DSA_OPS_FUSED_GENERATOR"
pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU (the cuda backend)")


@pytest.mark.parametrize("backend", [backend_param("cuda")])
@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
def test_fused_and_composed_paths_agree(rng, monkeypatch, backend, training, layout, dtype):
    monkeypatch.setenv("DSA_OPS_EVAL_ONE_LAUNCH", "never")
    fused, ref = configured_pair(rng, backend, 24, 4, 3, 0.5, True, training, dtype)
    x = make_input((3 * 4, 24, 2, 5, 5), dtype, layout, rng, device="cuda")
    grad = make_input(x.shape, dtype, layout, rng, device="cuda")
    expected = run_module(ref, x.cpu().double(), grad.cpu().double())
    outputs, running = {}, {}
    for mode in ("never", "always"):
        monkeypatch.setenv(ENV, mode)
        module = copy.deepcopy(fused)
        outputs[mode] = run_module(module, x, grad)
        running[mode] = module.generate[1].running_mean, module.generate[1].running_var
    y, grad_x, parameter_grads = outputs["always"]
    assert_close(y, expected[0], dtype)
    assert_close(grad_x, expected[1], dtype)
    for actual, wanted in zip(parameter_grads, expected[2]):
        assert_close(actual.double().cpu(), wanted, torch.float32 if dtype == torch.float32 else dtype,
                     scale=max(1.0, wanted.abs().max().item()))
    assert torch.equal(y, outputs["never"][0])
    assert_close(grad_x, outputs["never"][1], dtype)
    for fused_stat, composed_stat in zip(running["always"], running["never"]):
        assert torch.equal(fused_stat, composed_stat)


def our_kernels(run):
    """The names of the dsa_ops kernels (not ATen's, e.g. the running-statistics update) run(), called a
    second time, launches."""
    run()
    torch.cuda.synchronize()
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as profile:
        run()
        torch.cuda.synchronize()
    names = [e.name for e in profile.events() if e.device_type == torch.autograd.DeviceType.CUDA]
    return [name for name in names if "dsa_ops" in name]


@pytest.mark.parametrize("backend", [backend_param("cuda")])
@pytest.mark.parametrize("mode", ["auto", "always", "never"])
@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
def test_fused_paths_launch_two_kernels(rng, monkeypatch, backend, mode, training):
    monkeypatch.setenv("DSA_OPS_EVAL_ONE_LAUNCH", "never")
    monkeypatch.setenv(ENV, mode)
    module = configured_pair(rng, backend, 16, 4, 3, 1.0, False, training, torch.float32)[0]
    x = make_input((8, 16, 3, 3), generator=rng, device="cuda").requires_grad_(True)
    with torch.no_grad():
        forward = our_kernels(lambda: module(x))
    y = module(x)
    backward = our_kernels(lambda: torch.autograd.grad(y, x, torch.ones_like(y), retain_graph=True))
    fused = mode != "never"
    assert any("fused_forward_kernel" in name for name in forward) == fused, forward
    assert any("fused_backward_kernel" in name for name in backward) == fused, backward
    assert (len(forward), len(backward)) == ((2, 2) if fused else (3, 3)), (forward, backward)
