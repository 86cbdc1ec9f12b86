"""insert_dsa: puts a DSAConv into the residual blocks of a torchvision-style ResNet (2D or 3D,
Bottleneck or BasicBlock) at one of the paper's places, by wrapping each chosen block."""
from torch import nn

from ..module import DSAConv
from .resnet import per_block_flags

PLACES = ("res", "res_1", "res_2", "res_3", "res_4", "bottom")
# The paper's choice: stages 2 and 3 (layer2, layer3), every second block, after conv1-bn1-relu.
PAPER_INSERT_FREQ = (0, (0, 1, 0, 1), (0, 1, 0, 1, 0, 1), 0)


def _first_conv(module):
    return next(m for m in module.modules() if isinstance(m, (nn.Conv2d, nn.Conv3d)))


def _place_channels(block, place):
    """The channel count the DSAConv sees at `place` in `block`."""
    bottleneck = hasattr(block, "conv3")
    if place in ("res", "res_1"):
        return _first_conv(block.conv1).in_channels
    if place == "res_2":
        return block.bn1.num_features
    if place == "res_3":
        if not bottleneck:
            raise ValueError("insert_place='res_3' (after conv2's activation) needs a Bottleneck block; a "
                             "BasicBlock has no activation after conv2: use 'res_2' or 'res_4'")
        return block.bn2.num_features
    return (block.bn3 if bottleneck else block.bn2).num_features


class DSABlock(nn.Module):
    """A residual block (`block`) with a DSAConv (`dsa`) at `place`; the block's own layers run as in
    its forward."""

    def __init__(self, block, dsa, place):
        super().__init__()
        self.block, self.dsa, self.place = block, dsa, place

    def extra_repr(self):
        return f"place={self.place!r}"

    def forward(self, x):
        b, place = self.block, self.place
        out = self.dsa(x) if place in ("res", "res_1") else x
        out = b.relu(b.bn1(b.conv1(out)))
        if place == "res_2":
            out = self.dsa(out)
        out = b.bn2(b.conv2(out))
        if hasattr(b, "conv3"):
            out = b.relu(out)
            if place == "res_3":
                out = self.dsa(out)
            out = b.bn3(b.conv3(out))
        if place == "res_4":
            out = self.dsa(out)
        identity = x if b.downsample is None else b.downsample(x)
        out = b.relu(out + identity)
        return self.dsa(out) if place == "bottom" else out


def insert_dsa(model, insert_freq=PAPER_INSERT_FREQ, insert_place="res_2", **dsa_kwargs):
    """Wraps the residual blocks of `model` (which has layer1..layer4 of blocks with conv1/bn1/..., as
    torchvision's ResNets) so that a DSAConv runs at `insert_place`: 'res'/'res_1' (before conv1),
    'res_2' (after conv1-bn1-relu), 'res_3' (after conv2's activation), 'res_4' (after the last bn,
    before the residual add), 'bottom' (after the block, with identity). `insert_freq` gives per stage
    an int (every block or none) or a tuple of 0/1 per block; the default is the paper's. Other keyword
    arguments go to DSAConv (U_segment, split_ratio, backend, ...). Returns the model, changed in place."""
    if insert_place not in PLACES:
        raise ValueError(f"insert_place must be one of {PLACES}, got {insert_place!r}")
    stages = [getattr(model, f"layer{i}", None) for i in range(1, 5)]
    if any(stage is None for stage in stages):
        raise ValueError("insert_dsa needs a ResNet-style model with layer1 .. layer4")
    if len(insert_freq) != len(stages):
        raise ValueError(f"insert_freq must have one entry per stage (4), got {len(insert_freq)}")
    if insert_place in ("res", "res_1") and dsa_kwargs.get("inplace"):
        raise ValueError(f"inplace=True cannot be used at insert_place={insert_place!r}: the block's input, which "
                         "the DSAConv would overwrite there, is also its residual; use 'res_2' .. 'bottom'")
    if insert_place == "bottom":
        dsa_kwargs.setdefault("with_identity", True)
    for index, (stage, freq) in enumerate(zip(stages, insert_freq), start=1):
        for position, chosen in enumerate(per_block_flags(freq, len(stage), f"insert_freq for layer{index}")):
            block = stage[position]
            if not chosen or isinstance(block, DSABlock):
                continue
            reference = next(block.parameters())
            dsa = DSAConv(_place_channels(block, insert_place), insert_place=insert_place, **dsa_kwargs)
            stage[position] = DSABlock(block, dsa.to(device=reference.device, dtype=reference.dtype), insert_place)
    return model
