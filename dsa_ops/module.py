"""DSAConv: a drop-in for the paper's DSA module running on the fused ops."""
import warnings

import torch

from . import ops, reference
from ._validation import check_channels, check_input, check_parameter


_GENERATOR_NAMES = ("generate.0.weight", "generate.1.weight", "generate.1.bias", "generate.1.running_mean",
                    "generate.1.running_var", "generate.3.weight")


class DSAConv(reference.DSAReference):
    """Dynamic Segment Aggregation (DSANet, ACM MM 2021).

    The reference module (its argument checks included) with a forward on the fused ops: the keywords of
    the paper's released module, its attributes (U_segment, num_shift_channel, split_sizes) and state_dict
    keys (generate.0.weight, generate.1.*, generate.3.weight), so its checkpoints load unchanged.
    Input: (N*U, C, T, H, W) or (N*U, C, H, W).

    backend: "auto" (the compiled kernel for the input's device, else the next usable backend with a
    one-time warning; $DSA_OPS_BACKEND overrides), or "cpu", "cuda", "triton", "reference".
    inplace: for inference, overwrite the first C' channels of x with the output and return x (the other
    channels are not touched): no output allocation, and at split 1/8 3/16 of the bytes x.clone() moves.
    Needs torch.no_grad() or torch.inference_mode() and an x that does not require grad.
    """

    def __init__(self, in_channels, insert_place="res_2", U_segment=4, kernel_size=3, stride=1, padding=1,
                 alpha=2, split_ratio=1 / 8, with_identity=False, backend="auto", inplace=False):
        if backend not in ops.BACKENDS:
            raise ValueError(f"backend must be one of {ops.BACKENDS}, got {backend!r}")
        super().__init__(in_channels, insert_place, U_segment, kernel_size, stride, padding, alpha, split_ratio,
                         with_identity)
        self.backend = backend
        self.inplace = bool(inplace)

    def extra_repr(self):
        return (f"{self.in_channels}, U_segment={self.U_segment}, kernel_size={self.kernel_size}, "
                f"alpha={self.alpha}, num_shift_channel={self.num_shift_channel}, "
                f"with_identity={self.with_identity}, backend={self.backend!r}"
                + (", inplace=True" if self.inplace else ""))

    def _check(self, x, generator_tensors):
        check_input(x, self.U_segment)
        if x.shape[1] != self.in_channels:
            raise ValueError(f"x.size(1) must equal in_channels={self.in_channels}, got {x.shape[1]}")
        check_channels(x, self.num_shift_channel)
        rows = x.shape[0] // self.U_segment * self.num_shift_channel
        if self.training and rows < 2:
            raise ValueError(f"training needs more than one (video, channel) row for the generator's BatchNorm, "
                             f"got N*C' = {rows}; use more videos, or eval mode")
        for name, tensor in zip(_GENERATOR_NAMES, generator_tensors):
            check_parameter(tensor, x, name)

    def _generator(self):
        """(the BatchNorm module, the six generator tensors in the op's order), read from the modules'
        dicts: the same lookups through nn.Module.__getattr__ take three times as long (9 against 3 us)."""
        first, bn, _, second, _ = self.generate._modules.values()
        bn_parameters, bn_buffers = bn._parameters, bn._buffers
        return bn, (first._parameters["weight"], bn_parameters["weight"], bn_parameters["bias"],
                    bn_buffers["running_mean"], bn_buffers["running_var"], second._parameters["weight"])

    def _check_inplace(self, x):
        if x.requires_grad:
            raise RuntimeError("DSAConv(inplace=True) overwrites x, which requires grad; use inplace=False when "
                               "gradients are needed, or pass x.detach()")
        if torch.is_grad_enabled() and any(p.requires_grad for p in self.parameters()):
            raise RuntimeError("DSAConv(inplace=True) records no gradients for its parameters: call it under "
                               "torch.no_grad() or torch.inference_mode(), or use inplace=False")

    def forward(self, x):
        bn, generator_tensors = self._generator()
        self._check(x, generator_tensors)
        if self.inplace:
            self._check_inplace(x)
        if self.training and type(bn) is not torch.nn.BatchNorm1d:
            # A BatchNorm of another kind (nn.SyncBatchNorm after convert_sync_batchnorm) must work out
            # the batch statistics itself: the generator runs as modules, never silently unsynchronised.
            _warn_once_module_generator(type(bn).__name__)
            y = reference.dsa_forward(x, self.generate, self.U_segment, self.num_shift_channel, self.with_identity)
            if not self.inplace:
                return y
            x.narrow(1, 0, self.num_shift_channel).copy_(y.narrow(1, 0, self.num_shift_channel))
            return x
        args = (x, *generator_tensors, self.U_segment, self.num_shift_channel, self.training, bn.eps,
                self.with_identity, self.backend)
        if self.inplace:
            mean, var = ops.dsa_module_(*args)
            y = x
        else:
            y, mean, var = ops.dsa_module(*args)
        if self.training:
            rows = x.shape[0] // self.U_segment * self.num_shift_channel
            _update_running_stats(bn, generator_tensors[3], generator_tensors[4], mean, var, rows)
        return y


_warned_generators = set()


def _warn_once_module_generator(kind):
    if kind not in _warned_generators:
        _warned_generators.add(kind)
        warnings.warn(f"dsa_ops: DSAConv's generator has a {kind}; in training it runs as PyTorch modules "
                      "(the reference path) so that the BatchNorm computes its own statistics", stacklevel=3)


def _update_running_stats(bn, running_mean, running_var, mean, var, rows):
    """nn.BatchNorm1d's update of bn's running statistics (the buffers running_mean and running_var,
    passed in so that nn.Module's attribute lookup is not paid again): momentum (or the cumulative average
    when momentum is None), unbiased running variance, num_batches_tracked; three launches on a GPU (one
    lerp for both statistics). A no_grad block rather than the decorator, which builds a new context
    object per call (~4 us of host time here)."""
    counter = bn._buffers["num_batches_tracked"]
    with torch.no_grad():
        counter.add_(1)
        unbiased = var * (rows / (rows - 1))
        # cast to the buffers' dtypes only where they differ: a no-op .to still costs ~2 us of host time
        if mean.dtype != running_mean.dtype:
            mean = mean.to(running_mean.dtype)
        if unbiased.dtype != running_var.dtype:
            unbiased = unbiased.to(running_var.dtype)
        if bn.momentum is None:  # the cumulative average; a tensor factor, read on the device (no host sync)
            factor = counter.to(running_mean.dtype).reciprocal()
            torch._foreach_lerp_([running_mean, running_var], [mean, unbiased], [factor, factor])
        else:
            torch._foreach_lerp_([running_mean, running_var], [mean, unbiased], bn.momentum)
