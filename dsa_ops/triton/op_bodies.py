"""The dsa_ops operators on the Triton kernels: the Python twin of csrc/ops.cpp (inputs brought into a
readable layout, weights in the accumulation dtype, the module composed of pool -> generator ->
aggregate). Argument validation happens in the op layer's Python checks before these run."""
from .._layout import accumulate_dtype, readable_input
from . import kernels
from .generator import batch_statistics, generator_backward, generator_forward, generator_hidden


def _acc(t, x):
    return t.to(accumulate_dtype(x.dtype)).contiguous()


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


def dsa_forward(x, first_weight, bn_weight, bn_bias, running_mean, running_var, second_weight, num_segments,
                channels, training, eps, identity):
    """(y, pooled, mean, var); memory plan as csrc/ops.cpp: pool reads the C' channels, aggregate reads x
    once and writes y once."""
    params = _params(x, first_weight, bn_weight, bn_bias, second_weight)
    x = readable_input(x)
    videos, kernel_size = x.shape[0] // num_segments, second_weight.shape[0]
    pooled = kernels.pool(x, num_segments, channels)
    rows = pooled.view(videos * channels, num_segments)
    hidden = generator_hidden(rows, params[0])
    if training:
        mean, var = batch_statistics(hidden)
    else:
        mean, var = _acc(running_mean, x).clone(), _acc(running_var, x).clone()
    state = generator_forward(rows, hidden, params, mean, var, eps)
    y = kernels.aggregate(x, state.kernel.view(videos, channels, kernel_size), num_segments, identity)
    return y, pooled, mean, var


def dsa_backward(grad_y, x, pooled, mean, var, first_weight, bn_weight, bn_bias, second_weight, num_segments,
                 training, eps, identity):
    """(grad_x, grad_first_weight, grad_bn_weight, grad_bn_bias, grad_second_weight); grad_weight reads the
    C' channels of grad_y and x once, grad_x is written once with the pooled gradient folded in."""
    params = _params(x, first_weight, bn_weight, bn_bias, second_weight)
    videos, channels, kernel_size = x.shape[0] // num_segments, pooled.shape[1], second_weight.shape[0]
    rows = _acc(pooled, x).view(videos * channels, num_segments)
    state = generator_forward(rows, generator_hidden(rows, params[0]), params, _acc(mean, x), _acc(var, x), eps)
    dy, x = readable_input(grad_y), readable_input(x)
    grad_kernel = kernels.grad_weight(dy, x, num_segments, channels, kernel_size)
    grad_pooled, *grad_params = generator_backward(state, params, grad_kernel.view(videos * channels, kernel_size),
                                                   training)
    flipped = state.kernel.view(videos, channels, kernel_size).flip(2).contiguous()
    grad_x = kernels.aggregate(dy, flipped, num_segments, identity, grad_pooled.view(videos, channels, num_segments))
    originals = (first_weight, bn_weight, bn_bias, second_weight)
    return (grad_x, *(g.to(p.dtype) for g, p in zip(grad_params, originals)))
