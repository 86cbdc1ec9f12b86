"""The shapes a run times: the paper's insertion points, a one-axis-at-a-time sweep, a quick smoke case,
or one given on the command line."""
from dataclasses import dataclass, replace

from ..reference import check_arguments


@dataclass(frozen=True)
class Case:
    name: str
    videos: int
    segments: int
    channels: int
    tail: tuple  # (T, H, W) or (H, W)
    split: float
    kernel_size: int = 3

    def shape(self):
        return (self.videos * self.segments, self.channels, *self.tail)

    def label(self):
        return f"{self.name} split {self.split:.3g}" + (f" K={self.kernel_size}" if self.kernel_size != 3 else "")


def paper(device):
    """The paper's res_2 insertion points: I3D-R50 layer2 / layer3 with 12 videos x U=4 x T=8 at 28^2 /
    14^2, TSM-R50 layer1 with 8 videos x U=8 at 56^2, split 1/8 and 1; fewer videos on the CPU."""
    i3d_videos, tsm_videos = (12, 8) if device.type == "cuda" else (2, 1)
    cases = []
    for split in (1 / 8, 1.0):
        cases += [Case("i3d-layer2", i3d_videos, 4, 128, (8, 28, 28), split),
                  Case("i3d-layer3", i3d_videos, 4, 256, (8, 14, 14), split),
                  Case("tsm-layer1", tsm_videos, 8, 64, (56, 56), split)]
    return cases


def sweep(device):
    """One axis at a time around I3D layer3 at split 1/8: the processed channels C', the positions S,
    the segments U (N*U fixed) and the kernel size K; dtypes come from --dtypes."""
    base = paper(device)[1]
    rows = base.videos * base.segments
    cases = [replace(base, name="C'", split=split) for split in (1 / 16, 1 / 4, 1 / 2, 1.0)]
    cases += [replace(base, name="S", tail=tail) for tail in ((8, 7, 7), (8, 28, 28), (16, 14, 14))]
    cases += [replace(base, name="U", segments=u, videos=max(1, rows // u)) for u in (2, 8, 16)]
    cases += [replace(base, name="K", kernel_size=k) for k in (1, 5, 7)]
    return [base] + cases


def quick(device):
    """A tiny case for smoke tests."""
    return [Case("quick", 2, 4, 32, (2, 7, 7), 1 / 4)]


PRESETS = {"paper": paper, "sweep": sweep, "quick": quick}


def parse_shape(text, split, kernel_size):
    """A Case from "N,U,C,T,H,W" or "N,U,C,H,W", its split and K checked as the module checks them."""
    try:
        dims = tuple(int(d) for d in text.split(","))
    except ValueError:
        dims = ()
    if len(dims) not in (5, 6) or min(dims) < 1:
        raise ValueError(f"--shape must be N,U,C,T,H,W or N,U,C,H,W with positive ints, got {text!r}")
    case = Case("custom", dims[0], dims[1], dims[2], dims[3:], split, kernel_size)
    try:
        check_arguments(case.channels, case.segments, kernel_size, 1, (kernel_size - 1) // 2, 2, split)
    except ValueError as error:
        raise ValueError(f"--shape {text} --split {split:g} --kernel-size {kernel_size}: {error}") from None
    return case
