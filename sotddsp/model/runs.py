"""Trained runs on disk, ours and the paper authors': finding them under a root, reading a
run's config, telling its format and choosing the checkpoint to evaluate.

Runs are ``<root>/<experiment>/<run>/train_config.yaml`` with checkpoints in
``<root>/<experiment>/<run>/checkpoints/*.ckpt`` (run_layout.py; the authors' released runs are
laid out the same way, their configs are told apart and checked by original_format.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml

from sotddsp.core.command_line import one_line
from sotddsp.core.result_tables import SOURCE_ORIGINAL, SOURCE_OURS
from sotddsp.core.run_layout import (
    BEST_CHECKPOINT_GLOB,
    CHECKPOINT_DIR,
    CONFIG_FILE,
    DONE_MARKER,
    LAST_CHECKPOINT,
    best_checkpoints,
    read_curves,
    tested_checkpoint,
)
from sotddsp.model import original_format

__all__ = ["Run", "RunError", "discover_runs", "latest_validation", "read_run", "run_finished",
           "select_checkpoint"]


class RunError(Exception):
    """A run cannot be evaluated (one line): the run is skipped, the table still written."""

@dataclass
class Run:
    """One training run directory and what its config says about it."""

    run_dir: Path
    experiment: str
    name: str
    source: str  # "ours" or "original"
    seed: int | None
    config: dict[str, Any]
    checkpoint: Path
    finished: bool


def discover_runs(root: Path) -> list[Path]:
    """Run directories ``root/<experiment>/<run>`` (with a train_config.yaml or a checkpoints/
    folder), sorted; hidden directories are ignored."""

    def subdirectories(directory: Path) -> list[Path]:
        return sorted(p for p in directory.iterdir() if p.is_dir() and not p.name.startswith("."))

    runs = []
    for experiment_dir in subdirectories(root):
        for run_dir in subdirectories(experiment_dir):
            if (run_dir / CONFIG_FILE).is_file() or (run_dir / CHECKPOINT_DIR).is_dir():
                runs.append(run_dir)
    return runs


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        config = yaml.safe_load(path.read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as error:
        raise RunError(
            f"{path.name} is unreadable ({type(error).__name__}: {one_line(error)})"
        ) from None
    if not isinstance(config, dict):
        raise RunError(f"{path.name} is not a YAML mapping")
    return config


def select_checkpoint(run_dir: Path, which: Literal["best", "last"], source: str) -> Path:
    """The checkpoint of a run to evaluate.

    last: ``checkpoints/last.ckpt``. best: for our runs the checkpoint named in
    test_metrics.json (the one training tested), else the single ``best-lsd-*.ckpt``; for the
    authors' runs the single ``*.ckpt`` that is not last.ckpt. Raises RunError.
    """
    directory = run_dir / CHECKPOINT_DIR
    if which == "last":
        path = directory / LAST_CHECKPOINT
        if not path.is_file():
            raise RunError(f"no checkpoint: {path} is missing")
        return path
    if source == SOURCE_ORIGINAL:
        candidates = sorted(p for p in directory.glob("*.ckpt") if p.name != LAST_CHECKPOINT)
        wanted = "a *.ckpt other than last.ckpt"
    else:
        tested = tested_checkpoint(run_dir)
        if tested is not None and (directory / tested).is_file():
            return directory / tested
        candidates = best_checkpoints(run_dir)
        wanted = BEST_CHECKPOINT_GLOB
    if not candidates:
        raise RunError(f"no checkpoint: {directory} holds no {wanted}")
    if len(candidates) > 1:
        names = ", ".join(p.name for p in candidates)
        raise RunError(f"several best checkpoints ({names}): keep one, or pass --checkpoint last")
    return candidates[0]


def run_finished(run_dir: Path) -> bool:
    """Whether a run's training finished: ours when it has the ``done`` marker, the authors'
    released runs always (they ship finished). A run without a readable config is not."""
    if (run_dir / DONE_MARKER).exists():
        return True
    try:
        config = _read_yaml(run_dir / CONFIG_FILE)
    except RunError:
        return False
    return original_format.is_original_config(config)


def latest_validation(run_dir: Path) -> dict[str, float] | None:
    """The run's latest validation, from ``<run>/curves.csv`` (MetricsHistory's rows): {metric
    without the ``val/`` prefix: value} of the last ``val`` row, with ``step`` its step. None
    when the file is missing or unreadable, or holds no validation row yet. How far training
    itself has come: ``run_layout.recorded_step``."""
    validations = [row for row in read_curves(run_dir) if row.get("split") == "val"]
    if not validations:
        return None
    try:
        latest = {key.removeprefix("val/"): float(value)
                  for key, value in validations[-1].items()
                  if key.startswith("val/") and value not in ("", None)}
        latest["step"] = float(validations[-1]["step"])
    except (KeyError, ValueError):
        return None
    return latest


def read_run(run_dir: Path, which: Literal["best", "last"]) -> Run:
    """Read a run's config, tell its format (ours / the authors') and pick its checkpoint.

    Raises RunError (one line) for a missing or unreadable train_config.yaml, a config in the
    authors' format we cannot translate, or a missing checkpoint.
    """
    config_path = run_dir / CONFIG_FILE
    if not config_path.is_file():
        raise RunError(f"no {CONFIG_FILE} in the run directory")
    config = _read_yaml(config_path)
    source = SOURCE_ORIGINAL if original_format.is_original_config(config) else SOURCE_OURS
    if source == SOURCE_ORIGINAL:
        try:
            original_format.translate_config(config)
        except original_format.OriginalFormatError as error:
            raise RunError(f"unknown experiment format: {one_line(error)}") from None
        experiment = str(config.get("group") or run_dir.parent.name)
    else:
        experiment = str(config.get("experiment") or run_dir.parent.name)
    seed = config.get("seed_everything")
    checkpoint = select_checkpoint(run_dir, which, source)
    finished = run_finished(run_dir)
    return Run(
        run_dir=run_dir, experiment=experiment, name=run_dir.name, source=source,
        seed=seed if isinstance(seed, int) and not isinstance(seed, bool) else None,
        config=config, checkpoint=checkpoint, finished=finished,
    )
