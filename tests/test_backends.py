"""Each compiled backend against the reference (on the CPU, in float64): functional ops and the whole
module, forward and backward, across segment counts, kernel sizes, splits, spatial sizes, ranks,
layouts and dtypes."""
import pytest
import torch

import dsa_ops
from dsa_ops import reference
from helpers import (DEVICE_OF, LAYOUTS, assert_close, check_aggregate, check_module, check_segment_pool, make_input,
                     module_pair)

DTYPES = (torch.float32, torch.float64, torch.float16, torch.bfloat16)


@pytest.mark.parametrize("num_segments", [1, 2, 3, 4, 8])
@pytest.mark.parametrize("kernel_size", [1, 3, 5, 7])
def test_segments_and_kernel_sizes(rng, backend, num_segments, kernel_size):
    check_module(rng, backend, num_segments=num_segments, kernel_size=kernel_size, videos=3)


@pytest.mark.parametrize("split", [1 / 8, 1 / 4, 1.0])
@pytest.mark.parametrize("identity", [False, True])
@pytest.mark.parametrize("tail", [(1, 1), (7, 7), (13, 1), (1, 1, 1), (2, 7, 7), (1, 13, 1)], ids=str)
def test_splits_identity_spatial_sizes(rng, backend, split, identity, tail):
    check_module(rng, backend, split=split, identity=identity, tail=tail, channels=16)


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("rank", [4, 5])
@pytest.mark.parametrize("training", [True, False])
def test_layouts(rng, backend, layout, rank, training):
    check_module(rng, backend, layout=layout, tail=(3, 5, 5) if rank == 5 else (5, 6), training=training)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
def test_dtypes(rng, backend, dtype, training, layout):
    check_module(rng, backend, dtype=dtype, training=training, layout=layout, channels=32)


@pytest.mark.parametrize("grad_layout", ["spatially_broadcast", "broadcast_scalar"])
@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
def test_broadcast_output_gradient(rng, backend, layout, grad_layout, training):
    """y.sum().backward() hands the backward an output gradient whose strides are all 0, a mean over the
    spatial axes one broadcast along them."""
    check_module(rng, backend, layout=layout, grad_layout=grad_layout, training=training, channels=24)


@pytest.mark.parametrize("layout,grad_layout", [("contiguous", "channels_last"), ("channels_last", "contiguous")])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
def test_gradient_in_another_layout(rng, backend, layout, grad_layout, dtype):
    """The output gradient need not share x's layout: grad_weight then walks the two along different
    strides, and grad_x follows the gradient's layout."""
    check_module(rng, backend, layout=layout, grad_layout=grad_layout, dtype=dtype, tail=(3, 5, 6), channels=24)


def test_output_layout_follows_input(rng, backend):
    module = dsa_ops.DSAConv(16, split_ratio=0.25, backend=backend).to(DEVICE_OF[backend])
    x = make_input((8, 16, 2, 3, 3), layout="channels_last", generator=rng, device=DEVICE_OF[backend])
    assert module(x).is_contiguous(memory_format=torch.channels_last_3d)
    assert module(x.contiguous()).is_contiguous()


def test_running_stats_over_steps_and_cumulative_momentum(rng, backend):
    fused, ref = module_pair(16, rng, backend, split_ratio=0.5)
    for bn in (fused.generate[1], ref.generate[1]):
        bn.momentum = None
    for _ in range(3):
        x = make_input((8, 16, 5, 5), torch.float64, generator=rng)
        fused(x.to(DEVICE_OF[backend]))
        ref(x)
    for name, buf in ref.generate[1].named_buffers():
        torch.testing.assert_close(fused.generate[1].get_buffer(name).cpu(), buf, rtol=1e-12, atol=1e-12)
    assert int(fused.generate[1].num_batches_tracked) == 3


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("identity", [False, True])
def test_dsa_aggregate(rng, backend, layout, dtype, identity):
    check_aggregate(rng, backend, layout, dtype, identity)


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("channels", [1, 7, 10])
def test_segment_pool(rng, backend, layout, dtype, channels):
    check_segment_pool(rng, backend, layout, dtype, channels)


@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
def test_long_spatial_axis_over_few_rows(rng, backend, layout, dtype):
    """Few (row, channel) blocks and a long S: the GPU kernels (and Triton's in its interpreter) split S
    over blocks and add the splits; the module's outputs and gradients too."""
    x = make_input((4, 8, 2, 32, 32), dtype, layout, rng, device=DEVICE_OF[backend])
    expected = reference.segment_pool(x.cpu().double(), 2, 6)
    assert_close(dsa_ops.segment_pool(x, 2, 6, backend=backend), expected, torch.float32)
    for training in (True, False):
        check_module(rng, backend, videos=2, channels=8, num_segments=2, split=0.5, tail=(2, 32, 32),
                     layout=layout, dtype=dtype, training=training)


def test_thread_count_does_not_change_results(rng):
    x = make_input((16, 64, 4, 6, 6), generator=rng)
    grad = make_input(x.shape, generator=rng)
    threads = torch.get_num_threads()
    results = []
    try:
        for n in (1, threads):
            torch.set_num_threads(n)
            results.append(torch.ops.dsa_ops.aggregate_grad_weight(grad, x, 4, 32, 3))
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(results[0], results[1])


@pytest.mark.parametrize("layout,copies", [("contiguous", 0), ("channels_last", 0), ("channel_slice", 0),
                                           ("row_stride", 0), ("spatial_slice", 1)])
def test_inputs_are_read_in_place(rng, backend, layout, copies):
    """Only inputs whose spatial dims do not flatten to one stride are copied (once, per op call)."""
    x = make_input((8, 12, 2, 3, 5), layout=layout, generator=rng, device=DEVICE_OF[backend])
    weight = torch.rand(2, 6, 3, generator=rng).to(x.device)
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU], record_shapes=True) as prof:
        dsa_ops.dsa_aggregate(x, weight, 4, backend=backend)
    clones = [e.input_shapes for e in prof.events() if e.name == "aten::clone"]
    assert sum(shapes[0] == list(x.shape) for shapes in clones) == copies, clones


def test_segment_pool_gradient_keeps_the_sign_of_zero(backend):
    """A gradient of -0 reaches x as -0, as in the reference (mean's backward divides by S)."""
    x = torch.zeros((4, 3, 2, 5), device=DEVICE_OF[backend], requires_grad=True)
    grad = torch.tensor([[[-0.0, 0.0], [0.0, -0.0]], [[-0.0, -0.0], [1.0, -2.0]]])  # (N, C', U)
    dsa_ops.segment_pool(x, 2, 2, backend=backend).backward(grad.to(x.device))
    expected = (grad.transpose(1, 2).reshape(4, 2) / 10)[:, :, None, None].expand(4, 2, 2, 5)
    assert torch.equal(torch.signbit(x.grad[:, :2].cpu()), torch.signbit(expected))
    assert torch.equal(x.grad[:, :2].cpu(), expected)
