"""Shared test helpers: the backends to test, inputs in every layout, per-dtype tolerances, module pairs
with random weights."""
import os

import pytest
import torch

import dsa_ops

# The device each kernel backend runs on here (Triton's interpreter runs on CPU tensors).
DEVICE_OF = {name: dsa_ops.ops._device_of_backend(name) for name in ("cpu", "cuda", "triton")}


def backend_param(name):
    """pytest.param for a kernel backend, skipped with the reason when it cannot run here."""
    problem = dsa_ops.backend_status()[name]
    return pytest.param(name, marks=pytest.mark.skipif(problem is not None, reason=f"{name} backend: {problem}"))


KERNEL_BACKENDS = [backend_param(name) for name in DEVICE_OF]


def backend_label(backend):
    """The backend's name in printed counts; with DSA_OPS_TEST_CUDA_EMULATION=1 (tests/conftest.py) the
    cpu backend's ops are the emulated CUDA kernels, and the label says so."""
    if backend == "cpu" and os.environ.get("DSA_OPS_TEST_CUDA_EMULATION") == "1":
        return "cpu (CUDA kernels, emulated)"
    return backend


def device_for(backend):
    """The device a backend's tensors live on; the reference runs on the CPU."""
    return DEVICE_OF.get(backend, "cpu")

LAYOUTS = ("contiguous", "channels_last", "channel_slice", "spatial_slice", "row_stride")

# (rtol, atol) per dtype of the compared tensors.
TOLERANCES = {
    torch.float64: (1e-10, 1e-10),
    torch.float32: (1e-5, 1e-5),
    torch.float16: (1e-2, 1e-2),
    torch.bfloat16: (1e-2, 2e-2),
}


def make_input(shape, dtype=torch.float32, layout="contiguous", generator=None, requires_grad=False, device="cpu"):
    """A random tensor of `shape` on `device` laid out as named: contiguous, channels_last(_3d), a
    channel slice of a wider tensor, a spatially sliced view (not flattenable: the ops copy it), every
    other row, or (for output gradients) broadcast along the spatial axes or from one value."""
    def randn(*s):
        return torch.randn(*s, generator=generator, dtype=torch.float64).to(device=device, dtype=dtype)

    rows, channels, *spatial = shape
    if layout == "contiguous":
        x = randn(*shape)
    elif layout == "channels_last":
        fmt = torch.channels_last_3d if len(shape) == 5 else torch.channels_last
        x = randn(*shape).contiguous(memory_format=fmt)
    elif layout == "channel_slice":
        x = randn(rows, channels + 3, *spatial)[:, 2:2 + channels]
    elif layout == "spatial_slice":
        x = randn(rows, channels, *spatial[:-1], spatial[-1] + 2)[..., 1:1 + spatial[-1]]
    elif layout == "row_stride":
        x = randn(2 * rows, channels, *spatial)[::2]
    elif layout == "spatially_broadcast":  # as y.mean over the spatial axes hands its gradient back
        x = randn(rows, channels, *[1] * len(spatial)).expand(shape)
    elif layout == "broadcast_scalar":  # as y.sum() hands its gradient back: every stride 0
        x = randn(1).expand(shape)
    else:
        raise ValueError(layout)
    assert x.shape == torch.Size(shape)
    return x.requires_grad_(requires_grad)


def assert_close(actual, expected, dtype=None, scale=1.0):
    rtol, atol = TOLERANCES[dtype or actual.dtype]
    torch.testing.assert_close(actual.to(device=expected.device, dtype=expected.dtype), expected, rtol=rtol * scale, atol=atol * scale)


def randomize_generator(module, generator=None):
    """Random generator weights and BatchNorm affine/running statistics (the defaults are 1 and 0)."""
    with torch.no_grad():
        for name, tensor in module.generate.state_dict().items():
            if name.endswith("num_batches_tracked"):
                continue
            values = torch.randn(tensor.shape, generator=generator, dtype=torch.float64)
            if name.endswith("running_var"):
                values = values.abs() + 0.5
            tensor.copy_(values)
    return module


def module_pair(channels, generator=None, backend="cpu", **kwargs):
    """(DSAConv on `backend` and its device, DSAReference on the CPU), float64, same random weights."""
    fused = randomize_generator(dsa_ops.DSAConv(channels, backend=backend, **kwargs), generator)
    ref = dsa_ops.DSAReference(channels, **kwargs)
    ref.load_state_dict(fused.state_dict())
    return fused.double().to(device_for(backend)), ref.double()


def run_module(module, x, grad):
    """Forward + backward: (y, grad_x, [param grads])."""
    x = x.detach().requires_grad_(True)
    module.zero_grad(set_to_none=True)
    y = module(x)
    y.backward(grad)
    return y.detach(), x.grad, [p.grad for p in module.parameters()]


def configured_pair(rng, backend, channels, num_segments, kernel_size, split, identity, training, dtype):
    """module_pair for one configuration, in train or eval, DSAConv's parameters in float32 unless the
    input is float64."""
    fused, ref = module_pair(channels, rng, backend, U_segment=num_segments, kernel_size=kernel_size,
                             padding=(kernel_size - 1) // 2, split_ratio=split, with_identity=identity)
    fused.train(training)
    ref.train(training)
    if dtype != torch.float64:
        fused.float()
    return fused, ref


def check_inplace(rng, backend, *, videos, channels, num_segments, kernel_size, split, identity, tail, layout, dtype,
                  training):
    """DSAConv(inplace=True) under no_grad against the float64 reference: x holds the output after."""
    fused, ref = configured_pair(rng, backend, channels, num_segments, kernel_size, split, identity, training, dtype)
    fused.inplace = True
    x = make_input((videos * num_segments, channels, *tail), dtype, layout, rng, device=DEVICE_OF[backend])
    expected = ref(x.cpu().double())
    with torch.no_grad():
        assert fused(x) is x
    assert_close(x, expected, dtype)


def check_module(rng, backend, *, videos=2, channels=16, num_segments=4, kernel_size=3, split=0.25, identity=False,
                 tail=(3, 5, 5), layout="contiguous", dtype=torch.float32, training=True, relative_to_peak=False,
                 grad_layout=None):
    """DSAConv on `backend` against the float64 reference: output, input and parameter gradients,
    running stats. relative_to_peak: gradient tolerances scale with the reference gradient's largest
    entry (for random shapes, where a small-variance BatchNorm feature makes gradients large and the
    rounding of the large terms shows in the small entries). grad_layout: the output gradient's layout
    (default: x's)."""
    fused, ref = configured_pair(rng, backend, channels, num_segments, kernel_size, split, identity, training, dtype)
    shape = (videos * num_segments, channels, *tail)
    device = DEVICE_OF[backend]
    x = make_input(shape, dtype, layout, rng, device=device)
    grad = make_input(shape, dtype, grad_layout or layout, rng, device=device)
    y, gx, gparams = run_module(fused, x, grad)
    y_ref, gx_ref, gparams_ref = run_module(ref, x.cpu().double(), grad.cpu().double())
    assert y.dtype == dtype and y.shape == x.shape and gx.dtype == dtype
    assert_close(y, y_ref, dtype)
    def peak(reference):
        return max(1.0, reference.abs().max().item()) if relative_to_peak else 1.0

    assert_close(gx, gx_ref, dtype, scale=peak(gx_ref))
    # parameter grads are sums over N*C'*U*S products, accumulated in float32 (float64 for double)
    for g, g_ref in zip(gparams, gparams_ref):
        assert_close(g, g_ref, torch.float64 if dtype == torch.float64 else torch.float32, scale=10 * peak(g_ref))
    for name, buf in fused.generate[1].named_buffers():
        assert_close(buf.cpu().double(), ref.generate[1].get_buffer(name), torch.float64 if dtype == torch.float64
                     else torch.float32)


def check_aggregate(rng, backend, layout, dtype, identity):
    """dsa_aggregate on `backend` against the float64 reference, forward and backward (x and weight)."""
    device = DEVICE_OF[backend]
    x = make_input((12, 10, 2, 3, 4), dtype, layout, rng, requires_grad=True, device=device)
    weight = torch.rand(3, 6, 5, generator=rng, dtype=torch.float64).to(device, dtype).requires_grad_(True)
    grad = make_input(x.shape, dtype, layout, rng, device=device)
    y = dsa_ops.dsa_aggregate(x, weight, 4, identity, backend=backend)
    y.backward(grad)
    x64 = x.detach().cpu().double().requires_grad_(True)
    w64 = weight.detach().cpu().double().requires_grad_(True)
    y_ref = dsa_ops.reference.aggregate(x64, w64, 4, identity)
    y_ref.backward(grad.cpu().double())
    assert y.dtype == dtype
    assert_close(y, y_ref, dtype)
    assert_close(x.grad, x64.grad, dtype)
    assert_close(weight.grad, w64.grad, dtype, scale=5)


def check_segment_pool(rng, backend, layout, dtype, channels):
    """segment_pool on `backend` against the float64 reference, forward and backward."""
    x = make_input((9, 10, 7, 7), dtype, layout, rng, requires_grad=True, device=DEVICE_OF[backend])
    pooled = dsa_ops.segment_pool(x, 3, channels, backend=backend)
    assert pooled.shape == (3, channels, 3)
    assert pooled.dtype == (torch.float64 if dtype == torch.float64 else torch.float32)
    x64 = x.detach().cpu().double().requires_grad_(True)
    expected = dsa_ops.reference.segment_pool(x64, 3, channels)
    grad = torch.randn(pooled.shape, generator=rng, dtype=torch.float64)
    pooled.backward(grad.to(pooled.device, pooled.dtype))
    expected.backward(grad)
    assert_close(pooled, expected, torch.float64 if dtype == torch.float64 else torch.float32)
    assert_close(x.grad, x64.grad, dtype)


class _RecordedKernel:
    """Stands in for a Triton kernel: each launch (kernel[grid](...)) appends (name, grid) to `launches`,
    then runs the kernel where one is given."""

    def __init__(self, name, launches, kernel=None):
        self.name, self.launches, self.kernel = name, launches, kernel

    def __getitem__(self, grid):
        launch = self.kernel[grid] if self.kernel is not None else None

        def run(*args, **kwargs):
            self.launches.append((self.name, tuple(grid)))
            return launch(*args, **kwargs) if launch is not None else None

        return run


def record_triton_launches(monkeypatch, launch=True):
    """A list to which every launch of a Triton kernel of dsa_ops appends (kernel name, grid) from now on;
    launch=False: the kernels do not run."""
    from dsa_ops.triton import eval_forward, fused, generator, kernels

    launches = []
    for module in (kernels, generator, eval_forward, fused):
        for name, value in list(vars(module).items()):
            if name.endswith("_kernel") and hasattr(value, "__getitem__"):
                monkeypatch.setattr(module, name, _RecordedKernel(name, launches, value if launch else None))
    return launches
