"""Model integration: DSA in existing ResNets (insert_dsa), the paper's I3D and TSM ResNet-50 backbones,
and conversion of models built with the paper's released DSA module (replace_official_dsa)."""
from .insertion import PAPER_INSERT_FREQ, PLACES, DSABlock, insert_dsa
from .official import replace_official_dsa
from .resnet import VideoResNet
from .temporal_shift import TemporalShift, temporal_shift
from .weights import load_backbone

__all__ = ["insert_dsa", "i3d_resnet50", "tsm_resnet50", "replace_official_dsa", "temporal_shift", "TemporalShift",
           "VideoResNet", "DSABlock", "PLACES", "PAPER_INSERT_FREQ", "I3D_INFLATE_FREQ"]

# I3D ResNet-50 as in the paper: the conv1 of every layer3 and layer4 block inflated to 3x1x1.
I3D_INFLATE_FREQ = (0, 0, 1, 1)


def _with_dsa(model, dsa, num_segments, insert_freq, insert_place, dsa_kwargs):
    if dsa:
        insert_dsa(model, insert_freq, insert_place, U_segment=num_segments, **dsa_kwargs)
    elif dsa_kwargs:
        raise ValueError(f"DSA options {sorted(dsa_kwargs)} given with dsa=False")
    return model


def i3d_resnet50(num_classes, num_segments=4, dsa=True, pretrained2d=None, inflate_freq=I3D_INFLATE_FREQ,
                 insert_freq=PAPER_INSERT_FREQ, insert_place="res_2", width=64, dropout=0.5, **dsa_kwargs):
    """The paper's I3D ResNet-50 (conv1 1x7x7, no temporal downsampling, conv1 of the blocks flagged by
    inflate_freq inflated to 3x1x1), optionally initialised from a torchvision ResNet-50 state_dict file
    (`pretrained2d`, kernels inflated), with DSA inserted by insert_dsa. Maps (N, U, 3, T, H, W) or
    (N*U, 3, T, H, W) clips to (N, num_classes) logits."""
    model = VideoResNet(3, num_classes, num_segments, width=width, inflate_freq=inflate_freq, dropout=dropout)
    if pretrained2d is not None:
        load_backbone(model, pretrained2d)
    return _with_dsa(model, dsa, num_segments, insert_freq, insert_place, dsa_kwargs)


def tsm_resnet50(num_classes, num_segments=8, shift_div=8, dsa=True, pretrained=None,
                 insert_freq=PAPER_INSERT_FREQ, insert_place="res_2", width=64, dropout=0.5, **dsa_kwargs):
    """TSM ResNet-50: torchvision's ResNet-50 layout (weights from the torchvision state_dict file
    `pretrained`, if given) with the temporal shift on each block's conv1 ("blockres") and DSA inserted
    by insert_dsa. Maps (N, U, 3, H, W) or (N*U, 3, H, W) to (N, num_classes) logits."""
    model = VideoResNet(2, num_classes, num_segments, width=width, dropout=dropout)
    if pretrained is not None:
        load_backbone(model, pretrained)
    for stage in (model.layer1, model.layer2, model.layer3, model.layer4):
        for block in stage:
            block.conv1 = TemporalShift(block.conv1, num_segments, shift_div)
    return _with_dsa(model, dsa, num_segments, insert_freq, insert_place, dsa_kwargs)
