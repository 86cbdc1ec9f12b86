"""ResNet-50 in 2D (TSM) and 3D (I3D) with torchvision's module names (conv1, bn1, layer1..4, fc;
blocks with conv1..3, bn1..3, relu, downsample), so torchvision checkpoints load and `insert_dsa`
finds its way around either; `width` narrows every stage for small tests and examples."""
from torch import nn


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, dims, inplanes, planes, stride=1, inflate=False):
        super().__init__()
        conv, norm = (nn.Conv3d, nn.BatchNorm3d) if dims == 3 else (nn.Conv2d, nn.BatchNorm2d)
        if dims == 3:  # I3D: conv1 inflated to 3x1x1 where asked, no temporal stride
            self.conv1 = conv(inplanes, planes, (3, 1, 1) if inflate else 1, padding=(1, 0, 0) if inflate else 0,
                              bias=False)
            self.conv2 = conv(planes, planes, (1, 3, 3), stride=(1, stride, stride), padding=(0, 1, 1), bias=False)
        else:
            self.conv1 = conv(inplanes, planes, 1, bias=False)
            self.conv2 = conv(planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1, self.bn2 = norm(planes), norm(planes)
        self.conv3 = conv(planes, planes * self.expansion, 1, bias=False)
        self.bn3 = norm(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or inplanes != planes * self.expansion:
            spatial_stride = (1, stride, stride) if dims == 3 else stride
            self.downsample = nn.Sequential(conv(inplanes, planes * self.expansion, 1, stride=spatial_stride,
                                                 bias=False), norm(planes * self.expansion))

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


def per_block_flags(freq, blocks, name):
    """A stage's frequency (an int for every block, or a tuple of 0/1 per block) as a tuple of bools;
    name says which argument and stage it is in the error."""
    if isinstance(freq, int):
        return (bool(freq),) * blocks
    if len(freq) != blocks:
        raise ValueError(f"{name} must be an int or {blocks} 0/1 flags (one per block), got {tuple(freq)}")
    return tuple(bool(f) for f in freq)


class VideoResNet(nn.Module):
    """ResNet-50 over the segments of videos: the backbone runs on (N*U, 3, [T,] H, W), the head averages
    the U segments' logits of each video. Takes (N, U, 3, [T,] H, W) or (N*U, 3, [T,] H, W) clips and
    returns (N, num_classes) logits."""

    def __init__(self, dims, num_classes, num_segments, layers=(3, 4, 6, 3), width=64, inflate_freq=0,
                 dropout=0.5):
        for name, value in (("num_segments", num_segments), ("width", width)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an int >= 1, got {value!r}")
        super().__init__()
        self.dims, self.num_segments = dims, num_segments
        conv, norm = (nn.Conv3d, nn.BatchNorm3d) if dims == 3 else (nn.Conv2d, nn.BatchNorm2d)
        if dims == 3:
            self.conv1 = conv(3, width, (1, 7, 7), stride=(1, 2, 2), padding=(0, 3, 3), bias=False)
            self.maxpool = nn.MaxPool3d((1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1))
        else:
            self.conv1 = conv(3, width, 7, stride=2, padding=3, bias=False)
            self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        self.bn1 = norm(width)
        self.relu = nn.ReLU(inplace=True)
        inflate_freq = (inflate_freq,) * 4 if isinstance(inflate_freq, int) else tuple(inflate_freq)
        inplanes = width
        for stage, blocks in enumerate(layers):
            planes = width * 2 ** stage
            inflate = per_block_flags(inflate_freq[stage], blocks, f"inflate_freq for layer{stage + 1}")
            stage_blocks = []
            for index in range(blocks):
                stride = 2 if stage > 0 and index == 0 else 1
                stage_blocks.append(Bottleneck(dims, inplanes, planes, stride, inflate[index]))
                inplanes = planes * Bottleneck.expansion
            setattr(self, f"layer{stage + 1}", nn.Sequential(*stage_blocks))
        self.avgpool = nn.AdaptiveAvgPool3d(1) if dims == 3 else nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(inplanes, num_classes)

    def forward(self, clips):
        sample_dims = 1 + self.dims  # (3, [T,] H, W)
        if clips.dim() == sample_dims + 2 and clips.shape[1] == self.num_segments:
            clips = clips.flatten(0, 1)
        if clips.dim() != sample_dims + 1 or clips.shape[0] % self.num_segments or clips.shape[1] != 3:
            raise ValueError(f"clips must be (N, U={self.num_segments}, 3, {'T, ' if self.dims == 3 else ''}H, W) "
                             f"or (N*U, 3, ...), got {tuple(clips.shape)}")
        x = self.maxpool(self.relu(self.bn1(self.conv1(clips))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        logits = self.fc(self.dropout(self.avgpool(x).flatten(1)))
        return logits.view(-1, self.num_segments, logits.shape[1]).mean(1)
