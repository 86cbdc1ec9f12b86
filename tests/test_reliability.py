"""Special values (NaN, Inf, constant inputs, no videos), concurrent calls from Python threads, and a
soak test holding memory flat over 10^4 training steps (slow)."""
import threading

import pytest
import torch

import dsa_ops
from helpers import DEVICE_OF, KERNEL_BACKENDS, device_for, make_input, module_pair, run_module

BACKENDS = ["reference", *KERNEL_BACKENDS]


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")], ids=["nan", "inf", "-inf"])
@pytest.mark.parametrize("where", ["processed", "passthrough"])
def test_special_values_propagate_like_the_reference(rng, backend, training, value, where):
    fused, ref = module_pair(16, rng, backend, split_ratio=0.25)
    fused.train(training)
    ref.train(training)
    x = make_input((8, 16, 2, 3, 3), torch.float64, generator=rng)
    x[5, 1 if where == "processed" else 9, 1, 2, 0] = value
    grad = make_input(x.shape, torch.float64, generator=rng)
    y, gx, _ = run_module(fused, x.to(DEVICE_OF[backend]), grad.to(DEVICE_OF[backend]))
    y_ref, gx_ref, _ = run_module(ref, x, grad)
    assert torch.isnan(y_ref).any() or torch.isinf(y_ref).any(), "the special value must reach the output"
    torch.testing.assert_close(y.cpu(), y_ref, equal_nan=True, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(gx.cpu(), gx_ref, equal_nan=True, rtol=1e-10, atol=1e-10)


def test_constant_input_has_zero_batch_variance(rng, backend):
    fused, ref = module_pair(16, rng, backend, split_ratio=0.5)
    x = torch.full((8, 16, 3, 3), 0.75, dtype=torch.float64)
    y, gx, gparams = run_module(fused, x.to(DEVICE_OF[backend]), torch.ones_like(x).to(DEVICE_OF[backend]))
    y_ref, gx_ref, gparams_ref = run_module(ref, x, torch.ones_like(x))
    torch.testing.assert_close(fused.generate[1].running_var.cpu(), ref.generate[1].running_var, rtol=1e-12,
                               atol=1e-12)
    torch.testing.assert_close(y.cpu(), y_ref, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(gx.cpu(), gx_ref, rtol=1e-10, atol=1e-10)
    for g, g_ref in zip(gparams, gparams_ref):
        torch.testing.assert_close(g.cpu(), g_ref, rtol=1e-8, atol=1e-8)


@pytest.mark.parametrize("backend", BACKENDS)
def test_no_videos_work_in_eval_and_are_refused_in_training(backend):
    device = device_for(backend)
    module = dsa_ops.DSAConv(16, split_ratio=0.25, backend=backend).to(device).eval()
    x = torch.randn(0, 16, 3, 3, device=device, requires_grad=True)
    y = module(x)
    assert y.shape == x.shape
    y.sum().backward()
    assert x.grad.shape == x.shape
    assert dsa_ops.dsa_aggregate(x.detach(), torch.rand(0, 4, 3, device=device), 4, backend=backend).shape == x.shape
    assert dsa_ops.segment_pool(x.detach(), 4, 4, backend=backend).shape == (0, 4, 4)
    with pytest.raises(ValueError, match=r"training needs more than one \(video, channel\) row.*got N\*C' = 0"):
        module.train()(x)


def test_concurrent_forwards_match_sequential_ones(rng, backend):
    if backend == "triton" and DEVICE_OF[backend] == "cpu":
        pytest.skip("Triton's interpreter patches triton.language while it runs a kernel: one thread at a time")
    module = dsa_ops.DSAConv(32, split_ratio=0.5, backend=backend).to(DEVICE_OF[backend]).eval()
    inputs = [make_input((8, 32, 2, 9, 9), generator=rng, device=DEVICE_OF[backend]) for _ in range(8)]
    expected = [module(x) for x in inputs]
    results = [None] * len(inputs)

    def run(i):
        for _ in range(5):
            results[i] = module(inputs[i])

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(inputs))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for got, want in zip(results, expected):
        assert torch.equal(got, want)


def resident_bytes():
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * 4096


@pytest.mark.slow
def test_soak_memory_stays_flat(rng, backend):
    """10^4 training steps of DSAConv on one shape: memory after the first thousand does not grow."""
    device = DEVICE_OF[backend]
    module = dsa_ops.DSAConv(32, split_ratio=0.25, backend=backend).to(device)
    x = make_input((8, 32, 2, 7, 7), generator=rng, device=device, requires_grad=True)

    def used():
        return torch.cuda.memory_allocated() if device == "cuda" else resident_bytes()

    steps = 2_000 if backend == "triton" and device == "cpu" else 10_000
    for step in range(steps):
        x.grad = None
        module(x).sum().backward()
        if step == steps // 10:
            baseline = used()
    growth = used() - baseline
    assert growth <= (0 if device == "cuda" else 8 << 20), f"memory grew by {growth} bytes"
