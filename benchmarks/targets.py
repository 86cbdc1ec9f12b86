"""The issues' performance targets and tables read off benchmark CSVs (`dsa-bench --out DIR`, e.g. the
bench.csv and compile.csv of scripts/gpu_check.sh, read as one): per target, how many of its rows meet it
and the worst one; with --rows every row; with --before-after, where the run timed the *-unfused
providers, each backend's rows with the generator in a launch of its own beside its fused ones (issue 7);
with --side-by-side, eager, compiled and each backend per shape and mode (the README's table). Targets
are about wall time as a multiple of x.clone() on the same tensor (the CSV's x_clone); the device's own
time (gpu_x_clone) is shown beside it in the tables. Nothing here times anything.

    python -m benchmarks.targets bench.csv [compile.csv] [--rows] [--before-after] [--side-by-side]
"""
import argparse
import csv
import sys
from dataclasses import dataclass


@dataclass(frozen=True)
class Target:
    issue: int
    provider: str
    mode: str
    limit: float
    what: str          # "x_clone": the row's time / clone; "vs_cuda": its time / cuda's; "vs_eager": eager's / its
    splits: tuple = ()  # the splits it applies to; empty: all

    @property
    def higher_is_better(self):
        return self.what == "vs_eager"

    def describe(self):
        relation = ">=" if self.higher_is_better else "<="
        unit = {"x_clone": "x clone", "vs_cuda": "x cuda", "vs_eager": "x faster than eager"}[self.what]
        where = f" at split {', '.join(self.splits)}" if self.splits else ""
        return f"issue {self.issue}: {self.provider} {self.mode} {relation} {self.limit:g}{unit}{where}"

    def met(self, value):
        return value >= self.limit if self.higher_is_better else value <= self.limit


TARGETS = (
    Target(3, "cuda", "fwd", 1.3, "x_clone"),
    Target(3, "cuda", "full", 2.6, "x_clone"),
    Target(4, "triton", "full", 1.3, "vs_cuda"),
    Target(4, "triton", "full", 5.0, "vs_eager"),
    *(target for backend in ("cuda", "triton") for target in (
        Target(7, backend, "fwd", 1.15, "x_clone"),
        Target(7, backend, "full", 2.3, "x_clone"),
        Target(7, backend, "inference", 1.05, "x_clone"),
        Target(7, backend, "inplace", 0.3, "x_clone", ("0.125",)),
    )),
)


SIDE_BY_SIDE = ("reference", "compile", "cpu", "cuda", "triton")  # --side-by-side's columns, where present


def key(row):
    return row["case"], row["split"], row["dtype"]


def index(rows):
    """{(case, split, dtype, mode, provider): row}; where CSVs repeat a row (compile.csv's eager rows), the
    first CSV's wins."""
    by = {}
    for row in rows:
        by.setdefault((*key(row), row["mode"], row["provider"]), row)
    return by


def value(target, row, by):
    """The target's measure on one row, or None where the row it compares with is missing."""
    if target.what == "x_clone":
        return float(row["x_clone"])
    if target.what == "vs_cuda":
        cuda = by.get((*key(row), target.mode, "cuda"))
        return float(row["median_ms"]) / float(cuda["median_ms"]) if cuda else None
    eager = by.get((*key(row), target.mode, "reference"))
    return float(eager["median_ms"]) / float(row["median_ms"]) if eager else None


def checks(rows):
    """(target, row, value, met) for every row a target applies to, in the CSV's order."""
    by = index(rows)
    out = []
    for target in TARGETS:
        for row in rows:
            if (row["provider"], row["mode"]) != (target.provider, target.mode):
                continue
            if target.splits and row["split"] not in target.splits:
                continue
            measured = value(target, row, by)
            if measured is not None:
                out.append((target, row, measured, target.met(measured)))
    return out


def summary_lines(results):
    """One line per target with rows: met k of n, and the worst row."""
    lines = []
    for target in TARGETS:
        mine = [(row, measured, met) for t, row, measured, met in results if t is target]
        if not mine:
            continue
        pick = min if target.higher_is_better else max
        row, measured, _ = pick(mine, key=lambda item: item[1])
        lines.append(f"{target.describe()}: met {sum(met for _, _, met in mine)} of {len(mine)}; worst {measured:.2f} "
                     f"({row['case']} split {row['split']} {row['dtype']})")
    return lines


def row_table(results):
    """Markdown: every (target, row) with its value, the device's own ratio, and met / missed."""
    lines = ["| target | case | split | dtype | value | device x clone | |", "|---|---|---|---|---|---|---|"]
    for target, row, measured, met in results:
        lines.append(f"| {target.describe()} | {row['case']} | {row['split']} | {row['dtype']} | {measured:.2f} | "
                     f"{row['gpu_x_clone'] or '-'} | {'met' if met else 'MISSED'} |")
    return lines


def before_after(rows):
    """Markdown: each backend's x_clone with the generator in a launch of its own (*-unfused) and fused,
    with launches per call where the profiler counted them; empty where no unfused row was timed."""
    by = index(rows)
    lines = []
    for row in rows:
        if not row["provider"].endswith("-unfused"):
            continue
        fused = by.get((*key(row), row["mode"], row["provider"].removesuffix("-unfused")))
        if fused is None:
            continue
        if not lines:
            lines = ["| backend | case | split | dtype | mode | before (x clone) | after (x clone) | launches |",
                     "|---|---|---|---|---|---|---|---|"]
        launches = f"{row['launches']} -> {fused['launches']}" if row["launches"] else "-"
        lines.append(f"| {fused['provider']} | {row['case']} | {row['split']} | {row['dtype']} | {row['mode']} | "
                     f"{row['x_clone']} | {fused['x_clone']} | {launches} |")
    return lines


def side_by_side(rows):
    """Markdown: per (case, split, dtype, mode), each provider's time as a multiple of the clone, wall and
    (where the profiler ran) the device's own: the eager and compiled reference beside the backends."""
    by = index(rows)
    present = {r["provider"] for r in rows}
    providers = [p for p in SIDE_BY_SIDE if p in present]
    lines = [f"| case | split | dtype | mode | {' | '.join(providers)} |", f"|{'---|' * (4 + len(providers))}"]
    for shape_mode in dict.fromkeys((*key(r), r["mode"]) for r in rows if r["provider"] in providers):
        cells = []
        for provider in providers:
            row = by.get((*shape_mode, provider))
            device = f" / {row['gpu_x_clone']}" if row and row["gpu_x_clone"] else ""
            cells.append(f"{row['x_clone']}{device}" if row else "-")
        lines.append(f"| {' | '.join(shape_mode)} | {' | '.join(cells)} |")
    return lines


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m benchmarks.targets", description=__doc__.split("\n\n")[0])
    parser.add_argument("csv", nargs="+", help="benchmark CSVs (dsa-bench --out DIR writes DIR/bench.csv), read as one")
    parser.add_argument("--rows", action="store_true", help="every row each target applies to, as markdown")
    parser.add_argument("--before-after", action="store_true",
                        help="each backend's *-unfused rows beside its fused ones, as markdown")
    parser.add_argument("--side-by-side", action="store_true",
                        help="per shape and mode, eager, compiled and each backend as multiples of the clone")
    args = parser.parse_args(argv)
    rows = []
    for path in args.csv:
        try:
            with open(path, newline="") as f:
                rows.extend(csv.DictReader(f))
        except OSError as error:
            parser.error(f"cannot read {path}: {error.strerror}")
    if args.side_by_side:
        print("time / x.clone(), wall / device:\n" + "\n".join(side_by_side(rows)) + "\n")
    results = checks(rows)
    if not results:
        print(f"{' '.join(args.csv)}: no rows of the providers and modes the targets are about (cuda, triton; "
              f"fwd, full, inference, inplace)")
        return 0
    run = rows[0]  # the device and commit columns are missing from CSVs older than the present schema
    print(f"{run.get('device') or 'device not recorded'}, commit {run.get('commit') or 'not recorded'}: targets on "
          f"wall time (median) / x.clone()")
    print("\n".join(summary_lines(results)))
    if args.rows:
        print("\n" + "\n".join(row_table(results)))
    if args.before_after:
        comparison = before_after(rows) or ["no *-unfused rows with their fused rows in this CSV"]
        print("\nthe generator in a launch of its own (before) and fused (after):\n" + "\n".join(comparison))
    return 0


if __name__ == "__main__":
    sys.exit(main())
