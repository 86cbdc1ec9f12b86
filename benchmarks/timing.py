"""Timing: CUDA events on a GPU (median and 20th/80th percentiles after warm-up), torch.utils.benchmark
on the CPU."""
import statistics
import time

import torch
import torch.utils.benchmark as tbench


def measure(fn, device, min_run_time=0.3, warmup=3):
    """(median, p20, p80) seconds of one call of fn()."""
    for _ in range(warmup):
        fn()
    if device.type == "cuda":
        return _measure_cuda(fn, min_run_time)
    result = tbench.Timer(stmt="fn()", globals={"fn": fn}, num_threads=torch.get_num_threads()).blocked_autorange(
        min_run_time=min_run_time)
    times = sorted(result.times)
    return result.median, _quantile(times, 0.2), _quantile(times, 0.8)


def _measure_cuda(fn, min_run_time):
    times = []
    deadline = time.perf_counter() + min_run_time
    while time.perf_counter() < deadline or len(times) < 10:
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) / 1e3)
    times.sort()
    return statistics.median(times), _quantile(times, 0.2), _quantile(times, 0.8)


def _quantile(sorted_times, q):
    return sorted_times[min(len(sorted_times) - 1, int(q * len(sorted_times)))]
