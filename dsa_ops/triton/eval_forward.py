"""The module's eval forward in one Triton launch, out of place or in place. In eval the generator's
BatchNorm uses the running statistics, so the kernels of a (video, channel) row depend on that row alone:
a program pools its rows, runs the generator on them and aggregates them, with no other program to wait
for.

Where a (video, channel tile) grid is too small to keep the device busy, eval_forward and eval_forward_
decline (return None) and the op composes pool, generator and aggregation, whose grids cover every row
and position; DSA_OPS_EVAL_ONE_LAUNCH=always / never overrides that choice, as for the CUDA backend."""
import triton
import triton.language as tl

from .generator import _blocks, _hidden, _load_matrix, _load_vector, _rows_forward
from .kernels import (_acc, _aggregate_inplace_block, _aggregate_tile, _channel_means, _inplace_positions,
                      _multiprocessors, _tile)
from .._layout import empty_output, plane_strides, spatial_size
from .launch_mode import launch_mode
from .launch_sizes import cdiv


@triton.jit
def _pool_and_generate(x_ptr, pooled_ptr, kernel_ptr, w1_ptr, bn_w_ptr, bn_b_ptr, w2_ptr, running_mean_ptr,
                       running_var_ptr, mean_ptr, var_ptr, video, c, x_row, x_ch, x_sp, channels, spatial,
                       num_segments, hidden, taps, eps, ACC: tl.constexpr, BLOCK_C: tl.constexpr,
                       BLOCK_S: tl.constexpr, BLOCK_U: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_K: tl.constexpr):
    """Pools the U rows of channels c of one video, stores them and the kernels the generator makes of them
    (BatchNorm on the running statistics); the first program also stores those statistics."""
    c_mask = c < channels
    u = tl.arange(0, BLOCK_U)
    first = video * num_segments
    pooled = tl.zeros((BLOCK_C, BLOCK_U), dtype=ACC)
    for v in range(0, num_segments):
        means = _channel_means(x_ptr, first + v, c, c_mask, x_row, x_ch, x_sp, spatial, ACC, BLOCK_C, BLOCK_S)
        pooled += tl.where(u[None, :] == v, means[:, None], 0.0)
    pair = video * channels + c
    tl.store(pooled_ptr + pair[:, None] * num_segments + u[None, :], pooled,
             mask=c_mask[:, None] & (u < num_segments)[None, :])

    mean = _load_vector(running_mean_ptr, hidden, BLOCK_H)
    var = _load_vector(running_var_ptr, hidden, BLOCK_H)
    w1 = _load_matrix(w1_ptr, hidden, num_segments, BLOCK_H, BLOCK_U)
    w2 = _load_matrix(w2_ptr, taps, hidden, BLOCK_K, BLOCK_H)
    bn_w = _load_vector(bn_w_ptr, hidden, BLOCK_H)
    bn_b = _load_vector(bn_b_ptr, hidden, BLOCK_H)
    _, _, kernel = _rows_forward(_hidden(pooled, w1), mean, 1.0 / tl.sqrt(var + eps), bn_w, bn_b, w2, taps, BLOCK_K)
    k = tl.arange(0, BLOCK_K)
    tl.store(kernel_ptr + pair[:, None] * taps + k[None, :], kernel, mask=c_mask[:, None] & (k < taps)[None, :])
    if (tl.program_id(0) == 0) & (tl.program_id(1) == 0):  # the statistics used, as the op returns them
        j = tl.arange(0, BLOCK_H)
        tl.store(mean_ptr + j, mean, mask=j < hidden)
        tl.store(var_ptr + j, var, mask=j < hidden)


@triton.jit
def _eval_forward_kernel(x_ptr, y_ptr, pooled_ptr, kernel_ptr, w1_ptr, bn_w_ptr, bn_b_ptr, w2_ptr, running_mean_ptr,
                         running_var_ptr, mean_ptr, var_ptr, x_row, x_ch, x_sp, y_row, y_ch, y_sp, channels,
                         all_channels, spatial, num_segments, hidden, taps, eps, IDENTITY: tl.constexpr,
                         ACC: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_S: tl.constexpr, BLOCK_U: tl.constexpr,
                         BLOCK_H: tl.constexpr, BLOCK_K: tl.constexpr):
    # Memory plan: reads the tile's C' channels of x to pool them, then x again to aggregate (its rows
    # mostly still in L2) and writes y once, the passthrough channels copied; writes the (N, C', U) pooled
    # values and (N, C', K) kernels. One launch. Grid: (N, C tiles).
    video = tl.program_id(0).to(tl.int64)
    c = (tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)).to(tl.int64)
    if tl.program_id(1) * BLOCK_C < channels:  # a tile with processed channels: their pooled rows and kernels
        _pool_and_generate(x_ptr, pooled_ptr, kernel_ptr, w1_ptr, bn_w_ptr, bn_b_ptr, w2_ptr, running_mean_ptr,
                           running_var_ptr, mean_ptr, var_ptr, video, c, x_row, x_ch, x_sp, channels, spatial,
                           num_segments, hidden, taps, eps, ACC, BLOCK_C, BLOCK_S, BLOCK_U, BLOCK_H, BLOCK_K)
    tl.debug_barrier()  # the kernels just stored are read back below by other threads of the program
    for s0 in range(0, spatial, BLOCK_S):
        s = (s0 + tl.arange(0, BLOCK_S)).to(tl.int64)
        _aggregate_tile(x_ptr, y_ptr, kernel_ptr, kernel_ptr, video, c, s, x_row, x_ch, x_sp, y_row, y_ch, y_sp,
                        channels, all_channels, spatial, num_segments, taps, IDENTITY, False, ACC, BLOCK_C, BLOCK_S)


@triton.jit
def _eval_forward_inplace_kernel(x_ptr, pooled_ptr, kernel_ptr, w1_ptr, bn_w_ptr, bn_b_ptr, w2_ptr, running_mean_ptr,
                                 running_var_ptr, mean_ptr, var_ptr, x_row, x_ch, x_sp, channels, spatial,
                                 num_segments, hidden, taps, eps, IDENTITY: tl.constexpr, ACC: tl.constexpr,
                                 BLOCK_C: tl.constexpr, BLOCK_S: tl.constexpr, BLOCK_U: tl.constexpr,
                                 BLOCK_H: tl.constexpr, BLOCK_K: tl.constexpr, INPLACE_S: tl.constexpr):
    # Memory plan: reads the tile's C' channels of x to pool them, then again (mostly from L2) to
    # aggregate them in place, writing them once; the passthrough channels are not touched. Writes the
    # (N, C', U) pooled values and (N, C', K) kernels. One launch. Grid: (N, C' tiles): a program owns
    # all U rows of its channels, so the in-place blocks are its alone.
    video = tl.program_id(0).to(tl.int64)
    c = (tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)).to(tl.int64)
    _pool_and_generate(x_ptr, pooled_ptr, kernel_ptr, w1_ptr, bn_w_ptr, bn_b_ptr, w2_ptr, running_mean_ptr,
                       running_var_ptr, mean_ptr, var_ptr, video, c, x_row, x_ch, x_sp, channels, spatial,
                       num_segments, hidden, taps, eps, ACC, BLOCK_C, BLOCK_S, BLOCK_U, BLOCK_H, BLOCK_K)
    tl.debug_barrier()  # the kernels just stored are read back below by other threads of the program
    p = tl.arange(0, BLOCK_C * INPLACE_S)
    c_at = tl.program_id(1).to(tl.int64) * BLOCK_C + p // INPLACE_S
    for s0 in range(0, spatial, INPLACE_S):
        s = (s0 + p % INPLACE_S).to(tl.int64)
        _aggregate_inplace_block(x_ptr, kernel_ptr, video, c_at, s, (c_at < channels) & (s < spatial), x_row, x_ch,
                                 x_sp, channels, num_segments, taps, IDENTITY, ACC, BLOCK_U)


ONE_LAUNCH_ENV = "DSA_OPS_EVAL_ONE_LAUNCH"
# Programs per multiprocessor below which "auto" composes instead: a first guess, to be tuned on a GPU.
ONE_LAUNCH_PROGRAMS_PER_SM = 2


def _one_launch(x, programs):
    """Whether the eval forward runs as one launch of `programs` programs on x: DSA_OPS_EVAL_ONE_LAUNCH
    "always" or "never", else ("auto") when the grid fills the device (always in the interpreter)."""
    mode = launch_mode(ONE_LAUNCH_ENV)
    if mode != "auto":
        return mode == "always"
    if not x.is_cuda:
        return True
    return programs >= ONE_LAUNCH_PROGRAMS_PER_SM * _multiprocessors(x.device)


def _eval_buffers(running_mean, videos, channels, num_segments, hidden, taps):
    """What an eval kernel writes besides the output: pooled (N, C', U), kernels (N, C', K), mean and var."""
    return (running_mean.new_empty((videos, channels, num_segments)), running_mean.new_empty((videos, channels, taps)),
            running_mean.new_empty(hidden), running_mean.new_empty(hidden))


def eval_forward(x, params, running_mean, running_var, num_segments, channels, eps, identity):
    """(y, pooled, mean, var) of the eval forward, or None (see the module's docstring); x readable, params
    and running statistics contiguous in the accumulation dtype."""
    first_weight, bn_weight, bn_bias, second_weight = params
    videos = x.shape[0] // num_segments
    x_strides = plane_strides(x)
    block_c, block_s = _tile(x_strides)
    grid = (videos, cdiv(x.shape[1], block_c))
    if not _one_launch(x, grid[0] * grid[1]):
        return None
    hidden, taps = first_weight.shape[0], second_weight.shape[0]
    spatial = spatial_size(x)
    y = empty_output(x)
    pooled, kernel, mean, var = _eval_buffers(running_mean, videos, channels, num_segments, hidden, taps)
    if videos == 0:  # nothing to pool: the statistics used are the running ones
        return y, pooled, running_mean.clone(), running_var.clone()
    y_strides = plane_strides(y)
    _, block_u, block_h, block_k = _blocks(num_segments, hidden, taps)
    _eval_forward_kernel[grid](x, y, pooled, kernel, first_weight, bn_weight, bn_bias, second_weight, running_mean,
                               running_var, mean, var, *x_strides, *y_strides, channels, x.shape[1], spatial,
                               num_segments, hidden, taps, eps, IDENTITY=bool(identity), ACC=_acc(x.dtype),
                               BLOCK_C=block_c, BLOCK_S=block_s, BLOCK_U=block_u, BLOCK_H=block_h, BLOCK_K=block_k)
    return y, pooled, mean, var


def eval_forward_(x, params, running_mean, running_var, num_segments, channels, eps, identity):
    """The eval forward in place on x's first C' channels (x readable): (mean, var), or None having done
    nothing (see the module's docstring)."""
    first_weight, bn_weight, bn_bias, second_weight = params
    videos = x.shape[0] // num_segments
    x_strides = plane_strides(x)
    block_c, block_s = _tile(x_strides)
    grid = (videos, cdiv(channels, block_c))
    if not _one_launch(x, grid[0] * grid[1]):
        return None
    hidden, taps = first_weight.shape[0], second_weight.shape[0]
    if videos == 0:  # nothing to pool: the statistics used are the running ones
        return running_mean.clone(), running_var.clone()
    pooled, kernel, mean, var = _eval_buffers(running_mean, videos, channels, num_segments, hidden, taps)
    _, block_u, block_h, block_k = _blocks(num_segments, hidden, taps)
    _, positions = _inplace_positions(num_segments)
    _eval_forward_inplace_kernel[grid](x, pooled, kernel, first_weight, bn_weight, bn_bias, second_weight, running_mean,
                                       running_var, mean, var, *x_strides, channels, spatial_size(x), num_segments,
                                       hidden, taps, eps, IDENTITY=bool(identity), ACC=_acc(x.dtype), BLOCK_C=block_c,
                                       BLOCK_S=block_s, BLOCK_U=block_u, BLOCK_H=block_h, BLOCK_K=block_k,
                                       INPLACE_S=max(1, positions // block_c))
    return mean, var
