"""Results: one record per (case, dtype, mode, provider) with ratios against the clone, eager and
compiled rows of the same shape; the terminal table, the CSV (one schema), markdown and a PNG plot."""
import csv
import datetime
import os
import subprocess

import torch

from .. import __version__
from ..info import SETTINGS

COLUMNS = ("case", "split", "kernel_size", "shape", "dtype", "mode", "provider", "median_ms", "p20_ms", "p80_ms",
           "host_ms", "x_clone", "vs_eager", "vs_compile", "gb_s", "peak_mb", "gpu_ms", "gpu_x_clone", "launches",
           "compile_s", "device", "torch", "cuda", "triton", "dsa_ops", "commit", "settings", "timestamp")
# kernels.csv (GPU runs): per timed row, each kernel or copy launched, per call of the step.
KERNEL_COLUMNS = ("case", "split", "dtype", "mode", "provider", "kernel", "launches", "gpu_us", "share")
TABLE_COLUMNS = ("case", "split", "dtype", "mode", "provider", "median_ms", "host_ms", "x_clone", "vs_eager",
                 "vs_compile", "gb_s", "peak_mb", "gpu_x_clone", "launches")


def environment(device):
    """The columns every row of a run shares: device, versions, git commit, the package's environment
    variables that are set (info.SETTINGS; empty: all defaults), time."""
    try:
        import triton
        triton_version = triton.__version__
    except Exception:  # missing or broken: recorded as absent
        triton_version = ""
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=10,
                                cwd=os.path.dirname(os.path.abspath(__file__))).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ""
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    return {"device": name, "torch": torch.__version__, "cuda": torch.version.cuda or "", "triton": triton_version,
            "dsa_ops": __version__, "commit": commit,
            "settings": " ".join(f"{name}={os.environ[name]}" for name in SETTINGS if os.environ.get(name)),
            "timestamp": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}


def milliseconds(seconds):
    """Four significant digits, so ratios recomputed from the CSV agree with its x_clone column."""
    return f"{seconds * 1e3:.4g}"


def records(case, dtype_name, rows, env, floor_bytes):
    """rows: (mode, provider, median, p20, p80, host seconds, peak bytes, gpu seconds, launches, compile
    seconds); host and the GPU columns are None on the CPU."""
    by = {(mode, provider): row for mode, provider, *row in rows}
    clone, clone_gpu = by[("-", "clone")][0], by[("-", "clone")][5]
    out = []
    for mode, provider, median, p20, p80, host, peak, gpu, launches, compile_seconds in rows:
        same_work = "inference" if mode == "inplace" else mode
        eager, compiled = by.get((same_work, "reference")), by.get((same_work, "compile"))
        out.append({
            "case": case.name, "split": f"{case.split:.3g}", "kernel_size": str(case.kernel_size),
            "shape": "x".join(str(d) for d in case.shape()), "dtype": dtype_name, "mode": mode, "provider": provider,
            "median_ms": milliseconds(median), "p20_ms": milliseconds(p20), "p80_ms": milliseconds(p80),
            "host_ms": milliseconds(host) if host is not None else "",
            "x_clone": f"{median / clone:.2f}",
            "vs_eager": f"{eager[0] / median:.2f}x" if eager else "",
            "vs_compile": f"{compiled[0] / median:.2f}x" if compiled else "",
            "gb_s": f"{floor_bytes(mode) / median / 1e9:.1f}",
            "peak_mb": f"{peak / 2**20:.1f}",
            "gpu_ms": milliseconds(gpu) if gpu is not None else "",
            "gpu_x_clone": f"{gpu / clone_gpu:.2f}" if gpu is not None else "",
            "launches": f"{launches:g}" if launches is not None else "",
            "compile_s": f"{compile_seconds:.1f}" if compile_seconds is not None else "",
            **env,
        })
    return out


def kernel_records(case, dtype_name, breakdowns):
    """kernels.csv rows of one shape from {(mode, provider): {kernel: (launches, seconds)}} (None on the
    CPU), the longest first: where a provider's GPU time goes."""
    out = []
    for (mode, provider), kernels in breakdowns.items():
        if kernels is None:
            continue
        total = sum(seconds for _, seconds in kernels.values())
        for name, (launches, seconds) in sorted(kernels.items(), key=lambda item: -item[1][1]):
            out.append({"case": case.name, "split": f"{case.split:.3g}", "dtype": dtype_name, "mode": mode,
                        "provider": provider, "kernel": name, "launches": f"{launches:g}",
                        "gpu_us": f"{seconds * 1e6:.1f}", "share": f"{seconds / total:.2f}" if total else ""})
    return out


def format_table(rows, columns=TABLE_COLUMNS):
    widths = {c: max(len(c), *(len(r[c]) for r in rows)) for c in columns}
    lines = ["  ".join(c.ljust(widths[c]) for c in columns)]
    lines += ["  ".join(r[c].ljust(widths[c]) for c in columns) for r in rows]
    return "\n".join(lines)


def write_csv(rows, path, columns=COLUMNS):
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)


def write_markdown(rows, path, header, problems=()):
    """The table, then each row left untimed because its provider disagreed with the reference."""
    with open(path, "w") as f:
        f.write(f"{header}\n\n| {' | '.join(TABLE_COLUMNS)} |\n|{'---|' * len(TABLE_COLUMNS)}\n")
        f.writelines(f"| {' | '.join(r[c] for c in TABLE_COLUMNS)} |\n" for r in rows)
        if problems:
            f.write("\nNot timed:\n\n")
            f.writelines(f"- {problem}\n" for problem in problems)


def write_plot(rows, path, title):
    """Time as a multiple of the clone per shape, one bar per provider; False when matplotlib is missing."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    timed = [r for r in rows if r["provider"] != "clone"]
    groups = list(dict.fromkeys(f"{r['case']} {r['split']}\n{r['dtype']} {r['mode']}" for r in timed))
    providers = list(dict.fromkeys(r["provider"] for r in timed))
    width = 0.8 / len(providers)
    figure, axes = plt.subplots(figsize=(max(6.0, 1.1 * len(groups)), 4.5))
    for p, provider in enumerate(providers):
        values = {f"{r['case']} {r['split']}\n{r['dtype']} {r['mode']}": float(r["x_clone"])
                  for r in timed if r["provider"] == provider}
        positions = [g + p * width for g, name in enumerate(groups) if name in values]
        axes.bar(positions, [values[name] for name in groups if name in values], width, label=provider)
    axes.axhline(1.0, color="black", linewidth=0.8)
    axes.set_xticks([g + 0.4 - width / 2 for g in range(len(groups))], groups, fontsize=7)
    axes.set_ylabel("time / x.clone()")
    axes.set_yscale("log")
    axes.set_title(title, fontsize=9)
    axes.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return True
