"""The dsa_ops operators on the Triton kernels: the Python twin of csrc/ops.cpp (inputs brought into a
readable layout, weights in the accumulation dtype, the module composed of pool -> generator ->
aggregate). Argument validation happens in the op layer's Python checks before these run."""
from .._layout import accumulate_dtype, readable_input
from . import fused, kernels
from .eval_forward import eval_forward, eval_forward_
from .generator import check_batch_rows, generate, generate_backward


def _acc(t, x):
    """t in x's accumulation dtype, contiguous; t itself when it already is (no-op conversions still cost
    host time)."""
    acc = accumulate_dtype(x.dtype)
    return t if t.dtype == acc and t.is_contiguous() else t.to(acc).contiguous()


def segment_pool(x, num_segments, channels):
    return kernels.pool(readable_input(x), num_segments, channels)


def segment_pool_backward(grad_pooled, x, num_segments):
    return kernels.pool_backward(_acc(grad_pooled, x), readable_input(x), num_segments)


def aggregate(x, weight, num_segments, identity):
    return kernels.aggregate(readable_input(x), _acc(weight, x), num_segments, identity)


def aggregate_grad_input(grad_y, weight, grad_pooled, num_segments, identity):
    """The transpose of aggregate: aggregate's sum with the taps reversed, the pooled gradient folded in."""
    pooled = None if grad_pooled is None else _acc(grad_pooled, grad_y)
    return kernels.aggregate(readable_input(grad_y), _acc(weight, grad_y).flip(2).contiguous(), num_segments,
                             identity, pooled)


def aggregate_grad_weight(grad_y, x, num_segments, channels, kernel_size):
    return kernels.grad_weight(readable_input(grad_y), readable_input(x), num_segments, channels, kernel_size)


def _params(x, first_weight, bn_weight, bn_bias, second_weight):
    return tuple(_acc(p, x) for p in (first_weight, bn_weight, bn_bias, second_weight))


def _module_params(x, first_weight, bn_weight, bn_bias, running_mean, running_var, second_weight):
    """(generator parameters, running_mean, running_var) in x's accumulation dtype, contiguous."""
    return _params(x, first_weight, bn_weight, bn_bias, second_weight), _acc(running_mean, x), _acc(running_var, x)


def _generate_kernels(x, params, running_mean, running_var, num_segments, channels, training, eps):
    """pool -> generator on x (readable), the arguments as _module_params gives them: (pooled, (N, C', K)
    kernels, mean, var)."""
    partial = kernels.pool_partials(x, num_segments, channels)
    splits, videos = partial.shape[:2]
    pooled, kernel, mean, var = generate(partial.view(splits, videos * channels, num_segments), params, running_mean,
                                         running_var, training, eps)
    return pooled.view(videos, channels, num_segments), kernel.view(videos, channels, -1), mean, var


def _generator_rows(x, num_segments, channels, training):
    """R = N*C', the generator's rows; more than one in training (check_batch_rows)."""
    rows = x.shape[0] // num_segments * channels
    if training:
        check_batch_rows(rows)
    return rows


def dsa_forward(x, first_weight, bn_weight, bn_bias, running_mean, running_var, second_weight, num_segments,
                channels, training, eps, identity):
    """(y, pooled, mean, var). Memory plan as csrc/ops.cpp: pool reads the C' channels, the generator runs
    on the pooled rows, aggregate reads x once and writes y once; in eval one launch (eval_forward) where
    it takes the shape, else the generator in the aggregation kernel's prologue (fused.forward) where it
    takes the rows."""
    x = readable_input(x)
    rows = _generator_rows(x, num_segments, channels, training)
    params, running_mean, running_var = _module_params(x, first_weight, bn_weight, bn_bias, running_mean, running_var,
                                                       second_weight)
    if not training:
        out = eval_forward(x, params, running_mean, running_var, num_segments, channels, eps, identity)
        if out is not None:
            return out
    if fused.fused_path(x, rows):
        partial = kernels.pool_partials(x, num_segments, channels)
        return fused.forward(x, partial, params, running_mean, running_var, num_segments, training, eps, identity)
    pooled, kernel, mean, var = _generate_kernels(x, params, running_mean, running_var, num_segments, channels,
                                                  training, eps)
    return kernels.aggregate(x, kernel, num_segments, identity), pooled, mean, var


def dsa_forward_(x, first_weight, bn_weight, bn_bias, running_mean, running_var, second_weight, num_segments,
                 channels, training, eps, identity):
    """The forward in place on x's first C' channels: (mean, var). Memory plan as csrc/ops.cpp: pool
    reads the C' channels, aggregate_inplace reads and writes them once (in eval one launch,
    eval_forward_, where it takes the shape; else the generator in the in-place aggregation's prologue,
    fused.forward_, where it takes the rows); an awkwardly strided x is processed in a contiguous copy
    whose C' channels are copied back."""
    if x.requires_grad:
        raise RuntimeError("x must not require grad for the in-place forward (dsa_forward_), which overwrites it; "
                           "use the out-of-place forward (DSAConv(inplace=False)) when gradients are needed")
    work = readable_input(x)
    rows = _generator_rows(work, num_segments, channels, training)
    params, running_mean, running_var = _module_params(work, first_weight, bn_weight, bn_bias, running_mean,
                                                       running_var, second_weight)
    stats = None
    if not training:
        stats = eval_forward_(work, params, running_mean, running_var, num_segments, channels, eps, identity)
    if stats is None and fused.fused_path(work, rows):
        partial = kernels.pool_partials(work, num_segments, channels)
        stats = fused.forward_(work, partial, params, running_mean, running_var, num_segments, training, eps,
                               identity)
    if stats is None:
        _, kernel, *stats = _generate_kernels(work, params, running_mean, running_var, num_segments, channels,
                                              training, eps)
        kernels.aggregate_inplace(work, kernel, num_segments, identity)
    mean, var = stats
    if work is not x:
        x.narrow(1, 0, channels).copy_(work.narrow(1, 0, channels))
    return mean, var


def dsa_backward(grad_y, x, pooled, mean, var, first_weight, bn_weight, bn_bias, second_weight, num_segments,
                 training, eps, identity):
    """(grad_x, grad_first_weight, grad_bn_weight, grad_bn_bias, grad_second_weight); grad_weight reads the
    C' channels of grad_y and x once, grad_x is written once with the pooled gradient folded in, by
    fused.backward (the generator's backward in its prologue) where it takes the rows."""
    params = _params(x, first_weight, bn_weight, bn_bias, second_weight)
    videos, channels, kernel_size = x.shape[0] // num_segments, pooled.shape[1], second_weight.shape[0]
    rows = _acc(pooled, x).view(videos * channels, num_segments)
    dy, x = readable_input(grad_y), readable_input(x)
    grad_partial = kernels.grad_weight_partials(dy, x, num_segments, channels, kernel_size)
    mean, var = _acc(mean, x), _acc(var, x)
    if fused.fused_path(dy, videos * channels):
        grad_x, *grad_params = fused.backward(dy, rows, grad_partial, params, mean, var, num_segments, training, eps,
                                              identity)
    else:
        reversed_kernel, grad_pooled, *grad_params = generate_backward(
            rows, params, mean, var, grad_partial.view(grad_partial.shape[0], videos * channels, kernel_size),
            training, eps)
        grad_x = kernels.aggregate(dy, reversed_kernel.view(videos, channels, kernel_size), num_segments, identity,
                                   grad_pooled.view(videos, channels, num_segments))
    originals = (first_weight, bn_weight, bn_bias, second_weight)
    return (grad_x, *(g.to(p.dtype) for g, p in zip(grad_params, originals)))
