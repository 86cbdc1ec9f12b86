"""The microbenchmark behind `dsa-bench` (also `python -m benchmarks.bench_dsa`, `make bench`): each
provider's time as a multiple of x.clone() on the same tensor (the memory floor of an out-of-place pass),
beside eager PyTorch and torch.compile. cases.py holds the shapes, timing.py the clocks, providers.py what
is timed (checked against the reference first), report.py the table, CSV, markdown and plot, cli.py the
command line."""
