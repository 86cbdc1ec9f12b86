"""gradcheck in float64 for the module (train and eval) and the functional ops, gradgradcheck for the
functional ops, bitwise-reproducible backward."""
import os

import pytest
import torch
from torch.autograd import gradcheck, gradgradcheck

import dsa_ops
from helpers import DEVICE_OF, make_input, randomize_generator


def interpreted(backend):
    """Triton on CPU tensors runs in Triton's interpreter, and with DSA_OPS_TEST_CUDA_EMULATION=1 the cpu
    backend runs the CUDA kernels in their emulation: gradcheck there uses fast mode (random projections
    instead of every input element), or the suite would take an hour."""
    if backend == "cpu":
        return os.environ.get("DSA_OPS_TEST_CUDA_EMULATION") == "1"
    return backend == "triton" and DEVICE_OF["triton"] == "cpu"


def module_function(module):
    """x and the module's parameters -> y, for gradcheck w.r.t. every one of them."""
    names = [name for name, _ in module.named_parameters()]

    def run(x, *params):
        return torch.func.functional_call(module, dict(zip(names, params)), (x,))

    return run, [p.detach().clone().requires_grad_(True) for p in module.parameters()]


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("identity", [False, True])
@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
def test_module_gradcheck(rng, backend, training, identity, layout):
    device = DEVICE_OF[backend]
    module = randomize_generator(dsa_ops.DSAConv(8, U_segment=3, split_ratio=0.5, with_identity=identity,
                                                 backend=backend), rng).double().to(device).train(training)
    bn = module.generate[1]
    bn.momentum = 0.0  # gradcheck calls forward many times; keep the running statistics fixed
    run, params = module_function(module)
    x = make_input((6, 8, 2, 3, 3), torch.float64, layout, rng, requires_grad=True, device=device)
    assert gradcheck(run, (x, *params), eps=1e-6, atol=1e-7, rtol=1e-5, fast_mode=interpreted(backend))


def test_module_double_backward_raises_clearly(rng, backend):
    module = dsa_ops.DSAConv(8, split_ratio=0.5, backend=backend).double().to(DEVICE_OF[backend])
    x = make_input((8, 8, 3, 3), torch.float64, generator=rng, requires_grad=True, device=DEVICE_OF[backend])
    (gx,) = torch.autograd.grad(module(x).square().sum(), x, create_graph=True)
    with pytest.raises(RuntimeError, match="double backward through the fused DSA op is not supported"):
        gx.sum().backward()


@pytest.mark.parametrize("identity", [False, True])
@pytest.mark.parametrize("layout", ["contiguous", "channels_last", "channel_slice"])
@pytest.mark.parametrize("kernel_size", [1, 3, 5])
def test_dsa_aggregate_gradcheck_and_gradgradcheck(rng, backend, identity, layout, kernel_size):
    device = DEVICE_OF[backend]
    x = make_input((6, 5, 2, 2, 3), torch.float64, layout, rng, requires_grad=True, device=device)
    weight = torch.rand(2, 3, kernel_size, generator=rng, dtype=torch.float64).to(device).requires_grad_(True)

    def run(x, weight):
        return dsa_ops.dsa_aggregate(x, weight, 3, identity, backend=backend)

    assert gradcheck(run, (x, weight), fast_mode=interpreted(backend))
    assert gradgradcheck(run, (x, weight), fast_mode=interpreted(backend))


@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
def test_segment_pool_gradcheck_and_gradgradcheck(rng, backend, layout):
    x = make_input((6, 5, 3, 4), torch.float64, layout, rng, requires_grad=True, device=DEVICE_OF[backend])

    def run(x):
        return dsa_ops.segment_pool(x, 2, 3, backend=backend)

    assert gradcheck(run, (x,), fast_mode=interpreted(backend))
    assert gradgradcheck(run, (x,), fast_mode=interpreted(backend))


def test_grad_input_with_pooled_term_gradcheck(rng, backend):
    """The backward op that folds the pooled gradient in, differentiated in all three inputs."""
    device = DEVICE_OF[backend]
    grad_y = make_input((6, 5, 2, 3), torch.float64, generator=rng, requires_grad=True, device=device)
    weight = torch.rand(2, 4, 3, generator=rng, dtype=torch.float64).to(device).requires_grad_(True)
    pooled = torch.randn(2, 4, 3, generator=rng, dtype=torch.float64).to(device).requires_grad_(True)

    def run(grad_y, weight, pooled):
        return dsa_ops.ops._op_set(backend).aggregate_grad_input(grad_y, weight, pooled, 3, True)

    assert gradcheck(run, (grad_y, weight, pooled), fast_mode=interpreted(backend))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
def test_backward_is_bitwise_reproducible(rng, backend, dtype, layout):
    device = DEVICE_OF[backend]
    module = randomize_generator(dsa_ops.DSAConv(64, split_ratio=0.5, backend=backend), rng).to(device)
    x = make_input((16, 64, 4, 7, 7), dtype, layout, rng, device=device)
    grad = make_input(x.shape, dtype, layout, rng, device=device)
    results = []
    for _ in range(2):
        xi = x.clone().requires_grad_(True)
        module.zero_grad(set_to_none=True)
        module(xi).backward(grad)
        results.append([xi.grad] + [p.grad.clone() for p in module.parameters()])
    for a, b in zip(*results):
        assert torch.equal(a, b)


@pytest.mark.skipif(dsa_ops.ops.EXTENSION_ERROR is not None, reason="the compiled extension is not usable")
def test_compiled_ops_take_the_cpp_autograd(rng):
    """The compiled ops' autograd nodes are csrc/autograd.cpp's: an autograd registered from Python costs
    about 50 us of host time per call."""
    x = make_input((8, 16, 2, 3, 3), generator=rng, requires_grad=True)
    weight = torch.rand(2, 8, 3, generator=rng, requires_grad=True)
    nodes = {
        "DSAForward": dsa_ops.DSAConv(16, split_ratio=0.5, backend="cpu")(x),
        "Aggregate": dsa_ops.dsa_aggregate(x, weight, 4, backend="cpu"),
        "SegmentPool": dsa_ops.segment_pool(x, 4, 8, backend="cpu"),
    }
    for function, output in nodes.items():
        assert output.grad_fn.name() == f"torch::autograd::CppNode<dsa_ops::(anonymous namespace)::{function}>"
