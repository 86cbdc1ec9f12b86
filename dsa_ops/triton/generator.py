"""The kernel generator on the pooled rows (R = N*C', U) -> (R, K) and its backward, in PyTorch: the
Python twin of csrc/generator.cpp (same formulas, same order), in the accumulation dtype."""
from dataclasses import dataclass

import torch


@dataclass
class GeneratorState:
    pooled: torch.Tensor      # (R, U)
    normalized: torch.Tensor  # (R, aU), BatchNorm's (h - mean) * invstd
    activated: torch.Tensor   # (R, aU), after ReLU
    kernel: torch.Tensor      # (R, K), softmax output
    invstd: torch.Tensor      # (aU)


def generator_hidden(pooled, first_weight):
    return pooled @ first_weight.t()


def batch_statistics(hidden):
    """BatchNorm1d's batch mean and biased variance over the rows (training mode)."""
    if hidden.shape[0] <= 1:
        raise ValueError("Expected more than 1 value per channel when training: the generator's BatchNorm "
                         f"sees N*C' = {hidden.shape[0]} rows; use more videos or channels, or eval mode")
    mean = hidden.mean(0)
    return mean, (hidden - mean).square().mean(0)


def generator_forward(pooled, hidden, params, mean, var, eps):
    first_weight, bn_weight, bn_bias, second_weight = params
    invstd = torch.rsqrt(var + eps)
    normalized = (hidden - mean) * invstd
    activated = torch.relu(normalized * bn_weight + bn_bias)
    kernel = torch.softmax(activated @ second_weight.t(), dim=-1)
    return GeneratorState(pooled, normalized, activated, kernel, invstd)


def generator_backward(state, params, grad_kernel, batch_stats):
    """(grad_pooled, grad_first_weight, grad_bn_weight, grad_bn_bias, grad_second_weight)."""
    first_weight, bn_weight, _, second_weight = params
    kernel = state.kernel
    grad_logits = kernel * (grad_kernel - (grad_kernel * kernel).sum(-1, keepdim=True))
    grad_second = grad_logits.t() @ state.activated
    grad_bn_out = (grad_logits @ second_weight) * (state.activated > 0)
    grad_bn_weight = (grad_bn_out * state.normalized).sum(0)
    grad_bn_bias = grad_bn_out.sum(0)
    grad_normalized = grad_bn_out * bn_weight
    if batch_stats:
        projection = (grad_normalized * state.normalized).mean(0)
        grad_hidden = (grad_normalized - grad_normalized.mean(0) - state.normalized * projection) * state.invstd
    else:
        grad_hidden = grad_normalized * state.invstd
    return (grad_hidden @ first_weight, grad_hidden.t() @ state.pooled, grad_bn_weight, grad_bn_bias, grad_second)
