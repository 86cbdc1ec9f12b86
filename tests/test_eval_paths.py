"""The eval forward's two paths on the backends with a one-launch eval kernel (cpu, cuda, triton): one
launch (on the CPU one pass over x), or pool + generator + aggregate, as DSA_OPS_EVAL_ONE_LAUNCH chooses
(auto: on a GPU by whether the grid of (video, channel tile) blocks fills it; on the CPU wherever the
input's planes are unit-stride). Each agrees with the float64 reference, out of place and in place, and
copies the passthrough channels bit for bit; the CPU's two paths give the same bits; on a GPU "auto"
picks by the grid's size; a bad value of the variable is refused. Also with a long S (4096): on a GPU
over the values a CUDA block of the one launch holds in shared memory (its variant that stages a column
at a time)."""
import pytest
import torch

import dsa_ops
from helpers import KERNEL_BACKENDS, assert_close, configured_pair, device_for, make_input, randomize_generator

ONE_LAUNCH_BACKENDS = KERNEL_BACKENDS
ENV = "DSA_OPS_EVAL_ONE_LAUNCH"


@pytest.mark.parametrize("backend", ONE_LAUNCH_BACKENDS)
@pytest.mark.parametrize("mode", ["always", "never", "auto"])
@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
@pytest.mark.parametrize("inplace", [False, True])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
@pytest.mark.parametrize("spatial", [(2, 5, 5), (1, 64, 64)], ids=["short-S", "long-S"])
def test_eval_paths_match_reference(rng, monkeypatch, backend, mode, layout, inplace, dtype, spatial):
    if spatial[-1] == 64 and backend == "triton" and device_for(backend) != "cuda":
        pytest.skip("long S in Triton's interpreter would take minutes")
    monkeypatch.setenv(ENV, mode)
    channels, processed = 24, 12
    fused, ref = configured_pair(rng, backend, channels, 4, 3, 0.5, True, False, dtype)
    fused.inplace = inplace
    x = make_input((3 * 4, channels, *spatial), dtype, layout, rng, device=device_for(backend))
    x[0, processed:, 0, 0, 0] = float("nan")  # copied as it is
    before = x.clone()
    expected = ref(before.cpu().double())
    with torch.no_grad():
        y = fused(x)
    assert (y is x) == inplace
    assert_close(y[:, :processed], expected[:, :processed], dtype)
    assert torch.equal(y[:, processed:].view(torch.int16 if dtype == torch.bfloat16 else torch.int32),
                       before[:, processed:].view(torch.int16 if dtype == torch.bfloat16 else torch.int32))


@pytest.mark.parametrize("backend", ONE_LAUNCH_BACKENDS)
@pytest.mark.parametrize("inplace", [False, True])
def test_auto_takes_one_launch_only_where_the_grid_fills_the_gpu(rng, monkeypatch, backend, inplace):
    if device_for(backend) != "cuda":
        pytest.skip("needs a GPU: the grid is compared with its multiprocessors")
    monkeypatch.setenv(ENV, "auto")
    monkeypatch.setenv("DSA_OPS_FUSED_GENERATOR", "never")  # the composed path in three launches
    processors = torch.cuda.get_device_properties(0).multi_processor_count
    one_launch = "eval_forward"

    def kernels(channels):
        module = dsa_ops.DSAConv(channels, split_ratio=1.0, backend=backend, inplace=inplace).cuda().eval()
        x = make_input((4, channels, 3, 3), generator=rng, device="cuda")  # one video
        with torch.no_grad():
            module(x)
            torch.cuda.synchronize()
            with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as profile:
                module(x)
                torch.cuda.synchronize()
        return [e.name for e in profile.events() if e.device_type == torch.autograd.DeviceType.CUDA]

    small = kernels(8)  # 8 blocks of one channel (2 programs of 4 on Triton): pool, generator, aggregate
    assert len(small) == 3 and not any(one_launch in name for name in small), small
    large = kernels(8 * processors)  # 8 blocks per multiprocessor (2 programs on Triton): one launch
    assert len(large) == 1 and one_launch in large[0], large


@pytest.mark.parametrize("backend", ONE_LAUNCH_BACKENDS)
@pytest.mark.parametrize("inplace", [False, True])
def test_bad_mode_is_refused(rng, monkeypatch, backend, inplace):
    monkeypatch.setenv(ENV, "sometimes")
    module = dsa_ops.DSAConv(8, split_ratio=0.5, backend=backend, inplace=inplace).to(device_for(backend)).eval()
    x = make_input((8, 8, 3, 3), generator=rng, device=device_for(backend))
    with torch.no_grad(), pytest.raises(ValueError, match=f"{ENV} must be auto, always or never, got 'sometimes'"):
        module(x)


@pytest.mark.parametrize("layout", ["contiguous", "channel_slice", "row_stride"])
@pytest.mark.parametrize("inplace", [False, True])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float64], ids=str)
def test_cpu_paths_give_the_same_bits(rng, monkeypatch, layout, inplace, dtype):
    """The CPU's one pass pools in pooling's order and aggregates as aggregate does: the same bits."""
    if dsa_ops.backend_status()["cpu"] is not None:
        pytest.skip(f"cpu backend: {dsa_ops.backend_status()['cpu']}")
    module = dsa_ops.DSAConv(24, split_ratio=0.5, with_identity=True, backend="cpu", inplace=inplace)
    module = randomize_generator(module, rng).to(dtype).eval()
    x = make_input((3 * 4, 24, 3, 5, 7), dtype, layout, rng)
    outputs = []
    for mode in ("always", "never"):
        monkeypatch.setenv(ENV, mode)
        with torch.no_grad():
            outputs.append(module(x.clone()))
    assert torch.equal(outputs[0], outputs[1])
