"""Argument checks shared by every backend (the compiled ops repeat them for direct torch.ops calls).
Each message names the argument and the values it may take."""
import torch

from ._layout import accumulate_dtype
from .reference import check_kernel_size

FLOAT_DTYPES = (torch.float32, torch.float64, torch.float16, torch.bfloat16)


def check_input(x, num_segments, name="x"):
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() not in (4, 5):
        raise ValueError(f"{name} must be 4D (N*U, C, H, W) or 5D (N*U, C, T, H, W), got {x.dim()}D")
    if x.dtype not in FLOAT_DTYPES:
        raise ValueError(f"{name} must be float32, float64, float16 or bfloat16, got {x.dtype}")
    if 0 in x.shape[2:]:
        raise ValueError(f"{name} must have at least one position to pool over (T*H*W >= 1), "
                         f"got shape {tuple(x.shape)}")
    check_num_segments(num_segments)
    if x.shape[0] % num_segments != 0:
        raise ValueError(f"{name}.size(0) must be a multiple of num_segments (U={num_segments}), got {x.shape[0]}")


def check_num_segments(num_segments):
    if not isinstance(num_segments, int) or num_segments < 1:
        raise ValueError(f"num_segments (U) must be an int >= 1, got {num_segments!r}")


def check_channels(x, channels, name="channels (C')"):
    if not isinstance(channels, int) or not 1 <= channels <= x.shape[1]:
        raise ValueError(f"{name} must be an int in [1, C={x.shape[1]}], got {channels!r}")


def check_aggregate_weight(weight, x, num_segments):
    if not isinstance(weight, torch.Tensor):
        raise TypeError(f"weight must be a torch.Tensor, got {type(weight).__name__}")
    if weight.dim() != 3:
        raise ValueError(f"weight must be 3D (N, C', K), got {weight.dim()}D")
    if weight.dtype not in FLOAT_DTYPES:
        raise ValueError(f"weight must be a floating dtype, got {weight.dtype}")
    if weight.device != x.device:
        raise RuntimeError(f"weight must be on x's device ({x.device}), got {weight.device}")
    videos = x.shape[0] // num_segments
    if weight.shape[0] != videos:
        raise ValueError(f"weight.size(0) must equal the number of videos N = x.size(0) / U = {videos}, "
                         f"got {weight.shape[0]}")
    check_channels(x, weight.shape[1], "weight.size(1) (C')")
    check_kernel_size(weight.shape[2], "weight.size(2) (K)")


def check_parameter(p, x, name):
    if p.device != x.device:
        raise RuntimeError(f"{name} must be on x's device ({x.device}), got {p.device}; move the module with .to()")
    if p.dtype != x.dtype and p.dtype != accumulate_dtype(x.dtype):  # no set built on the passing path
        names = " or ".join(sorted(str(d) for d in {x.dtype, accumulate_dtype(x.dtype)}))
        raise ValueError(f"{name} must be {names} for a {x.dtype} input, got {p.dtype}; cast the module or the input")
