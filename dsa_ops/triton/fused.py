"""The module's forward and backward in two Triton launches each, the generator run in the prologue of
the aggregation kernel (the Triton twin of csrc/cuda/fused_forward.cu and fused_backward.cu):
    forward:  pooling's partial sums; then every program finishes the pooled rows, the BatchNorm
              statistics over all R = N*C' rows and its own rows' kernels, and aggregates its positions
              (in place too, forward_, as the CUDA backend does);
    backward: grad_weight's partial sums; then every program runs the generator's backward (its
              BatchNorm sums over all rows) for its own rows and aggregates grad_x, the pooled gradient
              folded in; the first program also writes the parameter gradients.
Every program repeats the generator's sums over all rows in the same code and order as the composed
kernels (generator.py), so the two paths agree: the forward bit for bit. Each program owns a span of
positions of one (video, channel tile), so the kernels it stores for its aggregation (scratch indexed by
span) are read back by itself alone.

DSA_OPS_FUSED_GENERATOR=auto (the default) takes these paths up to FUSED_ROWS_MAX rows, always / never
force the choice, as for the CUDA backend."""
import triton
import triton.language as tl

from .._layout import empty_output, plane_strides, spatial_size
from .generator import (_backward_operands, _blocks, _bn_input_terms, _generator_grad_sums, _generator_grads_pass,
                        _hidden, _load_matrix, _load_vector, _row_block, _rows_forward, _rows_input_grads,
                        _statistics, _store_parameter_grads, _store_rows, _store_vectors)
from .kernels import _acc, _aggregate_inplace_block, _aggregate_tile, _inplace_tile, _splits, _tile
from .launch_mode import launch_mode
from .launch_sizes import cdiv

FUSED_ENV = "DSA_OPS_FUSED_GENERATOR"
# Rows up to which "auto" fuses: each program repeats O(R * aU * (U + K)) flops and reads the (R, U)
# pooled rows (from L2) two or three times. A first guess (the paper's shapes at split 1/8 have R = 64
# to 384), to be tuned on a GPU.
FUSED_ROWS_MAX = 1024


def fused_path(x, rows):
    """Whether a call on x with R = rows generator rows takes the fused path (see the module's docstring)."""
    mode = launch_mode(FUSED_ENV)
    if mode == "never" or rows == 0 or x.numel() == 0:
        return False
    return mode == "always" or rows <= FUSED_ROWS_MAX


@triton.jit
def _aggregate_span(x_ptr, y_ptr, w_ptr, pooled_ptr, video, c, span, x_row, x_ch, x_sp, y_row, y_ch, y_sp, channels,
                    all_channels, spatial, num_segments, kernel_size, IDENTITY: tl.constexpr,
                    HAS_POOLED: tl.constexpr, ACC: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_S: tl.constexpr):
    """_aggregate_tile over this program's span of positions, a whole number of BLOCK_S tiles."""
    s_begin = tl.program_id(2).to(tl.int64) * span
    for s0 in range(0, span, BLOCK_S):
        s = s_begin + s0 + tl.arange(0, BLOCK_S).to(tl.int64)
        _aggregate_tile(x_ptr, y_ptr, w_ptr, pooled_ptr, video, c, s, x_row, x_ch, x_sp, y_row, y_ch, y_sp, channels,
                        all_channels, spatial, num_segments, kernel_size, IDENTITY, HAS_POOLED, ACC, BLOCK_C, BLOCK_S)


@triton.jit
def _first_program():
    return (tl.program_id(0) == 0) & (tl.program_id(1) == 0) & (tl.program_id(2) == 0)


@triton.jit
def _own_kernels(partial_ptr, splits, w1_ptr, bn_w_ptr, bn_b_ptr, w2_ptr, running_mean_ptr, running_var_ptr,
                 pooled_ptr, mean_ptr, var_ptr, kernels, video, count, channels, num_segments, hidden, taps, eps,
                 TRAINING: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_R: tl.constexpr, BLOCK_U: tl.constexpr,
                 BLOCK_H: tl.constexpr, BLOCK_K: tl.constexpr):
    """The kernels of this program's rows (its channel tile of one video) into its slab `kernels` of the
    scratch, from the statistics the BatchNorm uses (in training the batch's, over all R = count rows of
    pooling's partial sums). The programs of the first span store their rows' pooled values, the first
    program the statistics."""
    w1 = _load_matrix(w1_ptr, hidden, num_segments, BLOCK_H, BLOCK_U)
    mean, var = _statistics(partial_ptr, splits, count, num_segments, w1, running_mean_ptr, running_var_ptr, hidden,
                            TRAINING, BLOCK_R, BLOCK_U, BLOCK_H)
    w2 = _load_matrix(w2_ptr, taps, hidden, BLOCK_K, BLOCK_H)
    bn_w = _load_vector(bn_w_ptr, hidden, BLOCK_H)
    bn_b = _load_vector(bn_b_ptr, hidden, BLOCK_H)
    end = video * channels + channels
    r, p = _row_block(partial_ptr, splits, count * num_segments, video * channels + tl.program_id(1) * BLOCK_C, end,
                      num_segments, BLOCK_C, BLOCK_U)
    _, _, kernel = _rows_forward(_hidden(p, w1), mean, 1.0 / tl.sqrt(var + eps), bn_w, bn_b, w2, taps, BLOCK_K)
    _store_rows(kernels, r, kernel, end, taps, BLOCK_K, False)
    if tl.program_id(2) == 0:
        _store_rows(pooled_ptr, r, p, end, num_segments, BLOCK_U, False)
    if _first_program():
        _store_vectors(mean_ptr, var_ptr, mean, var, hidden, BLOCK_H)


@triton.jit
def _fused_forward_kernel(x_ptr, y_ptr, partial_ptr, splits, w1_ptr, bn_w_ptr, bn_b_ptr, w2_ptr, running_mean_ptr,
                          running_var_ptr, pooled_ptr, mean_ptr, var_ptr, kernel_ptr, x_row, x_ch, x_sp, y_row, y_ch,
                          y_sp, channels, all_channels, spatial, num_segments, hidden, taps, eps, span,
                          IDENTITY: tl.constexpr, TRAINING: tl.constexpr, ACC: tl.constexpr, BLOCK_C: tl.constexpr,
                          BLOCK_S: tl.constexpr, BLOCK_R: tl.constexpr, BLOCK_U: tl.constexpr,
                          BLOCK_H: tl.constexpr, BLOCK_K: tl.constexpr):
    # Memory plan: a program with processed channels reads pooling's (splits, R, U) partial sums (from
    # L2) twice for the batch statistics in training, then its own rows' once, and stores its rows'
    # kernels in its slab of the (spans, N, C', K) scratch, read back below (_own_kernels); then it reads
    # its span of x once and writes y once, the passthrough channels copied. Grid: (N, C tiles, spans of S).
    video = tl.program_id(0).to(tl.int64)
    c = (tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)).to(tl.int64)
    count = tl.num_programs(0) * channels
    kernels = kernel_ptr + tl.program_id(2).to(tl.int64) * count * taps
    if tl.program_id(1) * BLOCK_C < channels:
        _own_kernels(partial_ptr, splits, w1_ptr, bn_w_ptr, bn_b_ptr, w2_ptr, running_mean_ptr, running_var_ptr,
                     pooled_ptr, mean_ptr, var_ptr, kernels, video, count, channels, num_segments, hidden, taps, eps,
                     TRAINING, BLOCK_C, BLOCK_R, BLOCK_U, BLOCK_H, BLOCK_K)
    tl.debug_barrier()  # the kernels just stored are read back below by other threads of the program
    _aggregate_span(x_ptr, y_ptr, kernels, kernels, video, c, span, x_row, x_ch, x_sp, y_row, y_ch, y_sp, channels,
                    all_channels, spatial, num_segments, taps, IDENTITY, False, ACC, BLOCK_C, BLOCK_S)


@triton.jit
def _fused_inplace_kernel(x_ptr, partial_ptr, splits, w1_ptr, bn_w_ptr, bn_b_ptr, w2_ptr, running_mean_ptr,
                          running_var_ptr, pooled_ptr, mean_ptr, var_ptr, kernel_ptr, x_row, x_ch, x_sp, channels,
                          spatial, num_segments, hidden, taps, eps, span, IDENTITY: tl.constexpr,
                          TRAINING: tl.constexpr, ACC: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_S: tl.constexpr,
                          BLOCK_R: tl.constexpr, BLOCK_U: tl.constexpr, BLOCK_H: tl.constexpr,
                          BLOCK_K: tl.constexpr):
    # In place: x's first C' channels replaced by their aggregation. Memory plan: _own_kernels as in
    # _fused_forward_kernel, then the program reads its span of its channels' U rows once and rewrites
    # them once (kernels._aggregate_inplace_block: a block of positions is this program's alone); the
    # passthrough channels are not touched. Grid: (N, C' tiles, spans of S).
    video = tl.program_id(0).to(tl.int64)
    count = tl.num_programs(0) * channels
    kernels = kernel_ptr + tl.program_id(2).to(tl.int64) * count * taps
    _own_kernels(partial_ptr, splits, w1_ptr, bn_w_ptr, bn_b_ptr, w2_ptr, running_mean_ptr, running_var_ptr,
                 pooled_ptr, mean_ptr, var_ptr, kernels, video, count, channels, num_segments, hidden, taps, eps,
                 TRAINING, BLOCK_C, BLOCK_R, BLOCK_U, BLOCK_H, BLOCK_K)
    tl.debug_barrier()  # the kernels just stored are read back below by other threads of the program
    p = tl.arange(0, BLOCK_C * BLOCK_S)
    c = tl.program_id(1).to(tl.int64) * BLOCK_C + p // BLOCK_S
    s_begin = tl.program_id(2).to(tl.int64) * span
    for s0 in range(0, span, BLOCK_S):
        s = s_begin + s0 + p % BLOCK_S
        _aggregate_inplace_block(x_ptr, kernels, video, c, s, (c < channels) & (s < spatial), x_row, x_ch, x_sp,
                                 channels, num_segments, taps, IDENTITY, ACC, BLOCK_U)


@triton.jit
def _fused_backward_kernel(dy_ptr, grad_x_ptr, rows_ptr, grad_partial_ptr, grad_splits, w1_ptr, bn_w_ptr, bn_b_ptr,
                           w2_ptr, mean_ptr, var_ptr, kernel_ptr, grad_rows_ptr, grad_w1_ptr, grad_bn_w_ptr,
                           grad_bn_b_ptr, grad_w2_ptr, g_row, g_ch, g_sp, o_row, o_ch, o_sp, channels, all_channels,
                           spatial, num_segments, hidden, taps, eps, span, IDENTITY: tl.constexpr,
                           TRAINING: tl.constexpr, ACC: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_S: tl.constexpr,
                           BLOCK_R: tl.constexpr, BLOCK_U: tl.constexpr, BLOCK_H: tl.constexpr,
                           BLOCK_K: tl.constexpr):
    # Memory plan: a program with processed channels reads the (R, U) pooled rows and grad_weight's
    # (splits, R, K) partial sums (from L2) once for the BatchNorm sums in training, then its own rows'
    # once, and stores its rows' reversed kernels and pooled gradients in its slabs of the (spans, N, C',
    # K) and (spans, N, C', U) scratch, read back below; then it reads its span of grad_y once and writes
    # grad_x once, the passthrough channels copied. The first program makes one more pass over the rows
    # for the parameter gradients (two in eval, where it has no BatchNorm sums yet). Grid: (N, C tiles,
    # spans of S).
    video = tl.program_id(0).to(tl.int64)
    c = (tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)).to(tl.int64)
    count = tl.num_programs(0) * channels
    kernels = kernel_ptr + tl.program_id(2).to(tl.int64) * count * taps
    grad_rows = grad_rows_ptr + tl.program_id(2).to(tl.int64) * count * num_segments
    if tl.program_id(1) * BLOCK_C < channels:
        w1, w2, bn_w, bn_b, mean, invstd = _backward_operands(w1_ptr, w2_ptr, bn_w_ptr, bn_b_ptr, mean_ptr, var_ptr,
                                                              num_segments, hidden, taps, eps, BLOCK_U, BLOCK_H,
                                                              BLOCK_K)
        if TRAINING:
            grad_w2, grad_bn_w, grad_bn_b = _generator_grad_sums(rows_ptr, grad_partial_ptr, grad_splits, count,
                                                                 num_segments, taps, w1, mean, invstd, bn_w, bn_b,
                                                                 w2, BLOCK_R, BLOCK_U, BLOCK_H, BLOCK_K)
        else:
            grad_bn_w = tl.zeros_like(bn_w)
            grad_bn_b = tl.zeros_like(bn_w)
        mean_grad, projection = _bn_input_terms(bn_w, grad_bn_w, grad_bn_b, count, TRAINING)
        end = video * channels + channels
        r, _, kernel, _, grad_p = _rows_input_grads(rows_ptr, grad_partial_ptr, grad_splits,
                                                    video * channels + tl.program_id(1) * BLOCK_C, end, count,
                                                    num_segments, taps, w1, mean, invstd, bn_w, bn_b, w2, mean_grad,
                                                    projection, BLOCK_C, BLOCK_U, BLOCK_K)
        _store_rows(kernels, r, kernel, end, taps, BLOCK_K, True)
        _store_rows(grad_rows, r, grad_p, end, num_segments, BLOCK_U, False)
        if _first_program():
            if not TRAINING:  # in training the sums above are these
                grad_w2, grad_bn_w, grad_bn_b = _generator_grad_sums(rows_ptr, grad_partial_ptr, grad_splits,
                                                                     count, num_segments, taps, w1, mean, invstd,
                                                                     bn_w, bn_b, w2, BLOCK_R, BLOCK_U, BLOCK_H,
                                                                     BLOCK_K)
            grad_w1 = _generator_grads_pass(rows_ptr, grad_partial_ptr, grad_splits, kernels, grad_rows, count,
                                            num_segments, taps, w1, mean, invstd, bn_w, bn_b, w2, mean_grad,
                                            projection, False, BLOCK_R, BLOCK_U, BLOCK_H, BLOCK_K)
            _store_parameter_grads(grad_w1_ptr, grad_bn_w_ptr, grad_bn_b_ptr, grad_w2_ptr, grad_w1, grad_bn_w,
                                   grad_bn_b, grad_w2, num_segments, hidden, taps, BLOCK_U, BLOCK_H, BLOCK_K)
    tl.debug_barrier()  # the kernels and pooled gradients just stored are read back below
    _aggregate_span(dy_ptr, grad_x_ptr, kernels, grad_rows, video, c, span, g_row, g_ch, g_sp, o_row, o_ch, o_sp,
                    channels, all_channels, spatial, num_segments, taps, IDENTITY, True, ACC, BLOCK_C, BLOCK_S)


def _grid(x, videos):
    """(grid, span, BLOCK_C, BLOCK_S): (video, channel tile) programs over spans of S sized as the
    reductions' splits (kernels._splits: about four programs per multiprocessor)."""
    block_c, block_s = _tile(plane_strides(x))
    tiles = cdiv(x.shape[1], block_c)
    spans, span = _splits(videos * tiles, spatial_size(x), block_s, x.device)
    return (videos, tiles, spans), span, block_c, block_s


def _forward_buffers(partial, spans, hidden, taps):
    """What a fused forward writes besides its output: pooled (N, C', U), the kernels' (spans, N, C', K)
    scratch, mean and var; partial is pooling's (splits, N, C', U)."""
    _, videos, channels, segments = partial.shape
    return (partial.new_empty((videos, channels, segments)), partial.new_empty((spans, videos, channels, taps)),
            partial.new_empty(hidden), partial.new_empty(hidden))


def forward(x, partial, params, running_mean, running_var, num_segments, training, eps, identity):
    """(y, pooled, mean, var) from pooling's (splits, N, C', U) partial sums of x (readable); params and
    running statistics contiguous in the accumulation dtype."""
    first_weight, bn_weight, bn_bias, second_weight = params
    splits, videos, channels, _ = partial.shape
    hidden, taps = first_weight.shape[0], second_weight.shape[0]
    grid, span, block_c, block_s = _grid(x, videos)
    y = empty_output(x)
    pooled, kernel, mean, var = _forward_buffers(partial, grid[2], hidden, taps)
    block_r, block_u, block_h, block_k = _blocks(num_segments, hidden, taps)
    _fused_forward_kernel[grid](x, y, partial, splits, first_weight, bn_weight, bn_bias, second_weight, running_mean,
                                running_var, pooled, mean, var, kernel, *plane_strides(x), *plane_strides(y), channels,
                                x.shape[1], spatial_size(x), num_segments, hidden, taps, eps, span,
                                IDENTITY=bool(identity), TRAINING=bool(training), ACC=_acc(x.dtype), BLOCK_C=block_c,
                                BLOCK_S=block_s, BLOCK_R=block_r, BLOCK_U=block_u, BLOCK_H=block_h, BLOCK_K=block_k)
    return y, pooled, mean, var


def forward_(x, partial, params, running_mean, running_var, num_segments, training, eps, identity):
    """(mean, var), x's (readable) first C' channels replaced in place by the output, from pooling's (splits,
    N, C', U) partial sums of x; params and running statistics as forward takes them."""
    first_weight, bn_weight, bn_bias, second_weight = params
    splits, videos, channels, _ = partial.shape
    hidden, taps = first_weight.shape[0], second_weight.shape[0]
    strides = plane_strides(x)
    block_u, block_c, block_s = _inplace_tile(strides, num_segments)
    tiles = cdiv(channels, block_c)
    spans, span = _splits(videos * tiles, spatial_size(x), block_s, x.device)
    pooled, kernel, mean, var = _forward_buffers(partial, spans, hidden, taps)
    block_r, _, block_h, block_k = _blocks(num_segments, hidden, taps)
    _fused_inplace_kernel[(videos, tiles, spans)](
        x, partial, splits, first_weight, bn_weight, bn_bias, second_weight, running_mean, running_var, pooled, mean,
        var, kernel, *strides, channels, spatial_size(x), num_segments, hidden, taps, eps, span,
        IDENTITY=bool(identity), TRAINING=bool(training), ACC=_acc(x.dtype), BLOCK_C=block_c, BLOCK_S=block_s,
        BLOCK_R=block_r, BLOCK_U=block_u, BLOCK_H=block_h, BLOCK_K=block_k)
    return mean, var


def backward(dy, rows, grad_partial, params, mean, var, num_segments, training, eps, identity):
    """(grad_x, grad_first_weight, grad_bn_weight, grad_bn_bias, grad_second_weight) from dy (readable),
    the (R, U) pooled rows and grad_weight's (splits, N, C', K) partial sums; the rest contiguous in the
    accumulation dtype."""
    first_weight, bn_weight, bn_bias, second_weight = params
    splits, videos, channels, taps = grad_partial.shape
    hidden = first_weight.shape[0]
    grid, span, block_c, block_s = _grid(dy, videos)
    grad_x = empty_output(dy)
    kernel = rows.new_empty((grid[2], videos, channels, taps))
    grad_rows = rows.new_empty((grid[2], videos, channels, num_segments))
    grads = tuple(p.new_empty(p.shape) for p in params)
    block_r, block_u, block_h, block_k = _blocks(num_segments, hidden, taps)
    _fused_backward_kernel[grid](dy, grad_x, rows, grad_partial, splits, first_weight, bn_weight, bn_bias,
                                 second_weight, mean, var, kernel, grad_rows, *grads, *plane_strides(dy),
                                 *plane_strides(grad_x), channels, dy.shape[1], spatial_size(dy), num_segments,
                                 hidden, taps, eps, span, IDENTITY=bool(identity), TRAINING=bool(training),
                                 ACC=_acc(dy.dtype), BLOCK_C=block_c, BLOCK_S=block_s, BLOCK_R=block_r,
                                 BLOCK_U=block_u, BLOCK_H=block_h, BLOCK_K=block_k)
    return (grad_x, *grads)
