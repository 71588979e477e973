"""scripts/demo.py (`make demo`): the shipped short-budget summary it prints, and its table of
live seeds beside the shipped ones (the live training itself is short_budget.py's, tested in
test_short_budget.py)."""

from __future__ import annotations

import csv

import demo
import pytest
import short_budget


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


def test_live_seeds_are_matched_to_the_shipped_seed_of_the_same_experiment() -> None:
    shipped = [
        {"experiment": "SOT-2048", "seed": "0", "steps": "640", "median_abs_cents": "1330.2"},
        {"experiment": "MSS-Lin", "seed": "0", "steps": "512", "median_abs_cents": "5184.6"},
    ]
    live = [
        {"experiment": "SOT-2048", "seed": 0, "steps": 640, "median_abs_cents": 1330.0},
        {"experiment": "MSS-Lin", "seed": 0, "steps": 640, "median_abs_cents": 5184.6},
        {"experiment": "SOT-2048", "seed": 5, "steps": 384, "median_abs_cents": 80.0},
    ]
    lines = demo.comparison_table(live, shipped).splitlines()
    assert len(lines) == 2 + len(live)
    cells = [[c.strip() for c in line.strip("|").split("|")] for line in lines[2:]]
    assert cells[0] == ["SOT-2048", "0", "1330", "1330", "640", "640", "no", "yes"]
    assert cells[1] == ["MSS-Lin", "0", "5185", "5185", "640", "512", "no", "no"]  # steps differ
    assert cells[2] == ["SOT-2048", "5", "80", "–", "384", "–", "yes", "–"]
