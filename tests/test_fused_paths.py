"""The fused paths of the cuda and triton backends, the generator run in the prologue of the aggregation
kernel: the forward as pooling + one kernel, the backward as grad_weight + one kernel; against the
composed paths (pool, generator, aggregate; grad_weight, generator_backward, aggregate), as
DSA_OPS_FUSED_GENERATOR chooses (auto: up to 1024 (video, channel) rows). Both agree with the float64
reference, the forwards bit for bit with each other (running statistics too), and they take the launches
they should. The triton cases run in Triton's interpreter without a GPU; without a GPU,
tests/test_cuda_emulation.py runs the CUDA kernels."""
import copy

import pytest
import torch

import dsa_ops
from helpers import (KERNEL_BACKENDS, assert_close, backend_param, configured_pair, device_for, make_input,
                     record_triton_launches, run_module)

ENV = "DSA_OPS_FUSED_GENERATOR"
FUSED_BACKENDS = [p for p in KERNEL_BACKENDS if p.values[0] in ("cuda", "triton")]
needs_gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU (the profiler's kernel list)")


@pytest.mark.parametrize("backend", FUSED_BACKENDS)
@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float64], ids=str)
@pytest.mark.parametrize("shape, layout", [((3 * 4, 24, 2, 5, 5), "contiguous"), ((3 * 4, 24, 2, 5, 5), "channels_last"),
                                           ((2 * 4, 6, 3, 16, 16), "contiguous")], ids=["contiguous", "channels_last",
                                                                                          "spans"])
def test_fused_and_composed_paths_agree(rng, monkeypatch, backend, training, dtype, shape, layout):
    """On Triton's interpreter, both channels_last (S = 50) and "spans" (S = 768) split S into several
    spans of positions (and partial sums)."""
    monkeypatch.setenv("DSA_OPS_EVAL_ONE_LAUNCH", "never")
    device = device_for(backend)
    fused, ref = configured_pair(rng, backend, shape[1], 4, 3, 0.5, True, training, dtype)
    x = make_input(shape, dtype, layout, rng, device=device)
    grad = make_input(x.shape, dtype, layout, rng, device=device)
    expected = run_module(ref, x.cpu().double(), grad.cpu().double())
    outputs, running = {}, {}
    for mode in ("never", "always"):
        monkeypatch.setenv(ENV, mode)
        module = copy.deepcopy(fused).to(device)
        outputs[mode] = run_module(module, x, grad)
        running[mode] = module.generate[1].running_mean, module.generate[1].running_var
    y, grad_x, parameter_grads = outputs["always"]
    assert_close(y, expected[0], dtype)
    assert_close(grad_x, expected[1], dtype)
    scale = kernel_gradient_scale(x, grad, fused.generate[0].weight.shape[1], shape[1] // 2)
    for actual, wanted in zip(parameter_grads, expected[2]):
        assert_close(actual.double().cpu(), wanted, dtype, scale=scale)
    assert torch.equal(y, outputs["never"][0])
    assert_close(grad_x, outputs["never"][1], dtype)
    for fused_grad, composed_grad in zip(parameter_grads, outputs["never"][2]):  # from the same grad_kernel sums
        assert_close(fused_grad, composed_grad, fused_grad.dtype, scale=scale)
    for fused_stat, composed_stat in zip(running["always"], running["never"]):
        assert torch.equal(fused_stat, composed_stat)


def kernel_gradient_scale(x, grad, num_segments, channels):
    """The largest |grad_kernel| (N, C', K) of the reference: the parameter gradients all come from these
    sums over U*S products, which may cancel, so their rounding error scales with it."""
    x, grad = x.cpu().double(), grad.cpu().double()
    weight = torch.zeros(x.shape[0] // num_segments, channels, 3, dtype=torch.float64, requires_grad=True)
    y = dsa_ops.reference.aggregate(x, weight, num_segments)
    (grad_kernel,) = torch.autograd.grad((y * grad).sum(), weight)
    return max(1.0, grad_kernel.abs().max().item())


def our_kernels(run):
    """The names of the dsa_ops kernels (CUDA's, in the dsa_ops namespace, and Triton's, named _*_kernel;
    not ATen's, e.g. the running-statistics update) run(), called a second time, launches."""
    run()
    torch.cuda.synchronize()
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as profile:
        run()
        torch.cuda.synchronize()
    names = [e.name for e in profile.events() if e.device_type == torch.autograd.DeviceType.CUDA]
    return [name for name in names if "dsa_ops" in name or (name.startswith("_") and name.endswith("_kernel"))]


@needs_gpu
@pytest.mark.parametrize("backend", FUSED_BACKENDS)
@pytest.mark.parametrize("mode", ["auto", "always", "never"])
@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
def test_fused_paths_launch_two_kernels(rng, monkeypatch, backend, mode, training):
    monkeypatch.setenv("DSA_OPS_EVAL_ONE_LAUNCH", "never")
    monkeypatch.setenv(ENV, mode)
    module = configured_pair(rng, backend, 16, 4, 3, 1.0, False, training, torch.float32)[0].cuda()
    x = make_input((8, 16, 3, 3), generator=rng, device="cuda").requires_grad_(True)
    with torch.no_grad():
        forward = our_kernels(lambda: module(x))
    y = module(x)
    backward = our_kernels(lambda: torch.autograd.grad(y, x, torch.ones_like(y), retain_graph=True))
    fused = mode != "never"
    assert any("fused_forward_kernel" in name for name in forward) == fused, forward
    assert any("fused_backward_kernel" in name for name in backward) == fused, backward
    assert (len(forward), len(backward)) == ((2, 2) if fused else (3, 3)), (forward, backward)


def names(launches):
    """The kernel names of record_triton_launches' (name, grid) records."""
    return [name for name, _ in launches]


@pytest.mark.parametrize("backend", [backend_param("triton")])
@pytest.mark.parametrize("mode", ["auto", "always", "never"])
@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
def test_triton_launches(rng, monkeypatch, backend, mode, training):
    """The Triton kernels each path launches, in order (on a GPU, test_fused_paths_launch_two_kernels
    also counts any other kernel)."""
    monkeypatch.setenv("DSA_OPS_EVAL_ONE_LAUNCH", "never")
    monkeypatch.setenv(ENV, mode)
    module = configured_pair(rng, backend, 16, 4, 3, 0.5, False, training, torch.float32)[0].to(device_for(backend))
    x = make_input((8, 16, 3, 3), generator=rng, device=device_for(backend)).requires_grad_(True)
    launches = record_triton_launches(monkeypatch)
    y = module(x)
    forward = names(launches)
    launches.clear()
    torch.autograd.grad(y, x, torch.ones_like(y))
    if mode == "never":
        assert forward == ["_pool_kernel", "_generator_kernel", "_aggregate_kernel"]
        assert names(launches) == ["_grad_weight_kernel", "_generator_backward_kernel", "_aggregate_kernel"]
    else:
        assert forward == ["_pool_kernel", "_fused_forward_kernel"]
        assert names(launches) == ["_grad_weight_kernel", "_fused_backward_kernel"]


def inplace_call(backend, monkeypatch, module, x):
    """module(x.clone()) under no_grad, and the dsa_ops kernels it launches, by name: Triton's recorded
    during the call, CUDA's from the profiler on copies of module (our_kernels calls twice)."""
    with torch.no_grad():
        if backend == "cuda":
            return module(x.clone()), our_kernels(lambda: copy.deepcopy(module)(x.clone()))
        launches = record_triton_launches(monkeypatch)
        return module(x.clone()), names(launches)


@pytest.mark.parametrize("backend", FUSED_BACKENDS)
@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
@pytest.mark.parametrize("shape, layout", [((3 * 4, 24, 2, 5, 5), "channels_last"), ((2 * 4, 6, 3, 16, 16),
                                                                                     "contiguous")],
                         ids=["channels_last", "spans"])
def test_fused_inplace_forward(rng, monkeypatch, backend, training, dtype, shape, layout):
    """The in-place forward, the generator in the in-place aggregation's prologue (pooling + one launch):
    bit for bit the composed in-place forward (running statistics too), close to the reference, the
    passthrough channels untouched."""
    monkeypatch.setenv("DSA_OPS_EVAL_ONE_LAUNCH", "never")
    fused, ref = configured_pair(rng, backend, shape[1], 4, 3, 0.5, True, training, dtype)
    fused.inplace = True
    x = make_input(shape, dtype, layout, rng, device=device_for(backend))
    expected = ref(x.cpu().double())
    outputs, running, launched = {}, {}, {}
    for mode in ("never", "always"):
        monkeypatch.setenv(ENV, mode)
        module = copy.deepcopy(fused)
        outputs[mode], launched[mode] = inplace_call(backend, monkeypatch, module, x)
        running[mode] = module.generate[1].running_mean, module.generate[1].running_var
    if backend == "triton":
        assert launched == {"never": ["_pool_kernel", "_generator_kernel", "_aggregate_inplace_kernel"],
                            "always": ["_pool_kernel", "_fused_inplace_kernel"]}
    else:
        assert len(launched["always"]) == len(launched["never"]) - 1, launched
        assert any("fused_inplace_kernel" in name for name in launched["always"]), launched
    y = outputs["always"]
    assert_close(y.cpu(), expected, dtype)
    assert torch.equal(y[:, shape[1] // 2:], x[:, shape[1] // 2:])
    assert torch.equal(y, outputs["never"])
    for fused_stat, composed_stat in zip(running["always"], running["never"]):
        assert torch.equal(fused_stat, composed_stat)


@pytest.mark.parametrize("backend", [backend_param("triton")])
def test_triton_auto_fuses_up_to_the_row_limit(monkeypatch, backend):
    from dsa_ops.triton.fused import FUSED_ROWS_MAX, fused_path

    x = torch.ones(2, device=device_for(backend))
    monkeypatch.setenv(ENV, "auto")
    assert fused_path(x, FUSED_ROWS_MAX) and not fused_path(x, FUSED_ROWS_MAX + 1) and not fused_path(x, 0)
    assert not fused_path(x[:0], 2)
    monkeypatch.setenv(ENV, "always")
    assert fused_path(x, FUSED_ROWS_MAX + 1) and not fused_path(x, 0)
    monkeypatch.setenv(ENV, "never")
    assert not fused_path(x, 2)


@pytest.mark.parametrize("backend", FUSED_BACKENDS)
def test_bad_mode_is_refused(rng, monkeypatch, backend):
    monkeypatch.setenv(ENV, "sometimes")
    module = dsa_ops.DSAConv(8, split_ratio=0.5, backend=backend).to(device_for(backend))
    x = make_input((8, 8, 3, 3), generator=rng, device=device_for(backend))
    with pytest.raises(ValueError, match=f"{ENV} must be auto, always or never, got 'sometimes'"):
        module(x)
