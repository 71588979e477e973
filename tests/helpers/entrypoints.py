"""Helpers for tests that run the real entry points (train.py, eval_paper.py, sweep.py, ...) and
``python -c`` snippets as subprocesses: one way to run or start them, the environment they run
in, the one-line error rule, and byte-level digests of file trees.

Running: ``run_entry_point`` / ``run_python`` wait for the process (``timeout``, default 300 s,
None for none) and capture its output (text); ``start_entry_point`` / ``start_python`` return the
``Popen`` (for tests that kill, freeze or read a process while it runs). All run
``sys.executable`` in ``cwd`` (default: the repository) with ``env`` (default: ``environment()``).
System tools (mount, scancel, squeue, ...) are not entry points: tests run those themselves.

The one-line error rule (``error_line_problems``), applied to a failed run's stderr:
1. no line contains "Traceback";
2. after dropping the harmless lines below, exactly one non-empty line is left, it is the last
   non-empty line of stderr, and it starts with "<prog>: error: " followed by a message;
3. that line is at most 400 characters.
Harmless lines: Lightning's INFO lines (seed, accelerators, the Trainer's notes, checkpoint
restores), warnings printed from third-party code ("<...>/site-packages/<file>.py:<line>: ..."),
the log lines of our own modules ("train: ...", "synthetic_data: ...", "eval_paper: ...", never
"<name>: error: ..."), and hydra's time-stamped log lines.
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import IO

from sotddsp.core.run_layout import RUN_LOCK_FILE

REPO = Path(__file__).resolve().parents[2]
PYTHON = sys.executable

HARMLESS_LINES = tuple(
    re.compile(pattern)
    for pattern in (
        r"^Seed set to \d+$",
        r"^(GPU|TPU|HPU|IPU) available: ",
        r"^💡 Tip: ",
        r"^`Trainer\(.*\)` was configured so ",
        r"^`Trainer\.fit` stopped: ",
        r"^(Restoring states|Restored all states|Loaded model weights) from the checkpoint",
        r"^\S*/site-packages/\S+\.py:\d+: ",
        (r"^(train|synthetic_data|data_files|datamodule|eval_paper|checkpoints|original_format"
        r"|sweep|estimate|real_data|sotddsp\.[\w.]+): (?!error:)"),
        r"^\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+\]\[[\w.]+\]\[(INFO|WARNING)\] - ",
    )
)


def tiny_budget(data: Path) -> list[str]:
    """train.py options, appended last, that shrink any run to one training step on ``data``
    (a tiny data set), one validation and one test batch, no logger, figures or progress bar."""
    return [
        "--data.init_args.data_path", str(data),
        "--trainer.max_steps", "1",
        "--trainer.limit_train_batches", "1",
        "--trainer.limit_val_batches", "1",
        "--trainer.limit_test_batches", "1",
        "--trainer.check_val_every_n_epoch", "1",
        "--trainer.num_sanity_val_steps", "0",
        "--trainer.accelerator", "cpu",
        "--trainer.logger", "false",
        "--trainer.enable_progress_bar", "false",
        "--model.n_plot_examples", "0",
    ]


def run_workspace(directory: Path) -> Path:
    """``directory`` made a place to run the README's and GUIDE's commands from, as a user does
    from a checkout: ``paper-experiments/`` (a link to the repository's) and nothing else, so
    their relative run roots (``checkpoints/...``) land inside it."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "paper-experiments").symlink_to(REPO / "paper-experiments")
    return directory


def environment(**extra: str) -> dict[str, str]:
    """The subprocesses' environment: W&B and progress bars off, one thread (so that runs are
    bit-for-bit repeatable and two runs in parallel do not oversubscribe 2 cores)."""
    env = dict(os.environ)
    env.update(
        {
            "WANDB_MODE": "disabled",
            "WANDB_SILENT": "true",
            "TQDM_DISABLE": "1",
            "OMP_NUM_THREADS": "1",
            "MKL_NUM_THREADS": "1",
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.update(extra)
    return env


# Where a started process's stdout or stderr goes: None (inherited), subprocess.PIPE, DEVNULL,
# STDOUT (stderr only) or an open file.
Stream = int | IO[str] | IO[bytes] | None


def _run(
    command: list[str],
    cwd: Path | None,
    timeout: float | None,
    env: dict[str, str] | None,
    check: bool,
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command,
        cwd=cwd or REPO,
        env=environment() if env is None else env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=check,
    )


def _start(
    command: list[str],
    cwd: Path | None,
    env: dict[str, str] | None,
    stdout: Stream,
    stderr: Stream,
    text: bool,
) -> subprocess.Popen:
    return subprocess.Popen(
        command,
        cwd=cwd or REPO,
        env=environment() if env is None else env,
        stdout=stdout,
        stderr=stderr,
        text=text,
    )


def run_entry_point(
    prog: str,
    args: Sequence[str] = (),
    *,
    cwd: Path | None = None,
    timeout: float | None = 300,
    env: dict[str, str] | None = None,
    check: bool = False,
) -> subprocess.CompletedProcess[str]:
    """Run ``python <repo>/<prog> <args>`` to its end and capture its output (text)."""
    return _run([PYTHON, str(REPO / prog), *args], cwd, timeout, env, check)


def run_python(
    code: str,
    args: Sequence[str] = (),
    *,
    cwd: Path | None = None,
    timeout: float | None = 300,
    env: dict[str, str] | None = None,
    check: bool = False,
) -> subprocess.CompletedProcess[str]:
    """Run ``python -c <code> <args>`` (the snippet's ``sys.argv[1:]``) to its end and capture
    its output (text)."""
    return _run([PYTHON, "-c", code, *args], cwd, timeout, env, check)


def start_entry_point(
    prog: str,
    args: Sequence[str] = (),
    *,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    stdout: Stream = None,
    stderr: Stream = None,
    text: bool = False,
) -> subprocess.Popen:
    """Start ``python <repo>/<prog> <args>``; stdout and stderr go where Popen is told."""
    return _start([PYTHON, str(REPO / prog), *args], cwd, env, stdout, stderr, text)


def start_python(
    code: str,
    args: Sequence[str] = (),
    *,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    stdout: Stream = None,
    stderr: Stream = None,
    text: bool = False,
) -> subprocess.Popen:
    """Start ``python -c <code> <args>``; stdout and stderr go where Popen is told."""
    return _start([PYTHON, "-c", code, *args], cwd, env, stdout, stderr, text)


def stderr_lines(stderr: str) -> list[str]:
    """Non-empty lines of stderr (carriage-return updates split too), stripped on the right."""
    return [line.rstrip() for line in re.split(r"[\r\n]+", stderr) if line.strip()]


def error_line_problems(stderr: str, prog: str) -> tuple[str | None, list[str]]:
    """(the error line or None, the list of violations of the one-line error rule)."""
    lines = stderr_lines(stderr)
    problems = []
    if any("Traceback" in line for line in lines):
        problems.append("a traceback was printed")
    remaining = [line for line in lines if not any(p.search(line) for p in HARMLESS_LINES)]
    if len(remaining) != 1:
        problems.append(f"{len(remaining)} non-harmless stderr lines, expected 1: {remaining[:6]}")
    if not lines:
        return None, problems + ["stderr is empty"]
    last = lines[-1]
    prefix = f"{prog}: error: "
    if not last.startswith(prefix) or len(last) <= len(prefix) + 5:
        problems.append(f"the last stderr line does not start with {prefix!r}: {last!r}")
        return None, problems
    if len(last) > 400:
        problems.append(f"the error line has {len(last)} characters (> 400)")
    return last, problems


def tree_digest(*roots: Path) -> dict[str, str]:
    """sha256 of every file under ``roots`` (files or directories), keyed by path; symlinks by
    target. Missing roots are recorded as missing. A run's lock file (``train.lock``) is left
    out: not a result but the description of the process that last held the run, rewritten by
    each train.py that gets the run, refused or not (tests/core/test_run_lock.py checks that a
    process refused by the lock writes nothing, that file included)."""
    digests: dict[str, str] = {}
    for root in roots:
        if not root.exists():
            digests[str(root)] = "<missing>"
            continue
        files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
        for path in files:
            if path.name != RUN_LOCK_FILE:
                digests[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest()
    return digests


def temporary_files(root: Path) -> list[Path]:
    """Leftover temporary files of the atomic writers (``.<name>.<random>.tmp``) under root."""
    return sorted(p for p in root.rglob(".*.tmp")) if root.is_dir() else []
