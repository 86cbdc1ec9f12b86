"""Triton's launch grids stay within what CUDA launches (2^31 - 1 programs along the first axis, 65535
along the second and third) however long the S axis: where S has more tiles than that, each program of
the kernels gridded over S tiles (pool_backward, aggregate, aggregate_inplace) takes a run of them
(launch_sizes.grid_runs). The grids are read off meta tensors of such sizes (nothing launched); the runs'
results are checked on small tensors with the limit lowered, in Triton's interpreter without a GPU (on a
GPU, tests/test_cuda.py's tensor of over 2^31 elements has 2^20 S tiles)."""
import pytest
import torch

import dsa_ops
from dsa_ops import reference
from helpers import (assert_close, backend_param, check_inplace, check_module, device_for, make_input,
                     record_triton_launches)

TRITON = [backend_param("triton")]
GRIDDED_OVER_S = {"_pool_backward_kernel", "_aggregate_kernel", "_aggregate_inplace_kernel"}


@pytest.mark.parametrize("backend", TRITON)
@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
def test_grids_stay_within_cuda_limits_on_a_long_s_axis(monkeypatch, backend, layout):
    from dsa_ops.triton import kernels

    # S tiles are 256 positions long for contiguous inputs, 32 for channels-last ones: S = side^2 has more
    # than 65535 of them
    side, tile = (4097, 256) if layout == "contiguous" else (1449, 32)
    assert -(-side * side // tile) > 65535
    x = torch.empty(2, 32, side, side, device="meta")
    if layout == "channels_last":
        x = x.contiguous(memory_format=torch.channels_last)
    weight = torch.empty(1, 4, 3, device="meta")
    grids = record_triton_launches(monkeypatch, launch=False)
    kernels.pool_partials(x, 2, 4)
    kernels.pool_backward(torch.empty(1, 4, 2, device="meta"), x, 2)
    kernels.aggregate(x, weight, 2, False)
    kernels.aggregate(x, weight, 2, False, grad_pooled=torch.empty(1, 4, 2, device="meta"))
    kernels.aggregate_inplace(x, weight, 2, False)
    kernels.grad_weight_partials(x, x, 2, 4, 3)
    assert {name for name, _ in grids} == GRIDDED_OVER_S | {"_pool_kernel", "_grad_weight_kernel"}
    for name, grid in grids:
        assert len(grid) == 3 and 1 <= grid[0] <= 2**31 - 1 and 1 <= grid[1] <= 65535 and 1 <= grid[2] <= 65535, \
            (name, grid)


@pytest.mark.parametrize("backend", TRITON)
@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
def test_programs_take_runs_of_s_tiles_where_a_grid_would_pass_the_limit(rng, monkeypatch, backend, layout):
    """With the limit lowered to 2 programs, S = 546 (3 tiles of 256 contiguous, 18 of 32 channels-last)
    is dealt out in runs of 2 or 9 tiles, the last run partly past S: the composed forward and backward
    (aggregate, with the pooled gradient folded in), the in-place forward and pooling's backward agree
    with the reference."""
    from dsa_ops.triton import launch_sizes

    monkeypatch.setattr(launch_sizes, "MAX_GRID_YZ", 2)
    monkeypatch.setenv("DSA_OPS_FUSED_GENERATOR", "never")
    monkeypatch.setenv("DSA_OPS_EVAL_ONE_LAUNCH", "never")
    grids = record_triton_launches(monkeypatch)
    tail = (3, 13, 14)
    for training in (True, False):
        check_module(rng, backend, videos=2, channels=8, num_segments=4, split=0.5, tail=tail, layout=layout,
                     training=training)
    check_inplace(rng, backend, videos=2, channels=8, num_segments=4, kernel_size=3, split=0.5, identity=True,
                  tail=tail, layout=layout, dtype=torch.float32, training=False)
    x = make_input((8, 8, *tail), torch.float32, layout, rng, device=device_for(backend), requires_grad=True)
    grad = torch.randn(2, 4, 4, generator=rng, dtype=torch.float64)
    dsa_ops.segment_pool(x, 4, 4, backend=backend).backward(grad.to(device_for(backend), torch.float32))
    x64 = x.detach().cpu().double().requires_grad_(True)
    reference.segment_pool(x64, 4, 4).backward(grad)
    assert_close(x.grad, x64.grad, torch.float32)
    assert {name for name, _ in grids} >= GRIDDED_OVER_S
    assert all(grid[2] <= 2 for name, grid in grids if name in GRIDDED_OVER_S), grids
