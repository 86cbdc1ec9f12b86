"""No kernel reads memory that nothing wrote, and the ops run under torch.use_deterministic_algorithms(True).
In that mode every empty tensor (torch.empty, and at::empty in the C++ ops) comes filled with NaN, so an
output or scratch value that a kernel reads before writing it turns the results NaN, where a fresh
allocation would often hold zeros and let the mistake pass. Each path of every backend runs so against the
float64 reference: the module's training forward and backward with the generator fused and in launches of
its own, its eval forward in one pass and composed, the in-place forward, and the standalone ops. On a GPU
these are the CUDA and Triton kernels themselves; here the CPU kernels, Triton's interpreter and, in
`make test`'s emulation pass, the CUDA kernels' emulation."""
import pytest
import torch

from helpers import check_aggregate, check_inplace, check_module, check_segment_pool

DTYPES = (torch.float32, torch.bfloat16)


@pytest.fixture(autouse=True)
def nan_filled_memory():
    """Deterministic algorithms on, with uninitialized memory filled; the previous settings restored."""
    enabled, warn_only = torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()
    fill = torch.utils.deterministic.fill_uninitialized_memory
    torch.use_deterministic_algorithms(True)
    torch.utils.deterministic.fill_uninitialized_memory = True
    assert torch.isnan(torch.empty(4)).all()
    yield
    torch.use_deterministic_algorithms(enabled, warn_only=warn_only)
    torch.utils.deterministic.fill_uninitialized_memory = fill


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
@pytest.mark.parametrize("fused", ["always", "never"])
def test_training_forward_and_backward(rng, monkeypatch, backend, fused, layout, dtype):
    monkeypatch.setenv("DSA_OPS_FUSED_GENERATOR", fused)
    check_module(rng, backend, videos=3, channels=12, split=0.5, tail=(2, 5, 5), layout=layout, dtype=dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
@pytest.mark.parametrize("one_launch", ["always", "never"])
def test_eval_forward(rng, monkeypatch, backend, one_launch, layout, dtype):
    monkeypatch.setenv("DSA_OPS_EVAL_ONE_LAUNCH", one_launch)
    check_module(rng, backend, videos=3, channels=12, split=0.5, tail=(2, 5, 5), layout=layout, dtype=dtype,
                 training=False)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("fused", ["always", "never"])
def test_inplace_forward(rng, monkeypatch, backend, fused, training, dtype):
    monkeypatch.setenv("DSA_OPS_FUSED_GENERATOR", fused)
    check_inplace(rng, backend, videos=3, channels=12, num_segments=4, kernel_size=3, split=0.5, identity=False,
                  tail=(2, 5, 5), layout="contiguous", dtype=dtype, training=training)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
def test_standalone_ops(rng, backend, layout, dtype):
    check_aggregate(rng, backend, layout, dtype, identity=True)
    check_segment_pool(rng, backend, layout, dtype, channels=7)
