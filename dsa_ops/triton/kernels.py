"""Triton kernels of the DSA ops: the kernel table of csrc/ops.h (pool, pool_backward, aggregate with
grad_input as its tap-reversed twin, grad_weight), on (rows, C, S) planes from _layout.readable_input.

Launch parameters follow a documented heuristic, not an autotuner (nothing to tune inside a CUDA-graph
capture): each program owns a tile of BLOCK_C channels x BLOCK_S positions laid along the input's
unit-stride axis, 4 x 256 for contiguous inputs (s fastest) and 32 x 32 for channels-last ones; where S has
more tiles than a grid axis may hold (65535), a run of tiles (launch_sizes.grid_runs).
Offsets are computed in int64 so tensors over 2^31 elements work. Values are accumulated in float32
(float64 for double inputs); means divide by the integer S in that dtype, since a float scalar argument
would reach the kernel as float32."""
import functools

import torch
import triton
import triton.language as tl

from .._layout import accumulate_dtype, empty_output, plane_strides, spatial_size
from .launch_sizes import cdiv, grid_runs, next_power_of_2


def _tile(strides):
    """(BLOCK_C, BLOCK_S) for a plane with (row, channel, spatial) strides."""
    return (32, 32) if strides[2] != 1 else (4, 256)


def _acc(dtype):
    return tl.float64 if accumulate_dtype(dtype) == torch.float64 else tl.float32


@triton.jit
def _segment_in_range(like, v, num_segments):
    """like-shaped: whether segment v lies in [0, U). A tensor rather than a scalar, as the loads of
    every Triton version (the 3.9 interpreter included) accept it as a mask."""
    segment = tl.zeros_like(like) + v
    return (segment >= 0) & (segment < num_segments)


@triton.jit
def _first_position(i, tiles_per_program, BLOCK_S: tl.constexpr):
    """The first position s of the i-th of this program's S tiles: grid axis 2 deals out runs of
    tiles_per_program tiles of BLOCK_S (launch_sizes.grid_runs)."""
    return (tl.program_id(2).to(tl.int64) * tiles_per_program + i) * BLOCK_S


@triton.jit
def _channel_sums(x_ptr, row, c, c_mask, x_row, x_ch, x_sp, s_begin, s_end, length, ACC: tl.constexpr,
                  BLOCK_C: tl.constexpr, BLOCK_S: tl.constexpr):
    """(BLOCK_C,) sums over s in [s_begin, s_end) (at most `length` positions) of channels c of one row
    (zero where c_mask is off)."""
    base = x_ptr + row * x_row + c[:, None] * x_ch
    total = tl.zeros((BLOCK_C,), dtype=ACC)
    for s0 in range(0, length, BLOCK_S):
        s = s_begin + s0 + tl.arange(0, BLOCK_S).to(tl.int64)
        mask = c_mask[:, None] & (s < s_end)[None, :]
        values = tl.load(base + s[None, :] * x_sp, mask=mask).to(ACC)
        total += tl.sum(tl.where(mask, values, 0.0), axis=1)
    return total


@triton.jit
def _channel_means(x_ptr, row, c, c_mask, x_row, x_ch, x_sp, spatial, ACC: tl.constexpr, BLOCK_C: tl.constexpr,
                   BLOCK_S: tl.constexpr):
    """(BLOCK_C,) means over S of channels c of one row (zero where c_mask is off)."""
    return _channel_sums(x_ptr, row, c, c_mask, x_row, x_ch, x_sp, 0, spatial, spatial, ACC, BLOCK_C,
                         BLOCK_S) / spatial


@triton.jit
def _pool_kernel(x_ptr, out_ptr, x_row, x_ch, x_sp, channels, spatial, num_segments, split_length,
                 ACC: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_S: tl.constexpr):
    # Memory plan: reads the C' channels of one row's split of S once, writes their sums divided by S
    # into (splits, N, C', U), which the caller adds in split order (splits as _splits chooses; one
    # where the (rows, C' tiles) grid fills the device). Grid: (rows, C' tiles, splits of S).
    row = tl.program_id(0).to(tl.int64)
    c = (tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)).to(tl.int64)
    split = tl.program_id(2).to(tl.int64)
    c_mask = c < channels
    s_begin = split * split_length
    s_end = tl.minimum(s_begin + split_length, spatial)
    sums = _channel_sums(x_ptr, row, c, c_mask, x_row, x_ch, x_sp, s_begin, s_end, split_length, ACC, BLOCK_C,
                         BLOCK_S)
    video = row // num_segments
    videos = tl.num_programs(0) // num_segments
    out = out_ptr + ((split * videos + video) * channels + c) * num_segments + row % num_segments
    tl.store(out, sums / spatial, mask=c_mask)


@triton.jit
def _pool_backward_kernel(grad_ptr, out_ptr, o_row, o_ch, o_sp, channels, spatial, num_segments, tiles_per_program,
                          ACC: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_S: tl.constexpr):
    # Memory plan: reads (N, C', U) gradients, writes the C' channels of grad_x once.
    # Grid: (N, C' tiles, runs of tiles_per_program S tiles).
    video = tl.program_id(0).to(tl.int64)
    c = (tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)).to(tl.int64)
    c_mask = c < channels
    for i in range(0, tiles_per_program):
        s = _first_position(i, tiles_per_program, BLOCK_S) + tl.arange(0, BLOCK_S)
        mask = c_mask[:, None] & (s < spatial)[None, :]
        position = c[:, None] * o_ch + s[None, :] * o_sp
        for u in range(0, num_segments):
            grad = tl.load(grad_ptr + (video * channels + c) * num_segments + u, mask=c_mask).to(ACC)
            values = tl.broadcast_to((grad / spatial)[:, None], (BLOCK_C, BLOCK_S))
            tl.store(out_ptr + (video * num_segments + u) * o_row + position, values.to(out_ptr.dtype.element_ty),
                     mask=mask)


@triton.jit
def _aggregate_tile(x_ptr, y_ptr, w_ptr, pooled_ptr, video, c, s, x_row, x_ch, x_sp, y_row, y_ch, y_sp, channels,
                    all_channels, spatial, num_segments, kernel_size, IDENTITY: tl.constexpr, HAS_POOLED: tl.constexpr,
                    ACC: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_S: tl.constexpr):
    """y[u] = sum_k w[k] * x[u + k - P] (+ x[u]) (+ pooled[u] / S) on the first C' channels of a (video,
    channels c, positions s) tile, y[u] = x[u] on the others. The U rows are stepped through in order; the
    K taps of a row were loaded for the previous rows and come from cache."""
    c_mask = c < channels
    passthrough = (c >= channels) & (c < all_channels)
    mask = (c < all_channels)[:, None] & (s < spatial)[None, :]
    x_pos = c[:, None] * x_ch + s[None, :] * x_sp
    y_pos = c[:, None] * y_ch + s[None, :] * y_sp
    pair = video * channels + c
    first = video * num_segments
    pad = (kernel_size - 1) // 2
    for u in range(0, num_segments):
        acc = tl.zeros((BLOCK_C, BLOCK_S), dtype=ACC)
        for k in range(0, kernel_size):
            v = u + k - pad
            tap_c = c_mask & _segment_in_range(c, v, num_segments)
            tap = mask & tap_c[:, None]
            w = tl.load(w_ptr + pair * kernel_size + k, mask=tap_c).to(ACC)
            values = tl.load(x_ptr + (first + v) * x_row + x_pos, mask=tap).to(ACC)
            acc += tl.where(tap, w[:, None] * values, 0.0)
        own = tl.load(x_ptr + (first + u) * x_row + x_pos, mask=mask)
        if IDENTITY:
            acc += tl.where(mask, own.to(ACC), 0.0)
        if HAS_POOLED:
            grad = tl.load(pooled_ptr + pair * num_segments + u, mask=c_mask, other=0.0).to(ACC)
            acc += (grad / spatial)[:, None]
        out = tl.where(passthrough[:, None], own, acc.to(y_ptr.dtype.element_ty))  # passthrough: x's bits
        tl.store(y_ptr + (first + u) * y_row + y_pos, out, mask=mask)


@triton.jit
def _aggregate_kernel(x_ptr, y_ptr, w_ptr, pooled_ptr, x_row, x_ch, x_sp, y_row, y_ch, y_sp, channels, all_channels,
                      spatial, num_segments, kernel_size, tiles_per_program, IDENTITY: tl.constexpr,
                      HAS_POOLED: tl.constexpr, ACC: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_S: tl.constexpr):
    # Memory plan: see _aggregate_tile; x is read once from DRAM and y written once, the passthrough copy
    # included. Grid: (N, C tiles, runs of tiles_per_program S tiles).
    video = tl.program_id(0).to(tl.int64)
    c = (tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)).to(tl.int64)
    for i in range(0, tiles_per_program):
        s = _first_position(i, tiles_per_program, BLOCK_S) + tl.arange(0, BLOCK_S)
        _aggregate_tile(x_ptr, y_ptr, w_ptr, pooled_ptr, video, c, s, x_row, x_ch, x_sp, y_row, y_ch, y_sp, channels,
                        all_channels, spatial, num_segments, kernel_size, IDENTITY, HAS_POOLED, ACC, BLOCK_C, BLOCK_S)


@triton.jit
def _aggregate_inplace_block(x_ptr, w_ptr, video, c, s, inside, x_row, x_ch, x_sp, channels, num_segments,
                             kernel_size, IDENTITY: tl.constexpr, ACC: tl.constexpr, BLOCK_U: tl.constexpr):
    """Positions (c, s) of one video (where inside) replaced by their aggregation y[u] = sum_v m[u, v] x[v],
    m[u, v] = w[v - u + P] inside the band (+ 1 on the diagonal with identity). All U rows of the block
    are loaded before any is written: every store depends on every load of its position, and the caller
    makes sure no other program touches the block."""
    u = tl.arange(0, BLOCK_U)
    rows = x_ptr + (video * num_segments + u)[:, None] * x_row + (c * x_ch + s * x_sp)[None, :]
    row_mask = (u < num_segments)[:, None] & inside[None, :]
    values = tl.load(rows, mask=row_mask, other=0.0).to(ACC)  # (v, p)
    tap = u[None, :] - u[:, None] + (kernel_size - 1) // 2  # (u, v): the tap v - u + P
    band = (tap >= 0) & (tap < kernel_size) & (u < num_segments)[None, :]
    pair = video * channels + c
    m = tl.load(w_ptr + pair[None, None, :] * kernel_size + tap[:, :, None],
                mask=band[:, :, None] & inside[None, None, :], other=0.0).to(ACC)  # (u, v, p)
    if IDENTITY:
        m += tl.where((u[:, None] == u[None, :])[:, :, None], 1.0, 0.0).to(ACC)
    out = tl.sum(m * values[None, :, :], axis=1)
    tl.store(rows, out.to(x_ptr.dtype.element_ty), mask=row_mask)


@triton.jit
def _aggregate_inplace_kernel(x_ptr, w_ptr, x_row, x_ch, x_sp, channels, spatial, num_segments, kernel_size,
                              tiles_per_program, IDENTITY: tl.constexpr, ACC: tl.constexpr, BLOCK_U: tl.constexpr,
                              BLOCK_C: tl.constexpr, BLOCK_S: tl.constexpr):
    # In place: x's first C' channels replaced by their aggregation, a (video, channel tile, s tile)
    # block at a time, the tile's positions p = (channel, s) on one axis. Memory plan: reads the C'
    # channels of x once, writes them once. Grid: (N, C' tiles, runs of tiles_per_program S tiles).
    video = tl.program_id(0).to(tl.int64)
    p = tl.arange(0, BLOCK_C * BLOCK_S)
    c = tl.program_id(1).to(tl.int64) * BLOCK_C + p // BLOCK_S
    for i in range(0, tiles_per_program):
        s = _first_position(i, tiles_per_program, BLOCK_S) + p % BLOCK_S
        _aggregate_inplace_block(x_ptr, w_ptr, video, c, s, (c < channels) & (s < spatial), x_row, x_ch, x_sp,
                                 channels, num_segments, kernel_size, IDENTITY, ACC, BLOCK_U)


@triton.jit
def _grad_weight_kernel(dy_ptr, x_ptr, out_ptr, g_row, g_ch, g_sp, x_row, x_ch, x_sp, channels, spatial,
                        num_segments, kernel_size, split_length, ACC: tl.constexpr, BLOCK_C: tl.constexpr,
                        BLOCK_S: tl.constexpr, BLOCK_K: tl.constexpr):
    # out[split, n, c, k] = sum over U and the split's s of dy[u] * x[u + k - P]. Memory plan: reads the
    # C' channels of dy and x once from DRAM (a row's K taps come from cache), writes (splits, N, C', K)
    # partial sums, which the caller adds in split order. Each program adds in a fixed order:
    # deterministic. Grid: (N, C' tiles, splits of S).
    video = tl.program_id(0).to(tl.int64)
    c = (tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)).to(tl.int64)
    split = tl.program_id(2).to(tl.int64)
    c_mask = c < channels
    taps = tl.arange(0, BLOCK_K)
    first = video * num_segments
    pad = (kernel_size - 1) // 2
    s_begin = split * split_length
    s_end = tl.minimum(s_begin + split_length, spatial)
    acc = tl.zeros((BLOCK_C, BLOCK_K), dtype=ACC)
    for s0 in range(0, split_length, BLOCK_S):
        s = s_begin + s0 + tl.arange(0, BLOCK_S).to(tl.int64)
        mask = c_mask[:, None] & (s < s_end)[None, :]
        g_pos = c[:, None] * g_ch + s[None, :] * g_sp
        x_pos = c[:, None] * x_ch + s[None, :] * x_sp
        for u in range(0, num_segments):
            dy = tl.where(mask, tl.load(dy_ptr + (first + u) * g_row + g_pos, mask=mask).to(ACC), 0.0)
            for k in range(0, kernel_size):
                v = u + k - pad
                tap = mask & _segment_in_range(c, v, num_segments)[:, None]
                values = tl.load(x_ptr + (first + v) * x_row + x_pos, mask=tap).to(ACC)
                partial = tl.sum(tl.where(tap, dy * values, 0.0), axis=1)
                acc += tl.where(taps[None, :] == k, partial[:, None], 0.0)
    videos = tl.num_programs(0)
    out = out_ptr + ((split * videos + video) * channels + c)[:, None] * kernel_size + taps[None, :]
    tl.store(out, acc, mask=c_mask[:, None] & (taps < kernel_size)[None, :])


def pool_partials(x, num_segments, channels):
    """(splits, N, C', U) partial means over splits of S (a single split where the grid fills the
    device), for the caller to add in split order."""
    rows = x.shape[0]
    strides = plane_strides(x)
    block_c, block_s = _tile(strides)
    spatial = spatial_size(x)
    tiles = cdiv(channels, block_c)
    splits, split_length = _splits(rows * tiles, spatial, block_s, x.device)
    partial = torch.empty((splits, rows // num_segments, channels, num_segments), dtype=accumulate_dtype(x.dtype),
                          device=x.device)
    if partial.numel():
        _pool_kernel[(rows, tiles, splits)](x, partial, *strides, channels, spatial, num_segments, split_length,
                                            ACC=_acc(x.dtype), BLOCK_C=block_c, BLOCK_S=block_s)
    return partial


def _total(partial):
    return partial.sum(0) if partial.shape[0] > 1 else partial[0]


def pool(x, num_segments, channels):
    return _total(pool_partials(x, num_segments, channels))


def pool_backward(grad_pooled, x, num_segments):
    videos, channels = grad_pooled.shape[:2]
    spatial = spatial_size(x)
    grad_x = empty_output(x)
    strides = plane_strides(grad_x)
    block_c, block_s = _tile(strides)
    if grad_x.numel():
        runs, tiles_per_program = grid_runs(cdiv(spatial, block_s))
        _pool_backward_kernel[(videos, cdiv(channels, block_c), runs)](
            grad_pooled, grad_x, *strides, channels, spatial, num_segments, tiles_per_program, ACC=_acc(x.dtype),
            BLOCK_C=block_c, BLOCK_S=block_s)
    grad_x.narrow(1, channels, x.shape[1] - channels).zero_()
    return grad_x


def aggregate(x, weight, num_segments, identity, grad_pooled=None):
    """The C' = weight.size(1) channels aggregated (+ grad_pooled / S when given), the others copied, in
    one launch.
    grad_input is this on grad_y with weight.flip(2)."""
    videos, channels, kernel_size = weight.shape
    spatial = spatial_size(x)
    y = empty_output(x)
    x_strides, y_strides = plane_strides(x), plane_strides(y)
    block_c, block_s = _tile(x_strides)
    if y.numel():
        runs, tiles_per_program = grid_runs(cdiv(spatial, block_s))
        pooled = weight if grad_pooled is None else grad_pooled
        _aggregate_kernel[(videos, cdiv(x.shape[1], block_c), runs)](
            x, y, weight, pooled, *x_strides, *y_strides, channels, x.shape[1], spatial, num_segments, kernel_size,
            tiles_per_program, IDENTITY=bool(identity), HAS_POOLED=grad_pooled is not None, ACC=_acc(x.dtype),
            BLOCK_C=block_c, BLOCK_S=block_s)
    return y


def _inplace_positions(num_segments):
    """(BLOCK_U, positions) of an in-place block: the (U, U, positions) weight block it builds holds
    about 4096 values."""
    block_u = next_power_of_2(num_segments)
    return block_u, max(16, 4096 // (block_u * block_u))


def _inplace_tile(strides, num_segments):
    """(BLOCK_U, BLOCK_C, BLOCK_S) of the in-place kernel: _inplace_positions laid along the unit-stride
    axis as _tile's."""
    block_u, positions = _inplace_positions(num_segments)
    if strides[2] != 1:
        block_c = min(32, positions)
        return block_u, block_c, positions // block_c
    return block_u, 1, positions


def aggregate_inplace(x, weight, num_segments, identity):
    """x's first C' = weight.size(1) channels replaced by their aggregation; the others untouched."""
    videos, channels, kernel_size = weight.shape
    spatial = spatial_size(x)
    strides = plane_strides(x)
    block_u, block_c, block_s = _inplace_tile(strides, num_segments)
    if videos * channels * spatial:
        runs, tiles_per_program = grid_runs(cdiv(spatial, block_s))
        _aggregate_inplace_kernel[(videos, cdiv(channels, block_c), runs)](
            x, weight, *strides, channels, spatial, num_segments, kernel_size, tiles_per_program,
            IDENTITY=bool(identity), ACC=_acc(x.dtype), BLOCK_U=block_u, BLOCK_C=block_c, BLOCK_S=block_s)


def _splits(programs, spatial, block_s, device):
    """(splits, split_length) of S for a reduction over `programs` programs: about four programs per
    multiprocessor (four splits on the CPU, where the interpreter runs, so tests cover the split path),
    each split a whole number of tiles long. A function of the shape and the device only: results are
    bitwise reproducible."""
    if programs == 0:
        return 1, max(1, spatial)
    target = 4 * _multiprocessors(device) if device.type == "cuda" else 4 * programs
    splits = max(1, min(cdiv(target, programs), cdiv(spatial, block_s)))
    split_length = max(1, cdiv(cdiv(spatial, splits), block_s)) * block_s
    return max(1, cdiv(spatial, split_length)), split_length


@functools.cache
def _multiprocessors(device):
    return torch.cuda.get_device_properties(device).multi_processor_count


def grad_weight_partials(grad_y, x, num_segments, channels, kernel_size):
    """(splits, N, C', K) partial sums of grad_weight over splits of S, for the caller to add in split
    order."""
    videos = x.shape[0] // num_segments
    spatial = spatial_size(x)
    x_strides = plane_strides(x)
    block_c, block_s = _tile(x_strides)
    tiles = cdiv(channels, block_c)
    splits, split_length = _splits(videos * tiles, spatial, block_s, x.device)
    partial = torch.empty((splits, videos, channels, kernel_size), dtype=accumulate_dtype(x.dtype), device=x.device)
    if partial.numel():
        _grad_weight_kernel[(videos, tiles, splits)](
            grad_y, x, partial, *plane_strides(grad_y), *x_strides, channels, spatial, num_segments, kernel_size,
            split_length, ACC=_acc(x.dtype), BLOCK_C=block_c, BLOCK_S=block_s,
            BLOCK_K=next_power_of_2(kernel_size))
    return partial


def grad_weight(grad_y, x, num_segments, channels, kernel_size):
    return _total(grad_weight_partials(grad_y, x, num_segments, channels, kernel_size))
