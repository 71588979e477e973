"""scripts/short_budget_selection.py: the validation each checkpoint rule picks, on curves.csv files
written as MetricsHistory writes them now and as it wrote them before the fix (one validation
late, the first missing), against picks worked out by hand."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import short_budget_selection as selection

from sotddsp.core.command_line import UserError

COLUMNS = ["step", "epoch", "split", "train/loss", "val/loss", "val/lsd", "val/median_cents_error"]
# (step, loss, lsd, median cents) of four validations every 128 steps
TRUE = [(128, 0.9, 50.0, 900.0), (256, 0.5, 40.0, 80.0), (384, 0.4, 45.0, 300.0),
        (512, 0.6, 41.0, 700.0)]


def _run(root: Path, experiment: str, seed: int, lagged: bool, tested_step: int) -> Path:
    run = root / experiment / f"{experiment}-{seed}"
    run.mkdir(parents=True)
    rows = [{"step": 16, "epoch": 0, "split": "train", "train/loss": 1.0}]
    # before the fix, the row written at a validation held the previous validation's metrics
    recorded = ([(TRUE[i + 1][0], *TRUE[i][1:]) for i in range(len(TRUE) - 1)] if lagged
                else TRUE)
    rows += [{"step": s, "epoch": s // 64 - 1, "split": "val", "val/loss": loss, "val/lsd": lsd,
              "val/median_cents_error": cents} for s, loss, lsd, cents in recorded]
    with (run / "curves.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    # what short_budget.py reads of a finished run: its config's names and its test
    (run / "train_config.yaml").write_text(f"experiment: {experiment}\nseed_everything: {seed}\n")
    (run / "test_metrics.json").write_text(json.dumps({"global_step": tested_step,
                                                       "median_cents_error": 1000.0}))
    (run / "done").touch()
    return run


def test_current_rows_are_read_as_they_are_and_each_rule_picks_its_validation(
        tmp_path: Path) -> None:
    history, lagged = selection.validations(_run(tmp_path, "A", 0, False, 256))
    assert not lagged
    assert [(v.step, v.loss, v.lsd, v.median_cents) for v in history] == TRUE
    picks = selection.select(history, lagged)
    assert {rule: pick.step for rule, pick in picks.items()} == {
        "lsd": 256, "loss": 384, "last": 512, "oracle": 256}


def test_lagged_rows_are_shifted_back_and_their_last_validation_is_unknown(
        tmp_path: Path) -> None:
    history, lagged = selection.validations(_run(tmp_path, "A", 1, True, 256))
    assert lagged
    assert [(v.step, v.loss, v.lsd, v.median_cents) for v in history] == TRUE[:-1]
    picks = selection.select(history, lagged)
    assert picks["last"] is None
    assert (picks["lsd"].step, picks["loss"].step, picks["oracle"].step) == (256, 384, 256)


def test_report_counts_seeds_within_100_cents_per_rule_and_checks_the_tested_step(
        tmp_path: Path) -> None:
    _run(tmp_path, "A", 0, False, 256)
    _run(tmp_path, "A", 1, True, 512)  # the unrecorded last validation was the best
    unfinished = _run(tmp_path, "A", 2, False, 256)
    (unfinished / "done").unlink()
    found = selection.collect(tmp_path)
    assert [(s.experiment, s.seed, s.lagged, s.tested_step) for s in found] == [
        ("A", 0, False, 256), ("A", 1, True, 512)]
    text = selection.report(found)
    # lsd picks step 256 (80 cents) in both; loss picks 384 (300); last: 700, unknown; oracle 80
    assert "| A | 2 | 2/2 | 0/2 | 0/1 | 2/2 | 80 |" in text
    assert "| A | 0 | no | 80 (step 256) | 300 (step 384) | 700 (step 512) | 80 (step 256) " \
           "| 256 | yes |" in text
    assert "| A | 1 | yes | 80 (step 256) | 300 (step 384) | – | 80 (step 256) | 512 " \
           "| no: a later validation, unrecorded |" in text


def test_unevenly_spaced_validations_are_refused_in_one_line(tmp_path: Path) -> None:
    run = _run(tmp_path, "A", 0, False, 256)
    text = (run / "curves.csv").read_text().replace("\n384,", "\n400,")
    (run / "curves.csv").write_text(text)
    with pytest.raises(UserError, match=r"not evenly spaced"):
        selection.validations(run)
    with pytest.raises(UserError, match=r"no such directory"):
        selection.main(["--root", str(tmp_path / "missing")])
