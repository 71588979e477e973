"""scripts/short_budget.py, the outcome distribution over seeds at a short budget: its pure parts
(the localization rule, the Wilson interval, the seeds.csv rows and the per-experiment summary)
against closed forms and NumPy, and the command end to end on two seeds of a tiny budget."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
import short_budget
from helpers.entrypoints import error_line_problems, run_entry_point, tree_digest

from sotddsp.core.command_line import UserError
from sotddsp.core.result_tables import (
    LOCALIZE_MAX_MEDIAN_CENTS,
    SEED_COLUMNS,
    localizes,
    paired_comparisons,
    rank_comparisons,
    render_paired_comparisons_markdown,
    render_rank_comparisons_markdown,
    render_seed_outcomes_markdown,
    seed_outcomes,
    seed_row,
    wilson_interval,
)
from sotddsp.core.run_layout import TEST_METRICS_FILE

# ----------------------------------------------------------------------------------------------
# The pure parts
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("k", "n", "low", "high"), [
    (0, 10, 0.0, 0.2775), (5, 10, 0.2366, 0.7634), (10, 10, 0.7225, 1.0),
    (3, 10, 0.1078, 0.6032), (1, 1, 0.2065, 1.0), (0, 1, 0.0, 0.7935),
])
def test_wilson_interval_known_values(k: int, n: int, low: float, high: float) -> None:
    """Published 95 % Wilson intervals (e.g. statsmodels' proportion_confint(method="wilson")),
    to four decimals; 0 / n and n / n end exactly at 0 and 1."""
    got = wilson_interval(k, n)
    assert got == pytest.approx((low, high), abs=5e-5)
    if k == 0:
        assert got[0] == 0.0
    if k == n:
        assert got[1] == 1.0


@pytest.mark.parametrize(("k", "n", "confidence"), [(1, 10, 0.95), (7, 12, 0.95), (2, 20, 0.9),
                                                    (13, 40, 0.99)])
def test_wilson_interval_bounds_are_the_roots_of_its_quadratic(k: int, n: int,
                                                               confidence: float) -> None:
    """The Wilson bounds are the p where the score test is at its critical value:
    (k/n - p)^2 = z^2 p (1 - p) / n, i.e. (n + z^2) p^2 - (2k + z^2) p + k^2 / n = 0."""
    z = {0.9: 1.6448536269514722, 0.95: 1.959963984540054, 0.99: 2.5758293035489004}[confidence]
    roots = np.sort(np.roots([n + z * z, -(2 * k + z * z), k * k / n]).real)
    assert wilson_interval(k, n, confidence) == pytest.approx(tuple(roots), abs=1e-12)


def test_wilson_interval_rejects_bad_counts() -> None:
    for k, n, match in ((0, 0, "n must"), (11, 10, "successes"), (-1, 10, "successes"),
                        (1.0, 10, "successes")):
        with pytest.raises(ValueError, match=match):
            wilson_interval(k, n)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="confidence"):
        wilson_interval(1, 10, 1.0)


def test_the_localization_rule_is_100_cents_inclusive() -> None:
    assert LOCALIZE_MAX_MEDIAN_CENTS == 100.0
    assert localizes(100.0) and localizes(3.0)
    assert not localizes(100.000001) and not localizes(1287.0) and not localizes(math.nan)


METRICS = {"checkpoint": "best-lsd-9-640.ckpt", "global_step": 640, "rpa": 0.125, "rca": 0.5,
           "median_cents_error": 98.0, "median_signed_cents": -98.0, "within_50_cents": 0.125,
           "within_100_cents": 0.5, "log_f0_corr": 0.75, "median_pred_hz": 220.0, "lsd": 3.0}


def test_seed_row_maps_test_metrics_to_the_csv_columns() -> None:
    row = seed_row("SOT-2048", 3, METRICS)
    assert tuple(row) == SEED_COLUMNS
    assert row == {"experiment": "SOT-2048", "seed": 3, "steps": 640, "rpa": 12.5, "rca": 50.0,
                   "median_abs_cents": 98.0, "median_signed_cents": -98.0, "within_50": 12.5,
                   "within_100": 50.0, "log_f0_corr": 0.75, "median_pred_hz": 220.0}
    old = {k: v for k, v in METRICS.items() if k not in ("median_signed_cents", "median_pred_hz")}
    assert seed_row("SOT-2048", 3, old)["median_pred_hz"] is None


def _rows(errors: dict[str, list[float]]) -> list[dict[str, object]]:
    return [{"experiment": name, "seed": i, "median_abs_cents": e}
            for name, values in errors.items() for i, e in enumerate(values)]


def test_rank_comparisons_exact_values_of_separated_and_interleaved_seeds() -> None:
    """Exact identities of the Mann-Whitney U: three seeds all below three others give U = 0,
    P(lower) = 1 and the exact two-sided p = 2 / C(6, 3) = 0.1; interleaved 1 < 2 < 3 < 4 < 5
    < 6 as (1, 3, 5) against (2, 4, 6) gives U = 3 (pairs 3 > 2, 5 > 2, 5 > 4), P(lower) = 2/3,
    p = 2 * P(U <= 3) = 2 * 7/20 = 0.7 (of the 20 splits of 6 ranks into 3 + 3, U = 0, 1, 2, 3
    in 1, 1, 2 and 3)."""
    separated = rank_comparisons(_rows({"A": [10, 20, 30], "B": [40, 50, 60], "C": [70]}))
    assert len(separated) == 1  # C has one seed only
    c = separated[0]
    assert (c.first, c.second, c.n_first, c.n_second, c.u_first) == ("A", "B", 3, 3, 0.0)
    assert c.p_first_lower == 1.0 and c.p_value == pytest.approx(2 / math.comb(6, 3))
    interleaved = rank_comparisons(_rows({"A": [1, 3, 5], "B": [2, 4, 6]}))[0]
    assert interleaved.u_first == 3.0 and interleaved.p_first_lower == pytest.approx(2 / 3)
    assert interleaved.p_value == pytest.approx(0.7)
    swapped = rank_comparisons(_rows({"B": [40, 50, 60], "A": [10, 20, 30]}))[0]
    assert swapped.u_first == 9.0 and swapped.p_first_lower == 0.0
    table = render_rank_comparisons_markdown(separated)
    assert "| A | B | 3 + 3 | 0 | 1.00 | 0.1 |" in table
    assert render_rank_comparisons_markdown([]) == ""


def test_paired_comparisons_exact_values_of_the_signed_rank_test() -> None:
    """Exact identities of the Wilcoxon signed-rank test: 3 pairs all lower give the exact
    two-sided p = 2 / 2^3 = 0.25, 10 pairs all lower 2 / 2^10; the differences (-1, +2, -3)
    give W+ = 2, and of the 8 sign patterns 3 have W+ <= 2 (sums 0, 1, 2): p = 2 * 3/8 = 0.75.
    Only seeds both experiments ran are paired; equal errors count on neither side; an
    experiment sharing fewer than 2 seeds is left out."""
    rows = (_rows({"A": [10, 20, 30], "B": [40, 50, 60]})
            + [{"experiment": "C", "seed": 0, "median_abs_cents": 1.0}]
            + [{"experiment": "A", "seed": 9, "median_abs_cents": 5.0}])  # seed 9: A only
    (c,) = paired_comparisons(rows)
    assert (c.first, c.second, c.n, c.first_lower, c.second_lower) == ("A", "B", 3, 3, 0)
    assert c.p_value == pytest.approx(0.25)
    ten = paired_comparisons(_rows({"A": list(range(10)), "B": list(range(100, 110))}))[0]
    assert ten.p_value == pytest.approx(2 / 2**10)
    mixed = paired_comparisons(_rows({"A": [10, 22, 30], "B": [11, 20, 33]}))[0]
    assert (mixed.first_lower, mixed.second_lower) == (2, 1)
    assert mixed.p_value == pytest.approx(0.75)
    same = paired_comparisons(_rows({"A": [1, 2], "B": [1, 2]}))[0]
    assert (same.first_lower, same.second_lower) == (0, 0) and math.isnan(same.p_value)
    table = render_paired_comparisons_markdown([c, same])
    assert "| A | B | 3 | 3 | 0 | 0.25 |" in table and "| A | B | 2 | 0 | 0 | – |" in table
    assert render_paired_comparisons_markdown([]) == ""


def test_seed_outcomes_count_localized_seeds_and_the_spread() -> None:
    errors = {"A": [10.0, 100.0, 150.0, 2000.0, 50.0], "B": [1287.0, 900.0]}
    rows = [seed_row(name, seed, {**METRICS, "median_cents_error": e})
            for name, values in errors.items() for seed, e in enumerate(values)]
    a, b = seed_outcomes(rows)
    assert (a.experiment, a.n, a.localized, b.experiment, b.n, b.localized) == ("A", 5, 3, "B", 2, 0)
    assert (a.low, a.high) == wilson_interval(3, 5) and (b.low, b.high) == wilson_interval(0, 2)
    q1, median, q3 = np.percentile(errors["A"], [25, 50, 75])
    assert (a.q1_cents, a.median_cents, a.q3_cents) == (q1, median, q3)
    assert (a.min_cents, a.max_cents) == (10.0, 2000.0) and a.share == 0.6
    text = render_seed_outcomes_markdown([a, b], rows, {"A": "640 steps, batch 16, lr 0.001"})
    assert "| A | 640 steps, batch 16, lr 0.001 | 5 | 3/5 | 60 |" in text
    assert "| B | – | 2 | 0/2 | 0 | 0.0 – 65.8 |" in text
    assert text.count("| yes |") == 3 and text.count("| no |") == 4


# ----------------------------------------------------------------------------------------------
# Bad input: one line, before anything runs
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("argv", "match"), [
    (["--experiments", "SOT-4096"], r"unknown experiment 'SOT-4096'; give one of .*MSS-Lin"),
    (["--experiments", "no/such.yaml"], r"no/such.yaml: no such file"),
    (["--experiments", "SOT-2048", "SOT-2048"], r"SOT-2048 given twice"),
    (["--experiments", "SOT-2048", "--seed-list", "1", "1"], r"repeats a seed"),
    (["--experiments", "SOT-2048", "--seed-list", "-1"], r"--seed-list: .*integer >= 0"),
    (["--experiments", "SOT-2048", "--seeds", "0"], r"--seeds: must be a positive integer"),
    (["--experiments", "SOT-2048", "--seeds", "2", "--seed-list", "1"], r"not allowed with"),
    (["--experiments", "SOT-2048", "--root", "/sys/short-budget"], r"/sys/short-budget: cannot"),
    (["--experiments", "SOT-2048", "--", "--seed_everything", "3"], r"--seed_everything is set"),
    (["--experiments", "SOT-2048", "--", "--checkpoint_root=x"], r"--checkpoint_root is set"),
    (["--seeds", "2"], r"give at least one experiment"),
    (["--collect-only", "--experiments", "SOT-2048"], r"--collect-only trains nothing"),
    (["--collect-only", "--root", "/nonexistent/short-budget"], r"no such directory"),
])
def test_bad_input_is_one_line_before_anything_runs(argv: list[str], match: str,
                                                    tmp_path: Path) -> None:
    if "--root" not in argv:  # before any "--": a writable root, so that only the input is bad
        at = argv.index("--") if "--" in argv else len(argv)
        argv = [*argv[:at], "--root", str(tmp_path / "r"), *argv[at:]]
    with pytest.raises(UserError, match=match) as error:
        short_budget.main(argv)
    assert "\n" not in str(error.value)
    assert not (tmp_path / "r" / "SOT-2048").exists()


def test_a_yaml_without_an_experiment_name_is_refused(tmp_path: Path) -> None:
    config = tmp_path / "mine.yaml"
    config.write_text("model:\n  temperature: 0.2\n")
    with pytest.raises(UserError, match=r"mine.yaml names no experiment.*experiment: <name>"):
        short_budget.main(["--experiments", str(config), "--root", str(tmp_path / "r")])


def test_bad_input_from_the_command_line_is_one_line_and_exit_2(tmp_path: Path) -> None:
    done = run_entry_point("scripts/short_budget.py",
                           ["--experiments", "SOT-4096", "--root", str(tmp_path)], timeout=120)
    line, problems = error_line_problems(done.stderr, "short_budget.py")
    assert done.returncode == 2 and not problems, (problems, done.stderr)
    assert "unknown experiment 'SOT-4096'" in line


# ----------------------------------------------------------------------------------------------
# End to end: two seeds of a tiny budget
# ----------------------------------------------------------------------------------------------

def _tiny(data: Path) -> list[str]:
    """train.py arguments after "--": the tiny data, one step, one validation batch."""
    return ["--", "--data.init_args.data_path", str(data), "--trainer.max_steps", "1",
            "--trainer.limit_train_batches", "1", "--trainer.limit_val_batches", "1",
            "--trainer.check_val_every_n_epoch", "1", "--model.n_plot_examples", "0"]


def _read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def _check_rows_against_runs(root: Path, seeds: list[int]) -> None:
    rows = _read_csv(root / "seeds.csv")
    assert list(rows[0]) == list(SEED_COLUMNS)
    assert [(r["experiment"], int(r["seed"])) for r in rows] == [("SOT-2048", s) for s in seeds]
    for row in rows:
        run = root / "SOT-2048" / f"SOT-2048-{row['seed']}"
        recorded = json.loads((run / TEST_METRICS_FILE).read_text())
        assert int(row["steps"]) == recorded["global_step"] == 1
        assert float(row["rpa"]) == 100 * recorded["rpa"]
        assert float(row["rca"]) == 100 * recorded["rca"]
        assert float(row["within_50"]) == 100 * recorded["within_50_cents"] == float(row["rpa"])
        assert float(row["within_100"]) == 100 * recorded["within_100_cents"]
        for column, key in (("median_abs_cents", "median_cents_error"),
                            ("median_signed_cents", "median_signed_cents"),
                            ("log_f0_corr", "log_f0_corr"), ("median_pred_hz", "median_pred_hz")):
            assert float(row[column]) == recorded[key], column
        assert abs(float(row["median_signed_cents"])) <= float(row["median_abs_cents"])


def test_two_seeds_end_to_end_a_failure_a_resume_and_collect_only(
    tiny_data_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "short-budget"
    tiny = _tiny(tiny_data_path)
    # seeds 0 and 1 train; seed 2 cannot start (an unreadable last.ckpt): it is reported and
    # the others still run
    broken = root / "SOT-2048" / "SOT-2048-2" / "checkpoints" / "last.ckpt"
    broken.parent.mkdir(parents=True)
    broken.write_bytes(b"not a checkpoint")
    with pytest.raises(SystemExit) as exited:
        short_budget.main(["--experiments", "SOT-2048", "--seeds", "3", "--jobs", "3",
                           "--root", str(root), *tiny])
    assert exited.value.code == 1
    err = capsys.readouterr().err
    assert "1 run(s) failed: SOT-2048 seed 2 (exit 2: " in err and "not a readable checkpoint" in err
    _check_rows_against_runs(root, [0, 1])
    summary = (root / "summary.md").read_text()
    assert "<= 100 cents" in summary and "- SOT-2048/SOT-2048-2: not finished" in summary
    assert "| SOT-2048 | 1 steps, batch 16, lr 0.001 | 2 |" in summary
    assert (root / "seeds.png").read_bytes()[:4] == b"\x89PNG"
    log = root / "SOT-2048" / "SOT-2048-0" / "logs" / "short_budget.log"
    assert log.read_text().startswith("# ") and "--seed_everything 0" in log.read_text()

    # again: the finished seeds are not started, their files (logs included) stay as they were
    runs = tree_digest(root / "SOT-2048" / "SOT-2048-0", root / "SOT-2048" / "SOT-2048-1")
    outputs = {name: (root / name).read_bytes() for name in ("seeds.csv", "summary.md")}
    rows = short_budget.main(["--experiments", "SOT-2048", "--seed-list", "1", "0",
                              "--root", str(root), *tiny])
    out = capsys.readouterr().out
    assert "seed 0: done already, skipped" in out and "seed 1: done already, skipped" in out
    assert tree_digest(root / "SOT-2048" / "SOT-2048-0", root / "SOT-2048" / "SOT-2048-1") == runs
    assert [r["seed"] for r in rows] == [0, 1]
    assert {name: (root / name).read_bytes() for name in outputs} == outputs

    # the same seeds at another budget are no results of this study: one line, nothing runs
    with pytest.raises(UserError, match=r"^SOT-2048 seed 1: .*trainer\.max_steps was 1, now 2.*"
                                        r"another --root$"):
        short_budget.main(["--experiments", "SOT-2048", "--seed-list", "1", "--root", str(root),
                           *tiny, "--trainer.max_steps", "2"])
    assert tree_digest(root / "SOT-2048" / "SOT-2048-0", root / "SOT-2048" / "SOT-2048-1") == runs

    # collect-only rebuilds the same files from the runs alone, training nothing
    for name in ("seeds.csv", "summary.md", "seeds.png"):
        (root / name).unlink()
    short_budget.main(["--collect-only", "--root", str(root)])
    assert tree_digest(root / "SOT-2048" / "SOT-2048-0", root / "SOT-2048" / "SOT-2048-1") == runs
    assert {name: (root / name).read_bytes() for name in outputs} == outputs
    assert (root / "seeds.png").exists()
