"""Functional entry points for people who bring their own kernel generator."""
from . import ops
from ._validation import check_aggregate_weight, check_channels, check_input


def dsa_aggregate(x, weight, num_segments, identity=False, backend="auto"):
    """Aggregates the first C' = weight.size(1) channels of x along the snippet axis.

    x: (N*U, C, T, H, W) or (N*U, C, H, W); weight: (N, C', K), K odd, one kernel per (video, channel).
    Returns x's shape and dtype: y[n*U+u, c] = sum_k weight[n, c, k] * x[n*U+u+k-P, c] (+ x[n*U+u, c]
    when identity) for c < C', zero padded along u; channels from C' on are copied. Differentiable in
    x and weight (twice on the compiled backends).
    """
    check_input(x, num_segments)
    check_aggregate_weight(weight, x, num_segments)
    return ops.aggregate(x, weight, num_segments, bool(identity), backend)


def segment_pool(x, num_segments, channels, backend="auto"):
    """(N, C', U): the mean over T*H*W of the first C' channels of each snippet, in float32 (float64
    for double inputs). Differentiable in x."""
    check_input(x, num_segments)
    check_channels(x, channels)
    return ops.segment_pool(x, num_segments, channels, backend)
