"""`python -m benchmarks.bench_dsa` (and `make bench`): the `dsa-bench` command, dsa_ops/bench/cli.py."""
from dsa_ops.bench.cli import main

if __name__ == "__main__":
    main()
