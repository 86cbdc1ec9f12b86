"""An independent float64 formulation of the DSA module: explicit loops over videos, segments and taps,
no permutes, no convolution. The reference is tested against it."""
import torch


def pool_loops(x, num_segments, channels):
    flat = x.double().reshape(x.shape[0], x.shape[1], -1)
    videos = x.shape[0] // num_segments
    pooled = torch.zeros(videos, channels, num_segments, dtype=torch.float64)
    for n in range(videos):
        for u in range(num_segments):
            pooled[n, :, u] = flat[n * num_segments + u, :channels].sum(-1) / flat.shape[-1]
    return pooled


def aggregate_loops(x, kernel, num_segments, identity):
    flat = x.double().reshape(x.shape[0], x.shape[1], -1)
    videos, channels, kernel_size = kernel.shape
    pad = (kernel_size - 1) // 2
    out = flat.clone()
    for n in range(videos):
        for u in range(num_segments):
            acc = torch.zeros(channels, flat.shape[-1], dtype=torch.float64)
            for k in range(kernel_size):
                v = u + k - pad
                if 0 <= v < num_segments:
                    acc += kernel[n, :, k, None].double() * flat[n * num_segments + v, :channels]
            if identity:
                acc += flat[n * num_segments + u, :channels]
            out[n * num_segments + u, :channels] = acc
    return out.reshape(x.shape)


def generator_loops(pooled, w1, bn_weight, bn_bias, mean, var, w2, eps):
    rows = pooled.reshape(-1, pooled.shape[-1])
    hidden = torch.stack([w1.double() @ row for row in rows])
    normalized = (hidden - mean) / torch.sqrt(var + eps)
    act = torch.clamp(normalized * bn_weight.double() + bn_bias.double(), min=0)
    logits = torch.stack([w2.double() @ row for row in act])
    e = torch.exp(logits - logits.max(-1, keepdim=True).values)
    return (e / e.sum(-1, keepdim=True)).reshape(pooled.shape[0], pooled.shape[1], -1)


def dsa_loops(x, module, training):
    """The module's output and, in training, the batch (mean, unbiased var) of the BatchNorm input."""
    pooled = pool_loops(x, module.U_segment, module.num_shift_channel)
    w1 = module.generate[0].weight.detach().double()
    bn = module.generate[1]
    hidden = pooled.reshape(-1, module.U_segment) @ w1.T
    if training:
        mean = hidden.mean(0)
        var = ((hidden - mean) ** 2).sum(0) / hidden.shape[0]
        unbiased = ((hidden - mean) ** 2).sum(0) / (hidden.shape[0] - 1)
    else:
        mean, var, unbiased = bn.running_mean.double(), bn.running_var.double(), None
    kernel = generator_loops(pooled, w1, bn.weight.detach(), bn.bias.detach(), mean, var,
                             module.generate[3].weight.detach(), bn.eps)
    return aggregate_loops(x, kernel, module.U_segment, module.with_identity), mean, unbiased
