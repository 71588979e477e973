"""A run directory belongs to one configuration: the fingerprint that binds them. Imports no
torch (foundation layer).

Before it trains, train.py stores ``<run>/config_fingerprint.json`` (atomically):

    {"digest": sha256 of the normalized config, "excluded": EXCLUDED_KEYS,
     "config": the normalized config, "resolved": the resolved config as YAML}

Before it resumes a run, or reports a run as already done, it checks the run's fingerprint
against its own (``check_run_binding``); a different one is a one-line ``UserError`` that names
the keys that differ and the fix. Never a silent reuse.

**Normalized** (``normalized_config``): the resolved config (train_config.yaml's content) minus
what may change when a run resumes without changing what it trains (``EXCLUDED_KEYS``), with
``data.init_args.data_path`` reduced to its file name (the file may move; its name encodes the
generator's settings) and every ``class_path`` passed through ``normalize_class_path`` (the alias
table of core/class_paths.py: runs whose configs name the flat layout's classes, such as
``losses.SpectralOTLoss``, keep their fingerprints).

**Runs older than the fingerprint, or older code.** A run without the file (trained before it
existed) is checked against its ``train_config.yaml``, which every run has. The recorded config
is resolved again by the current parser (``resolve``: options added since then take their
defaults, which reproduce the old behaviour) before it is compared, so a change of the code
that leaves the configuration alone never refuses a run; when the digests differ only for that
reason, the file is rewritten.
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePath
from typing import Any

import yaml

from sotddsp.core.atomic_files import atomic_write_text
from sotddsp.core.class_paths import normalize_class_path, upgrade_config
from sotddsp.core.command_line import UserError, config_leaves, one_line
from sotddsp.core.run_layout import CONFIG_FILE, FINGERPRINT_FILE

__all__ = [
    "EXCLUDED_KEYS",
    "FILE_NAME_KEYS",
    "TRAIN_FIX",
    "Fingerprint",
    "check_run_binding",
    "config_differences",
    "fingerprint_of",
    "normalize_class_path",
    "normalized_config",
    "read_fingerprint",
    "write_fingerprint",
]

# What a resumed run may change: where things are written, what is logged or shown, which
# hardware runs it. Everything else (model, loss, optimizer, data, budget, validation schedule,
# precision, seed) is part of the fingerprint. Note that under DDP more devices also mean a
# larger effective batch: resuming on another device count is left to the user.
EXCLUDED_KEYS: tuple[str, ...] = (
    "checkpoint_root",  # where the run directory is
    "resume",  # how this command treats the directory
    "trainer.default_root_dir",  # paths train.py derives from the run directory
    "checkpoint.dirpath",
    "trainer.logger",  # where and how metrics are logged (W&B, CSV, TensorBoard, none)
    "trainer.log_every_n_steps",
    "trainer.enable_progress_bar",  # what is shown
    "trainer.enable_model_summary",
    "checkpoint.verbose",
    "model.n_plot_examples",  # the validation figures only
    "trainer.accelerator",  # which hardware runs it
    "trainer.devices",
    "data.init_args.num_workers",  # loader processes
    "data.init_args.generate_if_missing",  # only matters while the data file is missing
)
# Paths whose directory may change but whose file name is part of the fingerprint.
FILE_NAME_KEYS: tuple[str, ...] = ("data.init_args.data_path",)

DIFFERENCES_SHOWN = 3  # keys named in the error line; the others are counted ("+N more")
# The ways out train.py names (sweep.py names its own).
TRAIN_FIX = ("give this run another --checkpoint_root, or pass --resume never to restart that "
             "directory from step 0")


def _parent_and_leaf(config: dict[str, Any], dotted: str) -> tuple[dict[str, Any] | None, str]:
    *parents, leaf = dotted.split(".")
    node: Any = config
    for key in parents:
        node = node.get(key) if isinstance(node, dict) else None
    return (node if isinstance(node, dict) else None), leaf


def normalized_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """``config`` (a resolved config as nested dicts) as its fingerprint records it: without
    ``EXCLUDED_KEYS``, the ``FILE_NAME_KEYS`` reduced to their file names, class paths through
    ``normalize_class_path``. ``config`` itself is left unchanged."""
    normalized = upgrade_config(copy.deepcopy(dict(config)))
    for dotted in EXCLUDED_KEYS:
        parent, leaf = _parent_and_leaf(normalized, dotted)
        if parent is not None:
            parent.pop(leaf, None)
    for dotted in FILE_NAME_KEYS:
        parent, leaf = _parent_and_leaf(normalized, dotted)
        if parent is not None and isinstance(parent.get(leaf), str):
            parent[leaf] = PurePath(parent[leaf]).name
    return normalized


def _digest(normalized: Mapping[str, Any]) -> str:
    text = json.dumps(normalized, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True)
class Fingerprint:
    """A run's configuration as its directory records it."""

    digest: str  # sha256 of ``config`` as canonical JSON
    config: dict[str, Any]  # the normalized config
    resolved: str  # the resolved config, YAML (as train_config.yaml)


def fingerprint_of(resolved_yaml: str) -> Fingerprint:
    """The fingerprint of a resolved config given as YAML text (train_config.yaml's content)."""
    config = yaml.safe_load(resolved_yaml)
    if not isinstance(config, dict):
        raise TypeError(f"a resolved config is a YAML mapping, got {type(config).__name__}")
    normalized = normalized_config(config)
    return Fingerprint(_digest(normalized), normalized, resolved_yaml)


def read_fingerprint(run_dir: Path) -> Fingerprint | None:
    """The fingerprint stored in ``run_dir`` (None when there is none); ``ValueError`` when the
    file is unreadable."""
    path = Path(run_dir) / FINGERPRINT_FILE
    if not path.exists():
        return None
    try:
        record = json.loads(path.read_text())
        return Fingerprint(str(record["digest"]), dict(record["config"]), str(record["resolved"]))
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise ValueError(f"{path} is unreadable ({one_line(error, 80)})") from None


def write_fingerprint(run_dir: Path, fingerprint: Fingerprint) -> None:
    """Store ``fingerprint`` in ``run_dir`` (atomically; the directory is created)."""
    record = {
        "digest": fingerprint.digest,
        "excluded": list(EXCLUDED_KEYS),
        "file_name_only": list(FILE_NAME_KEYS),
        "config": fingerprint.config,
        "resolved": fingerprint.resolved,
    }
    atomic_write_text(Path(run_dir) / FINGERPRINT_FILE, json.dumps(record, indent=1) + "\n")


_ABSENT = object()


def config_differences(
    recorded: Mapping[str, Any], current: Mapping[str, Any]
) -> list[tuple[str, Any, Any]]:
    """(dotted key, recorded value, current value) of every leaf that differs, in the current
    config's order, then the keys only the recorded config has; a missing side is ``_ABSENT``."""
    old = dict(config_leaves(recorded))
    new = dict(config_leaves(current))
    keys = list(new) + [key for key in old if key not in new]
    return [
        (key, old.get(key, _ABSENT), new.get(key, _ABSENT))
        for key in keys
        if old.get(key, _ABSENT) != new.get(key, _ABSENT)
    ]


def _shown(value: Any) -> str:
    return "(absent)" if value is _ABSENT else one_line(json.dumps(value, default=str), 40)


def mismatch_message(
    run_dir: Path, differences: list[tuple[str, Any, Any]], fix: str = TRAIN_FIX
) -> str:
    """One line: the run directory, the first differing keys (recorded value, this command's),
    how many more, and the ways out (``fix``)."""
    shown = [f"{key} was {_shown(old)}, now {_shown(new)}" for key, old, new in differences]
    listed = shown[:DIFFERENCES_SHOWN]
    more = len(shown) - len(listed)
    keys = "; ".join(listed) + (f"; +{more} more" if more else "")
    return f"{run_dir} holds a run of another configuration ({keys}): {fix}"


def check_run_binding(
    run_dir: Path,
    current: Fingerprint,
    resolve: Callable[[str], dict[str, Any]],
    fix: str = TRAIN_FIX,
) -> bool:
    """Raise ``UserError`` (one line) when ``run_dir`` holds a run of another configuration.

    ``resolve(yaml_text)`` resolves a recorded config again with the current parser and returns
    it as nested dicts (``experiment_cli.SOTCLI.resolve_config_text``); a ``ValueError`` from it
    means this code cannot read the recorded config. It is called only when the stored digest
    is missing or differs from ``current``'s. Returns True when the directory's fingerprint file
    must be (re)written: missing, or recorded by older code for the same configuration. A
    directory without a recorded config (new, or holding only logs) is bound to nothing.
    ``fix``: the ways out the error line names."""
    run_dir = Path(run_dir)
    try:
        stored = read_fingerprint(run_dir)
    except ValueError as error:
        stored, unreadable = None, str(error)
    else:
        unreadable = None
    if stored is not None and stored.digest == current.digest:
        return False
    if stored is not None:
        source, text = run_dir / FINGERPRINT_FILE, stored.resolved
    elif (run_dir / CONFIG_FILE).is_file():
        source, text = run_dir / CONFIG_FILE, (run_dir / CONFIG_FILE).read_text()
    elif unreadable is not None:
        raise UserError(f"{unreadable}: which configuration the run had is unknown; {fix}")
    else:
        return True
    try:
        recorded = normalized_config(resolve(text))
    except (ValueError, UserError) as error:
        raise UserError(
            f"{source}: this code cannot read the run's configuration ({one_line(error, 160)}); "
            f"{fix}"
        ) from None
    differences = config_differences(recorded, current.config)
    if differences:
        raise UserError(mismatch_message(run_dir, differences, fix))
    return True
