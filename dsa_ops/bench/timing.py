"""Clocks. On a GPU: CUDA events around each call (median and 20th/80th percentiles after warm-up) and
the host's time to issue it, the profiler's device time and launches of one call per kernel, and the
peak memory a call allocates. On the CPU: torch.utils.benchmark, and how far a call raises the resident
memory."""
import collections
import contextlib
import ctypes
import io
import logging
import resource
import statistics
import sys
import time

import torch


def _import_torch_benchmark():
    """torch.utils.benchmark, imported with torch.utils.cpp_extension's logger at ERROR: where torch is a CUDA
    build and no GPU is visible, that import warns "No CUDA runtime is found, using CUDA_HOME=...", which
    concerns building extensions, not timing, and led every CPU benchmark's output (torch 2.4 prints it to
    stderr instead, which is held back here too)."""
    logger = logging.getLogger("torch.utils.cpp_extension")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stderr(io.StringIO()):
            import torch.utils.benchmark as benchmark
    finally:
        logger.setLevel(level)
    return benchmark


tbench = _import_torch_benchmark()
Timing = collections.namedtuple("Timing", "median p20 p80 host")


def measure(step, device, setup=None, min_run_time=0.3, warmup=3):
    """Timing of one step() in seconds: median, 20th and 80th percentiles, and on a GPU `host`, the median
    time the host takes to issue the step (Python, dispatch, launches: a call whose host time is near its
    median is bound by the host, not the GPU); None on the CPU, where it is the time itself. setup(), when
    given, runs untimed before each step."""
    for _ in range(warmup):
        if setup is not None:
            setup()
        step()
    if device.type != "cuda" and setup is None:
        timer = tbench.Timer(stmt="step()", globals={"step": step}, num_threads=torch.get_num_threads())
        times = sorted(timer.blocked_autorange(min_run_time=min_run_time).times)
        return Timing(statistics.median(times), _quantile(times, 0.2), _quantile(times, 0.8), None)
    times, host_times = [], []
    deadline = time.perf_counter() + min_run_time
    while time.perf_counter() < deadline or len(times) < 10:
        if setup is not None:
            setup()
        if device.type == "cuda":
            seconds, host_seconds = _event_timed_call(step)
            host_times.append(host_seconds)
        else:
            start = time.perf_counter()
            step()
            seconds = time.perf_counter() - start
        times.append(seconds)
    times.sort()
    host = statistics.median(host_times) if host_times else None
    return Timing(statistics.median(times), _quantile(times, 0.2), _quantile(times, 0.8), host)


def _event_timed_call(step):
    """(seconds between CUDA events around step(), seconds the host took to issue it)."""
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    issued = time.perf_counter()
    step()
    host_seconds = time.perf_counter() - issued
    end.record()
    end.synchronize()
    return start.elapsed_time(end) / 1e3, host_seconds


def _quantile(sorted_times, q):
    return sorted_times[min(len(sorted_times) - 1, int(q * len(sorted_times)))]


def device_work(step, calls=5):
    """Per step(), from torch.profiler: {kernel or copy name: (launches, GPU seconds)}, the device's own
    work without the host time between launches (see work_totals)."""
    step()
    torch.cuda.synchronize()
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as profile:
        for _ in range(calls):
            step()
        torch.cuda.synchronize()
    events = [e for e in profile.events() if e.device_type == torch.autograd.DeviceType.CUDA]
    return per_step(((e.name, e.time_range.elapsed_us() / 1e6) for e in events), calls)


def per_step(events, calls):
    """{short name: (launches, seconds)} per call from (name, seconds) events of `calls` calls."""
    kernels = {}
    for name, seconds in events:
        key = short_name(name)
        count, total = kernels.get(key, (0, 0.0))
        kernels[key] = (count + 1, total + seconds)
    return {name: (count / calls, total / calls) for name, (count, total) in kernels.items()}


def without(kernels, taken):
    """kernels less the launches and time of `taken` (the forward under a backward-only timing)."""
    left = {name: (count - taken.get(name, (0, 0.0))[0], seconds - taken.get(name, (0, 0.0))[1])
            for name, (count, seconds) in kernels.items()}
    return {name: work for name, work in left.items() if work[0] > 0}


def work_totals(kernels):
    """(GPU seconds, launches) of a per_step breakdown."""
    return sum(s for _, s in kernels.values()), sum(c for c, _ in kernels.values())


def short_name(name):
    """A kernel's name without return type, anonymous namespaces and parameter list; long template
    arguments cut."""
    name = name.removeprefix("void ").replace("(anonymous namespace)::", "").split("(")[0]
    return name if len(name) <= 80 else name.split("<")[0] + "<...>"


def peak_memory(step, device, setup=None):
    """Bytes one step() needs beyond what is allocated before it (after setup()): the CUDA caching
    allocator's peak, or on the CPU how far the step raises the process's resident set above where it
    was (Linux: the high-water mark is reset before the step, and the C library's free heap memory given
    back to the system first, so that memory an earlier call freed counts again when the step reuses it;
    elsewhere the growth of the process's peak, 0 once a larger step ran)."""
    if setup is not None:
        setup()
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        step()
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() - before
    _release_free_heap()
    if _reset_resident_peak():
        before = _proc_status_bytes("VmRSS:")
        step()
        return max(0, _proc_status_bytes("VmHWM:") - before)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    step()
    return (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) * 1024


def _reset_resident_peak():
    """Sets the process's resident high-water mark (VmHWM) to its present resident set (Linux 4.0+);
    False where that is not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as clear_refs:
            clear_refs.write("5")
        return _proc_status_bytes("VmHWM:") is not None
    except OSError:
        return False


def _release_free_heap():
    """glibc's malloc_trim(0): the free pages of every malloc arena go back to the system. Without it a
    block under glibc's mmap threshold (32 MiB at most), freed by one call and reused by the next, is
    already resident and would read as 0 bytes. A no-op off Linux or where the C library (musl) has none."""
    if not sys.platform.startswith("linux"):
        return
    trim = getattr(ctypes.CDLL(None), "malloc_trim", None)
    if trim is not None:
        trim(0)


def _proc_status_bytes(key):
    """A size from /proc/self/status (e.g. "VmRSS:"), in bytes; None when absent."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(key):
                return int(line.split()[1]) * 1024
    return None
