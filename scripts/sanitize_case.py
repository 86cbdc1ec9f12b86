"""A small CUDA forward + backward of every op for compute-sanitizer (memcheck, racecheck): contiguous
and channels-last, float32 and bfloat16, K = 3 and 5, with and without identity, training and eval,
and the in-place forward in eval and training; the eval forward both as one launch and composed
(DSA_OPS_EVAL_ONE_LAUNCH always / never), the forwards' (in-place too) and the backward's generator in
the aggregation kernel's prologue and in its own launch (DSA_OPS_FUSED_GENERATOR always / never)."""
import os

import torch

import dsa_ops


def main():
    torch.manual_seed(0)
    for dtype in (torch.float32, torch.bfloat16):
        for memory_format in (torch.contiguous_format, torch.channels_last_3d):
            for kernel_size, identity in ((3, False), (5, True)):
                module = dsa_ops.DSAConv(40, U_segment=4, kernel_size=kernel_size, padding=kernel_size // 2,
                                         split_ratio=0.5, with_identity=identity, backend="cuda").cuda()
                x = torch.randn(8, 40, 3, 5, 7, device="cuda", dtype=dtype).contiguous(memory_format=memory_format)
                x.requires_grad_(True)
                for fused in ("always", "never"):
                    os.environ["DSA_OPS_FUSED_GENERATOR"] = fused
                    module.train()(x).square().sum().backward()
                    with torch.no_grad():
                        module.inplace = True
                        module(x.detach().clone())  # the in-place forward in training
                        module.inplace = False
                    module.eval()
                    for one_launch in ("always", "never"):
                        os.environ["DSA_OPS_EVAL_ONE_LAUNCH"] = one_launch
                        module(x).square().sum().backward()
                        with torch.no_grad():
                            module.inplace = True
                            module(x.detach().clone())
                            module.inplace = False
                weight = torch.rand(2, 13, kernel_size, device="cuda", requires_grad=True)
                y = dsa_ops.dsa_aggregate(x, weight, 4, identity, backend="cuda")
                y.sum().backward()
                dsa_ops.segment_pool(x, 4, 40, backend="cuda").sum().backward()
    torch.cuda.synchronize()
    print("sanitize case done")


if __name__ == "__main__":
    main()
