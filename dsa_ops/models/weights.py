"""Loading backbone weights from local files (nothing is downloaded): a torchvision ResNet-50
state_dict, as is (TSM) or inflated to 3D (I3D). The classifier (fc.*) is not taken: its class count
is the new model's."""
import os

import torch


def read_state_dict(path):
    """The state_dict stored at `path` (a plain state_dict, or a checkpoint holding one under
    'state_dict' or 'model')."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"weights file {path!r} does not exist")
    loaded = torch.load(path, map_location="cpu", weights_only=True)
    for key in ("state_dict", "model"):
        if isinstance(loaded, dict) and isinstance(loaded.get(key), dict):
            loaded = loaded[key]
    if not isinstance(loaded, dict) or not all(torch.is_tensor(v) for v in loaded.values()):
        raise ValueError(f"weights file {path!r} does not hold a state_dict of tensors")
    return {k.removeprefix("module."): v for k, v in loaded.items()}


def inflate(weight_2d, shape_3d):
    """A 2D conv kernel (O, I, kh, kw) as a 3D one (O, I, kt, kh, kw): repeated over time and divided by
    kt, so that on a clip of identical frames the 3D conv gives the 2D conv's output."""
    time = shape_3d[2]
    return weight_2d.unsqueeze(2).repeat(1, 1, time, 1, 1) / time


def load_backbone(model, path):
    """Copies the weights of the torchvision-style ResNet-50 state_dict at `path` into `model` (2D, or
    3D with 2D kernels inflated), all but fc.*; raises naming the path and every key that is missing or
    does not fit."""
    source = read_state_dict(path)
    target = model.state_dict()
    wanted = [k for k in target if not k.startswith("fc.")]
    missing = [k for k in wanted if k not in source]
    loaded, mismatched = {}, []
    for key in wanted:
        if key not in source:
            continue
        value, shape = source[key], target[key].shape
        if value.dim() == 4 and len(shape) == 5:
            value = inflate(value, shape)
        if value.shape != shape:
            mismatched.append(f"{key}: file {tuple(value.shape)}, model {tuple(shape)}")
        loaded[key] = value
    if missing or mismatched:
        raise ValueError(f"weights file {path!r} does not fit the model: missing keys {missing[:10]}"
                         f"{' ...' if len(missing) > 10 else ''}; mismatched {mismatched[:10]}")
    model.load_state_dict(loaded, strict=False)
    return model
