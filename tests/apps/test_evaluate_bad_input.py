"""Bad input to eval_paper.py (``sotddsp.apps.evaluate``): no runs, truncated or mismatched
checkpoints, an unwritable output; each case ends with one clear line and damages nothing."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from helpers.bad_input import (
    EXPERIMENT,
    SEED,
    Case,
    Outcomes,
    World,
    check_case,
    check_shared_inputs,
    run_cases,
)


def _eval_root_with(checkpoint: str) -> Callable[[World, Path], None]:
    """Workspace preparation: ws/evalroot holds the good run with its tested checkpoint replaced."""

    def prepare(w: World, ws: Path) -> None:
        shutil.copytree(w.good_run_root, ws / "evalroot")
        run = ws / "evalroot" / EXPERIMENT / f"{EXPERIMENT}-{SEED}"
        for best in (run / "checkpoints").glob("best-lsd-*.ckpt"):
            shutil.copy(getattr(w, checkpoint), best)

    return prepare



CASES: list[Case] = [
    # ---- eval_paper.py
    Case(
        "eval-root-without-runs",
        "eval_paper.py",
        lambda w, ws: ["--root", str(ws / "empty"), "--out", str(ws / "results"), "--no-baseline"],
        (r"no runs under", r"empty", r"train some with train\.py or pass --root"),
        prepare=lambda w, ws: (ws / "empty").mkdir(),
    ),
    Case(
        "eval-checkpoint-truncated",
        "eval_paper.py",
        lambda w, ws: [
            "--root",
            str(ws / "evalroot"),
            "--out",
            str(ws / "results"),
            "--no-baseline",
            "--device",
            "cpu",
        ],
        (r"no run could be evaluated", r"(truncated|corrupt)"),
        prepare=_eval_root_with("truncated_ckpt"),
    ),
    Case(
        "eval-checkpoint-of-another-model",
        "eval_paper.py",
        lambda w, ws: [
            "--root",
            str(ws / "evalroot"),
            "--out",
            str(ws / "results"),
            "--no-baseline",
            "--device",
            "cpu",
        ],
        (r"no run could be evaluated", r"(do not fit|size mismatch|shape)"),
        prepare=_eval_root_with("other_model_ckpt"),
    ),
    Case(
        "eval-output-unwritable",
        "eval_paper.py",
        lambda w, ws: ["--root", str(w.good_run_root), "--out", "/sys/nope", "--no-baseline"],
        (r"permission denied", r"/sys/nope"),
    ),
]


@pytest.fixture(scope="module")
def outcomes(bad_input_world: World, tmp_path_factory: pytest.TempPathFactory) -> Outcomes:
    return run_cases(CASES, bad_input_world, tmp_path_factory.mktemp("evaluate_bad_input"))


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_bad_input_gets_one_clear_line_and_damages_nothing(case: Case, outcomes: Outcomes) -> None:
    check_case(case, outcomes)


def test_inputs_shared_by_the_cases_are_unchanged(
    bad_input_world: World, outcomes: Outcomes
) -> None:
    check_shared_inputs(bad_input_world, outcomes)
