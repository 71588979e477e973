"""Bad input to estimate.py (``sotddsp.apps.estimate``, ``sotddsp-pitch``): missing, truncated,
foreign or mismatched checkpoints, an unknown model name, missing or unreadable audio, a
checkpoint among the audio paths, an unknown export format and a device this machine lacks;
each case ends with one clear line and damages nothing."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from helpers.bad_input import Case, Outcomes, World, check_case, check_shared_inputs, run_cases


def tone_with(*options: str | Callable[[World, Path], str]) -> Callable[[World, Path], list[str]]:
    """The arguments ``OPTIONS... <world's tone.wav> -o <workspace>/results``; an option given
    as a function of (world, workspace) is called."""
    return lambda w, ws: [o if isinstance(o, str) else o(w, ws) for o in options] + [
        str(w.tone_wav), "-o", str(ws / "results")]


def good_checkpoint(w: World, ws: Path) -> str:
    return str(w.good_run / "checkpoints" / "last.ckpt")


CASES: list[Case] = [
    # ---- estimate.py (sotddsp-pitch)
    Case("estimate-checkpoint-missing", "estimate.py",
         tone_with("-m", lambda w, ws: str(ws / "none.ckpt")),
         (r"none\.ckpt", r"checkpoint not found", r"shipped model \(default\)")),
    Case("estimate-checkpoint-truncated", "estimate.py",
         tone_with("-m", lambda w, ws: str(w.truncated_ckpt)),
         (r"truncated\.ckpt", r"not a usable train\.py checkpoint")),
    Case("estimate-checkpoint-not-a-checkpoint", "estimate.py",
         tone_with("-m", lambda w, ws: str(w.data)),
         (r"tiny\.pth", r"not a usable train\.py checkpoint")),
    Case("estimate-checkpoint-of-another-model", "estimate.py",
         tone_with("-m", lambda w, ws: str(w.other_model_ckpt)),
         (r"other_model\.ckpt", r"(do not fit|size mismatch|shape)")),
    Case("estimate-model-unknown-name", "estimate.py", tone_with("-m", "nosuchmodel"),
         (r"nosuchmodel", r"not a shipped model \(default\)", r"path of a train\.py checkpoint")),
    Case("estimate-export-format-unknown", "estimate.py", tone_with("-e", "csv,mp4"),
         (r"--export-format", r"'mp4'", r"choose from csv, npz, png, wav")),
    Case("estimate-device-unavailable", "estimate.py", tone_with("--device", "cuda:99"),
         (r"--device", r"cuda:99", r"(CUDA is not available|CUDA device)")),
    Case("estimate-audio-garbage", "estimate.py",
         lambda w, ws: ["-m", good_checkpoint(w, ws), str(w.garbage_wav), "-o",
                        str(ws / "results")],
         (r"garbage\.wav", r"not a readable audio file")),
    Case("estimate-audio-missing", "estimate.py",
         lambda w, ws: [str(ws / "absent.wav"), "-o", str(ws / "results")],
         (r"absent\.wav", r"audio file not found")),
    # the earlier CHECKPOINT AUDIO form: its deprecation note is a log line
    Case("estimate-old-form-audio-garbage", "estimate.py",
         lambda w, ws: [good_checkpoint(w, ws), str(w.garbage_wav), "--out", str(ws / "results")],
         (r"garbage\.wav", r"not a readable audio file")),
    Case("estimate-checkpoint-among-the-audio", "estimate.py",
         lambda w, ws: [str(w.tone_wav), good_checkpoint(w, ws)],
         (r"last\.ckpt", r"choose the model with -m/--model")),
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
