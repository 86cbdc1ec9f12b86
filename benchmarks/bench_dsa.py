"""Microbenchmark of the DSA module: each provider's time as a multiple of x.clone() on the same tensor
(the memory floor of an out-of-place pass), and its speedup over eager PyTorch.

Providers: reference (the paper module in eager PyTorch), compile (torch.compile of the reference),
cpu / cuda / triton (DSAConv on that backend), clone (the yardstick, always timed). By default every
backend usable on the device runs.
Modes: fwd (training-mode forward), full (forward + backward).

    python -m benchmarks.bench_dsa [--device cpu|cuda] [--dtypes float32,bfloat16] [--preset paper|quick]
                                   [--out DIR]   (DIR/bench.csv and DIR/bench.md)
"""
import argparse
import csv
import os
import time
from dataclasses import dataclass

import torch

import dsa_ops
from benchmarks.timing import device_work, measure

BACKEND_PROVIDERS = ("cpu", "cuda", "triton")
PROVIDERS = ("reference", "compile", *BACKEND_PROVIDERS)
MODES = ("fwd", "full")
DTYPES = ("float32", "float64", "float16", "bfloat16")


@dataclass(frozen=True)
class Case:
    name: str
    videos: int
    segments: int
    channels: int
    tail: tuple  # (T, H, W) or (H, W)
    split: float

    def shape(self):
        return (self.videos * self.segments, self.channels, *self.tail)


def paper_cases(device):
    """The paper's insertion points (res_2 of ResNet-50): I3D layer2 / layer3 with 12 videos x U=4 x
    T=8 at 28^2 / 14^2, TSM layer1 with 8 videos x U=8 at 56^2; on the CPU with fewer videos."""
    i3d_videos, tsm_videos = (12, 8) if device.type == "cuda" else (2, 1)
    cases = []
    for split in (1 / 8, 1.0):
        cases += [
            Case("i3d-layer2", i3d_videos, 4, 128, (8, 28, 28), split),
            Case("i3d-layer3", i3d_videos, 4, 256, (8, 14, 14), split),
            Case("tsm-layer1", tsm_videos, 8, 64, (56, 56), split),
        ]
    return cases


def quick_cases(device):
    return [Case("quick", 2, 4, 64, (4, 14, 14), 1 / 8)]


PRESETS = {"paper": paper_cases, "quick": quick_cases}


def build_module(provider, case, device, dtype):
    kwargs = dict(U_segment=case.segments, split_ratio=case.split)
    if provider in BACKEND_PROVIDERS:
        module = dsa_ops.DSAConv(case.channels, backend=provider, **kwargs)
    else:
        module = dsa_ops.DSAReference(case.channels, **kwargs)
    return module.to(device=device, dtype=dtype)


def step_fn(module, x, grad, mode):
    if mode == "fwd":
        return lambda: module(x)

    def full():
        x.grad = None
        module(x).backward(grad)

    return full


def timed(fn, device):
    """(median, p20, p80, GPU seconds, launches) of one call; the last two None on the CPU."""
    work = device_work(fn) if device.type == "cuda" else (None, None)
    return (*measure(fn, device), *work)


def run_case(case, providers, modes, device, dtype):
    """Rows of (case, mode, provider, median, p20, p80, GPU seconds, launches, compile seconds) for one
    shape."""
    x = torch.randn(case.shape(), device=device, dtype=dtype)
    rows = [(case, "-", "clone", *timed(lambda: x.clone(), device), None)]
    for mode in modes:
        xg = x.clone().requires_grad_(mode == "full")
        grad = torch.randn_like(x)
        for provider in providers:
            module = build_module(provider, case, device, dtype)
            compile_seconds = None
            if provider == "compile":
                torch._dynamo.reset()  # each shape and mode is a fresh compile, timed on its own
                module = torch.compile(module, fullgraph=True, dynamic=False)
                start = time.perf_counter()
                step_fn(module, xg, grad, mode)()
                if device.type == "cuda":
                    torch.cuda.synchronize()
                compile_seconds = time.perf_counter() - start
            rows.append((case, mode, provider, *timed(step_fn(module, xg, grad, mode), device), compile_seconds))
    return rows


COLUMNS = ("case", "split", "shape", "dtype", "mode", "provider", "median_ms", "p20_ms", "p80_ms", "x_clone",
           "vs_eager", "gpu_ms", "gpu_x_clone", "launches", "compile_s")


def table_records(rows, dtype_name):
    """One dict per row with COLUMNS; ratios against the clone and eager rows of the same shape."""
    records, clone, clone_gpu, eager = [], None, None, {}
    for case, mode, provider, median, p20, p80, gpu, launches, compile_seconds in rows:
        if provider == "clone":
            clone, clone_gpu = median, gpu
        if provider == "reference":
            eager[mode] = median
        records.append({
            "case": case.name, "split": f"{case.split:.3g}", "shape": "x".join(str(d) for d in case.shape()),
            "dtype": dtype_name, "mode": mode, "provider": provider, "median_ms": f"{median * 1e3:.4f}",
            "p20_ms": f"{p20 * 1e3:.4f}", "p80_ms": f"{p80 * 1e3:.4f}", "x_clone": f"{median / clone:.2f}",
            "vs_eager": f"{eager[mode] / median:.2f}x" if mode in eager else "",
            "gpu_ms": f"{gpu * 1e3:.4f}" if gpu is not None else "",
            "gpu_x_clone": f"{gpu / clone_gpu:.2f}" if gpu is not None else "",
            "launches": f"{launches:g}" if launches is not None else "",
            "compile_s": f"{compile_seconds:.1f}" if compile_seconds is not None else "",
        })
    return records


def format_table(records):
    widths = {c: max(len(c), *(len(r[c]) for r in records)) for c in COLUMNS}
    lines = ["  ".join(c.ljust(widths[c]) for c in COLUMNS)]
    lines += ["  ".join(r[c].ljust(widths[c]) for c in COLUMNS) for r in records]
    return "\n".join(lines)


def write_results(records, out_dir, header):
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "bench.csv"), "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(records)
    with open(os.path.join(out_dir, "bench.md"), "w") as f:
        f.write(f"{header}\n\n| {' | '.join(COLUMNS)} |\n|{'---|' * len(COLUMNS)}\n")
        f.writelines(f"| {' | '.join(r[c] for c in COLUMNS)} |\n" for r in records)


def default_providers(device):
    usable = [name for name in BACKEND_PROVIDERS
              if dsa_ops.backend_status()[name] is None and dsa_ops.ops._device_of_backend(name) == device.type]
    return ["reference", "compile", *usable]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtypes", default="float32", help="comma-separated: float32, float64, float16, bfloat16")
    parser.add_argument("--preset", default="paper", choices=sorted(PRESETS))
    parser.add_argument("--providers", help=f"comma-separated subset of {PROVIDERS} (default: reference, compile "
                                            "and the backends usable on the device)")
    parser.add_argument("--modes", default=",".join(MODES), help=f"comma-separated subset of {MODES}")
    parser.add_argument("--out", help="write bench.csv and bench.md into this directory")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    dtypes = [d for d in args.dtypes.split(",") if d]
    providers = [p for p in args.providers.split(",") if p] if args.providers else default_providers(device)
    modes = [m for m in args.modes.split(",") if m]
    choices = (("providers", PROVIDERS, providers), ("modes", MODES, modes), ("dtypes", DTYPES, dtypes))
    for name, allowed, given in choices:
        unknown = sorted(set(given) - set(allowed))
        if unknown:
            parser.error(f"unknown {name} {unknown}; choose from {allowed}")
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    header = f"dsa_ops {dsa_ops.__version__}, torch {torch.__version__}, {name}, providers: {', '.join(providers)}"
    print(header)
    print("x_clone: time as a multiple of x.clone() on the same tensor; vs_eager: speedup over the paper module "
          "in eager PyTorch; gpu_ms, gpu_x_clone, launches: the device's own work per call (profiler), without "
          "the host's overhead")
    records = []
    for dtype_name in dtypes:
        for case in PRESETS[args.preset](device):
            new = table_records(run_case(case, providers, modes, device, getattr(torch, dtype_name)), dtype_name)
            print("\n".join(f"  {r['case']} split {r['split']} {r['dtype']} {r['mode']} {r['provider']}: "
                            f"{r['median_ms']} ms, {r['x_clone']}x clone" for r in new), flush=True)
            records += new
            if args.out:  # after every shape, so an interrupted run keeps what it measured
                write_results(records, args.out, header)
    print(format_table(records))


if __name__ == "__main__":
    main()
