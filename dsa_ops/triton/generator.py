"""The kernel generator on the pooled rows (R = N*C', U) -> (R, K) and its backward, as Triton kernels of
one program each (the generator's work is tiny: launches, not flops, are its cost):
    h = W1 p;  n = (h - mean) * invstd;  a = relu(bn_w * n + bn_b);  kernel = softmax(W2 a).
The program walks the rows in blocks of BLOCK_R, adding the sums over rows (BatchNorm statistics,
parameter gradients) block by block in a fixed order: deterministic. The backward recomputes the
forward's per-row values instead of keeping them. Values are in the accumulation dtype. The rows and
grad_kernel arrive as the partial sums of the launch before (pooling's, grad_weight's splits of S),
added here in split order. fused.py runs the same helpers in every program of its aggregation kernels."""
import torch
import triton
import triton.language as tl

from .launch_sizes import next_power_of_2


@triton.jit
def _load_matrix(ptr, rows, cols, BLOCK_ROWS: tl.constexpr, BLOCK_COLS: tl.constexpr):
    i = tl.arange(0, BLOCK_ROWS)
    j = tl.arange(0, BLOCK_COLS)
    return tl.load(ptr + i[:, None] * cols + j[None, :], mask=(i < rows)[:, None] & (j < cols)[None, :], other=0.0)


@triton.jit
def _load_vector(ptr, count, BLOCK: tl.constexpr):
    i = tl.arange(0, BLOCK)
    return tl.load(ptr + i, mask=i < count, other=0.0)


@triton.jit
def _row_block(ptr, splits, slab, r0, end, cols, BLOCK_R: tl.constexpr, BLOCK_COLS: tl.constexpr):
    """(rows r0 .. r0 + BLOCK_R as indices, their (BLOCK_R, BLOCK_COLS) values, zero at rows >= end or
    columns >= cols): the sum of `splits` (rows, cols) partial sums `slab` elements apart, added in
    split order."""
    r = r0 + tl.arange(0, BLOCK_R)
    j = tl.arange(0, BLOCK_COLS)
    offsets = r[:, None] * cols + j[None, :]
    mask = (r < end)[:, None] & (j < cols)[None, :]
    values = tl.load(ptr + offsets, mask=mask, other=0.0)
    for split in range(1, splits):
        values += tl.load(ptr + split * slab + offsets, mask=mask, other=0.0)
    return r, values


@triton.jit
def _times_transposed(a, b):
    """(R, N) = a (R, M) @ b (N, M)^T, summed along the last axis with fp32 (fp64) multiply-adds. The
    products of a row block with a weight matrix take this form: Triton's combine pass rewrites the other one,
    sum(a[:, :, None] * c[None, :, :], axis=1), into a tensor-core dot where both sides are 16 or more,
    with TF32 inputs for float32 (seen with Triton 3.6), which Triton 3.0 fails to compile for sm_90."""
    return tl.sum(a[:, None, :] * b[None, :, :], axis=2)


@triton.jit
def _hidden(p, w1):
    """(R, H) = p (R, U) @ w1 (H, U)^T."""
    return _times_transposed(p, w1)


@triton.jit
def _rows_forward(h, mean, invstd, bn_w, bn_b, w2, taps, BLOCK_K: tl.constexpr):
    """(normalized, activated, kernel) of a block of rows from their hidden units."""
    n = (h - mean[None, :]) * invstd[None, :]
    scaled = n * bn_w[None, :] + bn_b[None, :]
    a = tl.where(scaled < 0, 0.0, scaled)  # ReLU; a NaN passes, as in torch.relu
    logits = _times_transposed(a, w2)
    k_valid = (tl.arange(0, BLOCK_K) < taps)[None, :]
    logits = tl.where(k_valid, logits, -float("inf"))
    e = tl.where(k_valid, tl.exp(logits - tl.max(logits, axis=1)[:, None]), 0.0)
    return n, a, e / tl.sum(e, axis=1)[:, None]


@triton.jit
def _statistics(pooled_ptr, splits, count, segments, w1, running_mean_ptr, running_var_ptr, hidden,
                TRAINING: tl.constexpr, BLOCK_R: tl.constexpr, BLOCK_U: tl.constexpr, BLOCK_H: tl.constexpr):
    """(mean, var) the BatchNorm uses: in training the batch's over the R = count rows (the sum of
    `splits` (R, U) partial sums at pooled_ptr; biased variance), added block by block of BLOCK_R rows in
    a fixed order, two passes; in eval the running ones."""
    if TRAINING:
        slab = count * segments
        total = tl.zeros((BLOCK_H,), dtype=w1.dtype)
        for r0 in range(0, count, BLOCK_R):
            _, p = _row_block(pooled_ptr, splits, slab, r0, count, segments, BLOCK_R, BLOCK_U)
            total += tl.sum(_hidden(p, w1), axis=0)  # rows outside are zero
        mean = total / count
        squares = tl.zeros_like(total)
        for r0 in range(0, count, BLOCK_R):
            r, p = _row_block(pooled_ptr, splits, slab, r0, count, segments, BLOCK_R, BLOCK_U)
            d = tl.where((r < count)[:, None], _hidden(p, w1) - mean[None, :], 0.0)
            squares += tl.sum(d * d, axis=0)
        var = squares / count
    else:
        mean = _load_vector(running_mean_ptr, hidden, BLOCK_H)
        var = _load_vector(running_var_ptr, hidden, BLOCK_H)
    return mean, var


@triton.jit
def _store_vectors(a_ptr, b_ptr, a, b, count, BLOCK: tl.constexpr):
    i = tl.arange(0, BLOCK)
    tl.store(a_ptr + i, a, mask=i < count)
    tl.store(b_ptr + i, b, mask=i < count)


@triton.jit
def _store_rows(ptr, r, values, end, cols, BLOCK_COLS: tl.constexpr, REVERSED: tl.constexpr):
    """values (rows r, BLOCK_COLS) stored as rows of `cols` (in reverse column order when REVERSED), rows
    below end."""
    j = tl.arange(0, BLOCK_COLS)
    if REVERSED:
        column = cols - 1 - j
    else:
        column = j
    tl.store(ptr + r[:, None] * cols + column[None, :], values, mask=(r < end)[:, None] & (j < cols)[None, :])


@triton.jit
def _generator_kernel(partial_ptr, splits, w1_ptr, bn_w_ptr, bn_b_ptr, w2_ptr, running_mean_ptr, running_var_ptr,
                      pooled_ptr, mean_ptr, var_ptr, kernel_ptr, count, segments, hidden, taps, eps,
                      TRAINING: tl.constexpr, BLOCK_R: tl.constexpr, BLOCK_U: tl.constexpr, BLOCK_H: tl.constexpr,
                      BLOCK_K: tl.constexpr):
    # Memory plan: training reads pooling's (splits, R, U) partial sums three times (mean, variance,
    # kernels: recomputing the hidden units beats keeping them), eval once; writes their (R, U) sums, the
    # (R, K) kernels and into mean_ptr / var_ptr the statistics used: the batch's in training, copies of
    # the running ones in eval. Grid: (1,).
    w1 = _load_matrix(w1_ptr, hidden, segments, BLOCK_H, BLOCK_U)
    mean, var = _statistics(partial_ptr, splits, count, segments, w1, running_mean_ptr, running_var_ptr, hidden,
                            TRAINING, BLOCK_R, BLOCK_U, BLOCK_H)
    _store_vectors(mean_ptr, var_ptr, mean, var, hidden, BLOCK_H)
    invstd = 1.0 / tl.sqrt(var + eps)
    bn_w = _load_vector(bn_w_ptr, hidden, BLOCK_H)
    bn_b = _load_vector(bn_b_ptr, hidden, BLOCK_H)
    w2 = _load_matrix(w2_ptr, taps, hidden, BLOCK_K, BLOCK_H)
    for r0 in range(0, count, BLOCK_R):
        r, p = _row_block(partial_ptr, splits, count * segments, r0, count, segments, BLOCK_R, BLOCK_U)
        _store_rows(pooled_ptr, r, p, count, segments, BLOCK_U, False)
        _, _, kernel = _rows_forward(_hidden(p, w1), mean, invstd, bn_w, bn_b, w2, taps, BLOCK_K)
        _store_rows(kernel_ptr, r, kernel, count, taps, BLOCK_K, False)


@triton.jit
def _rows_backward_to_bn(rows_ptr, grad_ptr, grad_splits, r0, end, count, segments, taps, w1, mean, invstd, bn_w,
                         bn_b, w2, BLOCK_R: tl.constexpr, BLOCK_U: tl.constexpr, BLOCK_K: tl.constexpr):
    """Rows r0 .. min(r0 + BLOCK_R, end) of the R = count pooled rows, recomputed from their pooled values
    up to the backward of the ReLU, their grad_kernel the sum of `grad_splits` (R, K) partial sums at
    grad_ptr: (row indices, pooled values, normalized, activated, kernel, grad_logits, grad_bn_out)."""
    r, p = _row_block(rows_ptr, 1, 0, r0, end, segments, BLOCK_R, BLOCK_U)
    _, grad_kernel = _row_block(grad_ptr, grad_splits, count * taps, r0, end, taps, BLOCK_R, BLOCK_K)
    n, a, kernel = _rows_forward(_hidden(p, w1), mean, invstd, bn_w, bn_b, w2, taps, BLOCK_K)
    grad_logits = kernel * (grad_kernel - tl.sum(grad_kernel * kernel, axis=1)[:, None])
    grad_bn_out = tl.where(a <= 0, 0.0, _times_transposed(grad_logits, tl.trans(w2)))
    return r, p, n, a, kernel, grad_logits, grad_bn_out


@triton.jit
def _generator_grad_sums(rows_ptr, grad_ptr, grad_splits, count, segments, taps, w1, mean, invstd, bn_w, bn_b, w2,
                         BLOCK_R: tl.constexpr, BLOCK_U: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_K: tl.constexpr):
    """(grad_w2, grad_bn_w, grad_bn_b): sums over all R = count rows, block by block in a fixed order."""
    grad_w2 = tl.zeros((BLOCK_K, BLOCK_H), dtype=w1.dtype)
    grad_bn_w = tl.zeros((BLOCK_H,), dtype=w1.dtype)
    grad_bn_b = tl.zeros_like(grad_bn_w)
    for r0 in range(0, count, BLOCK_R):
        _, _, n, a, _, grad_logits, grad_bn_out = _rows_backward_to_bn(
            rows_ptr, grad_ptr, grad_splits, r0, count, count, segments, taps, w1, mean, invstd, bn_w, bn_b, w2,
            BLOCK_R, BLOCK_U, BLOCK_K)
        grad_w2 += tl.sum(grad_logits[:, :, None] * a[:, None, :], axis=0)
        grad_bn_w += tl.sum(grad_bn_out * n, axis=0)
        grad_bn_b += tl.sum(grad_bn_out, axis=0)
    return grad_w2, grad_bn_w, grad_bn_b


@triton.jit
def _bn_input_terms(bn_w, grad_bn_w, grad_bn_b, count, TRAINING: tl.constexpr):
    """(mean_grad, projection): bn_w times the batch means of grad_bn_out and grad_bn_out * n, which the
    input gradient of a training BatchNorm subtracts; zero in eval, whose statistics are constants."""
    if TRAINING:
        mean_grad = bn_w * grad_bn_b / count
        projection = bn_w * grad_bn_w / count
    else:
        mean_grad = tl.zeros_like(bn_w)
        projection = tl.zeros_like(bn_w)
    return mean_grad, projection


@triton.jit
def _rows_input_grads(rows_ptr, grad_ptr, grad_splits, r0, end, count, segments, taps, w1, mean, invstd, bn_w, bn_b,
                      w2, mean_grad, projection, BLOCK_R: tl.constexpr, BLOCK_U: tl.constexpr,
                      BLOCK_K: tl.constexpr):
    """(row indices, pooled values, kernel, grad_hidden, grad_rows) of rows r0 .. min(r0 + BLOCK_R, end),
    as _rows_backward_to_bn reads them; grad_hidden is zero outside."""
    r, p, n, _, kernel, _, grad_bn_out = _rows_backward_to_bn(
        rows_ptr, grad_ptr, grad_splits, r0, end, count, segments, taps, w1, mean, invstd, bn_w, bn_b, w2, BLOCK_R,
        BLOCK_U, BLOCK_K)
    grad_h = (bn_w[None, :] * grad_bn_out - mean_grad[None, :] - n * projection[None, :]) * invstd[None, :]
    grad_h = tl.where((r < end)[:, None], grad_h, 0.0)
    return r, p, kernel, grad_h, _times_transposed(grad_h, tl.trans(w1))


@triton.jit
def _generator_grads_pass(rows_ptr, grad_ptr, grad_splits, kernel_ptr, grad_rows_ptr, count, segments, taps, w1,
                          mean, invstd, bn_w, bn_b, w2, mean_grad, projection, STORE: tl.constexpr,
                          BLOCK_R: tl.constexpr, BLOCK_U: tl.constexpr, BLOCK_H: tl.constexpr,
                          BLOCK_K: tl.constexpr):
    """grad_w1 (H, U), added over all R = count rows block by block in a fixed order; with STORE, also
    each row's kernel (taps reversed, as grad_x aggregates) and grad_rows."""
    grad_w1 = tl.zeros((BLOCK_H, BLOCK_U), dtype=w1.dtype)
    for r0 in range(0, count, BLOCK_R):
        r, p, kernel, grad_h, grad_p = _rows_input_grads(
            rows_ptr, grad_ptr, grad_splits, r0, count, count, segments, taps, w1, mean, invstd, bn_w, bn_b, w2,
            mean_grad, projection, BLOCK_R, BLOCK_U, BLOCK_K)
        if STORE:
            _store_rows(kernel_ptr, r, kernel, count, taps, BLOCK_K, True)
            _store_rows(grad_rows_ptr, r, grad_p, count, segments, BLOCK_U, False)
        grad_w1 += tl.sum(grad_h[:, :, None] * p[:, None, :], axis=0)
    return grad_w1


@triton.jit
def _store_parameter_grads(grad_w1_ptr, grad_bn_w_ptr, grad_bn_b_ptr, grad_w2_ptr, grad_w1, grad_bn_w, grad_bn_b,
                           grad_w2, segments, hidden, taps, BLOCK_U: tl.constexpr, BLOCK_H: tl.constexpr,
                           BLOCK_K: tl.constexpr):
    _store_rows(grad_w2_ptr, tl.arange(0, BLOCK_K), grad_w2, taps, hidden, BLOCK_H, False)
    _store_rows(grad_w1_ptr, tl.arange(0, BLOCK_H), grad_w1, hidden, segments, BLOCK_U, False)
    _store_vectors(grad_bn_w_ptr, grad_bn_b_ptr, grad_bn_w, grad_bn_b, hidden, BLOCK_H)


@triton.jit
def _backward_operands(w1_ptr, w2_ptr, bn_w_ptr, bn_b_ptr, mean_ptr, var_ptr, segments, hidden, taps, eps,
                       BLOCK_U: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_K: tl.constexpr):
    """(w1, w2, bn_w, bn_b, mean, invstd): what the generator's backward reads besides the rows."""
    w1 = _load_matrix(w1_ptr, hidden, segments, BLOCK_H, BLOCK_U)
    w2 = _load_matrix(w2_ptr, taps, hidden, BLOCK_K, BLOCK_H)
    bn_w = _load_vector(bn_w_ptr, hidden, BLOCK_H)
    bn_b = _load_vector(bn_b_ptr, hidden, BLOCK_H)
    mean = _load_vector(mean_ptr, hidden, BLOCK_H)
    return w1, w2, bn_w, bn_b, mean, 1.0 / tl.sqrt(_load_vector(var_ptr, hidden, BLOCK_H) + eps)


@triton.jit
def _generator_backward_kernel(rows_ptr, grad_partial_ptr, grad_splits, w1_ptr, bn_w_ptr, bn_b_ptr, w2_ptr,
                               mean_ptr, var_ptr, kernel_ptr, grad_rows_ptr, grad_w1_ptr, grad_bn_w_ptr,
                               grad_bn_b_ptr, grad_w2_ptr, count, segments, hidden, taps, eps, TRAINING: tl.constexpr,
                               BLOCK_R: tl.constexpr, BLOCK_U: tl.constexpr, BLOCK_H: tl.constexpr,
                               BLOCK_K: tl.constexpr):
    # Memory plan: reads the (R, U) rows and grad_weight's (splits, R, K) partial sums twice (the
    # BatchNorm backward needs sums over all rows before any row's input gradient); writes the (R, K)
    # kernels (taps reversed, for grad_x), grad_rows (R, U) and the parameter gradients. Grid: (1,).
    w1, w2, bn_w, bn_b, mean, invstd = _backward_operands(w1_ptr, w2_ptr, bn_w_ptr, bn_b_ptr, mean_ptr, var_ptr,
                                                          segments, hidden, taps, eps, BLOCK_U, BLOCK_H, BLOCK_K)
    grad_w2, grad_bn_w, grad_bn_b = _generator_grad_sums(rows_ptr, grad_partial_ptr, grad_splits, count, segments,
                                                         taps, w1, mean, invstd, bn_w, bn_b, w2, BLOCK_R, BLOCK_U,
                                                         BLOCK_H, BLOCK_K)
    mean_grad, projection = _bn_input_terms(bn_w, grad_bn_w, grad_bn_b, count, TRAINING)
    grad_w1 = _generator_grads_pass(rows_ptr, grad_partial_ptr, grad_splits, kernel_ptr, grad_rows_ptr, count,
                                    segments, taps, w1, mean, invstd, bn_w, bn_b, w2, mean_grad, projection, True,
                                    BLOCK_R, BLOCK_U, BLOCK_H, BLOCK_K)
    _store_parameter_grads(grad_w1_ptr, grad_bn_w_ptr, grad_bn_b_ptr, grad_w2_ptr, grad_w1, grad_bn_w, grad_bn_b,
                           grad_w2, segments, hidden, taps, BLOCK_U, BLOCK_H, BLOCK_K)


def _blocks(segments, hidden, taps):
    """(BLOCK_R, BLOCK_U, BLOCK_H, BLOCK_K): rows per step such that the (rows, H, max(U, K)) products
    hold about 8192 values."""
    block_u, block_h, block_k = next_power_of_2(segments), next_power_of_2(hidden), next_power_of_2(taps)
    return max(1, 8192 // (block_h * max(block_u, block_k))), block_u, block_h, block_k


def check_batch_rows(count):
    """The training generator's BatchNorm needs more than one row, as nn.BatchNorm1d."""
    if count <= 1:
        raise ValueError("Expected more than 1 value per channel when training: the generator's BatchNorm "
                         f"sees N*C' = {count} rows; use more videos or channels, or eval mode")


def generate(partial, params, running_mean, running_var, training, eps):
    """(pooled (R, U), kernel (R, K), mean, var) from pooling's (splits, R, U) partial sums: pooled is
    their sum, mean/var are the batch's (biased variance) in training, copies of the running ones in eval.
    partial and params are contiguous in the accumulation dtype."""
    first_weight, bn_weight, bn_bias, second_weight = params
    splits, count, segments = partial.shape
    hidden, taps = first_weight.shape[0], second_weight.shape[0]
    pooled, kernel = partial.new_empty((count, segments)), partial.new_empty((count, taps))
    mean, var = partial.new_empty(hidden), partial.new_empty(hidden)
    block_r, block_u, block_h, block_k = _blocks(segments, hidden, taps)
    _generator_kernel[(1,)](partial, splits, first_weight, bn_weight, bn_bias, second_weight, running_mean,
                            running_var, pooled, mean, var, kernel, count, segments, hidden, taps, eps,
                            TRAINING=bool(training), BLOCK_R=block_r, BLOCK_U=block_u, BLOCK_H=block_h,
                            BLOCK_K=block_k)
    return pooled, kernel, mean, var


def generate_backward(rows, params, mean, var, grad_partial, training, eps):
    """(kernel with its taps reversed (as grad_x aggregates), grad_rows, grad_first_weight, grad_bn_weight,
    grad_bn_bias, grad_second_weight) given grad_weight's (splits, R, K) partial sums of grad_kernel and
    the statistics the forward used."""
    first_weight, bn_weight, bn_bias, second_weight = params
    count, segments = rows.shape
    hidden, taps = first_weight.shape[0], second_weight.shape[0]
    outs = (rows.new_empty((count, taps)), torch.empty_like(rows), torch.empty_like(first_weight),
            torch.empty_like(bn_weight), torch.empty_like(bn_bias), torch.empty_like(second_weight))
    block_r, block_u, block_h, block_k = _blocks(segments, hidden, taps)
    _generator_backward_kernel[(1,)](rows, grad_partial, grad_partial.shape[0], first_weight, bn_weight, bn_bias,
                                     second_weight, mean, var, *outs, count, segments, hidden, taps, eps,
                                     TRAINING=bool(training), BLOCK_R=block_r, BLOCK_U=block_u, BLOCK_H=block_h,
                                     BLOCK_K=block_k)
    return outs
