"""dsa_ops.models: insertion places against hand-composed blocks, the I3D/TSM builders, 2D -> 3D
inflation, the temporal shift, conversion of the paper's modules, weight files."""
import copy

import pytest
import torch
from torch import nn

import dsa_ops
from dsa_ops import models
from dsa_ops.models.resnet import Bottleneck, VideoResNet
from helpers import assert_close, randomize_generator

U = 4


class BasicBlock(nn.Module):
    """torchvision's BasicBlock layout (conv1, bn1, relu, conv2, bn2, downsample)."""

    def __init__(self, inplanes, planes, stride=1):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = nn.Sequential(nn.Conv2d(inplanes, planes, 1, stride, bias=False), nn.BatchNorm2d(planes))


def by_hand(block, dsa, place, x):
    """The block's computation written out, with dsa at `place`."""
    relu = torch.relu
    out = dsa(x) if place in ("res", "res_1") else x
    out = relu(block.bn1(block.conv1(out)))
    if place == "res_2":
        out = dsa(out)
    out = block.bn2(block.conv2(out))
    if isinstance(block, Bottleneck):
        out = relu(out)
        if place == "res_3":
            out = dsa(out)
        out = block.bn3(block.conv3(out))
    if place == "res_4":
        out = dsa(out)
    out = relu(out + block.downsample(x))
    return dsa(out) if place == "bottom" else out


def one_block_model(block):
    """A stand-in ResNet with one block in layer1 and empty other stages."""
    model = nn.Module()
    model.layer1 = nn.Sequential(block)
    for name in ("layer2", "layer3", "layer4"):
        setattr(model, name, nn.Sequential())
    return model


@pytest.mark.parametrize("place", models.PLACES)
@pytest.mark.parametrize("kind", ["bottleneck", "basic"])
def test_each_place_matches_the_block_composed_by_hand(rng, place, kind):
    if kind == "basic" and place == "res_3":
        with pytest.raises(ValueError, match="insert_place='res_3'.*needs a Bottleneck"):
            models.insert_dsa(one_block_model(BasicBlock(16, 16)), (1, 0, 0, 0), place)
        return
    block = Bottleneck(2, 16, 8, stride=2) if kind == "bottleneck" else BasicBlock(16, 24, stride=2)
    model = models.insert_dsa(one_block_model(copy.deepcopy(block)), (1, 0, 0, 0), place, U_segment=U,
                              split_ratio=0.5)
    wrapped = model.layer1[0]
    assert isinstance(wrapped, models.DSABlock)
    randomize_generator(wrapped.dsa, rng)
    assert wrapped.dsa.with_identity == (place == "bottom")
    x = torch.randn(2 * U, 16, 9, 9, generator=rng, dtype=torch.float64, requires_grad=True)
    block, wrapped = block.double().eval(), wrapped.double().eval()
    y = wrapped(x)
    y.square().sum().backward()
    x_hand = x.detach().clone().requires_grad_(True)
    y_hand = by_hand(wrapped.block, wrapped.dsa, place, x_hand)
    y_hand.square().sum().backward()
    assert_close(y, y_hand)
    assert_close(x.grad, x_hand.grad)
    assert not torch.equal(y, by_hand(wrapped.block, nn.Identity(), place, x)), "the DSA must change the output"


@pytest.mark.parametrize("place", [p for p in models.PLACES if p not in ("res", "res_1")])
def test_inplace_dsa_in_blocks_matches_out_of_place(rng, place):
    block = Bottleneck(2, 16, 8, stride=2)
    model = models.insert_dsa(one_block_model(block), (1, 0, 0, 0), place, U_segment=U, split_ratio=0.5)
    wrapped = model.layer1[0].eval()
    randomize_generator(wrapped.dsa, rng)
    inplace = copy.deepcopy(wrapped)
    inplace.dsa.inplace = True
    x = torch.randn(2 * U, 16, 9, 9, generator=rng)
    with torch.inference_mode():
        expected = wrapped(x)
        assert_close(inplace(x.clone()), expected)
    assert not torch.equal(expected, by_hand(wrapped.block, nn.Identity(), place, x)), "the DSA must change the output"


@pytest.mark.parametrize("place", ["res", "res_1"])
def test_inplace_dsa_is_refused_where_the_input_is_the_residual(place):
    with pytest.raises(ValueError, match=f"inplace=True cannot be used at insert_place='{place}'"):
        models.insert_dsa(one_block_model(Bottleneck(2, 16, 8)), (1, 0, 0, 0), place, inplace=True)


def test_insert_freq_is_checked_per_stage():
    model = VideoResNet(2, 3, U, width=8)
    with pytest.raises(ValueError, match=r"insert_freq for layer2 must be an int or 4 0/1 flags"):
        models.insert_dsa(model, (0, (1, 0), 0, 0))
    with pytest.raises(ValueError, match="insert_place must be one of"):
        models.insert_dsa(model, insert_place="middle")


def test_paper_insertion_points_and_channels():
    model = models.i3d_resnet50(10, width=8)
    wrapped = {name: m for name, m in model.named_modules() if isinstance(m, models.DSABlock)}
    assert sorted(wrapped) == ["layer2.1", "layer2.3", "layer3.1", "layer3.3", "layer3.5"]
    assert wrapped["layer2.1"].dsa.in_channels == 16 and wrapped["layer3.1"].dsa.in_channels == 32
    assert all(m.dsa.U_segment == 4 and m.dsa.num_shift_channel == m.dsa.in_channels // 8 for m in wrapped.values())


@pytest.mark.parametrize("builder, clip", [(models.i3d_resnet50, (2, 4, 3, 4, 32, 32)),
                                           (models.tsm_resnet50, (2, 8, 3, 32, 32))])
def test_builders_train_on_tiny_inputs(rng, builder, clip):
    model = builder(5, width=8)
    x = torch.randn(clip, generator=rng)
    logits = model(x)
    assert logits.shape == (2, 5)
    logits.sum().backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    dsa_grads = [m.dsa.generate[0].weight.grad for m in model.modules() if isinstance(m, models.DSABlock)]
    assert dsa_grads and all(g.abs().sum() > 0 for g in dsa_grads)
    model.eval()
    assert torch.equal(model(x), model(x.flatten(0, 1)))
    with pytest.raises(ValueError, match="clips must be"):
        model(x[:, :3].flatten(0, 1))
    with pytest.raises(ValueError, match="clips must be"):  # U wrong, though N*U is a multiple of it
        model(x.view(4, clip[1] // 2, *clip[2:]))
    with pytest.raises(ValueError, match="clips must be"):  # 4 colour channels
        model(torch.cat([x, x[:, :, :1]], dim=2))


@pytest.mark.parametrize("builder", [models.i3d_resnet50, models.tsm_resnet50])
@pytest.mark.parametrize("kwargs, match", [(dict(num_segments=0), "num_segments must be an int >= 1, got 0"),
                                           (dict(width=0), "width must be an int >= 1, got 0")])
def test_builders_reject_arguments(builder, kwargs, match):
    with pytest.raises(ValueError, match=match):
        builder(5, **{"width": 8, **kwargs})


def test_temporal_shift_rejects_shift_div():
    with pytest.raises(ValueError, match="shift_div must be an int >= 1"):
        models.tsm_resnet50(5, width=8, shift_div=0)
    with pytest.raises(ValueError, match="shift_div must be an int >= 1"):
        models.temporal_shift(torch.randn(8, 4, 2, 2), 4, shift_div=0)


def save_2d_resnet(path, rng):
    source = VideoResNet(2, 1000, 1, width=8)
    with torch.no_grad():
        for tensor in source.state_dict().values():
            if tensor.is_floating_point():
                tensor.copy_(torch.randn(tensor.shape, generator=rng).abs() + 0.1)
    torch.save(source.state_dict(), path)
    return source


def test_inflated_convs_reproduce_their_2d_convs(tmp_path, rng):
    source = save_2d_resnet(tmp_path / "r50.pth", rng)
    model = models.i3d_resnet50(7, dsa=False, width=8, pretrained2d=str(tmp_path / "r50.pth"))
    inflated = model.layer3[0].conv1
    assert inflated.kernel_size == (3, 1, 1)
    frame = torch.randn(2, inflated.in_channels, 6, 6, generator=rng)
    out_3d = inflated(frame.unsqueeze(2).repeat(1, 1, 5, 1, 1))
    out_2d = source.layer3[0].conv1(frame)
    for t in range(1, 4):
        assert_close(out_3d[:, :, t], out_2d)
    assert not torch.allclose(out_3d[:, :, 0], out_2d), "edge frames see the zero padding"
    image = torch.randn(1, 3, 16, 16, generator=rng)
    stem = model.conv1(image.unsqueeze(2).repeat(1, 1, 3, 1, 1))
    for t in range(3):
        assert_close(stem[:, :, t], source.conv1(image))
    assert_close(model.layer1[0].bn1.running_var, source.layer1[0].bn1.running_var)


def test_tsm_takes_torchvision_weights_under_the_shift(tmp_path, rng):
    source = save_2d_resnet(tmp_path / "r50.pth", rng)
    model = models.tsm_resnet50(7, num_segments=U, dsa=False, width=8, pretrained=str(tmp_path / "r50.pth"))
    assert isinstance(model.layer2[1].conv1, models.TemporalShift)
    assert torch.equal(model.layer2[1].conv1.net.weight, source.layer2[1].conv1.weight)
    assert torch.equal(model.layer4[2].bn3.running_mean, source.layer4[2].bn3.running_mean)


def test_bad_weight_files_name_the_path_and_keys(tmp_path, rng):
    with pytest.raises(FileNotFoundError, match="nowhere.pth"):
        models.i3d_resnet50(3, width=8, pretrained2d=str(tmp_path / "nowhere.pth"))
    state = VideoResNet(2, 10, 1, width=8).state_dict()
    del state["layer1.0.conv1.weight"]
    state["layer2.0.bn1.weight"] = torch.ones(3)
    torch.save(state, tmp_path / "broken.pth")
    with pytest.raises(ValueError, match=r"broken.pth.*missing keys \['layer1.0.conv1.weight'\].*layer2.0.bn1.weight"):
        models.tsm_resnet50(3, width=8, pretrained=str(tmp_path / "broken.pth"))
    torch.save([1, 2], tmp_path / "list.pth")
    with pytest.raises(ValueError, match="does not hold a state_dict"):
        models.tsm_resnet50(3, width=8, pretrained=str(tmp_path / "list.pth"))


def shift_by_loops(x, num_segments, shift_div):
    out = torch.zeros_like(x)
    fold = x.shape[1] // shift_div
    for row in range(x.shape[0]):
        u = row % num_segments
        for c in range(x.shape[1]):
            if c < fold:
                out[row, c] = x[row + 1, c] if u + 1 < num_segments else 0
            elif c < 2 * fold:
                out[row, c] = x[row - 1, c] if u > 0 else 0
            else:
                out[row, c] = x[row, c]
    return out


@pytest.mark.parametrize("channels, shift_div", [(16, 8), (13, 4), (3, 8)])
def test_temporal_shift_against_loops(rng, channels, shift_div):
    x = torch.randn(3 * U, channels, 2, 3, generator=rng)
    assert torch.equal(models.temporal_shift(x, U, shift_div), shift_by_loops(x, U, shift_div))
    with pytest.raises(ValueError, match="multiple of num_segments=4"):
        models.temporal_shift(x[:5], U)


@pytest.mark.parametrize("channels, processed", [(64, 8), (100, 29), (24, 24)])
def test_official_modules_are_replaced_with_their_state(rng, channels, processed):
    official = randomize_generator(dsa_ops.DSAReference(channels, U_segment=U, split_ratio=processed / channels), rng)
    official.split_sizes = [processed, channels - processed]  # the released module's exact split
    official.num_shift_channel = processed
    model = nn.Sequential(nn.Conv2d(3, channels, 1), official, nn.ReLU())
    x = torch.randn(2 * U, 3, 5, 5, generator=rng)
    before, state = model(x), copy.deepcopy(model.state_dict())
    assert models.replace_official_dsa(model) == 1
    assert isinstance(model[1], dsa_ops.DSAConv) and model[1].num_shift_channel == processed
    assert_close(model(x), before)
    model.load_state_dict(state)
    assert models.replace_official_dsa(model) == 0


def test_torchvision_resnets_take_dsa_and_give_their_weights(tmp_path, rng):
    torchvision = pytest.importorskip("torchvision")
    model = models.insert_dsa(torchvision.models.resnet50(), U_segment=U)
    assert sum(isinstance(m, models.DSABlock) for m in model.modules()) == 5
    model(torch.randn(U, 3, 32, 32, generator=rng)).sum().backward()
    basic = models.insert_dsa(torchvision.models.resnet18(), (0, 1, 1, 0), "res_4", U_segment=U, split_ratio=0.25)
    assert basic(torch.randn(U, 3, 32, 32, generator=rng)).shape == (U, 1000)
    torch.save(torchvision.models.resnet50().state_dict(), tmp_path / "tv.pth")
    models.tsm_resnet50(10, pretrained=str(tmp_path / "tv.pth"))
