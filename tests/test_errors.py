"""Every invalid input raises the documented exception with a message naming the argument, on every
backend, through the module, the functions and the raw ops."""
import pytest
import torch

import dsa_ops
from helpers import DEVICE_OF, KERNEL_BACKENDS, device_for

BACKENDS = ["reference", *KERNEL_BACKENDS]


@pytest.mark.parametrize("kwargs,match", [
    (dict(kernel_size=4, padding=1), "kernel_size must be an odd int >= 1"),
    (dict(kernel_size=0, padding=0), "kernel_size must be an odd int >= 1"),
    (dict(kernel_size=3, padding=2), r"padding must be \(kernel_size - 1\) / 2 = 1"),
    (dict(stride=2), "stride must be 1"),
    (dict(split_ratio=1 / 64), "split_ratio must leave at least one processed channel"),
    (dict(split_ratio=0.0), r"split_ratio must be in \(0, 1\]"),
    (dict(split_ratio=1.5), r"split_ratio must be in \(0, 1\]"),
    (dict(U_segment=0), "U_segment must be an int >= 1"),
    (dict(alpha=0), "alpha must be an int >= 1"),
    (dict(in_channels=0), "in_channels must be an int >= 1"),
])
@pytest.mark.parametrize("module", [dsa_ops.DSAConv, dsa_ops.DSAReference])
def test_constructor_rejects(module, kwargs, match):
    with pytest.raises(ValueError, match=match):
        module(**{"in_channels": 16, **kwargs})


def test_constructor_rejects_backend():
    with pytest.raises(ValueError, match="backend must be one of"):
        dsa_ops.DSAConv(16, backend="tpu")


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("make_x,error,match", [
    (lambda: torch.randn(8, 16, 5), ValueError, r"x must be 4D .* or 5D .*, got 3D"),
    (lambda: torch.randn(8, 16, 1, 1, 5, 5), ValueError, "got 6D"),
    (lambda: torch.randn(6, 16, 5, 5), ValueError, r"x.size\(0\) must be a multiple of num_segments \(U=4\), got 6"),
    (lambda: torch.randint(0, 5, (8, 16, 5, 5)), ValueError, "x must be float32, float64, float16 or bfloat16"),
    (lambda: torch.randn(8, 16, 0, 5, 5), ValueError, r"x must have at least one position to pool over \(T\*H"),
    (lambda: torch.randn(8, 12, 5, 5), ValueError, r"x.size\(1\) must equal in_channels=16, got 12"),
    (lambda: torch.randn(4, 16, 5, 5), ValueError, "training needs more than one"),
    (lambda: torch.randn(8, 16, 5, 5, dtype=torch.float64), ValueError,
     "generate.0.weight must be torch.float64 for a torch.float64 input, got torch.float32"),
])
def test_module_rejects_input(backend, make_x, error, match):
    module = dsa_ops.DSAConv(16, split_ratio=1 / 16, backend=backend).to(device_for(backend))
    x = make_x().to(device_for(backend))
    with pytest.raises(error, match=match):
        module(x)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("weight_shape,match", [
    ((2, 4), r"weight must be 3D \(N, C', K\), got 2D"),
    ((3, 4, 3), r"weight.size\(0\) must equal the number of videos N = x.size\(0\) / U = 2, got 3"),
    ((2, 0, 3), r"weight.size\(1\) \(C'\) must be an int in \[1, C=8\], got 0"),
    ((2, 9, 3), r"weight.size\(1\) \(C'\) must be an int in \[1, C=8\], got 9"),
    ((2, 4, 2), r"weight.size\(2\) \(K\) must be an odd int >= 1, got 2"),
])
def test_dsa_aggregate_rejects_weight(backend, weight_shape, match):
    device = device_for(backend)
    x, weight = torch.randn(8, 8, 3, 3, device=device), torch.rand(weight_shape, device=device)
    with pytest.raises(ValueError, match=match):
        dsa_ops.dsa_aggregate(x, weight, 4, backend=backend)


@pytest.mark.parametrize("backend", BACKENDS)
def test_functions_reject_bad_arguments(backend):
    x = torch.randn(8, 8, 3, 3, device=device_for(backend))
    with pytest.raises(ValueError, match=r"channels \(C'\) must be an int in \[1, C=8\], got 0"):
        dsa_ops.segment_pool(x, 4, 0, backend=backend)
    with pytest.raises(ValueError, match=r"num_segments \(U\) must be an int >= 1, got 0"):
        dsa_ops.segment_pool(x, 0, 2, backend=backend)
    with pytest.raises(ValueError, match="weight must be a floating dtype"):
        dsa_ops.dsa_aggregate(x, torch.ones(2, 4, 3, dtype=torch.int64, device=x.device), 4, backend=backend)
    with pytest.raises(TypeError, match="weight must be a torch.Tensor, got list"):
        dsa_ops.dsa_aggregate(x, [[[1.0]]], 4, backend=backend)
    empty_plane = x[:, :, :0]
    with pytest.raises(ValueError, match=r"x must have at least one position to pool over \(T\*H\*W >= 1\), "
                                         r"got shape \(8, 8, 0, 3\)"):
        dsa_ops.dsa_aggregate(empty_plane, torch.rand(2, 4, 3, device=x.device), 4, backend=backend)
    with pytest.raises(ValueError, match="x must have at least one position to pool over"):
        dsa_ops.segment_pool(empty_plane, 4, 2, backend=backend)


@pytest.mark.parametrize("backend", [p for p in KERNEL_BACKENDS if p.values[0] != "triton"])
def test_raw_ops_validate_too(backend):
    """The compiled ops check their arguments themselves (the Triton ops are reached only through the
    validated public API)."""
    ops = torch.ops.dsa_ops
    device = DEVICE_OF[backend]
    with torch.device(device):  # every factory call below makes device tensors
        x = torch.randn(8, 8, 3, 3)
        with pytest.raises(ValueError, match=r"x.size\(0\) must be a multiple of num_segments \(U=3\), got 8"):
            ops.segment_pool(x, 3, 2)
        with pytest.raises(ValueError, match=r"channels \(C'\) must be in \[1, C=8\], got 9"):
            ops.segment_pool(x, 4, 9)
        with pytest.raises(ValueError, match=r"kernel_size \(K\) must be odd and >= 1, got 2"):
            ops.aggregate(x, torch.rand(2, 4, 2), 4, False)
        with pytest.raises(ValueError, match="x must be float32, float64, float16 or bfloat16"):
            ops.aggregate(x.int(), torch.rand(2, 4, 3), 4, False)
        with pytest.raises(ValueError, match=r"x must have at least one position to pool over \(T\*H\*W >= 1\), "
                                             r"got shape \[8, 8, 3, 0\]"):
            ops.segment_pool(x[..., :0], 4, 2)
        with pytest.raises(ValueError, match=r"grad_y must have x's shape"):
            ops.aggregate_grad_weight(torch.randn(8, 8, 3, 2), x, 4, 4, 3)
        with pytest.raises(ValueError, match=r"second_weight \(generate.3.weight\) must be 2D"):
            ops.dsa_forward(x, torch.randn(8, 4), torch.ones(8), torch.zeros(8), torch.zeros(8), torch.ones(8),
                            torch.randn(3), 4, 2, True, 1e-5, False)
        with pytest.raises(ValueError, match=r"first_weight \(generate.0.weight\) must have shape \(alpha\*U, U=4\)"):
            ops.dsa_forward(x, torch.randn(8, 3), torch.ones(8), torch.zeros(8), torch.zeros(8), torch.ones(8),
                            torch.randn(3, 8), 4, 2, True, 1e-5, False)
        with pytest.raises(ValueError, match="Expected more than 1 value per channel when training"):
            ops.dsa_forward(x[:4], torch.randn(8, 4), torch.ones(8), torch.zeros(8), torch.zeros(8), torch.ones(8),
                            torch.randn(3, 8), 4, 1, True, 1e-5, False)


@pytest.mark.parametrize("backend", BACKENDS)
def test_inplace_refuses_grad(rng, backend):
    module = dsa_ops.DSAConv(16, split_ratio=0.25, backend=backend, inplace=True).eval().to(device_for(backend))
    x = torch.randn(8, 16, 4, 4, generator=rng).to(device_for(backend))
    with pytest.raises(RuntimeError, match="torch.no_grad"):
        module(x)
    with torch.no_grad(), pytest.raises(RuntimeError, match="overwrites x, which requires grad"):
        module(x.requires_grad_())


@pytest.mark.parametrize("backend", KERNEL_BACKENDS)
def test_raw_inplace_op_refuses_grad(rng, backend):
    op = torch.ops.dsa_ops.triton_dsa_forward_ if backend == "triton" else torch.ops.dsa_ops.dsa_forward_
    module = dsa_ops.DSAConv(16, split_ratio=0.25).eval().to(device_for(backend))
    x = torch.randn(8, 16, 4, 4, generator=rng).to(device_for(backend)).requires_grad_()
    with torch.no_grad(), pytest.raises(RuntimeError, match="x must not require grad for the in-place forward"):
        op(x, *module._generator()[1], 4, 2, False, 1e-5, False)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device for a device mismatch")
def test_parameters_on_another_device():
    module = dsa_ops.DSAConv(16, split_ratio=0.25)
    with pytest.raises(RuntimeError, match="generate.0.weight must be on x's device"):
        module(torch.randn(8, 16, 3, 3, device="cuda"))


def test_parameters_on_another_device_meta():
    """A device mismatch without a GPU: parameters on the meta device, input on the CPU."""
    module = dsa_ops.DSAConv(16, split_ratio=0.25).to("meta")
    with pytest.raises(RuntimeError, match=r"generate.0.weight must be on x's device \(cpu\), got meta"):
        module(torch.randn(8, 16, 3, 3))
