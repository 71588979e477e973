"""The bad-input harness: every entry point, run as a subprocess on a bad input, must end with
one line on stderr that names the problem and the fix, a non-zero exit status, no Python
traceback, and every file that existed before byte-identical afterwards (``tree_digest``: all
but the run's lock file, which says which process last held the run). The cases live beside
the commands they concern (tests/apps/test_*_bad_input.py); this module builds their shared
world and runs them.

The one-line rule is ``entrypoints.error_line_problems`` (harmless Lightning / hydra / logging
lines filtered by an explicit allow-list). Each case also lists regular expressions the error
line must match: the problem (the argument or file, the value) and the fix.

Each case runs in its own workspace holding a resumable run of the same experiment and seed
(last.ckpt, best checkpoint, train_config.yaml, no done marker) and a previous results file;
their sha256 digests are compared before and after. The cases run two or three at a time.

Unwritable places: the tests run as root, which ignores file modes, so chmod cannot make a
directory unwritable. /sys (EPERM for root: sysfs creates no files) and /proc (ENOENT) are used
instead. A full disk and a read-only file system are real tmpfs mounts when mounting is
permitted (root with CAP_SYS_ADMIN); otherwise those cases are skipped, and the full disk is
still covered by injecting ENOSPC into os.fsync in the real train.py (runpy).
"""

from __future__ import annotations

import math
import os
import re
import shutil
import subprocess
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from helpers.entrypoints import (
    REPO,
    error_line_problems,
    run_entry_point,
    run_python,
    temporary_files,
    tree_digest,
)

SEED = 3
EXPERIMENT = "SOT-2048"
PAPER = REPO / "paper-experiments"  # the experiment configs, as a checkout reaches them


@dataclass(frozen=True)
class World:
    """Files shared (read only) by all cases; built once."""

    root: Path
    data: Path  # a good 96-example data set (64/16/16), 16 kHz, 4096 samples
    good_run_root: Path  # <root>/SOT-2048/SOT-2048-3: a finished debug run of that data
    mount_ok: bool

    def __getattr__(self, name: str) -> Path:
        """The prepared input files by name, extension last: world.tone_wav is inputs/tone.wav."""
        stem, _, extension = name.rpartition("_")
        path = self.root / "inputs" / f"{stem}.{extension}"
        if not stem or not path.exists():
            raise AttributeError(name)
        return path

    @property
    def good_run(self) -> Path:
        return self.good_run_root / EXPERIMENT / f"{EXPERIMENT}-{SEED}"


@dataclass(frozen=True)
class Case:
    """One bad input: the entry point, its arguments (built from the world and the case's
    workspace), what the error line must say, and how to prepare the workspace."""

    name: str
    prog: str
    args: Callable[[World, Path], Sequence[str]]
    says: tuple[str, ...]
    prepare: Callable[[World, Path], None] | None = None
    mount: str | None = None  # None, "full" (no free space) or "readonly": ws/run is a tmpfs
    exit_codes: tuple[int, ...] = (2,)
    wrapper: str | None = None  # runs python -c <wrapper> <repo>/<prog> <args> instead


@dataclass
class Outcome:
    returncode: int
    stdout: str
    stderr: str
    before: dict[str, str]
    after: dict[str, str]
    temporary: list[Path]
    seconds: float
    skipped: str | None = None


# ---------------------------------------------------------------------------------------------
# workspace and world
# ---------------------------------------------------------------------------------------------


def train_args(w: World, ws: Path, *extra: str, root: Path | None = None) -> list[str]:
    """train.py arguments of the workspace's resumable run (same experiment, seed, data) + extra."""
    return [
        "--config",
        str(PAPER / f"{EXPERIMENT}.yaml"),
        "--config",
        str(PAPER / "presets" / "debug.yaml"),
        "--data.init_args.data_path",
        str(w.data),
        "--checkpoint_root",
        str(root or ws / "run"),
        "--seed_everything",
        str(SEED),
        "--trainer.enable_progress_bar",
        "false",
        "--model.n_plot_examples",
        "0",
        "--trainer.max_steps",
        "2",
        *extra,
    ]


def resumable_run(w: World, destination: Path) -> None:
    """A copy of the good run without its done marker and test metrics: train.py resumes it."""
    shutil.copytree(w.good_run_root, destination, dirs_exist_ok=True)
    run = destination / EXPERIMENT / f"{EXPERIMENT}-{SEED}"
    (run / "done").unlink()
    (run / "test_metrics.json").unlink()


def workspace(w: World, ws: Path) -> None:
    ws.mkdir(parents=True)
    resumable_run(w, ws / "run")
    (ws / "results").mkdir()
    (ws / "results" / "table.md").write_text(
        "| experiment | LSD |\n|---|---:|\n| earlier | 1.0 |\n"
    )


def last_checkpoint(ws: Path) -> Path:
    return ws / "run" / EXPERIMENT / f"{EXPERIMENT}-{SEED}" / "checkpoints" / "last.ckpt"


def truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])


def can_mount(probe: Path) -> bool:
    if os.geteuid() != 0 or shutil.which("mount") is None:
        return False
    probe.mkdir(parents=True, exist_ok=True)
    mounted = (
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(probe)], capture_output=True,
            check=False,
        ).returncode
        == 0
    )
    if mounted:
        subprocess.run(["umount", str(probe)], check=True)
    return mounted


def build_world(root: Path, tiny_data_path: Path) -> World:
    from sotddsp.data.files import save_dataset
    from sotddsp.data.synthetic import SynthSettings, generate_dataset

    inputs = root / "inputs"
    inputs.mkdir(parents=True)
    data = inputs / "tiny.pth"
    shutil.copy(tiny_data_path, data)
    good = torch.load(data, map_location="cpu", weights_only=True)

    (inputs / "truncated_data.pth").write_bytes(data.read_bytes()[:100_000])
    (inputs / "text_data.pth").write_text("train_tensors = [0.1, 0.2]\n")
    torch.save([1, 2, 3], inputs / "list_data.pth")
    for name, split, value in (
        ("nan_data.pth", "train", math.nan),
        ("inf_data.pth", "val", math.inf),
    ):
        broken = {
            k: (dict(v) if isinstance(v, dict) else v.clone() if torch.is_tensor(v) else v)
            for k, v in good.items()
        }
        broken[f"{split}_tensors"][3, 100] = value
        torch.save(broken, inputs / name)
    save_dataset(
        generate_dataset(SynthSettings(n_examples=24, split_sizes=(16, 4, 4), sample_rate=8000, f0_max=1000.0)),
        inputs / "rate_8000_data.pth",
    )
    save_dataset(
        generate_dataset(SynthSettings(n_examples=24, split_sizes=(16, 4, 4), n_samples=1024)),
        inputs / "short_data.pth",
    )
    (inputs / "malformed.yaml").write_text("model:\n  temperature: [0.1, 0.2\ntrainer: {}\n")

    import soundfile

    t = np.arange(16000) / 16000
    soundfile.write(
        inputs / "tone.wav", (0.5 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), 16000
    )
    (inputs / "garbage.wav").write_bytes(b"RIFF this is not a wave file" * 10)

    good_root = root / "good"
    world = World(
        root=root, data=data, good_run_root=good_root, mount_ok=can_mount(root / "probe")
    )
    trained = run_entry_point("train.py", train_args(world, root, root=good_root), timeout=300)
    assert trained.returncode == 0, trained.stderr[-3000:]
    state = torch.load(
        world.good_run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True
    )
    state_dict = state["state_dict"]
    name = next(
        k
        for k, v in state_dict.items()
        if k.startswith("encoder.") and v.ndim >= 2 and v.shape[0] > 1
    )
    state_dict[name] = state_dict[name][:-1]  # another model: one output channel fewer
    torch.save(state, inputs / "other_model.ckpt")
    shutil.copy(world.good_run / "checkpoints" / "last.ckpt", inputs / "truncated.ckpt")
    truncate(inputs / "truncated.ckpt")
    return world


# ---------------------------------------------------------------------------------------------
# the cases
# ---------------------------------------------------------------------------------------------


# ---------------------------------------------------------------------------------------------
# running the cases
# ---------------------------------------------------------------------------------------------


def _mount_tmpfs(directory: Path, size: int) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(directory)],
        check=True,
        capture_output=True,
    )


def _pages(directory: Path) -> int:
    return sum(-(-p.stat().st_size // 4096) * 4096 for p in directory.rglob("*") if p.is_file())


def _run_case(case: Case, world: World, ws: Path) -> Outcome:
    if case.mount and not world.mount_ok:
        return Outcome(0, "", "", {}, {}, [], 0.0, skipped="mounting a tmpfs is not permitted here")
    if not (REPO / case.prog).is_file():
        return Outcome(0, "", "", {}, {}, [], 0.0, skipped=f"{case.prog} does not exist yet")
    workspace(world, ws)
    mounted = False
    try:
        if case.mount:
            staging = ws / "staging"
            shutil.move(ws / "run", staging)
            # a full disk: exactly the pages the run occupies; read-only: mounted, filled, remounted
            _mount_tmpfs(ws / "run", _pages(staging) if case.mount == "full" else 8 << 20)
            mounted = True
            shutil.copytree(staging, ws / "run", dirs_exist_ok=True)
            shutil.rmtree(staging)
            if case.mount == "readonly":
                subprocess.run(["mount", "-o", "remount,ro", str(ws / "run")], check=True)
        if case.prepare is not None:
            case.prepare(world, ws)
        before = tree_digest(ws)
        args = case.args(world, ws)
        start = time.monotonic()
        if case.wrapper is None:
            result = run_entry_point(case.prog, args, cwd=ws, timeout=300)
        else:
            result = run_python(case.wrapper, [str(REPO / case.prog), *args], cwd=ws, timeout=300)
        seconds = time.monotonic() - start
        after = tree_digest(ws)
        return Outcome(
            result.returncode,
            result.stdout,
            result.stderr,
            before,
            after,
            temporary_files(ws),
            seconds,
        )
    finally:
        if mounted:
            subprocess.run(["umount", str(ws / "run")], check=False)


@dataclass
class Outcomes:
    cases: dict[str, Outcome]
    shared_before: dict[str, str]  # digests of the world's files before any case ran
    shared_after: dict[str, str]
    extra: Any = None  # what ``also`` returned


def run_cases(
    cases: Sequence[Case], world: World, base: Path,
    also: Callable[[World, Path], Any] | None = None,
) -> Outcomes:
    """Run every case in its workspace under ``base``, 2-3 at a time (they are mostly process
    start-up), and ``also(world, base / "also")`` beside them when given."""
    shared = (world.root / "inputs", world.good_run_root)
    before = tree_digest(*shared)
    workers = min(3, (os.cpu_count() or 1) + 1)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        extra = pool.submit(also, world, base / "also") if also is not None else None
        futures = {
            case.name: pool.submit(_run_case, case, world, base / case.name) for case in cases
        }
        results = {name: future.result() for name, future in futures.items()}
    return Outcomes(results, before, tree_digest(*shared),
                    extra.result() if extra is not None else None)


def check_case(case: Case, outcomes: Outcomes) -> None:
    """The case ended with one clear line (its patterns), its exit status, and changed nothing."""
    outcome = outcomes.cases[case.name]
    if outcome.skipped:
        pytest.skip(outcome.skipped)
    assert outcome.returncode in case.exit_codes, (outcome.returncode, outcome.stderr[-3000:])
    line, problems = error_line_problems(outcome.stderr, case.prog)
    assert problems == [], "\n".join(problems) + "\n--- stderr:\n" + outcome.stderr[-3000:]
    for pattern in case.says:
        assert re.search(pattern, line, flags=re.IGNORECASE), f"{pattern!r} not in {line!r}"
    changed = sorted(k for k in outcome.before if outcome.after.get(k) != outcome.before[k])
    assert changed == [], f"files changed or removed: {changed}"
    assert outcome.temporary == [], f"temporary files left: {outcome.temporary}"


def check_shared_inputs(world: World, outcomes: Outcomes) -> None:
    """The bad files, the data set and the finished run that the cases read stay byte-identical."""
    assert outcomes.shared_after == outcomes.shared_before
    assert {"done", "test_metrics.json", "train_config.yaml"} <= {
        p.name for p in world.good_run.iterdir()
    }
