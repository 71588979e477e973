"""The models shipped in the package, and the errors of loading a model: what the pitch tool
needs before it loads anything (``--help``, ``--list-models``, a name that names nothing),
without importing torch or Lightning.

    from sotddsp.model.shipped import shipped_models, describe_model
    for name in shipped_models():
        print(describe_model(name))   # default: reference-runs/..., step 25,000, ...

A shipped model is ``WEIGHTS_DIR/<name>.ckpt`` (weights and config) with its provenance in
``<name>.json`` (scripts/export_default_model.py writes both). ``loader.load_model`` and
``checkpoints.load_checkpoint`` load them; this module only names and describes them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sotddsp.core.command_line import UserError
from sotddsp.core.run_layout import PACKAGE_DIR

__all__ = [
    "DEFAULT_MODEL",
    "DEFAULT_PROVENANCE",
    "DEFAULT_WEIGHTS",
    "WEIGHTS_DIR",
    "CheckpointError",
    "ConfigError",
    "ModelNotFoundError",
    "describe_model",
    "model_provenance",
    "resolve_model",
    "shipped_models",
]

# The shipped models, package data: <name>.ckpt and its provenance <name>.json.
WEIGHTS_DIR = PACKAGE_DIR / "weights"
# The default model: weights and config, and its provenance.
DEFAULT_WEIGHTS = WEIGHTS_DIR / "default.ckpt"
DEFAULT_PROVENANCE = WEIGHTS_DIR / "default.json"
DEFAULT_MODEL = DEFAULT_WEIGHTS.stem  # "default"


class CheckpointError(UserError):
    """A checkpoint file is missing, truncated, unreadable or does not fit its model (one line).
    A user error: every command (``run_cli_main``) reports it as one line, without traceback."""


class ConfigError(UserError):
    """A checkpoint's config is missing, unreadable or no longer builds a model (one line).
    A user error, as CheckpointError."""


class ModelNotFoundError(CheckpointError):
    """Neither a shipped model's name nor an existing file (one line)."""


def shipped_models() -> dict[str, Path]:
    """{name: checkpoint} of the models shipped in the package (``WEIGHTS_DIR``), by name."""
    return {path.stem: path for path in sorted(WEIGHTS_DIR.glob("*.ckpt"))}


def model_provenance(name: str) -> dict[str, Any]:
    """A shipped model's provenance (``WEIGHTS_DIR/<name>.json``: run, checkpoint, global_step,
    val_rpa, test_rpa, ...), or {} when it has none."""
    path = WEIGHTS_DIR / f"{name}.json"
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


def describe_model(name: str) -> str:
    """One line on a shipped model: where it comes from and how it scores, e.g.
    ``default: reference-runs/MSS-Lin/MSS-Lin-42, best-lsd-489-21566.ckpt (step 21,566),
    validation RPA 1.4 %, test RPA 0.5 %`` (", still training" after the step when the run had
    not finished)."""
    record = model_provenance(name)
    if not record:
        return f"{name}: no provenance recorded"
    parts = [str(record.get("run", "unknown run"))]
    if record.get("checkpoint"):
        step = record.get("global_step")
        state = "" if record.get("finished", True) else ", still training"
        where = f"step {step:,}{state}" if isinstance(step, int) else state.lstrip(", ")
        parts.append(f"{record['checkpoint']}" + (f" ({where})" if where else ""))
    for key, label in (("val_rpa", "validation RPA"), ("test_rpa", "test RPA")):
        if isinstance(record.get(key), int | float):
            parts.append(f"{label} {100 * record[key]:.1f} %")
    return f"{name}: " + ", ".join(parts)


def resolve_model(name_or_path: str | Path) -> tuple[Path, dict[str, Any]]:
    """(checkpoint file, provenance) of a shipped model's name or a checkpoint path (provenance
    {} for a path). Raises ModelNotFoundError (one line) when it is neither."""
    shipped = shipped_models()
    if isinstance(name_or_path, str) and name_or_path in shipped:
        return shipped[name_or_path], model_provenance(name_or_path)
    path = Path(name_or_path)
    if path.is_file():
        return path, {}
    names = ", ".join(shipped) or "none in this install"
    if path.is_dir():
        raise ModelNotFoundError(f"{path}: a directory, not a checkpoint file; give a .ckpt file "
                                 f"or a shipped model ({names})")
    raise ModelNotFoundError(
        f"{name_or_path}: checkpoint not found, and not a shipped model ({names}); give a "
        "shipped name or the path of a train.py checkpoint"
    )
