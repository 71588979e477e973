"""Bad input to the data commands, synthetic_data.py and real_data.py (``sotddsp.apps``): each case
ends with one clear line and damages nothing (tests/helpers/bad_input.py)."""

from __future__ import annotations

import pytest
from helpers.bad_input import Case, Outcomes, World, check_case, check_shared_inputs, run_cases

CASES: list[Case] = [
    # ---- synthetic_data.py
    Case(
        "generator-output-unwritable",
        "synthetic_data.py",
        lambda w, ws: ["--n-examples", "12", "--n-samples", "256", "--out", "/sys/nope/x.pth"],
        (r"cannot write /sys/nope/x\.pth",),
        exit_codes=(1, 2),
    ),
    # ---- real_data.py
    Case(
        "real-data-soundfont-missing",
        "real_data.py",
        lambda w, ws: ["--soundfont", str(ws / "none.sf2"), "--out", str(ws / "r.pth")],
        (r"none\.sf2", r"not found"),
    ),
]


@pytest.fixture(scope="module")
def outcomes(bad_input_world: World, tmp_path_factory: pytest.TempPathFactory) -> Outcomes:
    return run_cases(CASES, bad_input_world, tmp_path_factory.mktemp("data_bad_input"))


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_bad_input_gets_one_clear_line_and_damages_nothing(case: Case, outcomes: Outcomes) -> None:
    check_case(case, outcomes)


def test_inputs_shared_by_the_cases_are_unchanged(
    bad_input_world: World, outcomes: Outcomes
) -> None:
    check_shared_inputs(bad_input_world, outcomes)
