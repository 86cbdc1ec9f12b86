"""A small CUDA forward + backward of every op for compute-sanitizer (memcheck, racecheck): contiguous
and channels-last, float32 and bfloat16, K = 3 and 5, with and without identity, training and eval,
and the in-place forward in eval and training; the eval forward both as one launch and composed
(DSA_OPS_EVAL_ONE_LAUNCH always / never), the forwards' (in-place too) and the backward's generator in
the aggregation kernel's prologue and in its own launch (DSA_OPS_FUSED_GENERATOR always / never). The
one-launch eval forward holds a small input's (video, channel tile) values in shared memory; a larger
one (S = 4096) takes its other variant, which stages a column at a time.

    python scripts/sanitize_case.py [--device cpu]

--device cpu makes the same calls on the cpu backend (tests/test_sanitize_case.py: that the script runs;
with DSA_OPS_TEST_CUDA_EMULATION=1 the cpu backend's ops are the CUDA kernels, emulated)."""
import argparse
import os

import torch

import dsa_ops


def main(device="cuda"):  # the kernel backend of the device is named alike
    torch.manual_seed(0)
    for dtype in (torch.float32, torch.bfloat16):
        for memory_format in (torch.contiguous_format, torch.channels_last_3d):
            for kernel_size, identity in ((3, False), (5, True)):
                module = dsa_ops.DSAConv(40, U_segment=4, kernel_size=kernel_size, padding=kernel_size // 2,
                                         split_ratio=0.5, with_identity=identity, backend=device).to(device)
                x = torch.randn(8, 40, 3, 5, 7, device=device, dtype=dtype).contiguous(memory_format=memory_format)
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
                weight = torch.rand(2, 13, kernel_size, device=device, requires_grad=True)
                y = dsa_ops.dsa_aggregate(x, weight, 4, identity, backend=device)
                y.sum().backward()
                dsa_ops.segment_pool(x, 4, 40, backend=device).sum().backward()
    staged_eval_forward(device)
    if device == "cuda":
        torch.cuda.synchronize()
    print("sanitize case done")


def staged_eval_forward(device):
    """The one-launch eval forward, out of place and in place, where a tile's U*S values exceed what it
    holds in shared memory."""
    os.environ["DSA_OPS_EVAL_ONE_LAUNCH"] = "always"
    module = dsa_ops.DSAConv(40, U_segment=4, split_ratio=0.5, backend=device).to(device).eval()
    for dtype in (torch.float32, torch.bfloat16):
        for memory_format in (torch.contiguous_format, torch.channels_last_3d):
            x = torch.randn(8, 40, 4, 32, 32, device=device, dtype=dtype).contiguous(memory_format=memory_format)
            with torch.no_grad():
                module(x)
                module.inplace = True
                module(x)
                module.inplace = False


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    main(parser.parse_args().device)
