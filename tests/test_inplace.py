"""DSAConv(inplace=True): on every backend, x's first C' channels hold the float64 reference's output
afterwards and nothing else in x's storage changes; it compiles with fullgraph (misuse: test_errors.py)."""
import pytest
import torch

import dsa_ops
from helpers import KERNEL_BACKENDS, assert_close, configured_pair, device_for, make_input, randomize_generator

BACKENDS = ["reference", *KERNEL_BACKENDS]


def covered(x):
    """A mask over x's base storage view: True where x's elements live."""
    base = x._base if x._base is not None else x
    mask = torch.zeros(base.shape, dtype=torch.bool, device=x.device)
    mask.as_strided(x.shape, x.stride(), x.storage_offset() - base.storage_offset()).fill_(True)
    return base, mask


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("layout", ["contiguous", "channels_last", "channel_slice", "spatial_slice"])
@pytest.mark.parametrize("num_segments,kernel_size,identity,tail", [
    (4, 3, False, (3, 5, 5)), (1, 3, True, (6, 5)), (3, 5, True, (2, 3, 7)), (8, 1, False, (4, 4)),
    (5, 7, False, (1, 1, 3)),
])
@pytest.mark.parametrize("training", [False, True])
def test_inplace_matches_reference(rng, backend, layout, num_segments, kernel_size, identity, tail, training):
    channels, videos = 12, 2
    fused, ref = configured_pair(rng, backend, channels, num_segments, kernel_size, 0.5, identity, training,
                                 torch.float32)
    fused.inplace = True
    x = make_input((videos * num_segments, channels, *tail), torch.float32, layout, rng, device=device_for(backend))
    base, mask = covered(x)
    base_before, x_before = base.clone(), x.clone()
    expected = ref(x_before.cpu().double())
    with torch.no_grad():
        out = fused(x)
    assert out is x
    assert_close(x, expected, torch.float32)
    assert torch.equal(x[:, 6:], x_before[:, 6:])  # the passthrough channels are untouched, bit for bit
    assert torch.equal(base[~mask], base_before[~mask])  # and so is the rest of the storage
    for name, buf in fused.generate[1].named_buffers():
        assert_close(buf.cpu().double(), ref.generate[1].get_buffer(name), torch.float32)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16, torch.float16])
def test_inplace_dtypes(rng, backend, dtype):
    fused, ref = configured_pair(rng, backend, 16, 4, 3, 0.25, False, False, dtype)
    fused.inplace = True
    x = make_input((8, 16, 2, 5, 5), dtype, "channels_last", rng, device=device_for(backend))
    expected = ref(x.cpu().double())
    with torch.inference_mode():
        out = fused(x)
    assert out is x and x.dtype == dtype
    assert_close(x, expected, dtype)


def test_compile_fullgraph_inplace(rng, backend):
    device = device_for(backend)
    eager = randomize_generator(dsa_ops.DSAConv(16, split_ratio=0.25, backend=backend), rng).eval().to(device)
    inplace = dsa_ops.DSAConv(16, split_ratio=0.25, backend=backend, inplace=True).eval().to(device)
    inplace.load_state_dict(eager.state_dict())
    compiled = torch.compile(inplace, fullgraph=True, backend="aot_eager")
    x = torch.randn(8, 16, 3, 4, 4, generator=rng).to(device)
    with torch.no_grad():
        expected = eager(x)
        compiled(x)
    torch.testing.assert_close(x, expected, rtol=1e-5, atol=1e-5)
