"""scripts/demo.py (`make demo`): the shipped short-budget summary it prints, and its table of
live seeds beside the shipped ones (the live training itself is short_budget.py's, tested in
test_short_budget.py)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import demo
import pytest
import short_budget
from helpers.runs import write_curves

from sotddsp.core.run_layout import CONFIG_FILE, DONE_MARKER, TEST_METRICS_FILE, run_directory


def shipped_rows() -> list[dict[str, str]]:
    with open(short_budget.DEFAULT_ROOT / short_budget.SEEDS_CSV, newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.mark.skipif(not (short_budget.DEFAULT_ROOT / short_budget.SEEDS_CSV).is_file(),
                    reason="no shipped short-budget study")
def test_the_shipped_summary_is_printed_with_its_rule(capsys: pytest.CaptureFixture) -> None:
    rows = demo.shipped_summary()
    printed = capsys.readouterr().out
    assert rows == shipped_rows()
    assert "median |error| is <= 100 cents" in printed
    for experiment in {r["experiment"] for r in rows}:
        assert f"| {experiment} |" in printed
    assert "| seed |" not in printed  # the per-seed table is left to the file


def test_live_seeds_are_matched_to_the_shipped_seed_of_the_same_experiment(
        tmp_path: Path) -> None:
    shipped = [
        {"experiment": "SOT-2048", "seed": "0", "steps": "640", "median_abs_cents": "1330.2"},
        {"experiment": "MSS-Lin", "seed": "0", "steps": "512", "median_abs_cents": "5184.6"},
    ]
    live = [
        {"experiment": "SOT-2048", "seed": 0, "steps": 640, "median_abs_cents": 1330.0},
        {"experiment": "MSS-Lin", "seed": 0, "steps": 640, "median_abs_cents": 5184.6},
        {"experiment": "SOT-2048", "seed": 5, "steps": 384, "median_abs_cents": 80.0},
    ]
    live_root, shipped_root = tmp_path / "live", tmp_path / "shipped"
    machine = {"torch": "2.13.0", "cpu_capability": "AVX2", "threads": 1, "cuda_device": ""}
    for experiment, seed in (("SOT-2048", 0), ("MSS-Lin", 0), ("SOT-2048", 5)):
        run = run_directory(live_root, experiment, seed)
        run.mkdir(parents=True)
        (run / TEST_METRICS_FILE).write_text(json.dumps({"rpa": 0.0, "machine": machine}))
    old_run = run_directory(shipped_root, "SOT-2048", 0)
    old_run.mkdir(parents=True)
    (old_run / TEST_METRICS_FILE).write_text(json.dumps({"rpa": 0.0}))  # before the record
    lines = demo.comparison_table(live, shipped, live_root, shipped_root).splitlines()
    assert len(lines) == 2 + len(live)
    cells = [[c.strip() for c in line.strip("|").split("|")] for line in lines[2:]]
    assert cells[0] == ["SOT-2048", "0", "1330", "1330", "640", "640", "no", "yes",
                        "AVX2, 1 thread(s)", "not recorded"]
    assert cells[1] == ["MSS-Lin", "0", "5185", "5185", "640", "512", "no", "no",  # steps differ
                        "AVX2, 1 thread(s)", "not recorded"]  # no shipped run directory
    assert cells[2] == ["SOT-2048", "5", "80", "–", "384", "–", "yes", "–",
                        "AVX2, 1 thread(s)", "–"]


def test_still_training_tables_only_the_unfinished_runs(tmp_path: Path) -> None:
    """A finished run (``done``) is left out; an unfinished one shows its last step and its
    latest validation (a median |error| under 10 cents with one decimal); one without a
    validation yet shows dashes."""
    for experiment, seed, rows, done in (
        ("SOT-2048", 1, [{"step": 220, "epoch": 4, "split": "val", "val/rpa": 0.684,
                          "val/median_cents_error": 3.2},
                         {"step": 240, "epoch": 5, "split": "train", "train/loss": 0.02}], False),
        ("SOT-2048", 2, [{"step": 220, "epoch": 4, "split": "val", "val/rpa": 0.0,
                          "val/median_cents_error": 3190.0}], True),
        ("MSS-Lin", 1, [{"step": 20, "epoch": 0, "split": "train", "train/loss": 0.4}], False),
        ("MSS-Lin", 2, [{"step": 220, "epoch": 4, "split": "val", "val/rpa": 0.013,
                         "val/median_cents_error": 1221.4}], False),
    ):
        run = run_directory(tmp_path, experiment, seed)
        run.mkdir(parents=True)
        (run / CONFIG_FILE).write_text(f"seed_everything: {seed}\n")
        write_curves(run, rows)
        if done:
            (run / DONE_MARKER).touch()
    lines = demo.still_training(tmp_path).splitlines()
    cells = [[c.strip() for c in line.strip("|").split("|")] for line in lines[2:]]
    assert cells == [["MSS-Lin/MSS-Lin-1", "–", "–", "–", "–"],
                     ["MSS-Lin/MSS-Lin-2", "220", "220", "1221", "1.3"],  # >= 10 cents: whole
                     ["SOT-2048/SOT-2048-1", "240", "220", "3.2", "68.4"]]  # < 10: one decimal
    for run in tmp_path.glob("*/*"):
        (run / DONE_MARKER).touch()
    assert demo.still_training(tmp_path) == ""
