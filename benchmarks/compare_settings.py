"""Compares the values of one DSA_OPS_* setting (e.g. DSA_OPS_EVAL_ONE_LAUNCH=never against always) on
the benchmark's paper shapes, in one process with the values alternating round by round, so that the
machine's drift, which on a shared machine can exceed the difference measured, hits every value alike.
Each time is the median over the rounds of a round's mean call time, as a multiple of x.clone() timed
in the same rounds. Modes: inference (eval, no_grad), inplace (the same with DSAConv(inplace=True), on
the CPU with subnormals flushed, as repeated calls shrink x towards them), full (training forward and
backward).

    python -m benchmarks.compare_settings --setting DSA_OPS_EVAL_ONE_LAUNCH --values never,always
           [--device cpu|cuda] [--threads N] [--mode inference|inplace|full] [--rounds 40] [--calls 5]
"""
import argparse
import os
import statistics
import time

import torch

from dsa_ops import DSAConv
from dsa_ops.bench.cases import paper
from dsa_ops.bench.cli import usable_device


def round_seconds(step, calls, device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    for _ in range(calls):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return (time.perf_counter() - start) / calls


def compare(case, args):
    """{value or "clone": median seconds per call} for one paper case."""
    x = torch.randn(case.shape(), device=args.device)
    module = DSAConv(case.channels, U_segment=case.segments, split_ratio=case.split,
                     inplace=args.mode == "inplace").to(args.device)
    module.train(args.mode == "full")
    grad = torch.randn_like(x)

    def module_step():
        if args.mode == "full":
            module(x.detach().requires_grad_()).backward(grad)
            return
        with torch.no_grad():
            module(x)

    times = {name: [] for name in ("clone", *args.values)}
    for _ in range(args.rounds):
        times["clone"].append(round_seconds(x.clone, args.calls, args.device))
        for value in args.values:
            os.environ[args.setting] = value
            times[value].append(round_seconds(module_step, args.calls, args.device))
    return {name: statistics.median(seconds) for name, seconds in times.items()}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--setting", required=True, help="a DSA_OPS_* environment variable")
    parser.add_argument("--values", required=True, help="comma-separated values to compare")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, help="CPU threads (default: torch's)")
    parser.add_argument("--mode", default="inference", choices=("inference", "inplace", "full"))
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--calls", type=int, default=5, help="calls per round")
    args = parser.parse_args(argv)
    if not args.setting.startswith("DSA_OPS_"):
        parser.error(f"--setting must be a DSA_OPS_* variable, got {args.setting!r}")
    args.values = [v for v in args.values.split(",") if v]
    if len(args.values) < 2:
        parser.error(f"--values needs two values or more, got {args.values}")
    for name in ("rounds", "calls", "threads"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            parser.error(f"--{name} must be an int >= 1, got {getattr(args, name)}")
    try:
        args.device = usable_device(args.device)
    except ValueError as error:
        parser.error(str(error))
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.set_flush_denormal(args.mode == "inplace" and args.device.type == "cpu")
    print(f"{args.setting}: {', '.join(args.values)}; {args.mode} on {args.device}, {torch.get_num_threads()} "
          f"threads, median of {args.rounds} rounds of {args.calls} calls; times as multiples of x.clone()")
    saved = os.environ.get(args.setting)
    try:
        for case in paper(args.device):
            medians = compare(case, args)
            ratios = "  ".join(f"{value} {medians[value] / medians['clone']:.2f}x" for value in args.values)
            print(f"  {case.label():<22} {tuple(case.shape())!s:<24} clone {medians['clone'] * 1e3:.3f} ms  {ratios}",
                  flush=True)
    finally:
        torch.set_flush_denormal(False)
        if saved is None:
            os.environ.pop(args.setting, None)
        else:
            os.environ[args.setting] = saved


if __name__ == "__main__":
    main()
