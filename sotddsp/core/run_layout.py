"""Where a training run lives and what its files are called: the contract between train.py,
sweep.py, eval_paper.py and the checkpoint loader. Imports no torch (hydra's sweeper plugin
reads it at every hydra start).

    <checkpoint_root>/<experiment>/<experiment>-<seed>/
        train_config.yaml        the full resolved config (replayable with --config)
        config_fingerprint.json  what binds the directory to its config (run_fingerprint.py)
        checkpoints/best-lsd-<epoch>-<step>.ckpt, checkpoints/last.ckpt
        test_metrics.json        the test of the best checkpoint
        curves.csv, curves.png   training and validation curves
        test_f0.png              predicted against true f0 on the test split
        wandb_run_id             the W&B run id, kept across resumes
        logs/                    W&B (offline), CSV or TensorBoard logs
        done                     the run finished
        train.lock               held by the train.py process training the run (run_lock.py)
"""

from __future__ import annotations

import contextlib
import csv
import importlib.resources
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

# The package's own files (configs, weights), wherever it is installed.
PACKAGE_DIR = Path(str(importlib.resources.files("sotddsp")))
# The checkout the package sits in when installed editable (reference-runs/, scripts/); a
# non-editable install has none, and nothing in the package needs it.
REPO = PACKAGE_DIR.parent
# The experiment configs, package data (``paper-experiments/`` in a checkout links here).
EXPERIMENTS_DIR = PACKAGE_DIR / "configs"
CHECKOUT_CONFIGS = "paper-experiments"  # the name a checkout and its docs give that folder
BASE_CONFIG = EXPERIMENTS_DIR / "base.yaml"
PRESETS_DIR = EXPERIMENTS_DIR / "presets"
# Experiments outside the paper's seven (not in known_experiments()): beyond/<name>.yaml.
BEYOND_EXPERIMENTS_DIR = EXPERIMENTS_DIR / "beyond"

DEFAULT_CHECKPOINT_ROOT = "checkpoints"  # train.py's --checkpoint_root unless a config sets one
CONFIG_FILE = "train_config.yaml"
FINGERPRINT_FILE = "config_fingerprint.json"  # the run's normalized config and its digest
CHECKPOINT_DIR = "checkpoints"
LAST_CHECKPOINT = "last.ckpt"
BEST_CHECKPOINT_TEMPLATE = "best-lsd-{epoch}-{step}"  # ModelCheckpoint's filename
BEST_CHECKPOINT_GLOB = "best-lsd-*.ckpt"
TEST_METRICS_FILE = "test_metrics.json"
CURVES_FILE = "curves.csv"  # training and validation curves (model/callbacks.py MetricsHistory)
CURVES_FIGURE = "curves.png"
TEST_F0_FIGURE = "test_f0.png"  # predicted against true f0 on the test split, after the test
WANDB_ID_FILE = "wandb_run_id"
LOGS_DIR = "logs"  # the loggers' save_dir
DONE_MARKER = "done"
RUN_LOCK_FILE = "train.lock"  # flock-ed by the process training the run (core/run_lock.py)
# The key under which a checkpoint embeds its run's config (YAML text).
CONFIG_KEY = "sot_train_config"

# Exit statuses of the entry points.
EXIT_OK = 0
EXIT_FAILED = 1  # a bug, or a sweep whose runs did not all finish
EXIT_USER_ERROR = 2  # a mistake in the user's input: one line on stderr
EXIT_INTERRUPTED = 130  # Ctrl-C
EXIT_TERMINATED = 143  # SIGTERM: run the same command again to resume

__all__ = [
    "BASE_CONFIG",
    "BEST_CHECKPOINT_GLOB",
    "BEST_CHECKPOINT_TEMPLATE",
    "BEYOND_EXPERIMENTS_DIR",
    "CHECKOUT_CONFIGS",
    "CHECKPOINT_DIR",
    "CONFIG_FILE",
    "CONFIG_KEY",
    "CURVES_FIGURE",
    "CURVES_FILE",
    "DEFAULT_CHECKPOINT_ROOT",
    "DONE_MARKER",
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_TERMINATED",
    "EXIT_USER_ERROR",
    "EXPERIMENTS_DIR",
    "FINGERPRINT_FILE",
    "LAST_CHECKPOINT",
    "LOGS_DIR",
    "PACKAGE_DIR",
    "PRESETS_DIR",
    "REPO",
    "RUN_LOCK_FILE",
    "TEST_F0_FIGURE",
    "TEST_METRICS_FILE",
    "WANDB_ID_FILE",
    "best_checkpoints",
    "beyond_experiments",
    "checkpoint_step",
    "config_file",
    "configured_checkpoint_root",
    "configured_value",
    "experiment_config",
    "known_experiments",
    "read_curves",
    "recorded_step",
    "run_directory",
    "tested_checkpoint",
]


def run_directory(checkpoint_root: str | Path, experiment: str, seed: int) -> Path:
    """``<checkpoint_root>/<experiment>/<experiment>-<seed>``, the original README's tree."""
    return Path(checkpoint_root) / experiment / f"{experiment}-{seed}"


def known_experiments() -> list[str]:
    """The paper's experiments: the YAML files at the top of the configs folder, except
    base.yaml (those of its sub-folders, such as ``beyond/``, are not among them)."""
    return sorted(p.stem for p in EXPERIMENTS_DIR.glob("*.yaml") if p != BASE_CONFIG)


def beyond_experiments() -> list[str]:
    """The experiments outside the paper's seven: the names of ``beyond/<name>.yaml``."""
    return sorted(p.stem for p in BEYOND_EXPERIMENTS_DIR.glob("*.yaml"))


def experiment_config(experiment: str) -> Path:
    """The config file of an experiment: ``paper-experiments/<experiment>.yaml`` (package data:
    ``sotddsp/configs/``), else the first ``<sub-folder>/<experiment>.yaml`` of its sub-folders
    but presets/ (``beyond/`` ...). An unknown name gives the path it would have at the top."""
    top = EXPERIMENTS_DIR / f"{experiment}.yaml"
    if top.is_file():
        return top
    nested = sorted(p for p in EXPERIMENTS_DIR.glob(f"*/{experiment}.yaml")
                    if p.parent != PRESETS_DIR)
    return nested[0] if nested else top


def config_file(value: str) -> Path | None:
    """The file a ``--config`` value names: an existing path; else an experiment's name
    (``SOT-2048``) or a path under ``paper-experiments/`` (``paper-experiments/presets/debug.yaml``,
    ``presets/debug``), taken from the package's configs, so that an install's command works from
    any directory; None for anything else (inline YAML, or a missing file left to the parser)."""
    path = Path(value)
    if path.is_file():
        return path
    if value in known_experiments():
        return experiment_config(value)
    relative = value.removeprefix(f"{CHECKOUT_CONFIGS}/")
    for candidate in (EXPERIMENTS_DIR / relative, EXPERIMENTS_DIR / f"{relative}.yaml"):
        if candidate.is_file() and candidate.resolve().is_relative_to(EXPERIMENTS_DIR.resolve()):
            return candidate
    return None


def configured_value(config_files: Sequence[str | Path], key: str, default: Any = None) -> Any:
    """The value of a dotted ``key`` (``trainer.max_steps``) that train.py's YAML files set:
    base.yaml's, replaced by that of each of ``config_files`` in turn; ``default`` if none does.

    What sweep.py needs before it starts train.py (which resolves the same keys with its parser,
    where the command line comes last and wins). Values that are not readable YAML files (inline
    YAML, a missing file) are skipped: train.py reports those."""
    import yaml

    value = default
    for path in (BASE_CONFIG, *(config_file(str(p)) or Path(p) for p in config_files)):
        try:
            node = yaml.safe_load(path.read_text())
        except (OSError, UnicodeDecodeError, yaml.YAMLError):
            continue
        for part in key.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        if node is not None:
            value = node
    return value


def configured_checkpoint_root(config_files: Sequence[str | Path]) -> str:
    """The ``checkpoint_root`` of train.py's YAML files (``configured_value``): ``checkpoints``,
    or a preset's own root such as ``checkpoints/debug``."""
    return str(configured_value(config_files, "checkpoint_root", DEFAULT_CHECKPOINT_ROOT))


def checkpoint_step(path: str | Path) -> int:
    """The global step in a best checkpoint's name (``BEST_CHECKPOINT_TEMPLATE``: ...-<step>.ckpt)."""
    return int(Path(path).stem.rsplit("-", 1)[-1])


def best_checkpoints(run_dir: str | Path) -> list[Path]:
    """The run's best-validation checkpoints (``checkpoints/best-lsd-*.ckpt``), oldest step first."""
    return sorted((Path(run_dir) / CHECKPOINT_DIR).glob(BEST_CHECKPOINT_GLOB), key=checkpoint_step)


def tested_checkpoint(run_dir: str | Path) -> str | None:
    """The name of the checkpoint the run tested (``test_metrics.json``), or None when the file is
    missing, unreadable or names none."""
    with contextlib.suppress(OSError, ValueError, AttributeError):
        name = json.loads((Path(run_dir) / TEST_METRICS_FILE).read_text()).get("checkpoint")
        return name if isinstance(name, str) else None
    return None


def read_curves(run_dir: str | Path) -> list[dict[str, str]]:
    """The rows of the run's ``curves.csv`` (MetricsHistory: step, epoch, split, then the
    metrics, as strings; '' where a row has no value), or [] when the file is missing or
    unreadable."""
    with contextlib.suppress(OSError, UnicodeDecodeError, csv.Error), \
            open(Path(run_dir) / CURVES_FILE, newline="") as handle:
        return list(csv.DictReader(handle))
    return []


def recorded_step(run_dir: str | Path) -> int:
    """The last training step the run recorded in its ``curves.csv`` (0 when it has none): how
    far a run that resumes from its last.ckpt has come, within one epoch."""
    steps = []
    for row in read_curves(run_dir):
        with contextlib.suppress(KeyError, TypeError, ValueError):
            steps.append(int(row["step"]))
    return max(steps, default=0)
