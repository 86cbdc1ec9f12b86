"""replace_official_dsa: swaps modules of the paper's released DSA implementation (recognised by their
`generate` Sequential, `U_segment` and `split_sizes`) for DSAConv carrying the same weights, buffers and
parameter names, so the paper's checkpoints load into the converted model."""
import math

from torch import nn

from .._modules import replace_submodules
from ..module import DSAConv


def _is_official(module):
    return (not isinstance(module, DSAConv) and isinstance(getattr(module, "generate", None), nn.Sequential)
            and hasattr(module, "U_segment") and hasattr(module, "split_sizes"))


def _split_ratio(processed, channels):
    """A ratio r with int(channels * r) == processed."""
    ratio = processed / channels
    while int(channels * ratio) < processed:
        ratio = math.nextafter(ratio, math.inf)
    return ratio


def converted(module, **dsa_kwargs):
    """A DSAConv equivalent to one official DSA module, holding its state."""
    generate = module.generate
    channels = sum(module.split_sizes)
    kernel_size = generate[3].out_features
    dsa = DSAConv(channels, insert_place=getattr(module, "insert_place", "res_2"), U_segment=module.U_segment,
                  kernel_size=kernel_size, padding=getattr(module, "padding", kernel_size // 2),
                  alpha=generate[0].out_features // module.U_segment,
                  split_ratio=_split_ratio(module.split_sizes[0], channels),
                  with_identity=getattr(module, "with_identity", False), **dsa_kwargs)
    dsa.load_state_dict(module.state_dict())
    reference = next(module.parameters())
    return dsa.to(device=reference.device, dtype=reference.dtype).train(module.training)


def replace_official_dsa(model, **dsa_kwargs):
    """Replaces, in place, every official DSA module inside `model` by an equivalent DSAConv (keyword
    arguments go to DSAConv, e.g. backend); returns how many were replaced."""
    if _is_official(model):
        raise ValueError("model is itself a DSA module: use dsa_ops.models.official.converted(model)")
    return replace_submodules(model, _is_official, lambda module: converted(module, **dsa_kwargs))
