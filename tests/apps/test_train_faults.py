"""Faults lose nothing: kill -9 during training or evaluation, a failing checkpoint write,
non-finite losses and gradients, two processes creating the same data file.

Every test drives the real entry points as subprocesses on CPU with one thread, so that a run is
bit-for-bit repeatable: the oracle for "resume loses nothing" is an uninterrupted run of the
same command, compared tensor by tensor (weights and Adam moments) and metric by metric.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
import yaml
from helpers.entrypoints import (
    REPO,
    error_line_problems,
    run_entry_point,
    start_entry_point,
    start_python,
    temporary_files,
    tree_digest,
)

from sotddsp.model import cli as experiment_cli

SEED = 3
EXPERIMENT = "SOT-2048"


def train_args(data: Path, root: Path, *extra: str) -> list[str]:
    """train.py's arguments on the debug preset: batches of 8, 2 training batches an epoch (so an
    epoch is 2 steps), validation (1 batch) every epoch, no figures, no progress bar."""
    return [
        "--config",
        str(REPO / "paper-experiments" / f"{EXPERIMENT}.yaml"),
        "--config",
        str(REPO / "paper-experiments" / "presets" / "debug.yaml"),
        "--data.init_args.data_path",
        str(data),
        "--checkpoint_root",
        str(root),
        "--seed_everything",
        str(SEED),
        "--trainer.enable_progress_bar",
        "false",
        "--model.n_plot_examples",
        "0",
        *extra,
    ]


def run_dir(root: Path) -> Path:
    return root / EXPERIMENT / f"{EXPERIMENT}-{SEED}"


def checkpoint_epoch(path: Path) -> int | None:
    """The epoch stored in a checkpoint, None while it does not exist (it is written atomically,
    so an existing file is always complete)."""
    if not path.is_file():
        return None
    return int(torch.load(path, map_location="cpu", weights_only=True)["epoch"])


def start(prog: str, args: list[str], log: Path) -> subprocess.Popen:
    """Start an entry point in the repository, its stdout discarded and its stderr in ``log``."""
    return start_entry_point(prog, args, stdout=subprocess.DEVNULL, stderr=log.open("w"))


def kill_when(process: subprocess.Popen, ready: Callable[[], bool], timeout: float = 240) -> None:
    """SIGKILL ``process`` as soon as ``ready()`` holds; fail if it ended or timed out first."""
    deadline = time.monotonic() + timeout
    while not ready():
        assert process.poll() is None, (
            f"the process ended (status {process.returncode}) before the kill"
        )
        assert time.monotonic() < deadline, "timed out waiting for the kill point"
        time.sleep(0.05)
    assert process.poll() is None, "the process ended before the kill"
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL


def assert_same_tensors(a: object, b: object, where: str = "") -> None:
    """Exact equality of nested dicts / lists of tensors and plain values."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), where
        for key in a:
            assert_same_tensors(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, (list, tuple)):
        assert isinstance(b, (list, tuple)) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same_tensors(x, y, f"{where}[{i}]")
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


# ---------------------------------------------------------------------------------------------
# kill -9 during training
# ---------------------------------------------------------------------------------------------


def test_kill_9_during_training_then_rerun_equals_an_uninterrupted_run(
    tiny_data_path: Path, tmp_path: Path
) -> None:
    """6 epochs x 2 steps, lr 3e-3 (so that the best epoch moves). The interrupted run is killed
    (SIGKILL) right after last.ckpt of epoch 1 exists, resumed, killed again after epoch 3,
    resumed to the end. Final weights, Adam state, best checkpoint and test metrics must equal
    those of an uninterrupted run of the same command, exactly."""
    extra = ("--trainer.max_steps", "12", "--model.optimizer.init_args.lr", "3e-3")
    whole, broken = tmp_path / "whole", tmp_path / "broken"
    uninterrupted = start(
        "train.py", train_args(tiny_data_path, whole, *extra), tmp_path / "whole.log"
    )
    last = run_dir(broken) / "checkpoints" / "last.ckpt"
    try:
        first = start(
            "train.py", train_args(tiny_data_path, broken, *extra), tmp_path / "first.log"
        )
        kill_when(first, lambda: (checkpoint_epoch(last) or 0) >= 1)
        epoch_at_first_kill = checkpoint_epoch(last)
        second = start(
            "train.py", train_args(tiny_data_path, broken, *extra), tmp_path / "second.log"
        )
        kill_when(second, lambda: (checkpoint_epoch(last) or 0) >= 3)
        assert checkpoint_epoch(last) > epoch_at_first_kill  # the resumed run went on
        final = run_entry_point("train.py", train_args(tiny_data_path, broken, *extra), timeout=300)
        assert final.returncode == 0, final.stderr[-2000:]
    finally:
        assert uninterrupted.wait(timeout=300) == 0, (tmp_path / "whole.log").read_text()[-2000:]
    assert f"train: resuming from {last}" in (tmp_path / "second.log").read_text()
    assert f"train: resuming from {last}" in final.stderr

    a, b = run_dir(whole), run_dir(broken)
    metrics_whole = json.loads((a / "test_metrics.json").read_text())
    assert json.loads((b / "test_metrics.json").read_text()) == metrics_whole
    assert (
        sorted(p.name for p in (a / "checkpoints").iterdir())
        == sorted(p.name for p in (b / "checkpoints").iterdir())
        == [metrics_whole["checkpoint"], "last.ckpt"]
    )
    for name in ("last.ckpt", metrics_whole["checkpoint"]):
        x = torch.load(a / "checkpoints" / name, map_location="cpu", weights_only=True)
        y = torch.load(b / "checkpoints" / name, map_location="cpu", weights_only=True)
        assert (x["epoch"], x["global_step"]) == (y["epoch"], y["global_step"])
        assert_same_tensors(x["state_dict"], y["state_dict"], f"{name} state_dict")
        assert_same_tensors(x["optimizer_states"], y["optimizer_states"], f"{name} optimizer")
        if name == "last.ckpt":
            assert (x["epoch"], x["global_step"]) == (5, 12)
    assert temporary_files(b) == []


# ---------------------------------------------------------------------------------------------
# atomic checkpoint writes
# ---------------------------------------------------------------------------------------------


def test_trainer_writes_checkpoints_through_atomic_io(tiny_data_path: Path, tmp_path: Path) -> None:
    from sotddsp.model.callbacks import AtomicCheckpointIO, EpochEndCheckpoint

    cli = experiment_cli.build_cli(train_args(tiny_data_path, tmp_path))
    assert isinstance(cli.trainer.strategy.checkpoint_io, AtomicCheckpointIO)
    assert isinstance(cli.trainer.checkpoint_callback, EpochEndCheckpoint)
    assert cli.trainer.checkpoint_callback.save_last


def test_failing_checkpoint_write_keeps_the_previous_file(tmp_path: Path, monkeypatch) -> None:
    """A write that fails (disk full at fsync) leaves the previous checkpoint byte-identical,
    no temporary file, and an OSError that names the checkpoint."""
    from sotddsp.model.callbacks import AtomicCheckpointIO

    path = tmp_path / "last.ckpt"
    io = AtomicCheckpointIO()
    io.save_checkpoint({"state_dict": {"w": torch.arange(1000.0)}, "epoch": 1}, path)
    before = path.read_bytes()

    def disk_full(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", disk_full)
    with pytest.raises(OSError) as info:
        io.save_checkpoint({"state_dict": {"w": torch.zeros(10**6)}, "epoch": 2}, path)
    assert info.value.errno == errno.ENOSPC and info.value.filename == str(path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.ckpt"]


REWRITER = """
import sys, torch
from sotddsp.model.callbacks import AtomicCheckpointIO
io, path = AtomicCheckpointIO(), sys.argv[1]
for i in range(1, 10**6):
    io.save_checkpoint({"state_dict": {"w": torch.full((4_000_000,), float(i))}, "epoch": i}, path)
    print(i, flush=True)
"""


def test_a_kill_at_any_moment_of_checkpoint_writes_leaves_a_whole_checkpoint(
    tmp_path: Path,
) -> None:
    """A process rewrites a 16 MB checkpoint in a loop. It is frozen (SIGSTOP) at 20 moments,
    which leaves the files exactly as a kill at that moment would, and finally SIGKILLed: each
    time the checkpoint loads and is one whole save. A frozen moment with a temporary file
    beside it (a save in progress) must occur, or the test proved nothing."""
    path = tmp_path / "last.ckpt"
    writer = start_python(REWRITER, [str(path)], stdout=subprocess.PIPE, text=True)
    try:
        assert writer.stdout.readline().strip() == "1"  # imports done, one save completed
        mid_write = 0
        for delay in (0.003, 0.011, 0.017, 0.023, 0.031, 0.037, 0.043, 0.053, 0.061, 0.071) * 2:
            time.sleep(delay)
            writer.send_signal(signal.SIGSTOP)
            try:
                mid_write += bool(temporary_files(tmp_path))
                saved = torch.load(path, map_location="cpu", weights_only=True)
                w = saved["state_dict"]["w"]
                assert w.shape == (4_000_000,) and bool((w == float(saved["epoch"])).all())
            finally:
                writer.send_signal(signal.SIGCONT)
        assert mid_write > 0, "never froze during a save"
    finally:
        writer.send_signal(signal.SIGKILL)
        writer.wait()
    saved = torch.load(path, map_location="cpu", weights_only=True)
    assert bool((saved["state_dict"]["w"] == float(saved["epoch"])).all())


# ---------------------------------------------------------------------------------------------
# non-finite losses and gradients
# ---------------------------------------------------------------------------------------------


def _loss_config(
    tmp_path: Path, first_bad_call: int, every: int, kind: str, max_nonfinite_steps: int
) -> Path:
    path = tmp_path / f"nonfinite-{kind}.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "model": {
                    "loss": {
                        "class_path": "tests.helpers.nan_loss.NonFiniteLoss",
                        "init_args": {
                            "first_bad_call": first_bad_call,
                            "every": every,
                            "kind": kind,
                        },
                    },
                    "max_nonfinite_steps": max_nonfinite_steps,
                }
            }
        )
    )
    return path


def test_nonfinite_losses_are_skipped_and_counted(tiny_data_path: Path, tmp_path: Path) -> None:
    """NaN loss on training calls 1, 4, 7 (of 8): those steps are skipped (no optimizer step),
    counted, and training reaches max_steps 6 with finite weights."""
    config = _loss_config(tmp_path, first_bad_call=1, every=3, kind="loss", max_nonfinite_steps=100)
    result = run_entry_point(
        "train.py",
        train_args(tiny_data_path, tmp_path, "--config", str(config), "--trainer.max_steps", "6"),
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    warnings = [line for line in result.stderr.splitlines() if "non-finite loss at step" in line]
    assert len(warnings) == 2, warnings  # calls 1 and 4; call 7 is never made (6 good steps)
    state = torch.load(
        run_dir(tmp_path) / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True
    )
    assert state["global_step"] == 6 and state["nonfinite_steps"] == 2
    assert all(torch.isfinite(t).all() for t in state["state_dict"].values())


def test_nonfinite_gradients_past_the_limit_stop_with_one_line_and_keep_the_last_checkpoint(
    tiny_data_path: Path, tmp_path: Path
) -> None:
    """NaN gradients from training call 2 on, limit 1: call 2 is skipped, call 3 stops training
    with exit 2 and one line; last.ckpt of epoch 0 (steps 0-1, before any NaN) is kept whole."""
    config = _loss_config(
        tmp_path, first_bad_call=2, every=1, kind="gradient", max_nonfinite_steps=1
    )
    result = run_entry_point(
        "train.py",
        train_args(tiny_data_path, tmp_path, "--config", str(config), "--trainer.max_steps", "6"),
        timeout=300,
    )
    assert result.returncode == 2
    line, problems = error_line_problems(result.stderr, "train.py")
    assert problems == [], result.stderr[-3000:]
    assert "non-finite gradient" in line and "last good checkpoint is kept" in line
    checkpoints = run_dir(tmp_path) / "checkpoints"
    last = torch.load(checkpoints / "last.ckpt", map_location="cpu", weights_only=True)
    assert (last["epoch"], last["global_step"], last["nonfinite_steps"]) == (0, 2, 0)
    best = torch.load(
        next(checkpoints.glob("best-lsd-*.ckpt")), map_location="cpu", weights_only=True
    )
    assert_same_tensors(last["state_dict"], best["state_dict"], "state_dict")
    assert all(torch.isfinite(t).all() for t in last["state_dict"].values())
    assert not (run_dir(tmp_path) / "done").exists() and temporary_files(tmp_path) == []


# ---------------------------------------------------------------------------------------------
# kill -9 during eval_paper.py
# ---------------------------------------------------------------------------------------------


def test_kill_9_during_eval_paper_then_rerun_finishes_from_its_cache(
    tiny_data_path: Path, tmp_path: Path
) -> None:
    """Two runs to evaluate; eval_paper.py is killed once the first result is cached. The rerun
    evaluates only the second, takes the first from the cache (its record byte-identical) and
    writes a table with both."""
    if not (REPO / "eval_paper.py").is_file():
        pytest.skip("eval_paper.py does not exist yet")
    root = tmp_path / "checkpoints"
    trained = run_entry_point(
        "train.py", train_args(tiny_data_path, root, "--trainer.max_steps", "2"), timeout=300
    )
    assert trained.returncode == 0, trained.stderr[-2000:]
    first = run_dir(root)
    second = first.with_name(f"{EXPERIMENT}-{SEED + 1}")
    shutil.copytree(first, second)
    config = yaml.safe_load((second / "train_config.yaml").read_text())
    config["seed_everything"] = SEED + 1  # another config file: another cache key
    (second / "train_config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))

    out = tmp_path / "results"
    eval_args = [
        "--root",
        str(root),
        "--out",
        str(out),
        "--no-baseline",
        "--device",
        "cpu",
    ]
    cache = out / "cache"
    process = start("eval_paper.py", eval_args, tmp_path / "eval.log")
    kill_when(process, lambda: cache.is_dir() and any(cache.glob("*.json")))
    cached = tree_digest(cache)
    assert len(cached) == 1 and not (out / "runs.csv").exists()

    rerun = run_entry_point("eval_paper.py", eval_args, timeout=300)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert "1 run(s) evaluated, 1 from the cache, 0 skipped" in rerun.stderr
    after = tree_digest(cache)
    assert {k: after[k] for k in cached} == cached and len(after) == 2
    runs = (out / "runs.csv").read_text()
    assert f"{EXPERIMENT}-{SEED}," in runs and f"{EXPERIMENT}-{SEED + 1}," in runs
    assert temporary_files(out) == []


# ---------------------------------------------------------------------------------------------
# two processes, one missing data file
# ---------------------------------------------------------------------------------------------


def test_two_trainings_on_a_missing_data_file_generate_it_once(tmp_path: Path) -> None:
    """Two train.py started together on the same missing data file: one generates it (and says
    so in one log line), the other waits and loads it; both train; one valid file remains."""
    from sotddsp.data.files import load_dataset
    from sotddsp.data.synthetic import SynthSettings, generate_dataset

    data = tmp_path / "data" / "40_1950_4096_04_1_400_8_1_harmonic.pth"  # about 1 s to generate
    logs = [tmp_path / "a.log", tmp_path / "b.log"]
    processes = [
        start("train.py", train_args(data, tmp_path / name, "--trainer.fast_dev_run", "1"), log)
        for name, log in zip(("a", "b"), logs)
    ]
    assert [p.wait(timeout=300) for p in processes] == [0, 0], [
        log.read_text()[-2000:] for log in logs
    ]
    said = [
        [
            line
            for line in log.read_text().splitlines()
            if line.startswith("synthetic_data: ") and "not found: generating it" in line
        ]
        for log in logs
    ]
    assert sorted(len(lines) for lines in said) == [0, 1], said
    # no temporary file; the lock file may remain when the waiter opened it after the writer
    # removed it (harmless: it is only ever locked, never read)
    assert sorted(p.name for p in data.parent.iterdir()) in (
        [data.name],
        [data.name, data.name + ".lock"],
    )
    expected = generate_dataset(SynthSettings(n_examples=400))
    loaded = load_dataset(data)
    for split in ("train", "val", "test"):
        assert torch.equal(loaded[f"{split}_tensors"], expected[f"{split}_tensors"])
