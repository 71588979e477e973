"""sotddsp.model.runs.latest_validation and run_layout.recorded_step: a run's progress read back from the curves.csv that
MetricsHistory writes."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers.runs import write_curves

from sotddsp.core.run_layout import CURVES_FILE, recorded_step
from sotddsp.model.runs import latest_validation


def test_the_last_step_and_the_last_validation_row(tmp_path: Path) -> None:
    write_curves(tmp_path, [
        {"step": 20, "epoch": 0, "split": "train", "train/loss": 0.5},
        {"step": 44, "epoch": 0, "split": "val", "val/rpa": 0.1, "val/median_cents_error": 900.0},
        {"step": 60, "epoch": 1, "split": "train", "train/loss": 0.4},
        {"step": 88, "epoch": 1, "split": "val", "val/rpa": 0.25, "val/median_cents_error": 40.0},
        {"step": 100, "epoch": 2, "split": "train", "train/loss": 0.3},
    ])
    assert recorded_step(tmp_path) == 100
    assert latest_validation(tmp_path) == {"rpa": 0.25, "median_cents_error": 40.0, "step": 88.0}


@pytest.mark.parametrize("rows", [[], [{"step": 20, "epoch": 0, "split": "train",
                                        "train/loss": 0.5}]])
def test_no_validation_yet_is_none(tmp_path: Path, rows: list[dict]) -> None:
    write_curves(tmp_path, rows)
    assert latest_validation(tmp_path) is None


def test_a_missing_or_broken_file_is_none(tmp_path: Path) -> None:
    assert latest_validation(tmp_path) is None
    (tmp_path / CURVES_FILE).write_text("step,split,val/rpa\nnot-a-step,val,0.1\n")
    assert latest_validation(tmp_path) is None
