"""Timing: CUDA events on a GPU (median and 20th/80th percentiles after warm-up), torch.utils.benchmark
on the CPU; on a GPU also the profiler's view of one call (kernel time and launches), which separates the
device's work from the host's overhead."""
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


def device_work(fn, calls=5):
    """(GPU seconds, kernels and copies launched) per call of fn(), from torch.profiler: the sum of the
    durations of the device's events, without the host time between them."""
    fn()
    torch.cuda.synchronize()
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as profile:
        for _ in range(calls):
            fn()
        torch.cuda.synchronize()
    device_events = [e for e in profile.events() if e.device_type == torch.autograd.DeviceType.CUDA]
    seconds = sum(e.time_range.elapsed_us() for e in device_events) / 1e6
    return seconds / calls, len(device_events) / calls
