"""How kernels written in Python see an input (mirrors csrc/layout.cpp): a (rows, channels, S) plane
with one stride per axis, S = T*H*W; the output layout rule shared with the compiled ops."""
import math

import torch


def spatial_size(x):
    return math.prod(x.shape[2:])


def _flat_spatial_stride(x):
    """The single stride of the flattened spatial dims, or None when they do not flatten."""
    inner, expected = None, 0
    for size, stride in zip(reversed(x.shape[2:]), reversed(x.stride()[2:])):
        if size == 1:
            continue
        if inner is None:
            inner = stride
        elif stride != expected:
            return None
        expected = stride * size
    return 1 if inner is None else inner


def readable_input(x):
    """x itself when its spatial dims flatten and the channel or spatial stride is 1, else a
    contiguous copy (the one copy the package makes of an awkwardly strided input)."""
    spatial = _flat_spatial_stride(x)
    if spatial is not None and (spatial == 1 or x.stride(1) == 1 or x.shape[1] == 1):
        return x
    return x.contiguous()


def plane_strides(x):
    """(row, channel, spatial) strides of a tensor from readable_input; spatial is 1 when S == 1."""
    spatial = _flat_spatial_stride(x)
    strides = x.stride()
    return strides[0], strides[1], 1 if spatial_size(x) == 1 else spatial


def empty_output(x, dtype=None):
    """An uninitialised x-shaped tensor laid out as every op lays out its outputs: channels-last when x
    is channels-last (and not also contiguous), contiguous otherwise."""
    memory_format = torch.contiguous_format
    if not x.is_contiguous():
        if x.dim() == 5 and x.is_contiguous(memory_format=torch.channels_last_3d):
            memory_format = torch.channels_last_3d
        elif x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last):
            memory_format = torch.channels_last
    return torch.empty(x.shape, dtype=dtype or x.dtype, device=x.device, memory_format=memory_format)


def accumulate_dtype(dtype):
    return torch.float64 if dtype == torch.float64 else torch.float32
