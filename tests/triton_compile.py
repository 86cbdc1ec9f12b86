"""Compiles every Triton kernel of dsa_ops through Triton's real compiler (down to a cubin from ptxas) for
a chosen GPU architecture, on a machine without a GPU: a stand-in driver takes the launches, which do
nothing. The interpreter, which runs the kernels in the CPU tests, accepts programs the compiler rejects;
this catches those, and shared memory or thread counts over the target's limits.

    python tests/triton_compile.py [--arch 90] [--full]

Drives the Triton op bodies over a matrix of dtypes, layouts, U, K, identity, training/eval and both
eval paths, and once with programs taking runs of S tiles (outputs are garbage: nothing runs), then
prints, per kernel, the specializations compiled and the largest register and shared memory use, and the
kernels whose Triton IR holds a matrix product (tt.dot): Triton's combine pass turns
sum(a[:, :, None] * b[None, :, :], axis=1) into one, a TF32 tensor-core product for float32 (Triton 3.6),
where every product of these kernels must stay in fp32 multiply-adds. Exits 1 on a compile failure or
such a product. Compiles into a cache folder of its own. Must run in a process where TRITON_INTERPRET is
unset (kernels are compiled or interpreted as their module is imported)."""
import argparse
import functools
import glob
import itertools
import os
import shutil
import sys
import tempfile
import time

import torch
import triton
from triton.backends.compiler import GPUTarget

TRITON_RELEASE = tuple(int(part) for part in triton.__version__.split(".")[:2])

# Shared memory per block each architecture allows (opt-in maximum), as the driver would report it.
MAX_SHARED = {80: 166912, 86: 101376, 89: 101376, 90: 232448}


class _Utils:
    def __init__(self, max_shared):
        self.max_shared = max_shared

    def get_device_properties(self, device):
        return {"max_shared_mem": self.max_shared, "multiprocessor_count": 132, "max_num_regs": 65536,
                "warpSize": 32, "sm_clock_rate": 1, "mem_clock_rate": 1, "mem_bus_width": 1}

    def load_binary(self, name, kernel, shared, device):
        """(module, function, registers, spills, most threads per block; Triton before 3.4 takes the first
        four): placeholders, nothing loads."""
        binary = (object(), 0, 0, 0, 1024)
        return binary if TRITON_RELEASE >= (3, 4) else binary[:4]


class CompileOnlyDriver:
    """Triton's driver interface as far as compiling and launching use it: the target is fixed, every
    compiled kernel is recorded as (name, metadata) when first launched, and launches do nothing."""

    def __init__(self, arch):
        self.target = GPUTarget("cuda", arch, 32)
        self.utils = _Utils(MAX_SHARED.get(arch, 101376))
        self.compiled = []

    def is_active(self):
        return True

    def get_current_device(self):
        return 0

    def get_current_stream(self, device=None):
        return 0

    def get_current_target(self):
        return self.target

    def launcher_cls(self, src, metadata):
        self.compiled.append((src.name, metadata))
        return lambda *args, **kwargs: None


def _generator_params(segments, taps, dtype):
    hidden = 2 * segments
    return [torch.randn(hidden, segments, dtype=dtype), torch.randn(hidden, dtype=dtype),
            torch.randn(hidden, dtype=dtype), torch.randn(hidden, dtype=dtype), torch.rand(hidden, dtype=dtype) + 0.5,
            torch.randn(taps, hidden, dtype=dtype)]


def _input(segments, dims, layout, dtype):
    spatial = (3, 5, 7) if dims == 5 else (5, 7)
    if layout == "channel_slice":
        return torch.randn(2 * segments, 43, *spatial).to(dtype)[:, 2:42]
    x = torch.randn(2 * segments, 40, *spatial).to(dtype)
    if layout == "channels_last":
        x = x.contiguous(memory_format=torch.channels_last_3d if dims == 5 else torch.channels_last)
    return x


def cases(full):
    """(dtype, layout, U, K, dims, identity) to run every op on."""
    dtypes = (torch.float32, torch.bfloat16, torch.float16, torch.float64)
    if full:
        return list(itertools.product(dtypes, ("contiguous", "channels_last", "channel_slice"),
                                      ((1, 1), (3, 5), (4, 3), (4, 5), (8, 3)), (4, 5), (False, True)))
    main = itertools.product(dtypes, ("contiguous", "channels_last"), ((4, 3),), (5,), (False, True))
    shapes = itertools.product((torch.float32,), ("channel_slice", "channels_last"), ((1, 1), (3, 5), (8, 3)), (4,),
                               (True,))
    return [*main, *shapes]


def run_ops(x, segments, taps, identity):
    """Every Triton op body on x (C' = 13): pooling, aggregation and their gradients, and the module's
    forward (out of place and in place) and backward in training and eval, eval both as one launch and
    not, the generator both in the aggregation kernels' prologue and in launches of its own."""
    from dsa_ops.triton import op_bodies

    channels, videos, dtype = 13, x.shape[0] // segments, x.dtype
    acc = torch.float64 if dtype == torch.float64 else torch.float32
    params = _generator_params(segments, taps, dtype)
    weight = torch.rand(videos, channels, taps, dtype=acc)
    grad_pooled = torch.randn(videos, channels, segments, dtype=acc)
    op_bodies.segment_pool(x, segments, channels)
    op_bodies.segment_pool_backward(grad_pooled, x, segments)
    op_bodies.aggregate(x, weight, segments, identity)
    op_bodies.aggregate_grad_input(x, weight, grad_pooled, segments, identity)
    op_bodies.aggregate_grad_weight(x, x, segments, channels, taps)
    for training, one_launch, fused in itertools.product((True, False), ("always", "never"), ("always", "never")):
        os.environ["DSA_OPS_EVAL_ONE_LAUNCH"] = one_launch
        os.environ["DSA_OPS_FUSED_GENERATOR"] = fused
        y, pooled, mean, var = op_bodies.dsa_forward(x, *params, segments, channels, training, 1e-5, identity)
        op_bodies.dsa_backward(y, x, pooled, mean, var, params[0], params[1], params[2], params[5], segments,
                               training, 1e-5, identity)
        op_bodies.dsa_forward_(x.clone(), *params, segments, channels, training, 1e-5, identity)


def run_ops_in_runs():
    """run_ops on one case with the grid's limit on its S axis lowered to 2 programs: the kernels gridded
    over S tiles compile as they run where S has more tiles than a grid axis holds (a run of tiles per
    program); the other kernels are those of the same case in cases()."""
    from dsa_ops.triton import launch_sizes

    limit, launch_sizes.MAX_GRID_YZ = launch_sizes.MAX_GRID_YZ, 2
    try:
        run_ops(_input(4, 5, "channels_last", torch.float32), 4, 3, False)  # S = 105: 4 tiles of 32
    finally:
        launch_sizes.MAX_GRID_YZ = limit


def launched_kernels():
    """Names of the kernels the Triton backend launches (its @triton.jit functions named *_kernel)."""
    from dsa_ops.triton import eval_forward, fused, generator, kernels

    return sorted({name for module in (kernels, generator, eval_forward, fused) for name, value in vars(module).items()
                   if name.endswith("_kernel") and isinstance(value, triton.runtime.jit.JITFunction)})


def kernels_with_dots(cache_dir):
    """Names of the compiled kernels whose Triton IR (the .ttir files in Triton's cache) holds a tt.dot."""
    names = set()
    for path in glob.glob(os.path.join(cache_dir, "**", "*.ttir"), recursive=True):
        with open(path) as ir:
            if "tt.dot" in ir.read():
                names.add(os.path.basename(path)[:-len(".ttir")])
    return sorted(names)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", type=int, default=90, help="compute capability x 10 (default 90: Hopper)")
    parser.add_argument("--full", action="store_true", help="the whole matrix (minutes) rather than a sample")
    args = parser.parse_args(argv)
    if os.environ.get("TRITON_INTERPRET") == "1":
        sys.exit("unset TRITON_INTERPRET: the kernels must be compiled, not interpreted")
    cache_dir = tempfile.mkdtemp(prefix="dsa_ops_triton_compile_")
    os.environ["TRITON_CACHE_DIR"] = cache_dir  # this run's IR alone
    driver = CompileOnlyDriver(args.arch)
    triton.runtime.driver.set_active(driver)
    start, failures = time.perf_counter(), 0
    jobs = [(f"{dtype} {layout} U={segments} K={taps} {dims}D identity={identity}",
             functools.partial(run_ops, _input(segments, dims, layout, dtype), segments, taps, identity))
            for dtype, layout, (segments, taps), dims, identity in cases(args.full)]
    jobs.append(("runs of S tiles per program", run_ops_in_runs))
    for label, job in jobs:
        try:
            job()
        except Exception as error:  # a compile error: report the case and go on
            failures += 1
            print(f"FAILED {label}: {type(error).__name__}: {error}")
    by_kernel = {}
    for name, metadata in driver.compiled:
        by_kernel.setdefault(name, []).append(metadata)
    print(f"triton {triton.__version__}, sm_{args.arch}: {len(driver.compiled)} specializations compiled in "
          f"{time.perf_counter() - start:.0f} s")
    for name, metadatas in sorted(by_kernel.items()):
        print(f"  {name:<32} {len(metadatas):>4} specializations, shared memory up to "
              f"{max(m.shared for m in metadatas)} bytes, {max(m.num_warps for m in metadatas)} warps")
    missing = sorted(set(launched_kernels()) - set(by_kernel))
    if missing:
        print(f"never compiled: {missing}")
    with_dots = kernels_with_dots(cache_dir)
    shutil.rmtree(cache_dir, ignore_errors=True)
    print(f"kernels with a matrix product (tt.dot): {with_dots or 'none'}")
    print(f"kernels compiled: {len(by_kernel)} of {len(launched_kernels())}; failures: {failures}")
    return 1 if failures or missing or with_dots else 0


if __name__ == "__main__":
    sys.exit(main())
