"""Deployment: the DSA module in an export form of standard operators (pooling, the generator MLP with
its BatchNorm folded, softmax, and the weighted sum of the zero-padded, shifted segments), so that a
model holding DSAConv exports to ONNX with the batch of videos dynamic; U and the channel split are
baked in. torch.export needs none of this: the registered ops carry fake kernels.

    dsa_ops.export.to_onnx(model, example, "model.onnx")
"""
import copy

import torch
import torch.nn.functional as F
from torch import nn

from ._modules import replace_submodules
from .reference import DSAReference


class DSAExportForm(nn.Module):
    """A DSA module in inference form: the same outputs as its eval-mode forward, written with operators
    every exporter knows, every shape but the number of videos fixed."""

    def __init__(self, module):
        super().__init__()
        first, bn, second = module.generate[0], module.generate[1], module.generate[3]
        with torch.no_grad():
            scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
            self.first = nn.Linear(first.in_features, first.out_features, device=first.weight.device,
                                   dtype=first.weight.dtype)
            self.first.weight.copy_(first.weight * scale[:, None])
            self.first.bias.copy_(bn.bias - bn.running_mean * scale)
        self.second = copy.deepcopy(second)
        self.num_segments, self.channels = module.U_segment, module.num_shift_channel
        self.kernel_size, self.with_identity = second.out_features, module.with_identity

    def forward(self, x):
        x5 = x if x.dim() == 5 else x.unsqueeze(2)
        rows, width, *spatial = x5.shape
        u, c, k = self.num_segments, self.channels, self.kernel_size
        segments = x5[:, :c].reshape(-1, u, c, spatial[0] * spatial[1] * spatial[2])  # (N, U, C', S)
        pooled = segments.mean(3).transpose(1, 2)  # (N, C', U)
        weight = torch.softmax(self.second(torch.relu(self.first(pooled))), dim=-1)  # (N, C', K)
        pad = (k - 1) // 2
        padded = F.pad(segments, (0, 0, 0, 0, pad, pad))  # zero segments at both ends of each video
        out = segments if self.with_identity else torch.zeros_like(segments)
        for tap in range(k):
            out = out + weight[:, None, :, tap, None] * padded[:, tap:tap + u]
        out = torch.cat([out.reshape(x5[:, :c].shape), x5[:, c:]], dim=1)
        return out.reshape(x.shape)


def export_form(model):
    """A copy of `model` in eval mode with every DSA module (DSAConv, DSAReference) in export form."""
    model = copy.deepcopy(model).eval()
    if isinstance(model, DSAReference):
        return DSAExportForm(model)
    replace_submodules(model, lambda module: isinstance(module, DSAReference), DSAExportForm)
    return model


def to_onnx(model, example, path, dynamic_batch=True, opset_version=18):
    """Exports `model` (eval form, DSA modules as standard operators) to the ONNX file `path`, traced on
    `example` (one input tensor); the first dimension of input and output stays dynamic when
    dynamic_batch. For (N, U, ...) video models that is the number of videos; for a bare DSA layer on
    (N*U, C, ...) it must stay a multiple of U. Returns the path."""
    form = export_form(model)
    dynamic_shapes = ({0: torch.export.Dim("batch")},) if dynamic_batch else None
    torch.onnx.export(form, (example,), path, input_names=["input"], output_names=["output"],
                      dynamic_shapes=dynamic_shapes, opset_version=opset_version, dynamo=True)
    return path
