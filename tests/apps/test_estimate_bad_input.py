"""Bad input to estimate.py (``sotddsp.apps.estimate``): missing, truncated, foreign or mismatched
checkpoints and unreadable audio; each case ends with one clear line and damages nothing."""

from __future__ import annotations

import pytest
from helpers.bad_input import Case, Outcomes, World, check_case, check_shared_inputs, run_cases

CASES: list[Case] = [
    # ---- estimate.py
    Case(
        "estimate-checkpoint-missing",
        "estimate.py",
        lambda w, ws: [str(ws / "none.ckpt"), str(w.tone_wav), "--out", str(ws / "results")],
        (r"none\.ckpt", r"checkpoint not found"),
    ),
    Case(
        "estimate-checkpoint-truncated",
        "estimate.py",
        lambda w, ws: [str(w.truncated_ckpt), str(w.tone_wav), "--out", str(ws / "results")],
        (r"truncated\.ckpt", r"not a usable train\.py checkpoint"),
    ),
    Case(
        "estimate-checkpoint-not-a-checkpoint",
        "estimate.py",
        lambda w, ws: [str(w.data), str(w.tone_wav), "--out", str(ws / "results")],
        (r"tiny\.pth", r"not a usable train\.py checkpoint"),
    ),
    Case(
        "estimate-checkpoint-of-another-model",
        "estimate.py",
        lambda w, ws: [str(w.other_model_ckpt), str(w.tone_wav), "--out", str(ws / "results")],
        (r"other_model\.ckpt", r"(do not fit|size mismatch|shape)"),
    ),
    Case(
        "estimate-audio-garbage",
        "estimate.py",
        lambda w, ws: [
            str(w.good_run / "checkpoints" / "last.ckpt"),
            str(w.garbage_wav),
            "--out",
            str(ws / "results"),
        ],
        (r"garbage\.wav", r"not a readable audio file"),
    ),
]


@pytest.fixture(scope="module")
def outcomes(bad_input_world: World, tmp_path_factory: pytest.TempPathFactory) -> Outcomes:
    return run_cases(CASES, bad_input_world, tmp_path_factory.mktemp("estimate_bad_input"))


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_bad_input_gets_one_clear_line_and_damages_nothing(case: Case, outcomes: Outcomes) -> None:
    check_case(case, outcomes)


def test_inputs_shared_by_the_cases_are_unchanged(
    bad_input_world: World, outcomes: Outcomes
) -> None:
    check_shared_inputs(bad_input_world, outcomes)
