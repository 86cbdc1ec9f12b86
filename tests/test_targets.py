"""benchmarks/targets.py: the issues' performance targets read off a benchmark CSV of the present schema
(written here by the benchmark's own CSV writer from made-up times)."""
import pytest

from benchmarks import targets
from dsa_ops.bench import report


def row(provider, mode, median_ms, clone_ms=1.0, case="i3d-layer3", split="0.125", dtype="float32", launches=""):
    values = dict.fromkeys(report.COLUMNS, "")
    values.update(case=case, split=split, dtype=dtype, mode=mode, provider=provider, median_ms=f"{median_ms:g}",
                  x_clone=f"{median_ms / clone_ms:.2f}", launches=launches, device="GPU 0", commit="abc1234")
    return values


def run(tmp_path, capsys, rows, *flags):
    path = tmp_path / "bench.csv"
    report.write_csv(rows, path)
    assert targets.main([str(path), *flags]) == 0
    return capsys.readouterr().out


def test_each_target_counts_its_rows_and_names_the_worst(tmp_path, capsys):
    rows = [row("clone", "-", 1.0), row("cuda", "fwd", 1.2), row("cuda", "fwd", 1.4, split="1"),
            row("reference", "full", 30.0), row("cuda", "full", 2.5), row("triton", "full", 3.5),
            row("reference", "full", 30.0, dtype="bfloat16"), row("cuda", "full", 2.0, dtype="bfloat16"),
            row("triton", "full", 2.4, dtype="bfloat16")]
    out = run(tmp_path, capsys, rows)
    assert out.splitlines()[0] == "GPU 0, commit abc1234: targets on wall time (median) / x.clone()"
    assert "issue 3: cuda fwd <= 1.3x clone: met 1 of 2; worst 1.40 (i3d-layer3 split 1 float32)" in out
    assert "issue 3: cuda full <= 2.6x clone: met 2 of 2; worst 2.50 (i3d-layer3 split 0.125 float32)" in out
    # triton / cuda: 3.5 / 2.5 = 1.4 (missed), 2.4 / 2.0 = 1.2 (met); eager / triton: 8.57 and 12.5 (both met)
    assert "issue 4: triton full <= 1.3x cuda: met 1 of 2; worst 1.40 (i3d-layer3 split 0.125 float32)" in out
    assert ("issue 4: triton full >= 5x faster than eager: met 2 of 2; worst 8.57 (i3d-layer3 split 0.125 float32)"
            in out)
    assert "issue 7: triton full <= 2.3x clone: met 0 of 2; worst 3.50 (i3d-layer3 split 0.125 float32)" in out
    assert "inference" not in out  # no rows: no line


def test_in_place_target_holds_at_split_one_eighth_only_and_rows_list_every_check(tmp_path, capsys):
    rows = [row("cuda", "inplace", 0.25), row("cuda", "inplace", 0.9, split="1"), row("cuda", "inference", 1.1)]
    out = run(tmp_path, capsys, rows, "--rows")
    assert "issue 7: cuda inplace <= 0.3x clone at split 0.125: met 1 of 1; worst 0.25" in out
    assert "issue 7: cuda inference <= 1.05x clone: met 0 of 1; worst 1.10" in out
    assert "| issue 7: cuda inference <= 1.05x clone | i3d-layer3 | 0.125 | float32 | 1.10 | - | MISSED |" in out
    assert "| 0.25 | - | met |" in out and "0.90" not in out


def test_before_after_pairs_each_unfused_row_with_its_fused_row(tmp_path, capsys):
    rows = [row("cuda-unfused", "fwd", 2.0, launches="5"), row("cuda", "fwd", 1.1, launches="2"),
            row("triton-unfused", "full", 6.0)]  # no fused triton row: left out
    out = run(tmp_path, capsys, rows, "--before-after")
    assert "| cuda | i3d-layer3 | 0.125 | float32 | fwd | 2.00 | 1.10 | 5 -> 2 |" in out
    assert "triton |" not in out
    assert "no *-unfused rows" in run(tmp_path, capsys, [row("cuda", "fwd", 1.1)], "--before-after")


def test_side_by_side_puts_eager_compiled_and_backends_in_one_row_per_shape_and_mode(tmp_path, capsys):
    bench = [row("clone", "-", 1.0), row("reference", "fwd", 5.0), row("cuda", "fwd", 1.2),
             row("triton", "fwd", 1.5), row("reference", "fwd", 9.0, dtype="bfloat16"),
             row("cuda", "fwd", 2.0, dtype="bfloat16")]
    bench[2]["gpu_x_clone"] = "1.05"
    compiled = [row("reference", "fwd", 7.0), row("compile", "fwd", 4.0)]  # its eager row: bench.csv's wins
    report.write_csv(compiled, tmp_path / "compile.csv")
    out = run(tmp_path, capsys, bench, str(tmp_path / "compile.csv"), "--side-by-side")
    assert "| case | split | dtype | mode | reference | compile | cuda | triton |" in out
    assert "| i3d-layer3 | 0.125 | float32 | fwd | 5.00 | 4.00 | 1.20 / 1.05 | 1.50 |" in out
    assert "| i3d-layer3 | 0.125 | bfloat16 | fwd | 9.00 | - | 2.00 | - |" in out
    assert "issue 3: cuda fwd <= 1.3x clone: met 1 of 2; worst 2.00" in out  # the targets follow


def test_a_csv_without_gpu_rows_says_so(tmp_path, capsys):
    out = run(tmp_path, capsys, [row("clone", "-", 1.0), row("cpu", "fwd", 3.0), row("reference", "fwd", 9.0)])
    assert "no rows of the providers and modes the targets are about" in out


def test_an_unreadable_csv_is_an_argument_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        targets.main([str(tmp_path / "missing.csv")])
    assert exit_info.value.code == 2 and "cannot read" in capsys.readouterr().err
