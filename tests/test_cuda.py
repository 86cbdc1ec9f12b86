"""CUDA-only behaviour: CUDA-graph capture, non-default streams, a second device, 64-bit indexing."""
import pytest
import torch

import dsa_ops
from dsa_ops import reference
from helpers import DEVICE_OF, KERNEL_BACKENDS, assert_close, backend_param, make_input, randomize_generator

pytestmark = [p.marks[0] for p in KERNEL_BACKENDS if p.values == ("cuda",)]


# The backends of CUDA tensors: the CUDA kernels, and Triton's compiled ones (not its interpreter).
ON_THE_GPU = ["cuda", pytest.param("triton", marks=[
    *backend_param("triton").marks,
    pytest.mark.skipif(DEVICE_OF["triton"] != "cuda", reason="Triton's interpreter runs on CPU tensors")])]


# Triton: no autotuning and no device value read back, so a training step captures; the warm-up compiles
# its kernels before the capture.
@pytest.mark.parametrize("backend", ON_THE_GPU)
def test_cuda_graph_capture_and_replay(rng, backend):
    module = randomize_generator(dsa_ops.DSAConv(32, split_ratio=0.25, backend=backend), rng).cuda()
    static_x = make_input((8, 32, 2, 7, 7), generator=rng, device="cuda", requires_grad=True)
    grad = make_input(static_x.shape, generator=rng, device="cuda")
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):  # warm up on a side stream, as capture requires
        for _ in range(2):
            module(static_x).backward(grad)
    torch.cuda.current_stream().wait_stream(stream)
    module.zero_grad(set_to_none=False)
    static_x.grad = None
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        static_y = module(static_x)
        static_y.backward(grad)
    for _ in range(2):
        new_x = make_input(static_x.shape, generator=rng, device="cuda")
        with torch.no_grad():
            static_x.copy_(new_x)
        static_x.grad.zero_()
        graph.replay()
        x_eager = new_x.clone().requires_grad_(True)
        eager = dsa_ops.DSAConv(32, split_ratio=0.25, backend=backend).cuda()
        eager.load_state_dict(module.state_dict())
        y_eager = eager(x_eager)
        y_eager.backward(grad)
        torch.testing.assert_close(static_y, y_eager, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(static_x.grad, x_eager.grad, rtol=1e-5, atol=1e-5)


def test_non_default_stream_matches_default(rng):
    x = make_input((8, 16, 3, 9, 9), generator=rng, device="cuda")
    weight = torch.rand(2, 4, 3, generator=rng).cuda()
    expected = dsa_ops.dsa_aggregate(x, weight, 4, backend="cuda")
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        y = dsa_ops.dsa_aggregate(x, weight, 4, backend="cuda")
        pooled = dsa_ops.segment_pool(x, 4, 4, backend="cuda")
    torch.cuda.current_stream().wait_stream(stream)
    assert torch.equal(y, expected)
    assert_close(pooled.cpu(), reference.segment_pool(x.cpu().double(), 4, 4), torch.float32)


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs a second CUDA device")
def test_second_device(rng):
    module = randomize_generator(dsa_ops.DSAConv(16, split_ratio=0.5, backend="cuda"), rng)
    ref = dsa_ops.DSAReference(16, split_ratio=0.5)
    ref.load_state_dict(module.state_dict())
    module.to("cuda:1")
    x = make_input((8, 16, 5, 5), generator=rng)
    x1 = x.to("cuda:1").requires_grad_(True)
    y = module(x1)
    y.sum().backward()
    assert y.device == torch.device("cuda:1") and x1.grad.device == torch.device("cuda:1")
    xr = x.clone().requires_grad_(True)
    ref(xr).sum().backward()
    torch.testing.assert_close(y.cpu(), ref(x), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(x1.grad.cpu(), xr.grad, rtol=1e-5, atol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("backend", ON_THE_GPU)
def test_more_than_2_pow_31_elements(backend):
    """64-bit indexing: a half tensor of 2^31 + 2^20 elements, each segment a constant u + 1 (on Triton
    also more S tiles than a grid axis holds: tests/test_triton_grids.py)."""
    spatial = (2**31 + 2**20) // 8
    x = torch.empty(4, 2, spatial // 1024, 1024, dtype=torch.float16, device="cuda")
    for u in range(4):
        x[u].fill_(u + 1)
    weight = torch.tensor([[[0.25, 0.5, 0.25]]], device="cuda")
    y = dsa_ops.dsa_aggregate(x, weight, 4, backend=backend)
    for u, expected in enumerate([1.0, 2.0, 3.0, 2.75]):
        assert y[u, 0].amin().item() == expected and y[u, 0].amax().item() == expected
        assert torch.equal(y[u, 1], x[u, 1])
    del y
    pooled = dsa_ops.segment_pool(x, 4, 2, backend=backend)
    torch.testing.assert_close(pooled.cpu(), torch.arange(1.0, 5.0).expand(1, 2, 4))
