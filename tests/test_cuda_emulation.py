"""The CUDA kernels, run on the CPU by the emulation (tests/cuda_emulation.py), against the CPU backend's
ops (which the other tests hold to the reference): every op, in every layout and dtype, training and
eval, both eval paths and the launch sizes a small and a large GPU choose."""
import pytest
import torch

import dsa_ops
from dsa_ops._layout import accumulate_dtype
from cuda_emulation import emulated_ops
from helpers import assert_close, make_input

pytestmark = [
    pytest.mark.skipif(dsa_ops.backend_status()["cpu"] is not None,
                       reason="the compiled extension (the CPU ops compared against) is not usable"),
    pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is visible: the other tests run the kernels themselves"),
]

CPU = torch.ops.dsa_ops
EPS = 1e-5

# (shape, U, C', K, identity)
CASES = [
    ((6, 10, 3, 5, 7), 3, 7, 3, False),
    ((8, 5, 9, 6), 4, 5, 3, True),         # 4D, every channel processed
    ((4, 12, 2, 3, 3), 1, 3, 1, False),    # one segment, one tap
    ((10, 40, 1, 4, 5), 5, 37, 5, True),   # C' over one 32-channel tile
    ((4, 6, 7, 3), 2, 2, 5, False),        # K > U
]
CASE_IDS = ["5d", "4d-split1", "U1-K1", "wide", "K-over-U"]
# (layout, dtype): every layout in float32, the other dtypes contiguous and channels-last
FORMATS = ([(layout, torch.float32) for layout in
            ("contiguous", "channels_last", "channel_slice", "spatial_slice", "row_stride")] +
           [(layout, dtype) for dtype in (torch.float64, torch.float16, torch.bfloat16)
            for layout in ("contiguous", "channels_last")])
FORMAT_IDS = [f"{layout}-{str(dtype)[6:]}" for layout, dtype in FORMATS]


def over_cases_and_formats(test):
    """Parametrizes a test over CASES x FORMATS."""
    test = pytest.mark.parametrize("layout, dtype", FORMATS, ids=FORMAT_IDS)(test)
    return pytest.mark.parametrize("shape, num_segments, channels, kernel_size, identity", CASES, ids=CASE_IDS)(test)


@pytest.fixture(scope="module")
def emulated():
    return emulated_ops()


@pytest.fixture(autouse=True)
def default_settings(emulated):
    """Each test starts on an emulated GPU of 4 multiprocessors, a block's threads resumed from thread 0
    up (tests of the kernels with barriers run in the other order too), int32 indices where they fit."""
    emulated.set_multiprocessor_count(4)
    emulated.set_thread_order("ascending")
    emulated.set_wide_indices(False)


THREAD_ORDERS = pytest.mark.parametrize("order", ["ascending", "descending"])


def generator_params(rng, num_segments, kernel_size, dtype):
    """(first_weight, bn_weight, bn_bias, running_mean, running_var, second_weight), random, in the
    accumulation dtype."""
    acc = accumulate_dtype(dtype)
    hidden = 2 * num_segments

    def randn(*shape):
        return torch.randn(*shape, generator=rng, dtype=torch.float64).to(acc)

    return (randn(hidden, num_segments), randn(hidden), randn(hidden), randn(hidden), randn(hidden).abs() + 0.5,
            randn(kernel_size, hidden))


def assert_all_close(actual, expected, dtype, x_shape):
    """x-shaped outputs at x's dtype's tolerance; the others (pooled values, statistics, kernels, weight
    and parameter gradients: sums over many products, in the accumulation dtype, added in another order
    than the CPU's) at 10x the accumulation dtype's, relative to the tensor's largest entry."""
    for a, e in zip(actual, expected):
        if a.shape == x_shape:
            assert_close(a, e, dtype)
        else:
            assert_close(a, e, accumulate_dtype(dtype), scale=10 * max(1.0, e.abs().max().item()))


def check_inplace_forward(emulated, x, args):
    """dsa_forward_ on x against the CPU's on a copy: x afterwards, and the statistics returned."""
    expected_x = x.clone()
    expected = CPU.dsa_forward_(expected_x, *args)
    out = emulated.dsa_forward_(x, *args)
    assert_close(x, expected_x, x.dtype)
    assert_all_close(out, expected, x.dtype, x.shape)


@over_cases_and_formats
@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
def test_module_forward_and_backward(rng, emulated, shape, num_segments, channels, kernel_size, identity, layout,
                                     dtype, training):
    check_forward_and_backward(rng, emulated, shape, num_segments, channels, kernel_size, identity, layout, dtype,
                               training)


@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
@pytest.mark.parametrize("shape, num_segments, channels, kernel_size, identity", CASES, ids=CASE_IDS)
@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
def test_module_with_threads_resumed_from_the_last(rng, emulated, shape, num_segments, channels, kernel_size,
                                                   identity, layout, training):
    emulated.set_thread_order("descending")
    check_forward_and_backward(rng, emulated, shape, num_segments, channels, kernel_size, identity, layout,
                               torch.float32, training)


def check_forward_and_backward(rng, emulated, shape, num_segments, channels, kernel_size, identity, layout, dtype,
                               training):
    """dsa_forward and dsa_backward against the CPU's: outputs, statistics, gradients and their layout.
    Returns how many launches each took."""
    x = make_input(shape, dtype, layout, rng)
    grad_y = make_input(shape, dtype, layout, rng)
    params = generator_params(rng, num_segments, kernel_size, dtype)
    forward_args = (*params, num_segments, channels, training, EPS, identity)
    before = emulated.launch_count()
    out = emulated.dsa_forward(x, *forward_args)
    forward_launches = emulated.launch_count() - before
    expected = CPU.dsa_forward(x, *forward_args)
    assert out[0].stride() == expected[0].stride()
    assert_all_close(out, expected, dtype, x.shape)
    first_weight, bn_weight, bn_bias, _, _, second_weight = params
    backward_args = (first_weight, bn_weight, bn_bias, second_weight, num_segments, training, EPS, identity)
    before = emulated.launch_count()
    grads = emulated.dsa_backward(grad_y, x, *expected[1:], *backward_args)
    backward_launches = emulated.launch_count() - before
    expected_grads = CPU.dsa_backward(grad_y, x, *expected[1:], *backward_args)
    assert grads[0].stride() == expected_grads[0].stride()
    assert_all_close(grads, expected_grads, dtype, x.shape)
    return forward_launches, backward_launches


@over_cases_and_formats
def test_inplace_forward(rng, emulated, shape, num_segments, channels, kernel_size, identity, layout, dtype):
    x = make_input(shape, dtype, layout, rng)
    params = generator_params(rng, num_segments, kernel_size, dtype)
    check_inplace_forward(emulated, x, (*params, num_segments, channels, False, EPS, identity))


@over_cases_and_formats
def test_segment_ops(rng, emulated, shape, num_segments, channels, kernel_size, identity, layout, dtype):
    x = make_input(shape, dtype, layout, rng)
    grad_y = make_input(shape, dtype, layout, rng)
    videos = shape[0] // num_segments
    acc = accumulate_dtype(dtype)
    weight = torch.softmax(torch.randn(videos, channels, kernel_size, generator=rng, dtype=acc), -1)
    grad_pooled = torch.randn(videos, channels, num_segments, generator=rng, dtype=acc)
    calls = {
        "segment_pool": (x, num_segments, channels),
        "segment_pool_backward": (grad_pooled, x, num_segments),
        "aggregate": (x, weight, num_segments, identity),
        "aggregate_grad_input": (grad_y, weight, grad_pooled, num_segments, identity),
        "aggregate_grad_weight": (grad_y, x, num_segments, channels, kernel_size),
    }
    for name, args in calls.items():
        assert_all_close([getattr(emulated, name)(*args)], [getattr(CPU, name)(*args)], dtype, x.shape)
    no_pooled = (grad_y, weight, None, num_segments, identity)
    assert_close(emulated.aggregate_grad_input(*no_pooled), CPU.aggregate_grad_input(*no_pooled), dtype)


@pytest.mark.parametrize("layout", ["contiguous", "channels_last", "row_stride"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("fused", ["always", "never"])
def test_int64_indexing(rng, emulated, monkeypatch, layout, dtype, fused):
    """The kernels' int64-indexed variants (aggregation, the fused forward and backward, the in-place
    aggregation, the pooling backward), which a GPU runs for tensors over 2^31 elements."""
    emulated.set_wide_indices(True)
    monkeypatch.setenv("DSA_OPS_FUSED_GENERATOR", fused)
    monkeypatch.setenv("DSA_OPS_EVAL_ONE_LAUNCH", "never")  # the in-place forward through aggregate_inplace
    shape, num_segments, channels = (6, 10, 3, 5, 7), 3, 7
    check_forward_and_backward(rng, emulated, shape, num_segments, channels, 3, False, layout, dtype, True)
    x = make_input(shape, dtype, layout, rng)
    params = generator_params(rng, num_segments, 3, dtype)
    pool_backward_args = (CPU.segment_pool(x, num_segments, channels), x, num_segments)
    assert_close(emulated.segment_pool_backward(*pool_backward_args), CPU.segment_pool_backward(*pool_backward_args),
                 dtype)
    check_inplace_forward(emulated, x, (*params, num_segments, channels, False, EPS, True))


@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
@pytest.mark.parametrize("shape", [(4, 6, 2, 40, 60), (4, 70, 3, 11)], ids=["long-S", "many-channels"])
@pytest.mark.parametrize("count", [1, 132])
@THREAD_ORDERS
def test_reductions_split_over_blocks(rng, emulated, layout, shape, count, order):
    """On a large GPU the pooling and grad_weight reductions split S over blocks (partial sums added by
    a second launch); on a one-multiprocessor GPU they do not."""
    emulated.set_multiprocessor_count(count)
    emulated.set_thread_order(order)
    num_segments, channels = 2, shape[1]
    x = make_input(shape, torch.float32, layout, rng)
    grad_y = make_input(shape, torch.float32, layout, rng)
    pooled = emulated.segment_pool(x, num_segments, channels), CPU.segment_pool(x, num_segments, channels)
    args = (grad_y, x, num_segments, channels, 3)
    grad_weight = emulated.aggregate_grad_weight(*args), CPU.aggregate_grad_weight(*args)
    assert_all_close([pooled[0], grad_weight[0]], [pooled[1], grad_weight[1]], torch.float32, x.shape)


# A (video, channel tile)'s U*S values: held in shared memory by the one-launch eval forward (a few KB
# here, even for channels-last's tiles of 32 channels), or too many for it (4*4096 float32 values, over
# the 48 KB a block has), so that each column is staged as it is written.
EVAL_SHAPES = [pytest.param((8, 12, 2, 1, 3), id="slab"), pytest.param((8, 12, 4, 32, 32), id="staged")]


@pytest.mark.parametrize("mode, count", [("never", 4), ("auto", 1), ("auto", 1000), ("always", 1000)])
@pytest.mark.parametrize("inplace", [False, True], ids=["out-of-place", "in-place"])
@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
@pytest.mark.parametrize("shape", EVAL_SHAPES)
@THREAD_ORDERS
def test_eval_paths(rng, emulated, monkeypatch, mode, count, inplace, layout, shape, order):
    """The eval forward as one launch (the tiles' values held in shared memory, or staged a column at a
    time) and composed of pool, generator and aggregation, as DSA_OPS_EVAL_ONE_LAUNCH and the grid's fill
    of the GPU choose. C' = 9 of 12 channels: channels-last's tile of 32 has processed and passthrough
    channels."""
    monkeypatch.setenv("DSA_OPS_EVAL_ONE_LAUNCH", mode)
    emulated.set_multiprocessor_count(count)
    emulated.set_thread_order(order)
    num_segments, channels = 4, 9
    x = make_input(shape, torch.float32, layout, rng)
    args = (*generator_params(rng, num_segments, 3, torch.float32), num_segments, channels, False, EPS, True)
    if inplace:
        check_inplace_forward(emulated, x, args)
    else:
        assert_all_close(emulated.dsa_forward(x, *args), CPU.dsa_forward(x, *args), torch.float32, x.shape)


def by_generator_mode(emulated, monkeypatch, run):
    """run()'s results and launch counts with DSA_OPS_FUSED_GENERATOR never and always, by mode."""
    results, launches = {}, {}
    for mode in ("never", "always"):
        monkeypatch.setenv("DSA_OPS_FUSED_GENERATOR", mode)
        before = emulated.launch_count()
        results[mode] = run()
        launches[mode] = emulated.launch_count() - before
    return results, launches


FUSED_FORMATS = [("contiguous", torch.float32), ("channels_last", torch.float32), ("row_stride", torch.float64),
                 ("channels_last", torch.bfloat16)]


@pytest.mark.parametrize("layout, dtype", FUSED_FORMATS, ids=[f"{layout}-{str(dtype)[6:]}" for layout, dtype in
                                                              FUSED_FORMATS])
@pytest.mark.parametrize("shape, num_segments, channels, kernel_size, identity", CASES, ids=CASE_IDS)
@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@THREAD_ORDERS
def test_fused_forward_is_the_composed_forward_bit_for_bit(rng, emulated, monkeypatch, shape, num_segments, channels,
                                                           kernel_size, identity, layout, dtype, training, order):
    """The generator in the aggregation kernel's prologue (DSA_OPS_FUSED_GENERATOR=always: one launch
    fewer) gives what pool + generator + aggregate give (never) bit for bit: outputs, pooled values and
    statistics."""
    monkeypatch.setenv("DSA_OPS_EVAL_ONE_LAUNCH", "never")
    emulated.set_thread_order(order)
    x = make_input(shape, dtype, layout, rng)
    args = (*generator_params(rng, num_segments, kernel_size, dtype), num_segments, channels, training, EPS, identity)
    outputs, launches = by_generator_mode(emulated, monkeypatch, lambda: emulated.dsa_forward(x, *args))
    assert launches["always"] == launches["never"] - 1
    for fused, composed in zip(outputs["always"], outputs["never"]):
        assert fused.stride() == composed.stride()
        assert torch.equal(fused, composed)
    assert_all_close(outputs["always"], CPU.dsa_forward(x, *args), dtype, x.shape)


@pytest.mark.parametrize("layout, dtype", FUSED_FORMATS, ids=[f"{layout}-{str(dtype)[6:]}" for layout, dtype in
                                                              FUSED_FORMATS])
@pytest.mark.parametrize("shape, num_segments, channels, kernel_size, identity", CASES, ids=CASE_IDS)
@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@THREAD_ORDERS
def test_fused_inplace_forward_is_the_composed_one_bit_for_bit(rng, emulated, monkeypatch, shape, num_segments,
                                                               channels, kernel_size, identity, layout, dtype,
                                                               training, order):
    """The in-place forward with the generator in the in-place aggregation's prologue (always: pooling and
    one kernel) gives x and the statistics that pool + generator + aggregate_inplace give (never) bit for
    bit (a launch fewer), the passthrough channels untouched."""
    monkeypatch.setenv("DSA_OPS_EVAL_ONE_LAUNCH", "never")
    emulated.set_thread_order(order)
    x = make_input(shape, dtype, layout, rng)
    args = (*generator_params(rng, num_segments, kernel_size, dtype), num_segments, channels, training, EPS, identity)

    def forward_():
        inplace = x.clone()
        return inplace, *emulated.dsa_forward_(inplace, *args)

    results, launches = by_generator_mode(emulated, monkeypatch, forward_)
    assert launches["always"] == launches["never"] - 1
    for fused, composed in zip(results["always"], results["never"]):
        assert torch.equal(fused, composed)
    assert torch.equal(results["always"][0][:, channels:], x[:, channels:])
    check_inplace_forward(emulated, x, args)


@pytest.mark.parametrize("layout, dtype", FUSED_FORMATS, ids=[f"{layout}-{str(dtype)[6:]}" for layout, dtype in
                                                              FUSED_FORMATS])
@pytest.mark.parametrize("shape, num_segments, channels, kernel_size, identity", CASES, ids=CASE_IDS)
@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
def test_fused_backward_agrees_with_the_composed_backward(rng, emulated, monkeypatch, shape, num_segments, channels,
                                                          kernel_size, identity, layout, dtype, training):
    """The generator's backward in grad_x's aggregation prologue (DSA_OPS_FUSED_GENERATOR=always: two
    launches) against grad_weight + generator_backward + aggregate (never) and the CPU, and bitwise the same
    whichever order the threads run in (its sums have a fixed order)."""
    x = make_input(shape, dtype, layout, rng)
    grad_y = make_input(shape, dtype, layout, rng)
    first_weight, bn_weight, bn_bias, running_mean, running_var, second_weight = generator_params(
        rng, num_segments, kernel_size, dtype)
    saved = CPU.dsa_forward(x, first_weight, bn_weight, bn_bias, running_mean, running_var, second_weight,
                            num_segments, channels, training, EPS, identity)[1:]
    args = (grad_y, x, *saved, first_weight, bn_weight, bn_bias, second_weight, num_segments, training, EPS, identity)
    grads, launches = {}, {}
    for mode, order in [("never", "ascending"), ("always", "ascending"), ("always", "descending")]:
        monkeypatch.setenv("DSA_OPS_FUSED_GENERATOR", mode)
        emulated.set_thread_order(order)
        before = emulated.launch_count()
        grads[mode, order] = emulated.dsa_backward(*args)
        launches[mode] = emulated.launch_count() - before
    assert launches["always"] == 2 and launches["never"] >= 3
    fused = grads["always", "ascending"]
    for ascending, descending in zip(fused, grads["always", "descending"]):
        assert torch.equal(ascending, descending)
    assert fused[0].stride() == grads["never", "ascending"][0].stride()
    assert_all_close(fused, grads["never", "ascending"], dtype, x.shape)
    assert_all_close(fused, CPU.dsa_backward(*args), dtype, x.shape)


def fused_launches(rng, emulated, videos, num_segments, channels):
    """check_forward_and_backward's launch counts in training on (videos * U, C', 1, 1) channels-last (the
    whole of x processed)."""
    return check_forward_and_backward(rng, emulated, (videos * num_segments, channels, 1, 1), num_segments,
                                      channels, 3, False, "channels_last", torch.float32, True)


def test_fused_paths_auto_take_up_to_1024_rows(rng, emulated, monkeypatch):
    monkeypatch.setenv("DSA_OPS_FUSED_GENERATOR", "auto")
    assert fused_launches(rng, emulated, 32, 1, 32) == (2, 2)  # R = 1024 (video, channel) rows
    assert fused_launches(rng, emulated, 25, 1, 41) == (3, 3)  # R = 1025


def test_fused_paths_need_their_values_in_shared_memory(rng, emulated, monkeypatch):
    """Even when forced, a fused kernel gives way where its values would not fit a block's 48 KiB. At U=16
    (aU=32): the forward's (3 + R) * aU floats fit up to R = 381; the backward's (21 * aU + R * (2K + U))
    floats up to R = 528."""
    monkeypatch.setenv("DSA_OPS_FUSED_GENERATOR", "always")
    assert fused_launches(rng, emulated, 3, 16, 127) == (2, 2)  # R = 381
    assert fused_launches(rng, emulated, 2, 16, 191) == (3, 2)  # R = 382
    assert fused_launches(rng, emulated, 16, 16, 33) == (3, 2)  # R = 528
    assert fused_launches(rng, emulated, 23, 16, 23) == (3, 3)  # R = 529


def inplace_launches(rng, emulated, videos, num_segments, channels):
    """The launches of the in-place forward in training on (videos * U, C', 1, 1) channels-last (checked
    against the CPU's)."""
    x = make_input((videos * num_segments, channels, 1, 1), torch.float32, "channels_last", rng)
    args = (*generator_params(rng, num_segments, 3, torch.float32), num_segments, channels, True, EPS, False)
    before = emulated.launch_count()
    check_inplace_forward(emulated, x, args)
    return emulated.launch_count() - before


def test_fused_inplace_forward_takes_up_to_1024_rows(rng, emulated, monkeypatch):
    monkeypatch.setenv("DSA_OPS_FUSED_GENERATOR", "auto")
    assert inplace_launches(rng, emulated, 32, 1, 32) == 2  # R = 1024
    assert inplace_launches(rng, emulated, 25, 1, 41) == 3  # R = 1025


def test_fused_inplace_forward_needs_its_values_in_shared_memory(rng, emulated, monkeypatch):
    """At U=16 (aU=32) the in-place kernel's (3 + R) * aU floats and its threads' 256 * U staged values fit
    a block's 48 KiB up to R = 253."""
    monkeypatch.setenv("DSA_OPS_FUSED_GENERATOR", "always")
    assert inplace_launches(rng, emulated, 11, 16, 23) == 2  # R = 253
    assert inplace_launches(rng, emulated, 2, 16, 127) == 3  # R = 254


def test_fused_backward_needs_a_generator_its_threads_hold(rng, emulated, monkeypatch):
    """A thread keeps a row's hidden units in local arrays of 32: U=17 (aU=34) takes the composed path."""
    monkeypatch.setenv("DSA_OPS_FUSED_GENERATOR", "always")
    assert fused_launches(rng, emulated, 2, 17, 3) == (2, 3)


def test_fused_paths_refuse_a_bad_mode(rng, emulated, monkeypatch):
    monkeypatch.setenv("DSA_OPS_FUSED_GENERATOR", "sometimes")
    with pytest.raises(ValueError, match="DSA_OPS_FUSED_GENERATOR must be auto, always or never, got 'sometimes'"):
        fused_launches(rng, emulated, 2, 4, 3)


def test_emulation_runs_shuffles_barriers_and_shared_memory(emulated):
    assert emulated.simt_self_test("block_sum")[:2].tolist() == [2016.0, 2016.0]  # 0 + 1 + ... + 63, per block


def test_emulation_fills_shared_memory_with_nan(emulated):
    assert emulated.simt_self_test("unwritten_shared").isnan().all()


def test_emulation_shows_a_missing_barrier_in_one_thread_order(emulated):
    assert emulated.simt_self_test("missing_barrier")[1:64].tolist() == list(range(63))
    emulated.set_thread_order("descending")
    assert emulated.simt_self_test("missing_barrier")[1:64].isnan().all()


@pytest.mark.parametrize("case, message", [
    ("early_return", "__syncthreads after another thread of the block returned"),
    ("partial_barrier", "a thread returned while others wait at __syncthreads"),
    ("partial_warp_shuffle", "last warp is partial"),
    ("split_barriers", "deadlock"),
    ("empty_grid", r"gridDim.x = 0 outside \[1, 2\^31 - 1\]"),
    ("oversized_block", r"blockDim.x = 2048 outside \[1, 1024\]"),
    ("oversized_shared", "65536 bytes of dynamic shared memory"),
])
def test_emulation_rejects_what_a_gpu_would_not_run(emulated, case, message):
    with pytest.raises(RuntimeError, match=message):
        emulated.simt_self_test(case)
