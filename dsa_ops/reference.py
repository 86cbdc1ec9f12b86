"""The specification: the DSA module of DSANet in plain PyTorch, with the paper module's exact semantics.

Input x is (N*U, C, T, H, W) (I3D) or (N*U, C, H, W) (TSM, T = 1), video-major (row n*U + u). The first
C' = int(C * split_ratio) channels are processed, the rest pass through unchanged:

1. pool:      p[n, c, u] = mean over T*H*W of x[n*U + u, c]
2. generate:  w[n, c, :] = Softmax(Linear(ReLU(BatchNorm1d(Linear(p[n, c, :])))))   (U -> aU -> K)
3. aggregate: y[n*U + u, c] = sum_k w[n, c, k] * x[n*U + u + k - P, c]  (zero padded, P = (K - 1) / 2)
              (+ x[n*U + u, c] when with_identity)

Every backend and every benchmark is held to this file. It imports torch only and works in float64.
"""
import torch
import torch.nn.functional as F
from torch import nn


def _as_5d(x):
    return x if x.dim() == 5 else x.unsqueeze(2)


def _to_segment_major(x_shift, num_segments):
    """(N*U, C', T, H, W) -> (N, C', U, T, H, W), the paper's permute copy."""
    nu, c, t, h, w = x_shift.shape
    return x_shift.view(nu // num_segments, num_segments, c, t, h, w).permute(0, 2, 1, 3, 4, 5).contiguous()


def _from_segment_major(y, like):
    """(N, C', U, T, H, W) -> like's (N*U, C', ...) layout, the paper's second permute copy."""
    n, c, u, t, h, w = y.shape
    return y.permute(0, 2, 1, 3, 4, 5).contiguous().view(n * u, c, t, h, w).view(like.shape)


def segment_pool(x, num_segments, channels):
    """(N, C', U): the mean over T*H*W of each of the first C' channels of each snippet."""
    x_shift = _as_5d(x)[:, :channels]
    return _to_segment_major(x_shift, num_segments).mean(dim=(3, 4, 5))


def aggregate(x, weight, num_segments, identity=False):
    """The first C' = weight.size(1) channels aggregated along the snippet axis with the per-(video,
    channel) kernels weight (N, C', K), as the paper does it: a grouped conv3d over (U, T*H, W)."""
    channels, kernel_size = weight.shape[1], weight.shape[2]
    x5 = _as_5d(x)
    x_shift, x_pass = x5.split([channels, x5.shape[1] - channels], dim=1)
    seg = _to_segment_major(x_shift, num_segments)
    n, c, u, t, h, w = seg.shape
    conv_weight = weight.reshape(n * c, 1, kernel_size, 1, 1).to(seg.dtype)
    out = F.conv3d(seg.view(1, n * c, u, t * h, w), conv_weight, padding=((kernel_size - 1) // 2, 0, 0), groups=n * c)
    out = out.view(n, c, u, t, h, w)
    if identity:
        out = out + seg
    y_shift = _from_segment_major(out, x_shift)
    return torch.cat([y_shift, x_pass], dim=1).view(x.shape)


def dsa_forward(x, generate, num_segments, channels, identity=False):
    """The module's forward with the kernel generator `generate` (the paper's nn.Sequential); in
    training mode its BatchNorm updates the running statistics as nn.BatchNorm1d does."""
    pooled = segment_pool(x, num_segments, channels)
    n = pooled.shape[0]
    kernel = generate(pooled.reshape(n * channels, num_segments)).view(n, channels, -1)
    return aggregate(x, kernel, num_segments, identity)


def make_generator(num_segments, kernel_size=3, alpha=2):
    """The paper's kernel generator, parameter names generate.{0,1,3}.*."""
    return nn.Sequential(
        nn.Linear(num_segments, num_segments * alpha, bias=False),
        nn.BatchNorm1d(num_segments * alpha),
        nn.ReLU(inplace=True),
        nn.Linear(num_segments * alpha, kernel_size, bias=False),
        nn.Softmax(-1),
    )


def check_kernel_size(kernel_size, name="kernel_size"):
    """Raises ValueError unless kernel_size is an odd int >= 1 (the padding (K - 1) / 2 keeps U segments)."""
    if not isinstance(kernel_size, int) or kernel_size < 1 or kernel_size % 2 == 0:
        raise ValueError(f"{name} must be an odd int >= 1, got {kernel_size!r}")


def check_arguments(in_channels, U_segment, kernel_size, stride, padding, alpha, split_ratio):
    """Raises ValueError, naming the argument and the values it may take, unless the module's arguments
    describe a DSA that keeps its input's shape with at least one processed channel."""
    if not isinstance(in_channels, int) or in_channels < 1:
        raise ValueError(f"in_channels must be an int >= 1, got {in_channels!r}")
    if not isinstance(U_segment, int) or U_segment < 1:
        raise ValueError(f"U_segment must be an int >= 1, got {U_segment!r}")
    check_kernel_size(kernel_size)
    if stride != 1:
        raise ValueError(f"stride must be 1 (the output keeps U={U_segment} segments), got {stride!r}")
    if padding != (kernel_size - 1) // 2:
        raise ValueError(f"padding must be (kernel_size - 1) / 2 = {(kernel_size - 1) // 2} for "
                         f"kernel_size={kernel_size} (the output keeps U segments), got {padding!r}")
    if not isinstance(alpha, int) or alpha < 1:
        raise ValueError(f"alpha must be an int >= 1, got {alpha!r}")
    if not 0 < split_ratio <= 1:
        raise ValueError(f"split_ratio must be in (0, 1], got {split_ratio!r}")
    if int(in_channels * split_ratio) < 1:
        raise ValueError(f"split_ratio must leave at least one processed channel: int(in_channels * split_ratio)"
                         f" = int({in_channels} * {split_ratio}) = 0; use split_ratio >= {1 / in_channels:.4g}")


class DSAReference(nn.Module):
    """The paper's module in eager PyTorch: same constructor keywords, attributes and state_dict keys.
    Arguments outside the ranges check_arguments allows raise ValueError."""

    def __init__(self, in_channels, insert_place="res_2", U_segment=4, kernel_size=3, stride=1, padding=1,
                 alpha=2, split_ratio=1 / 8, with_identity=False):
        check_arguments(in_channels, U_segment, kernel_size, stride, padding, alpha, split_ratio)
        super().__init__()
        self.in_channels = in_channels
        self.insert_place = insert_place
        self.U_segment = U_segment
        self.kernel_size = kernel_size
        self.stride = stride
        self.padding = padding
        self.alpha = alpha
        self.split_ratio = split_ratio
        self.with_identity = with_identity
        self.num_shift_channel = int(in_channels * split_ratio)
        self.split_sizes = [self.num_shift_channel, in_channels - self.num_shift_channel]
        self.generate = make_generator(U_segment, kernel_size, alpha)

    def forward(self, x):
        return dsa_forward(x, self.generate, self.U_segment, self.num_shift_channel, self.with_identity)
