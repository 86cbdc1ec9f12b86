"""dsa-bench: times the DSA module per provider and mode, as a multiple of x.clone() on the same tensor.

Providers: clone (the yardstick, always timed), reference (the paper module in eager PyTorch), compile
(torch.compile of it; compile time reported apart), cpu / cuda / triton (DSAConv on that backend),
cuda-unfused / triton-unfused (the same with DSA_OPS_FUSED_GENERATOR=never, training modes and inplace
only: the fused paths' "before"). By default every provider usable on the device runs, the unfused ones
aside. Modes: fwd (training forward), bwd (its backward alone), full (both), inference (eval, no_grad),
inplace (inference with DSAConv(inplace=True), kernel backends only, compared with the eager and compiled
inference rows). Each provider is checked against the float64 reference before it is timed; a row that
disagrees is not timed, the others are, and the run then lists it and exits with status 1.

    dsa-bench [--device cpu|cuda] [--preset paper|sweep|quick | --shape N,U,C[,T],H,W [--split S]
              [--kernel-size K]] [--dtypes float32,bfloat16] [--providers ...] [--modes ...] [--out DIR]
              [--warm-up-only]
"""
import argparse
import itertools
import math
import os
import sys
import time

import torch

from .. import backend_status, ops
from . import cases as case_sets
from . import report
from .providers import BACKENDS, MODES, PROVIDERS, TRAINING_MODES, UNFUSED, build_module, disagreement, \
    floor_bytes, input_copies, make_step, provider_settings, random_state, runs_mode
from .timing import device_work, measure, peak_memory, without, work_totals

DTYPES = ("float32", "float64", "float16", "bfloat16")


def default_providers(device):
    usable = [name for name in BACKENDS
              if backend_status()[name] is None and ops._device_of_backend(name) == device.type]
    return ["clone", "reference", "compile", *usable]


def timed(setup, step, device, min_run_time):
    """((median, p20, p80, host, peak bytes, GPU seconds, launches), per-kernel breakdown) of one step; the
    GPU columns (host time, device work) and the breakdown (timing.device_work) are None on the CPU."""
    median, p20, p80, host = measure(step, device, setup, min_run_time)
    peak = peak_memory(step, device, setup)
    if device.type != "cuda":
        return (median, p20, p80, host, peak, None, None), None

    def whole():
        if setup is not None:
            setup()
        step()
    kernels = device_work(whole)
    if setup is not None:  # the backward alone: the forward's share taken off
        kernels = without(kernels, device_work(setup))
    return (median, p20, p80, host, peak, *work_totals(kernels)), kernels


def run_case(case, dtype, providers, modes, device, min_run_time, progress):
    """Rows (mode, provider, median, p20, p80, host, peak, gpu, launches, compile seconds) for one shape, on
    a GPU {(mode, provider): per-kernel breakdown}, and what disagreed with the reference (those rows are
    not timed)."""
    state = random_state(case)
    generator = torch.Generator().manual_seed(2)
    copies = input_copies(case, dtype, device)
    xs = [torch.randn(case.shape(), generator=generator).to(device=device, dtype=dtype) for _ in range(copies)]
    grads = [torch.randn(case.shape(), generator=generator).to(device=device, dtype=dtype) for _ in range(copies)]
    turn = itertools.count()
    progress(f"{case.label()} clone")
    columns, kernels = timed(None, lambda: xs[next(turn) % copies].clone(), device, min_run_time)
    rows, breakdowns, problems = [("-", "clone", *columns, None)], {("-", "clone"): kernels}, []
    for mode, provider in rows_of(providers, modes):
        progress(f"{case.label()} {mode} {provider}")
        module = build_module(provider, case, state, device, dtype)
        with provider_settings(provider):
            start = time.perf_counter()
            problem = disagreement(module, provider, case, mode, device, dtype) if provider != "reference" else None
            if problem is not None:
                problems.append(problem)
                continue
            compile_seconds = time.perf_counter() - start if provider == "compile" else None
            setup, step = make_step(module, mode, xs, grads)
            columns, breakdowns[(mode, provider)] = timed(setup, step, device, min_run_time)
        rows.append((mode, provider, *columns, compile_seconds))
    return rows, breakdowns, problems


def rows_of(providers, modes):
    """(mode, provider) of each row a shape gets besides the clone yardstick's."""
    return [(mode, provider) for mode in modes for provider in providers
            if provider != "clone" and runs_mode(provider, mode)]


def warm_up(case, dtype, providers, modes, device, progress):
    """Runs each row's step once, neither checked nor timed, so that what compiles on first use is
    compiled: Triton's kernels, into its on-disk cache, where a later run finds them."""
    state = random_state(case)
    xs = [torch.randn(case.shape()).to(device=device, dtype=dtype)]
    grads = [torch.randn(case.shape()).to(device=device, dtype=dtype)]
    for mode, provider in rows_of(providers, modes):
        progress(f"{case.label()} {mode} {provider} (warm-up)")
        module = build_module(provider, case, state, device, dtype)
        with provider_settings(provider):
            setup, step = make_step(module, mode, xs, grads)
            if setup is not None:
                setup()
            step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="dsa-bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--preset", default="paper", choices=sorted(case_sets.PRESETS))
    parser.add_argument("--shape", help="one custom shape instead of a preset: N,U,C,T,H,W or N,U,C,H,W")
    parser.add_argument("--split", type=float, default=1 / 8, help="split ratio of --shape (default 1/8)")
    parser.add_argument("--kernel-size", type=int, default=3, help="K of --shape (default 3)")
    parser.add_argument("--dtypes", default="float32", help=f"comma-separated subset of {DTYPES}")
    parser.add_argument("--providers", help=f"comma-separated subset of {PROVIDERS} (default: all usable here)")
    parser.add_argument("--modes", default="fwd,full", help=f"comma-separated subset of {MODES}")
    parser.add_argument("--min-time", type=float, default=0.3, help="seconds of timed calls per row")
    parser.add_argument("--out", help="write bench.csv, bench.md and bench.png (matplotlib) into this directory")
    parser.add_argument("--warm-up-only", action="store_true",
                        help="run each row once, untimed: fills Triton's kernel cache for a later timed run")
    args = parser.parse_args(argv)
    try:
        args.device = usable_device(args.device)
    except ValueError as error:
        parser.error(str(error))
    if not args.min_time > 0:
        parser.error(f"--min-time must be > 0 seconds, got {args.min_time}")
    args.dtypes = [d for d in args.dtypes.split(",") if d]
    args.providers = [p for p in args.providers.split(",") if p] if args.providers else default_providers(args.device)
    args.modes = [m for m in args.modes.split(",") if m]
    for name, allowed, given in (("providers", PROVIDERS, args.providers), ("modes", MODES, args.modes),
                                 ("dtypes", DTYPES, args.dtypes)):
        unknown = sorted(set(given) - set(allowed))
        if unknown:
            parser.error(f"unknown {name} {unknown}; choose from {allowed}")
    for provider in args.providers:
        problem = provider_problem(provider, args.device)
        if problem:
            parser.error(f"provider {provider!r} cannot run with --device {args.device}: {problem}")
    if "clone" not in args.providers:
        args.providers.insert(0, "clone")  # the yardstick every ratio needs
    try:
        args.cases = ([case_sets.parse_shape(args.shape, args.split, args.kernel_size)] if args.shape
                      else case_sets.PRESETS[args.preset](args.device))
    except ValueError as error:
        parser.error(str(error))
    for case in args.cases if set(args.modes) & set(TRAINING_MODES) else ():
        rows = case.videos * int(case.channels * case.split)
        if rows < 2:
            parser.error(f"the training modes need N*C' >= 2 (video, channel) rows for the generator's BatchNorm; "
                         f"{case.label()} has {rows}: more videos, a larger --split, or --modes inference")
    return args


def usable_device(name):
    """torch.device(name) for a CPU or a visible GPU, else ValueError saying why not."""
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ValueError(f"--device must be cpu, cuda or cuda:INDEX, got {name!r}") from None
    if device.type not in ("cpu", "cuda"):
        raise ValueError(f"--device must be cpu, cuda or cuda:INDEX, got {name!r}")
    if device.type == "cuda":
        visible = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if visible == 0:
            raise ValueError(f"--device {name}: no CUDA device is visible (torch.cuda.is_available() is False); "
                             "use --device cpu")
        if device.index is not None and device.index >= visible:
            raise ValueError(f"--device {name}: the index must be in [0, {visible - 1}] ({visible} visible)")
    return device


def provider_problem(provider, device):
    """Why a provider cannot run on the device, or None where it can."""
    backend = UNFUSED.get(provider, provider)
    if backend not in BACKENDS:
        return None
    if ops._device_of_backend(backend) != device.type:
        return f"the {backend} backend runs on {ops._device_of_backend(backend)} tensors"
    return backend_status()[backend]


def main(argv=None):
    args = parse_args(argv)
    env = report.environment(args.device)
    header = (f"dsa_ops {env['dsa_ops']} ({env['commit'] or 'no git'}), torch {env['torch']}, {env['device']}; "
              f"providers: {', '.join(args.providers)}" + (f"; {env['settings']}" if env["settings"] else ""))
    print(header)
    print("x_clone: time / x.clone() on the same tensor; vs_eager, vs_compile: speedups; gb_s: the mode's floor "
          "traffic / time; peak_mb: memory one call needs; host_ms: the host's time to issue a call; gpu_x_clone, "
          "launches: the device's own work per call")
    total = len(args.dtypes) * len(args.cases)
    rows, kernel_rows, problems = [], [], []
    for index, (dtype_name, case) in enumerate((d, c) for d in args.dtypes for c in args.cases):
        def progress(what, index=index):
            print(f"\r[{index + 1}/{total}] {dtype_name} {what}".ljust(78), end="", file=sys.stderr, flush=True)

        dtype = getattr(torch, dtype_name)
        if args.warm_up_only:
            warm_up(case, dtype, args.providers, args.modes, args.device, progress)
            continue
        nbytes = math.prod(case.shape()) * torch.finfo(dtype).bits // 8
        found, breakdowns, disagreed = run_case(case, dtype, args.providers, args.modes, args.device, args.min_time,
                                                progress)
        problems += disagreed
        rows += report.records(case, dtype_name, found, env, lambda mode: floor_bytes(mode, case, nbytes))
        kernel_rows += report.kernel_records(case, dtype_name, breakdowns)
        if args.out:  # after every shape, so an interrupted run keeps what it measured
            os.makedirs(args.out, exist_ok=True)
            report.write_csv(rows, os.path.join(args.out, "bench.csv"))
            report.write_markdown(rows, os.path.join(args.out, "bench.md"), header, problems)
            if kernel_rows:
                report.write_csv(kernel_rows, os.path.join(args.out, "kernels.csv"), report.KERNEL_COLUMNS)
    print(file=sys.stderr)
    if args.warm_up_only:
        print(f"warmed up: every row of {total} shape and dtype pairs ran once, untimed")
        return
    print(report.format_table(rows))
    if args.out:
        written = "bench.csv, bench.md" + (", kernels.csv" if kernel_rows else "")
        if report.write_plot(rows, os.path.join(args.out, "bench.png"), f"{env['device']}, torch {env['torch']}"):
            print(f"wrote {args.out}/{written}, bench.png")
        else:
            print(f"wrote {args.out}/{written}; no plot: matplotlib is not installed (pip install matplotlib)")
    if problems:  # exit status 1, after every other row was timed and written
        sys.exit("not timed, as their provider disagreed with the float64 reference:\n"
                 + "\n".join(f"  {problem}" for problem in problems))


if __name__ == "__main__":
    main()
