"""TSM's temporal shift: a fraction of the channels moves one segment back, another fraction one
segment forward, within each video of (N*U, C, H, W) features (zero at the ends)."""
import torch
from torch import nn


def check_shift_div(shift_div):
    if not isinstance(shift_div, int) or shift_div < 1:
        raise ValueError(f"shift_div must be an int >= 1 (1/shift_div of the channels move each way), "
                         f"got {shift_div!r}")


def temporal_shift(x, num_segments, shift_div=8):
    """x (N*U, C, ...) with rows video-major; channels [0, C/shift_div) take the next segment's values,
    [C/shift_div, 2C/shift_div) the previous one's, the rest stay."""
    check_shift_div(shift_div)
    if x.shape[0] % num_segments:
        raise ValueError(f"x.size(0) must be a multiple of num_segments={num_segments}, got {x.shape[0]}")
    fold = x.shape[1] // shift_div
    video = x.reshape(-1, num_segments, *x.shape[1:])
    out = torch.zeros_like(video)
    out[:, :-1, :fold] = video[:, 1:, :fold]
    out[:, 1:, fold:2 * fold] = video[:, :-1, fold:2 * fold]
    out[:, :, 2 * fold:] = video[:, :, 2 * fold:]
    return out.reshape(x.shape)


class TemporalShift(nn.Module):
    """Shifts its input in time, then runs `net` (the residual branch's first conv, as in TSM's
    "blockres" placement; the attribute name keeps TSM checkpoints' keys, `conv1.net.weight`)."""

    def __init__(self, net, num_segments, shift_div=8):
        check_shift_div(shift_div)
        super().__init__()
        self.net = net
        self.num_segments = num_segments
        self.shift_div = shift_div

    def extra_repr(self):
        return f"num_segments={self.num_segments}, shift_div={self.shift_div}"

    def forward(self, x):
        return self.net(temporal_shift(x, self.num_segments, self.shift_div))
