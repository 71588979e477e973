"""Bad input to train.py (``sotddsp.apps.train``): configuration, data, resume and where results
go; each case ends with one clear line and damages nothing (tests/helpers/bad_input.py)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from helpers.bad_input import (
    Case,
    Outcomes,
    World,
    check_case,
    check_shared_inputs,
    last_checkpoint,
    run_cases,
    train_args,
    truncate,
)

FSYNC_ENOSPC = (
    "import errno, os, runpy, sys\n"
    "def full(fd):\n"
    "    raise OSError(errno.ENOSPC, 'No space left on device')\n"
    "os.fsync = full\n"
    "sys.argv = sys.argv[1:]\n"
    "runpy.run_path(sys.argv[0], run_name='__main__')\n"
)

# Another train.py of the same run is still training it: this process holds the run's lock, as
# that one would, and then runs train.py, whose own attempt at the lock (another open file) fails.
RUN_HELD_ELSEWHERE = (
    "import runpy, sys\n"
    "from sotddsp.core.run_lock import hold_run_lock\n"
    "with hold_run_lock('run/SOT-2048/SOT-2048-3'):\n"
    "    sys.argv = sys.argv[1:]\n"
    "    runpy.run_path(sys.argv[0], run_name='__main__')\n"
)

T = "train.py"
CASES: list[Case] = [
    # ---- configuration
    Case(
        "yaml-malformed",
        T,
        lambda w, ws: train_args(w, ws, "--config", str(w.malformed_yaml)),
        (r"malformed\.yaml", r"invalid YAML", r"line 3", r"fix the file"),
    ),
    Case(
        "config-file-missing",
        T,
        lambda w, ws: train_args(w, ws, "--config", str(ws / "nope.yaml")),
        (r"nope\.yaml", r"does not exist", r"check the path"),
    ),
    Case(
        "class-path-unknown",
        T,
        lambda w, ws: train_args(w, ws, "--model.loss.class_path", "sotddsp.dsp.losses.NoSuchLoss"),
        (r"model\.loss", r"sotddsp\.dsp\.losses\.NoSuchLoss", r"check its spelling"),
    ),
    Case(
        "option-unknown",
        T,
        lambda w, ws: train_args(w, ws, "--trainer.max_step", "5"),
        (r"unrecognized arguments: --trainer\.max_step",),
    ),
    Case(
        "learning-rate-negative",
        T,
        lambda w, ws: train_args(w, ws, "--model.optimizer.init_args.lr", "-0.001"),
        (r"model\.optimizer", r"learning rate: -0\.001", r"--model\.optimizer\.init_args\.lr"),
    ),
    Case(
        "sot-p-below-1",
        T,
        lambda w, ws: train_args(w, ws, "--model.loss.init_args.terms.sot.init_args.p", "0.5"),
        (r"\bp must be", r">= 1", r"0\.5"),
    ),
    Case(
        "temperature-zero",
        T,
        lambda w, ws: train_args(w, ws, "--model.temperature", "0"),
        (r"^train\.py: error: model\.temperature: temperature must be > 0", r"got 0\.0",
         r"paper uses 0\.1"),
    ),
    Case(
        "batch-size-zero",
        T,
        lambda w, ws: train_args(w, ws, "--data.init_args.batch_size", "0"),
        ((r"^train\.py: error: data\.init_args\.batch_size: batch_size must be a positive "
         r"integer, got 0$"),),
    ),
    Case(
        "kernel-size-even",
        T,
        lambda w, ws: train_args(w, ws, "--model.encoder.init_args.kernel_size", "4"),
        ((r"model\.encoder\.init_args\.kernel_size: kernel_size must be an odd positive "
         r"integer, got 4"),),
    ),
    *[
        Case(
            f"n-fft-{label}",
            T,
            lambda w, ws, value=value: train_args(
                w, ws, "--model.loss.init_args.terms.sot.init_args.n_fft", value
            ),
            says,
        )
        for label, value, says in (
            ("zero", "0", ((r"model\.loss\.init_args\.terms\.sot\.init_args\.n_fft: n_fft must "
                           r"be a positive integer"), r"got 0")),
            ("negative", "-5", (r"n_fft must be a positive integer", r"got -5")),
            ("text", "abc", ((r"model\.loss\.init_args\.terms\.sot\.init_args\.n_fft: expected "
                             r"int"), r"got abc")),
            ("fraction", "2.5", ((r"model\.loss\.init_args\.terms\.sot\.init_args\.n_fft: "
                                 r"expected int"), r"got 2\.5")),
        )
    ],
    Case(
        "window-unknown",
        T,
        lambda w, ws: train_args(w, ws, "--model.loss.init_args.terms.sot.init_args.window", "hamm"),
        (r"window must be one of", r"'hann'", r"got 'hamm'"),
    ),
    Case(
        "framing-unknown",
        T,
        lambda w, ws: train_args(w, ws, "--model.loss.init_args.terms.sot.init_args.framing", "end"),
        (r"model\.loss\.init_args\.terms\.sot\.init_args\.framing: expected one of",
         r"'padded', 'full', 'centered'", r"got end"),
    ),
    Case(
        "seed-not-integer",
        T,
        lambda w, ws: train_args(w, ws, "--seed_everything", "abc"),
        (r"seed_everything", r"expected bool or int", r"got abc"),
    ),
    # ---- data
    Case(
        "data-missing-unwritable-proc",
        T,
        lambda w, ws: train_args(w, ws, "--data.init_args.data_path", "/proc/nope/x.pth"),
        (r"cannot create /proc/nope/x\.pth", r"synthetic_data\.py --out"),
    ),
    Case(
        "data-truncated",
        T,
        lambda w, ws: train_args(w, ws, "--data.init_args.data_path", str(w.truncated_data_pth)),
        (r"truncated_data\.pth", r"not a readable torch file", r"delete it and regenerate"),
    ),
    Case(
        "data-not-torch",
        T,
        lambda w, ws: train_args(w, ws, "--data.init_args.data_path", str(w.text_data_pth)),
        (r"text_data\.pth", r"not a readable torch file", r"regenerate"),
    ),
    Case(
        "data-wrong-format",
        T,
        lambda w, ws: train_args(w, ws, "--data.init_args.data_path", str(w.list_data_pth)),
        (r"list_data\.pth", r"wrong format", r"holds a list", r"regenerate"),
    ),
    Case(
        "data-nan",
        T,
        lambda w, ws: train_args(w, ws, "--data.init_args.data_path", str(w.nan_data_pth)),
        (r"nan_data\.pth", r"train_tensors holds NaN or inf", r"regenerate"),
    ),
    Case(
        "data-inf",
        T,
        lambda w, ws: train_args(w, ws, "--data.init_args.data_path", str(w.inf_data_pth)),
        (r"inf_data\.pth", r"val_tensors holds NaN or inf", r"regenerate"),
    ),
    Case(
        "data-sample-rate-8000",
        T,
        lambda w, ws: train_args(w, ws, "--data.init_args.data_path", str(w.rate_8000_data_pth)),
        (r"8000 Hz", r"16000", r"sample_rate"),
    ),
    Case(
        "data-shorter-than-fft",
        T,
        lambda w, ws: train_args(w, ws, "--data.init_args.data_path", str(w.short_data_pth)),
        (r"at least 2048 samples", r"got 1024", r"shorter FFT sizes or longer signals"),
    ),
    # ---- resume
    Case(
        "resume-truncated-last-ckpt",
        T,
        lambda w, ws: train_args(w, ws),
        (r"last\.ckpt: not a readable checkpoint", r"delete it or pass --resume never"),
        prepare=lambda w, ws: truncate(last_checkpoint(ws)),
    ),
    Case(
        "resume-last-ckpt-of-another-model",
        T,
        lambda w, ws: train_args(w, ws),
        (
            r"last\.ckpt: trained with another model",
            r"shape",
            r"train_config\.yaml",
            r"--resume never",
        ),
        prepare=lambda w, ws: shutil.copy(w.other_model_ckpt, last_checkpoint(ws)),
    ),
    Case(
        "resume-with-another-configuration",
        T,
        lambda w, ws: train_args(w, ws, "--model.optimizer.init_args.lr", "0.001"),
        (
            r"SOT-2048-3 holds a run of another configuration",
            r"model\.optimizer\.init_args\.lr was 0\.0001, now 0\.001",
            r"another --checkpoint_root",
            r"--resume never",
        ),
    ),
    Case(
        "run-being-trained-by-another-process",
        T,
        lambda w, ws: train_args(w, ws),
        (
            r"SOT-2048-3: another process is training this run",
            r"pid \d+ on \S+ since",
            r"train\.lock",
            r"wait for it to finish, or stop it",
        ),
        wrapper=RUN_HELD_ELSEWHERE,
    ),
    # ---- where results go
    Case(
        "checkpoint-root-unwritable",
        T,
        lambda w, ws: train_args(w, ws, root=Path("/sys/nope")),
        (r"permission denied", r"/sys/nope", r"choose a directory you can write to"),
    ),
    Case(
        "disk-full-injected",
        T,
        lambda w, ws: train_args(w, ws),
        (r"no space left on the device", r"train_config\.yaml", r"free some space"),
        wrapper=FSYNC_ENOSPC,
    ),
    Case(
        "disk-full-tmpfs",
        T,
        lambda w, ws: train_args(w, ws),
        (r"no space left on the device", r"train_config\.yaml", r"free some space"),
        mount="full",
    ),
    Case(
        "read-only-tmpfs",
        T,
        lambda w, ws: train_args(w, ws),
        (r"read-only", r"choose a writable output directory"),
        mount="readonly",
    ),
]


@pytest.fixture(scope="module")
def outcomes(bad_input_world: World, tmp_path_factory: pytest.TempPathFactory) -> Outcomes:
    return run_cases(CASES, bad_input_world, tmp_path_factory.mktemp("train_bad_input"))


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_bad_input_gets_one_clear_line_and_damages_nothing(case: Case, outcomes: Outcomes) -> None:
    check_case(case, outcomes)


def test_inputs_shared_by_the_cases_are_unchanged(
    bad_input_world: World, outcomes: Outcomes
) -> None:
    check_shared_inputs(bad_input_world, outcomes)
