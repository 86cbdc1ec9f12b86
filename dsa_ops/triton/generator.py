"""The kernel generator on the pooled rows (R = N*C', U) -> (R, K) and its backward, as Triton kernels of
one program each (the generator's work is tiny: launches, not flops, are its cost):
    h = W1 p;  n = (h - mean) * invstd;  a = relu(bn_w * n + bn_b);  kernel = softmax(W2 a).
The program walks the rows in blocks of BLOCK_R, adding the sums over rows (BatchNorm statistics,
parameter gradients) block by block in a fixed order: deterministic. The backward recomputes the
forward's per-row values instead of keeping them. Values are in the accumulation dtype."""
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
def _row_block(rows_ptr, r0, count, segments, BLOCK_R: tl.constexpr, BLOCK_U: tl.constexpr):
    """(rows r0 .. r0 + BLOCK_R as indices, their (BLOCK_R, BLOCK_U) pooled values, zero outside)."""
    r = r0 + tl.arange(0, BLOCK_R)
    u = tl.arange(0, BLOCK_U)
    p = tl.load(rows_ptr + r[:, None] * segments + u[None, :], mask=(r < count)[:, None] & (u < segments)[None, :],
                other=0.0)
    return r, p


@triton.jit
def _hidden(p, w1):
    """(R, H) = p (R, U) @ w1 (H, U)^T."""
    return tl.sum(p[:, None, :] * w1[None, :, :], axis=2)


@triton.jit
def _rows_forward(h, mean, invstd, bn_w, bn_b, w2, taps, BLOCK_K: tl.constexpr):
    """(normalized, activated, kernel) of a block of rows from their hidden units."""
    n = (h - mean[None, :]) * invstd[None, :]
    scaled = n * bn_w[None, :] + bn_b[None, :]
    a = tl.where(scaled < 0, 0.0, scaled)  # ReLU; a NaN passes, as in torch.relu
    logits = tl.sum(a[:, None, :] * w2[None, :, :], axis=2)
    k_valid = (tl.arange(0, BLOCK_K) < taps)[None, :]
    logits = tl.where(k_valid, logits, -float("inf"))
    e = tl.where(k_valid, tl.exp(logits - tl.max(logits, axis=1)[:, None]), 0.0)
    return n, a, e / tl.sum(e, axis=1)[:, None]


@triton.jit
def _rows_backward_to_bn(rows_ptr, grad_kernel_ptr, r0, count, segments, taps, w1, mean, invstd, bn_w, bn_b, w2,
                         BLOCK_R: tl.constexpr, BLOCK_U: tl.constexpr, BLOCK_K: tl.constexpr):
    """A block of rows from r0, recomputed from their pooled values up to the backward of the ReLU: (row
    indices, pooled values, the (rows, K) mask, normalized, activated, kernel, grad_logits, grad_bn_out)."""
    r, p = _row_block(rows_ptr, r0, count, segments, BLOCK_R, BLOCK_U)
    k = tl.arange(0, BLOCK_K)
    row_taps = (r < count)[:, None] & (k < taps)[None, :]
    n, a, kernel = _rows_forward(_hidden(p, w1), mean, invstd, bn_w, bn_b, w2, taps, BLOCK_K)
    grad_kernel = tl.load(grad_kernel_ptr + r[:, None] * taps + k[None, :], mask=row_taps, other=0.0)
    grad_logits = kernel * (grad_kernel - tl.sum(grad_kernel * kernel, axis=1)[:, None])
    grad_bn_out = tl.where(a <= 0, 0.0, tl.sum(grad_logits[:, :, None] * w2[None, :, :], axis=1))
    return r, p, row_taps, n, a, kernel, grad_logits, grad_bn_out


@triton.jit
def _generator_kernel(rows_ptr, w1_ptr, bn_w_ptr, bn_b_ptr, w2_ptr, running_mean_ptr, running_var_ptr, mean_ptr,
                      var_ptr, kernel_ptr, count, segments, hidden, taps, eps, TRAINING: tl.constexpr,
                      BLOCK_R: tl.constexpr, BLOCK_U: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_K: tl.constexpr):
    # Memory plan: training reads the (R, U) rows three times (mean, variance, kernels: recomputing the
    # hidden units beats keeping them), eval once; writes the (R, K) kernels and into mean_ptr / var_ptr
    # the statistics used: the batch's in training, copies of the running ones in eval. Grid: (1,).
    w1 = _load_matrix(w1_ptr, hidden, segments, BLOCK_H, BLOCK_U)
    j = tl.arange(0, BLOCK_H)
    if TRAINING:
        total = tl.zeros((BLOCK_H,), dtype=w1.dtype)
        for r0 in range(0, count, BLOCK_R):
            r, p = _row_block(rows_ptr, r0, count, segments, BLOCK_R, BLOCK_U)
            total += tl.sum(_hidden(p, w1), axis=0)  # rows outside are zero
        mean = total / count
        squares = tl.zeros_like(total)
        for r0 in range(0, count, BLOCK_R):
            r, p = _row_block(rows_ptr, r0, count, segments, BLOCK_R, BLOCK_U)
            d = tl.where((r < count)[:, None], _hidden(p, w1) - mean[None, :], 0.0)
            squares += tl.sum(d * d, axis=0)
        var = squares / count
    else:
        mean = _load_vector(running_mean_ptr, hidden, BLOCK_H)
        var = _load_vector(running_var_ptr, hidden, BLOCK_H)
    tl.store(mean_ptr + j, mean, mask=j < hidden)
    tl.store(var_ptr + j, var, mask=j < hidden)
    invstd = 1.0 / tl.sqrt(var + eps)
    bn_w = _load_vector(bn_w_ptr, hidden, BLOCK_H)
    bn_b = _load_vector(bn_b_ptr, hidden, BLOCK_H)
    w2 = _load_matrix(w2_ptr, taps, hidden, BLOCK_K, BLOCK_H)
    k = tl.arange(0, BLOCK_K)
    for r0 in range(0, count, BLOCK_R):
        r, p = _row_block(rows_ptr, r0, count, segments, BLOCK_R, BLOCK_U)
        _, _, kernel = _rows_forward(_hidden(p, w1), mean, invstd, bn_w, bn_b, w2, taps, BLOCK_K)
        tl.store(kernel_ptr + r[:, None] * taps + k[None, :], kernel, mask=(r < count)[:, None] & (k < taps)[None, :])


@triton.jit
def _generator_backward_kernel(rows_ptr, grad_kernel_ptr, w1_ptr, bn_w_ptr, bn_b_ptr, w2_ptr, mean_ptr, var_ptr,
                               kernel_ptr, grad_rows_ptr, grad_w1_ptr, grad_bn_w_ptr, grad_bn_b_ptr, grad_w2_ptr,
                               count, segments, hidden, taps, eps, TRAINING: tl.constexpr, BLOCK_R: tl.constexpr,
                               BLOCK_U: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_K: tl.constexpr):
    # Memory plan: reads the (R, U) rows and (R, K) grad_kernel twice (the BatchNorm backward needs sums
    # over all rows before any row's input gradient); writes the (R, K) kernels (for grad_x), grad_rows
    # (R, U) and the parameter gradients. Grid: (1,).
    w1 = _load_matrix(w1_ptr, hidden, segments, BLOCK_H, BLOCK_U)
    w2 = _load_matrix(w2_ptr, taps, hidden, BLOCK_K, BLOCK_H)
    bn_w = _load_vector(bn_w_ptr, hidden, BLOCK_H)
    bn_b = _load_vector(bn_b_ptr, hidden, BLOCK_H)
    mean = _load_vector(mean_ptr, hidden, BLOCK_H)
    invstd = 1.0 / tl.sqrt(_load_vector(var_ptr, hidden, BLOCK_H) + eps)
    j = tl.arange(0, BLOCK_H)
    k = tl.arange(0, BLOCK_K)
    u = tl.arange(0, BLOCK_U)
    grad_w2 = tl.zeros((BLOCK_K, BLOCK_H), dtype=w1.dtype)
    grad_bn_w = tl.zeros((BLOCK_H,), dtype=w1.dtype)
    grad_bn_b = tl.zeros_like(grad_bn_w)
    for r0 in range(0, count, BLOCK_R):
        r, _, row_taps, n, a, kernel, grad_logits, grad_bn_out = _rows_backward_to_bn(
            rows_ptr, grad_kernel_ptr, r0, count, segments, taps, w1, mean, invstd, bn_w, bn_b, w2, BLOCK_R, BLOCK_U,
            BLOCK_K)
        tl.store(kernel_ptr + r[:, None] * taps + (taps - 1 - k)[None, :], kernel, mask=row_taps)  # taps reversed
        grad_w2 += tl.sum(grad_logits[:, :, None] * a[:, None, :], axis=0)
        grad_bn_w += tl.sum(grad_bn_out * n, axis=0)
        grad_bn_b += tl.sum(grad_bn_out, axis=0)
    # bn_w times the batch means of grad_bn_out and grad_bn_out * n (training); eval has constant statistics
    if TRAINING:
        mean_grad = bn_w * grad_bn_b / count
        projection = bn_w * grad_bn_w / count
    else:
        mean_grad = tl.zeros_like(bn_w)
        projection = tl.zeros_like(bn_w)
    grad_w1 = tl.zeros((BLOCK_H, BLOCK_U), dtype=w1.dtype)
    for r0 in range(0, count, BLOCK_R):
        r, p, _, n, _, _, _, grad_bn_out = _rows_backward_to_bn(
            rows_ptr, grad_kernel_ptr, r0, count, segments, taps, w1, mean, invstd, bn_w, bn_b, w2, BLOCK_R, BLOCK_U,
            BLOCK_K)
        grad_h = (bn_w[None, :] * grad_bn_out - mean_grad[None, :] - n * projection[None, :]) * invstd[None, :]
        grad_h = tl.where((r < count)[:, None], grad_h, 0.0)
        grad_p = tl.sum(grad_h[:, :, None] * w1[None, :, :], axis=1)
        tl.store(grad_rows_ptr + r[:, None] * segments + u[None, :], grad_p,
                 mask=(r < count)[:, None] & (u < segments)[None, :])
        grad_w1 += tl.sum(grad_h[:, :, None] * p[:, None, :], axis=0)
    tl.store(grad_w2_ptr + k[:, None] * hidden + j[None, :], grad_w2, mask=(k < taps)[:, None] & (j < hidden)[None, :])
    tl.store(grad_bn_w_ptr + j, grad_bn_w, mask=j < hidden)
    tl.store(grad_bn_b_ptr + j, grad_bn_b, mask=j < hidden)
    tl.store(grad_w1_ptr + j[:, None] * segments + u[None, :], grad_w1,
             mask=(j < hidden)[:, None] & (u < segments)[None, :])


def _blocks(segments, hidden, taps):
    """(BLOCK_R, BLOCK_U, BLOCK_H, BLOCK_K): rows per step such that the (rows, H, max(U, K)) products
    hold about 8192 values."""
    block_u, block_h, block_k = next_power_of_2(segments), next_power_of_2(hidden), next_power_of_2(taps)
    return max(1, 8192 // (block_h * max(block_u, block_k))), block_u, block_h, block_k


def _check_batch_rows(count):
    if count <= 1:
        raise ValueError("Expected more than 1 value per channel when training: the generator's BatchNorm "
                         f"sees N*C' = {count} rows; use more videos or channels, or eval mode")


def generate(rows, params, running_mean, running_var, training, eps):
    """(kernel (R, K), mean, var): mean/var are the batch's (biased variance) in training, copies of the
    running ones in eval. rows and params are contiguous in the accumulation dtype."""
    first_weight, bn_weight, bn_bias, second_weight = params
    count, segments = rows.shape
    hidden, taps = first_weight.shape[0], second_weight.shape[0]
    if training:
        _check_batch_rows(count)
    mean, var, kernel = rows.new_empty(hidden), rows.new_empty(hidden), rows.new_empty((count, taps))
    block_r, block_u, block_h, block_k = _blocks(segments, hidden, taps)
    _generator_kernel[(1,)](rows, first_weight, bn_weight, bn_bias, second_weight, running_mean, running_var, mean,
                            var, kernel, count, segments, hidden, taps, eps, TRAINING=bool(training), BLOCK_R=block_r,
                            BLOCK_U=block_u, BLOCK_H=block_h, BLOCK_K=block_k)
    return kernel, mean, var


def generate_backward(rows, params, mean, var, grad_kernel, training, eps):
    """(kernel with its taps reversed (as grad_x aggregates), grad_rows, grad_first_weight, grad_bn_weight,
    grad_bn_bias, grad_second_weight) given grad_kernel (R, K) and the statistics the forward used."""
    first_weight, bn_weight, bn_bias, second_weight = params
    count, segments = rows.shape
    hidden, taps = first_weight.shape[0], second_weight.shape[0]
    outs = (rows.new_empty((count, taps)), torch.empty_like(rows), torch.empty_like(first_weight),
            torch.empty_like(bn_weight), torch.empty_like(bn_bias), torch.empty_like(second_weight))
    block_r, block_u, block_h, block_k = _blocks(segments, hidden, taps)
    _generator_backward_kernel[(1,)](rows, grad_kernel.contiguous(), first_weight, bn_weight, bn_bias, second_weight,
                                     mean, var, *outs, count, segments, hidden, taps, eps, TRAINING=bool(training),
                                     BLOCK_R=block_r, BLOCK_U=block_u, BLOCK_H=block_h, BLOCK_K=block_k)
    return outs
