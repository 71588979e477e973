"""Evaluate every trained run on the test split and write the paper's results table.

    python eval_paper.py                      # every run under checkpoints/
    python eval_paper.py --root ~/their-checkpoints --checkpoint best --device auto

Runs are found as ``<root>/<experiment>/<run>/train_config.yaml`` with checkpoints in
``<root>/<experiment>/<run>/checkpoints/*.ckpt`` (our layout and the authors' released one;
their Lightning 1.x configs and checkpoints are read through ``legacy.py``). Each model is
rebuilt from its run's own ``train_config.yaml`` and tested with ``trainer.test``, the code
path of training's final test, so a run's numbers equal its ``test_metrics.json``.

Writes under ``--out`` (default ``results/``): ``runs.csv`` (one row per run, every metric),
``table.csv`` / ``table.md`` (also printed) / ``table.tex`` (one row per experiment: mean (std)
and median over seeds of LSD, RPA, RCA and -OD, plus a pYIN baseline row), ``skipped.csv``,
``rpa_per_seed.png``, and ``cache/*.json``: one record per evaluated checkpoint, keyed by the
sha256 of the checkpoint, the data file, the run's config and the evaluation code, written
atomically, so a rerun (also after a kill) evaluates only what changed.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import functools
import gc
import hashlib
import importlib.metadata
import io
import json
import logging
import math
import pickle
import random
import sys
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import yaml

import legacy
import metrics
import train
from models.autoencoder import HarmonicAutoencoder
from models.spectral import cqt_frequencies
from reliability import UserError, atomic_write_bytes, atomic_write_text, one_line, run_cli_main

__all__ = [
    "CheckpointError",
    "RunError",
    "discover_runs",
    "evaluate_checkpoint",
    "load_checkpoint",
    "main",
    "mark_best",
    "pitch_baseline",
    "summarize",
]

log = logging.getLogger("eval_paper")

# Bump when evaluation changes in a way the source hash below cannot see.
EVAL_VERSION = "1"
# Source files whose code decides the numbers: any change re-evaluates (see code_version).
EVAL_SOURCES = (
    "eval_paper.py", "legacy.py", "metrics.py", "losses.py", "train.py", "synthetic_data.py",
    "models/autoencoder.py", "models/encoder.py", "models/spectral.py", "models/synth.py",
)
CONFIG_FILE = "train_config.yaml"
LAST_CHECKPOINT = "last.ckpt"
BEST_PATTERN = "best-lsd-*.ckpt"
CORE_METRICS = ("lsd", "rpa", "rca", "od", "mse", "mss", "loss", "median_cents_error",
                "within_octave")
SOURCE_OURS = "ours"
SOURCE_ORIGINAL = "original"
SOURCE_BASELINE = "baseline"

BASELINE_NAME = "pYIN (baseline)"
BASELINE_HOP = 256  # the model's control-frame hop: T = N // 256 frames per example
BASELINE_FRAME_LENGTH = 2048  # 128 ms at 16 kHz: about 4 periods of the lowest CQT bin


class CheckpointError(Exception):
    """A checkpoint file is missing, truncated or unreadable (one line)."""


class RunError(Exception):
    """A run cannot be evaluated (one line): the run is skipped, the table still written."""


# ----------------------------------------------------------------------------------------------
# Runs
# ----------------------------------------------------------------------------------------------

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


@dataclass(frozen=True)
class Skipped:
    """A run (or the baseline) that could not be evaluated, with a one-line reason."""

    path: str
    reason: str


def discover_runs(root: Path) -> list[Path]:
    """Run directories ``root/<experiment>/<run>`` (with a train_config.yaml or a checkpoints/
    folder), sorted; hidden directories are ignored."""

    def subdirectories(directory: Path) -> list[Path]:
        return sorted(p for p in directory.iterdir() if p.is_dir() and not p.name.startswith("."))

    runs = []
    for experiment_dir in subdirectories(root):
        for run_dir in subdirectories(experiment_dir):
            if (run_dir / CONFIG_FILE).is_file() or (run_dir / "checkpoints").is_dir():
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
    directory = run_dir / "checkpoints"
    if which == "last":
        path = directory / LAST_CHECKPOINT
        if not path.is_file():
            raise RunError(f"no checkpoint: {path} is missing")
        return path
    if source == SOURCE_ORIGINAL:
        candidates = sorted(p for p in directory.glob("*.ckpt") if p.name != LAST_CHECKPOINT)
        wanted = "a *.ckpt other than last.ckpt"
    else:
        tested = _tested_checkpoint(run_dir)
        if tested is not None and (directory / tested).is_file():
            return directory / tested
        candidates = sorted(directory.glob(BEST_PATTERN))
        wanted = BEST_PATTERN
    if not candidates:
        raise RunError(f"no checkpoint: {directory} holds no {wanted}")
    if len(candidates) > 1:
        names = ", ".join(p.name for p in candidates)
        raise RunError(f"several best checkpoints ({names}): keep one, or pass --checkpoint last")
    return candidates[0]


def _tested_checkpoint(run_dir: Path) -> str | None:
    with contextlib.suppress(OSError, ValueError, AttributeError):
        name = json.loads((run_dir / train.TEST_METRICS_FILE).read_text()).get("checkpoint")
        return name if isinstance(name, str) else None
    return None


def read_run(run_dir: Path, which: Literal["best", "last"]) -> Run:
    """Read a run's config, tell its format (ours / the authors') and pick its checkpoint.

    Raises RunError (one line) for a missing or unreadable train_config.yaml, a config in the
    authors' format we cannot translate, or a missing checkpoint.
    """
    config_path = run_dir / CONFIG_FILE
    if not config_path.is_file():
        raise RunError(f"no {CONFIG_FILE} in the run directory")
    config = _read_yaml(config_path)
    source = SOURCE_ORIGINAL if legacy.is_original_config(config) else SOURCE_OURS
    if source == SOURCE_ORIGINAL:
        try:
            legacy.translate_config(config)
        except legacy.LegacyFormatError as error:
            raise RunError(f"unknown experiment format: {one_line(error)}") from None
        experiment = str(config.get("group") or run_dir.parent.name)
    else:
        experiment = str(config.get("experiment") or run_dir.parent.name)
    seed = config.get("seed_everything")
    checkpoint = select_checkpoint(run_dir, which, source)
    finished = source == SOURCE_ORIGINAL or (run_dir / train.DONE_MARKER).exists()
    return Run(
        run_dir=run_dir, experiment=experiment, name=run_dir.name, source=source,
        seed=seed if isinstance(seed, int) and not isinstance(seed, bool) else None,
        config=config, checkpoint=checkpoint, finished=finished,
    )


# ----------------------------------------------------------------------------------------------
# Building models and reading checkpoints
# ----------------------------------------------------------------------------------------------

@dataclass
class CheckpointContents:
    """What evaluation reads from a checkpoint (ours or the authors')."""

    state_dict: dict[str, torch.Tensor]
    epoch: int | None
    global_step: int | None
    config_yaml: str | None  # our embedded config (train.CONFIG_KEY), None for the authors'
    stubbed: tuple[str, ...] = ()  # globals the restricted unpickler replaced (authors' only)


def read_checkpoint(path: Path) -> CheckpointContents:
    """Read a checkpoint on CPU: ``weights_only=True`` for ours, the restricted unpickler
    (legacy.py) for the authors', whose pickles name their own classes.

    Raises CheckpointError (one line) for a missing, truncated or corrupt file.
    """
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} is missing")
    stubbed: tuple[str, ...] = ()
    try:
        try:
            checkpoint = torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError:
            checkpoint, stubbed = legacy.restricted_torch_load(path)
    except legacy.LegacyFormatError as error:
        raise CheckpointError(one_line(error)) from None
    except Exception as error:  # torch raises many types for truncated or corrupt files
        raise CheckpointError(
            f"checkpoint {path.name} is truncated or corrupt ({type(error).__name__}: "
            f"{one_line(error)[:120]})"
        ) from None
    state_dict = checkpoint.get("state_dict") if isinstance(checkpoint, dict) else None
    if not isinstance(state_dict, dict) or not all(
        isinstance(v, torch.Tensor) for v in state_dict.values()
    ):
        raise CheckpointError(f"checkpoint {path.name} has no state_dict of tensors")
    config_yaml = checkpoint.get(train.CONFIG_KEY)
    epoch, step = checkpoint.get("epoch"), checkpoint.get("global_step")
    return CheckpointContents(
        state_dict=state_dict,
        epoch=epoch if isinstance(epoch, int) else None,
        global_step=step if isinstance(step, int) else None,
        config_yaml=config_yaml if isinstance(config_yaml, str) else None,
        stubbed=stubbed,
    )


def load_weights(model: HarmonicAutoencoder, contents: CheckpointContents, original: bool) -> None:
    """Load a checkpoint's weights into ``model`` (strict).

    original: the checkpoint comes from the authors' code (their config format); its
    ``encoder.*`` weights are renamed onto ours and its stored CQT kernels compared with ours
    (a mismatch is logged; ours are used). Raises CheckpointError (one line) when the weights
    do not fit the model.
    """
    try:
        if original:
            model.encoder.load_state_dict(legacy.original_encoder_state(contents.state_dict))
            matches = legacy.compare_feature_buffers(contents.state_dict, model.features)
            if matches and not all(matches.values()):
                bad = ", ".join(k for k, ok in matches.items() if not ok)
                log.warning("the checkpoint's CQT kernels differ from ours (%s); ours are used",
                            bad)
        else:
            model.load_state_dict(contents.state_dict)
    except (RuntimeError, ValueError) as error:
        raise CheckpointError(
            f"the weights do not fit the config's model: {_flatten(str(error), 200)}"
        ) from None


def _flatten(text: str, limit: int = 300) -> str:
    """A multi-line message (jsonargparse nests its reasons) as one line of at most ``limit``."""
    line = " ".join(part.strip() for part in text.splitlines() if part.strip())
    return line if len(line) <= limit else line[: limit - 3] + "..."


def _cli_error(stderr_text: str) -> str:
    _, marker, message = stderr_text.partition("error:")
    return _flatten(message if marker else stderr_text) or "the config does not parse"


def build_from_config(config_path: Path, extra_args: Sequence[str], checkpoint_root: Path) -> Any:
    """``train.build_cli`` for evaluation (no logger, a throwaway checkpoint_root).

    Raises RunError (one line) when the config does not parse or its classes do not build;
    jsonargparse's own usage message is swallowed.
    """
    args = ["--config", str(config_path), "--checkpoint_root", str(checkpoint_root),
            "--trainer.logger", "false", "--trainer.enable_progress_bar", "false",
            "--trainer.enable_model_summary", "false", *extra_args]
    captured = io.StringIO()
    try:
        with contextlib.redirect_stderr(captured):
            return train.build_cli(args)
    except SystemExit:
        raise RunError(f"the config does not build: {_cli_error(captured.getvalue())}") from None
    except Exception as error:  # any failure to parse or instantiate: the config no longer builds
        raise RunError(
            f"the config does not build ({type(error).__name__}: {_flatten(str(error))})"
        ) from None


def _config_file_for(config: dict[str, Any], directory: Path, text: str | None = None) -> Path:
    """A config file ``train.build_cli`` accepts: the authors' format translated, ours as is."""
    if legacy.is_original_config(config):
        return legacy.write_translated_config(config, directory)
    path = directory / "config.yaml"
    path.write_text(text if text is not None else yaml.safe_dump(config, sort_keys=False))
    return path


@contextlib.contextmanager
def _preserved_rng() -> Iterator[None]:
    """Restore torch/numpy/python RNG states afterwards (building a CLI seeds everything)."""
    states = torch.get_rng_state(), np.random.get_state(), random.getstate()
    try:
        yield
    finally:
        torch.set_rng_state(states[0])
        np.random.set_state(states[1])
        random.setstate(states[2])


def load_checkpoint(path: str | Path, device: str = "cpu") -> HarmonicAutoencoder:
    """Rebuild a trained model from a checkpoint, in eval mode on ``device``.

    The config is the one embedded in the checkpoint (``train.CONFIG_KEY``), else the run's
    ``train_config.yaml`` two levels up (``<run>/checkpoints/x.ckpt``); the authors'
    checkpoints and configs are read through legacy.py. The caller's RNG states are kept.
    ``model.estimate(audio (B, N))`` then gives f0 (B, T) in Hz and amplitudes (B, T, K).
    Raises CheckpointError or RunError (one line).
    """
    path = Path(path)
    contents = read_checkpoint(path)
    if contents.config_yaml is not None:
        text = contents.config_yaml
    else:
        config_path = path.parent.parent / CONFIG_FILE
        if not config_path.is_file():
            raise RunError(f"{path.name} embeds no config and {config_path} is missing")
        text = config_path.read_text()
    try:
        config = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise RunError(f"the checkpoint's config is not valid YAML: {one_line(error)}") from None
    if not isinstance(config, dict):
        raise RunError("the checkpoint's config is not a YAML mapping")
    with tempfile.TemporaryDirectory(prefix="eval_paper-") as tmp, _preserved_rng():
        try:
            config_file = _config_file_for(config, Path(tmp), text)
        except legacy.LegacyFormatError as error:
            raise RunError(one_line(error)) from None
        cli = build_from_config(config_file, ["--trainer.accelerator", "cpu"], Path(tmp))
    model: HarmonicAutoencoder = cli.model
    load_weights(model, contents, original=legacy.is_original_config(config))
    return model.eval().to(device)


# ----------------------------------------------------------------------------------------------
# Evaluation
# ----------------------------------------------------------------------------------------------

def _accelerator(device: str) -> str:
    return "gpu" if device == "cuda" else "cpu"


def evaluate_checkpoint(
    run: Run, data_path: Path, device: str, batch_size: int | None
) -> dict[str, Any]:
    """Test ``run.checkpoint`` on the test split of ``data_path`` with ``trainer.test``.

    The model, data module and trainer come from the run's own train_config.yaml (the
    authors' translated), with ``limit_test_batches`` 1.0 (the whole split), no logger and
    ``batch_size_val`` = ``batch_size`` when given. Returns {"metrics": {name: float},
    "epoch": int | None, "global_step": int | None}. Raises RunError / CheckpointError.
    """
    contents = read_checkpoint(run.checkpoint)
    extra = ["--trainer.accelerator", _accelerator(device), "--trainer.devices", "1",
             "--trainer.limit_test_batches", "1.0", "--data.init_args.data_path", str(data_path)]
    if batch_size is not None:
        extra += ["--data.init_args.batch_size_val", str(batch_size)]
    with tempfile.TemporaryDirectory(prefix="eval_paper-") as tmp:
        config_text = (run.run_dir / CONFIG_FILE).read_text()
        config_file = _config_file_for(run.config, Path(tmp), config_text)
        cli = build_from_config(config_file, extra, Path(tmp))
        model: HarmonicAutoencoder = cli.model
        datamodule = cli.datamodule
        load_weights(model, contents, original=run.source == SOURCE_ORIGINAL)
        try:
            datamodule.prepare_data()
            datamodule.setup("test")
            train.check_compatible(model, datamodule)
        except (UserError, ValueError, OSError) as error:
            raise RunError(f"the data does not fit: {one_line(error)[:200]}") from None
        cli.trainer.test(model, datamodule=datamodule, verbose=False)
        results = model.test_results()
        families = _family_rows(model.test_predictions()[0], datamodule.meta) if results else None
    if not results:
        raise RunError("the test split is empty")
    record = {"metrics": {k: float(v) for k, v in results.items()},
              "epoch": contents.epoch, "global_step": contents.global_step}
    if families is not None:
        record["families"] = families
    return record


def _family_rows(predicted_f0: Any, meta: dict[str, Any]) -> list[dict[str, Any]] | None:
    """RPA/RCA per instrument family when the data is the real-instrument set, else None."""
    import real_data

    records = real_data.records_of(meta)
    if records is None:
        return None
    return real_data.family_breakdown(predicted_f0, records)


def pitch_baseline(data_path: Path, batch_size: int = 64) -> dict[str, float]:
    """pYIN (``librosa.pyin``) f0 on the test split, scored with ``metrics.pitch_metrics``.

    Audio comes from ``PreloadedSinusoidDataModule`` (peak-normalized to 0.9, as training).
    Frames: hop 256 with ``center=True`` puts frame t's centre at sample 256 t, the centre of
    the model's CQT frame t; the first T = N // 256 frames are kept, the model's T. Search
    range: the first to the last CQT bin frequency (32.7 Hz .. 7.75 kHz at 16 kHz), the
    model's output range. Every frame is voiced here, so pYIN's voicing decision is ignored
    (``fill_na=None`` keeps its best f0 guess in frames it calls unvoiced).
    Returns {"metrics": {"rpa", "rca", "od", "median_cents_error", "within_octave"}} and, on
    the real-instrument set, "families": the per-family breakdown.
    """
    import librosa
    from tqdm import tqdm

    from synthetic_data import PreloadedSinusoidDataModule

    datamodule = PreloadedSinusoidDataModule(
        str(data_path), batch_size=batch_size, generate_if_missing=False
    )
    datamodule.setup("test")
    sample_rate = datamodule.sample_rate
    frequencies = cqt_frequencies(sample_rate=sample_rate)
    fmin, fmax = float(frequencies[0]), float(frequencies[-1])
    predicted, true = [], []
    batches = tqdm(datamodule.test_dataloader(), desc="pYIN baseline", unit="batch",
                   file=sys.stderr, leave=False)
    for batch in batches:
        audio = batch["x"].double().numpy()
        n_frames = audio.shape[-1] // BASELINE_HOP
        f0, _, _ = librosa.pyin(
            audio, fmin=fmin, fmax=fmax, sr=sample_rate, frame_length=BASELINE_FRAME_LENGTH,
            hop_length=BASELINE_HOP, center=True, pad_mode="constant", fill_na=None,
        )
        f0 = np.nan_to_num(f0[:, :n_frames], nan=fmin)
        predicted.append(f0)
        true.append(np.broadcast_to(batch["f0_hz"].double().numpy(), f0.shape)
                    if batch["f0_hz"].shape[-1] == 1 else batch["f0_hz"].double().numpy())
    record: dict[str, Any] = {
        "metrics": metrics.pitch_metrics(np.concatenate(predicted), np.concatenate(true))
    }
    families = _family_rows(np.concatenate(predicted), datamodule.meta)
    if families is not None:
        record["families"] = families
    return record


# ----------------------------------------------------------------------------------------------
# Cache
# ----------------------------------------------------------------------------------------------

def file_sha256(path: Path) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@functools.cache
def code_version() -> str:
    """EVAL_VERSION, the torch, nnAudio and librosa versions and a sha256 of the evaluation
    sources, computed once per process (the code that was imported is the code that runs)."""
    digest = hashlib.sha256()
    for name in EVAL_SOURCES:
        digest.update(name.encode())
        with contextlib.suppress(OSError):
            digest.update((train.REPO / name).read_bytes())
    versions = [torch.__version__]
    for package in ("nnAudio", "librosa"):
        try:
            versions.append(f"{package}={importlib.metadata.version(package)}")
        except importlib.metadata.PackageNotFoundError:
            versions.append(f"{package}=none")
    return f"{EVAL_VERSION}:{','.join(versions)}:{digest.hexdigest()[:16]}"


@dataclass
class ResultCache:
    """JSON records in ``directory``, one per key; written atomically, unreadable ones ignored."""

    directory: Path

    def _path(self, key: dict[str, Any]) -> Path:
        text = json.dumps(key, sort_keys=True)
        return self.directory / f"{hashlib.sha256(text.encode()).hexdigest()[:32]}.json"

    def get(self, key: dict[str, Any]) -> dict[str, Any] | None:
        path = self._path(key)
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError):
            return None
        if not isinstance(record, dict) or record.get("key") != key or "metrics" not in record:
            return None
        return record

    def put(self, key: dict[str, Any], value: dict[str, Any]) -> None:
        atomic_write_text(self._path(key), json.dumps({"key": key, **value}, indent=1) + "\n")


# ----------------------------------------------------------------------------------------------
# The table
# ----------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Column:
    """A table metric: runs.csv key, header, factor applied, and which values are better."""

    key: str
    header: str
    latex: str
    factor: float
    better: Literal["lower", "higher", "zero"]
    digits: int


TABLE_COLUMNS = (
    Column("lsd", "LSD", "LSD", 1.0, "lower", 2),
    Column("rpa", "RPA (%)", r"RPA (\%)", 100.0, "higher", 1),
    Column("rca", "RCA (%)", r"RCA (\%)", 100.0, "higher", 1),
    Column("od", "−OD", r"$-$OD", -1.0, "zero", 3),
)
DASH = "–"


@dataclass
class TableRow:
    """One row of the paper table: an experiment (over its seeds) or the baseline."""

    label: str
    experiment: str
    source: str
    n: int
    values: dict[str, list[float]] = field(default_factory=dict)  # column key -> per-seed values

    def stat(self, key: str, what: Literal["mean", "std", "median"]) -> float:
        values = [v for v in self.values.get(key, []) if math.isfinite(v)]
        if not values:
            return math.nan
        if what == "mean":
            return float(np.mean(values))
        if what == "median":
            return float(np.median(values))
        return float(np.std(values, ddof=1)) if len(values) > 1 else math.nan


def _label(experiment: str, source: str) -> str:
    return f"{experiment} (original)" if source == SOURCE_ORIGINAL else experiment


def summarize(rows: Sequence[dict[str, Any]]) -> list[TableRow]:
    """Group runs.csv rows by (experiment, source) into table rows, sorted by label.

    Column values are scaled for display (RPA, RCA in %, OD negated to -OD). Baseline rows
    (source "baseline") come last.
    """
    groups: dict[tuple[str, str], TableRow] = {}
    for row in rows:
        source = row["source"]
        label = _label(row["experiment"], source)
        key = (row["experiment"], source)
        table_row = groups.setdefault(key, TableRow(label, row["experiment"], source, 0))
        table_row.n += 1
        for column in TABLE_COLUMNS:
            value = row.get(column.key)
            if isinstance(value, (int, float)) and math.isfinite(value):
                table_row.values.setdefault(column.key, []).append(column.factor * float(value))
    return sorted(groups.values(), key=lambda r: (r.source == SOURCE_BASELINE, r.label))


def _goodness(value: float, better: Literal["lower", "higher", "zero"]) -> float:
    """Smaller is better: LSD as is, RPA/RCA negated, -OD by its distance to 0."""
    if better == "lower":
        return value
    if better == "higher":
        return -value
    return abs(value)


def mark_best(values: Sequence[float], better: Literal["lower", "higher", "zero"]) -> list[str]:
    """"best" / "second" / "" per value (NaN never marked).

    Ties share a mark: every value equal to the best is "best", every value equal to the next
    distinct value is "second". ``better``: "lower", "higher" or "zero" (closest to 0).
    """
    scores = [_goodness(v, better) if math.isfinite(v) else math.nan for v in values]
    distinct = sorted({s for s in scores if math.isfinite(s)})
    marks = []
    for score in scores:
        if distinct and score == distinct[0]:
            marks.append("best")
        elif len(distinct) > 1 and score == distinct[1]:
            marks.append("second")
        else:
            marks.append("")
    return marks


def _fmt(value: float, digits: int) -> str:
    if not math.isfinite(value):
        return DASH
    text = f"{value:.{digits}f}"
    return "0." + "0" * digits if text == "-0." + "0" * digits else text


@dataclass
class Cell:
    text: str
    mark: str = ""


def table_cells(rows: Sequence[TableRow]) -> list[list[Cell]]:
    """Cells per row: [n, then per column: "mean (std)", "median"], marks on experiment rows.

    Ranking uses the displayed (rounded) values of mean and median separately; baseline rows
    are shown but not ranked.
    """
    cells: list[list[Cell]] = []
    for row in rows:
        line = [Cell(str(row.n) if row.source != SOURCE_BASELINE else DASH)]
        for column in TABLE_COLUMNS:
            mean = _fmt(row.stat(column.key, "mean"), column.digits)
            std = _fmt(row.stat(column.key, "std"), column.digits)
            median = _fmt(row.stat(column.key, "median"), column.digits)
            if mean == DASH:
                line += [Cell(DASH), Cell(DASH)]
            elif row.source == SOURCE_BASELINE or row.n == 1:
                line += [Cell(mean if row.source == SOURCE_BASELINE else f"{mean} ({DASH})"),
                         Cell(median)]
            else:
                line += [Cell(f"{mean} ({std})"), Cell(median)]
        cells.append(line)
    ranked = [i for i, row in enumerate(rows) if row.source != SOURCE_BASELINE]
    for c, column in enumerate(TABLE_COLUMNS):
        for offset, what in ((0, "mean"), (1, "median")):
            shown = []
            for i in ranked:
                text = _fmt(rows[i].stat(column.key, what), column.digits)
                shown.append(float(text) if text != DASH else math.nan)
            for i, mark in zip(ranked, mark_best(shown, column.better)):
                cells[i][1 + 2 * c + offset].mark = mark
    return cells


def render_markdown(rows: Sequence[TableRow], notes: Sequence[str],
                    skipped: Sequence[Skipped]) -> str:
    """The table as Markdown: bold best, italic second best, then notes and skipped runs."""
    header = ["Experiment", "n"]
    for column in TABLE_COLUMNS:
        header += [f"{column.header} mean (std)", f"{column.header} median"]
    lines = ["| " + " | ".join(header) + " |",
             "|" + "|".join(["---"] + ["--:"] * (len(header) - 1)) + "|"]
    for row, cells in zip(rows, table_cells(rows)):
        texts = [f"**{c.text}**" if c.mark == "best" else f"*{c.text}*" if c.mark == "second"
                 else c.text for c in cells]
        lines.append("| " + " | ".join([row.label.replace("|", "\\|"), *texts]) + " |")
    out = "\n".join(lines) + "\n"
    if notes:
        out += "\n" + "\n".join(f"- {note}" for note in notes) + "\n"
    if skipped:
        out += "\n## Skipped\n\n" + "\n".join(f"- `{s.path}`: {s.reason}" for s in skipped) + "\n"
    return out


_LATEX_SPECIAL = {"&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{",
                  "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
                  "\\": r"\textbackslash{}"}


def _latex_escape(text: str) -> str:
    return "".join(_LATEX_SPECIAL.get(ch, ch) for ch in text)


def render_latex(rows: Sequence[TableRow]) -> str:
    """The table as a LaTeX tabular (needs ``booktabs``): \\textbf best, \\textit second."""
    n_cols = 2 + 2 * len(TABLE_COLUMNS)
    lines = [
        "% Generated by eval_paper.py; needs \\usepackage{booktabs}.",
        "\\begin{tabular}{l" + "r" * (n_cols - 1) + "}",
        "\\toprule",
        "Experiment & $n$ & " + " & ".join(f"\\multicolumn{{2}}{{c}}{{{c.latex}}}"
                                           for c in TABLE_COLUMNS) + " \\\\",
        " & & " + " & ".join("mean (std) & median" for _ in TABLE_COLUMNS) + " \\\\",
        "\\midrule",
    ]
    for row, cells in zip(rows, table_cells(rows)):
        if row.source == SOURCE_BASELINE:
            lines.append("\\midrule")
        texts = []
        for cell in cells:
            text = cell.text.replace(DASH, "--")
            texts.append(f"\\textbf{{{text}}}" if cell.mark == "best"
                         else f"\\textit{{{text}}}" if cell.mark == "second" else text)
        lines.append(" & ".join([_latex_escape(row.label), *texts]) + " \\\\")
    lines += ["\\bottomrule", "\\end{tabular}"]
    return "\n".join(lines) + "\n"


def table_csv(rows: Sequence[TableRow]) -> str:
    """The table as CSV: experiment, source, n and <metric>_{mean,std,median} (display units)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    names = {"lsd": "lsd", "rpa": "rpa_pct", "rca": "rca_pct", "od": "neg_od"}
    writer.writerow(["experiment", "label", "source", "n"]
                    + [f"{names[c.key]}_{s}" for c in TABLE_COLUMNS
                       for s in ("mean", "std", "median")])
    for row in rows:
        values = []
        for column in TABLE_COLUMNS:
            for what in ("mean", "std", "median"):
                value = row.stat(column.key, what)  # type: ignore[arg-type]
                values.append(repr(value) if math.isfinite(value) else "")
        writer.writerow([row.experiment, row.label, row.source, row.n, *values])
    return buffer.getvalue()


def _csv_value(value: Any) -> Any:
    """Empty for None, repr for floats (exact round trip), the value otherwise."""
    if value is None:
        return ""
    return repr(value) if isinstance(value, float) else value


def _csv_text(header: Sequence[str], rows: Sequence[dict[str, Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(header), lineterminator="\n",
                            extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _csv_value(row.get(k)) for k in header})
    return buffer.getvalue()


RUN_COLUMNS = ("experiment", "run", "seed", "checkpoint", "source", "finished", "epoch",
               "global_step", "data")


def runs_csv(rows: Sequence[dict[str, Any]]) -> str:
    """runs.csv text: RUN_COLUMNS, the core metrics, then any other metric (loss terms), floats
    written with repr (they read back exactly)."""
    extra = sorted({k for row in rows for k in row} - set(RUN_COLUMNS) - set(CORE_METRICS)
                   - {"families"})
    return _csv_text([*RUN_COLUMNS, *CORE_METRICS, *extra], rows)


def plot_rpa_per_seed(rows: Sequence[dict[str, Any]], path: Path) -> None:
    """Figure: RPA (%) and median cents error per seed for every experiment; the baseline as a
    dashed line. Written atomically as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    table = [r for r in summarize(rows) if r.source != SOURCE_BASELINE]
    baseline = next((r for r in rows if r["source"] == SOURCE_BASELINE), None)
    by_label: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        if row["source"] != SOURCE_BASELINE:
            by_label.setdefault(_label(row["experiment"], row["source"]), []).append(row)
    figure, axes = plt.subplots(1, 2, figsize=(max(8.0, 1.6 * len(table) + 4), 4.4))
    colors = {SOURCE_OURS: "tab:blue", SOURCE_ORIGINAL: "tab:orange"}
    names = {SOURCE_OURS: "our runs", SOURCE_ORIGINAL: "authors' checkpoints"}
    panels = (("rpa", 100.0, "RPA (%)", False),
              ("median_cents_error", 1.0, "median |error| (cents)", True))
    for ax, (key, factor, ylabel, log_scale) in zip(axes, panels):
        for x, table_row in enumerate(table):
            runs = [r for r in by_label[table_row.label] if isinstance(r.get(key), float)]
            values = np.array([factor * r[key] for r in runs])
            offsets = np.linspace(-0.15, 0.15, len(values)) if len(values) > 1 \
                else np.zeros(len(values))
            ax.scatter(x + offsets, values, s=28, zorder=3, color=colors[table_row.source])
            for offset, value, run in zip(offsets, values, runs):
                ax.annotate(str(run["seed"]), (x + offset, value), xytext=(4, 2),
                            textcoords="offset points", fontsize=6, color="0.35")
            if len(values):
                ax.hlines(np.mean(values), x - 0.25, x + 0.25, color="black", lw=1.5, zorder=4)
        handles = [plt.Line2D([], [], ls="", marker="o", color=colors[s], label=names[s])
                   for s in (SOURCE_OURS, SOURCE_ORIGINAL) if any(r.source == s for r in table)]
        handles.append(plt.Line2D([], [], color="black", lw=1.5, label="mean over seeds"))
        if baseline is not None and isinstance(baseline.get(key), float):
            handles.append(ax.axhline(factor * baseline[key], color="tab:green", ls="--", lw=1.2,
                                      label=BASELINE_NAME))
        ax.legend(handles=handles, loc="best", fontsize=7)
        ax.set_xticks(range(len(table)), [r.label for r in table], rotation=30, ha="right")
        ax.set_xlim(-0.6, len(table) - 0.4)
        ax.set_ylabel(ylabel)
        ax.grid(axis="y", alpha=0.3)
        if log_scale:
            ax.set_yscale("log")
        else:
            ax.set_ylim(-3, 103)
    axes[0].set_title("Raw pitch accuracy per seed (labels: seeds)")
    axes[1].set_title("Median f0 error per seed (log scale)")
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110)
    plt.close(figure)
    atomic_write_bytes(path, buffer.getvalue())


# ----------------------------------------------------------------------------------------------
# Command line
# ----------------------------------------------------------------------------------------------

def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


class _OneLineParser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise UserError(message)


def build_parser() -> argparse.ArgumentParser:
    """The command line (bad arguments raise UserError: one line, exit 2)."""
    parser = _OneLineParser(
        prog="eval_paper.py",
        description="Evaluate every run under --root on the test split and write the paper table.",
    )
    parser.add_argument("--root", type=Path, default=Path("checkpoints"),
                        help="runs as <root>/<experiment>/<run>/train_config.yaml "
                             "(default: checkpoints)")
    parser.add_argument("--data", type=Path, default=None,
                        help="data file to test on (default: each run's own config data_path)")
    parser.add_argument("--out", type=Path, default=Path("results"),
                        help="output directory (default: results)")
    parser.add_argument("--checkpoint", choices=("best", "last"), default="best",
                        help="best: the run's best-LSD checkpoint (default); last: last.ckpt")
    parser.add_argument("--device", choices=("cpu", "cuda", "auto"), default="auto",
                        help="auto: cuda when available, else cpu")
    parser.add_argument("--batch-size", type=_positive_int, default=None,
                        help="test batch size (default: each run's config)")
    parser.add_argument("--no-baseline", action="store_true",
                        help="leave out the pYIN baseline row")
    return parser


def _resolve_device(device: str) -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise UserError(
            "--device cuda was asked for but no CUDA device is available; use --device cpu"
        )
    return device


def _config_data_path(run: Run) -> Path:
    config = legacy.translate_config(run.config) if run.source == SOURCE_ORIGINAL else run.config
    with contextlib.suppress(AttributeError, KeyError, TypeError):
        return Path(config["data"]["init_args"]["data_path"])
    base = yaml.safe_load(train.BASE_CONFIG.read_text())
    return Path(base["data"]["init_args"]["data_path"])


def _data_file(path: Path, explicit: bool) -> Path:
    """An existing data file; a config's missing file is generated as training would."""
    if path.is_file():
        return path
    if explicit:
        raise UserError(f"--data {path}: file not found; generate it with synthetic_data.py")
    from synthetic_data import ensure_dataset

    try:
        ensure_dataset(path)
    except (OSError, ValueError) as error:
        raise RunError(
            f"data file {path} is missing and cannot be generated: {one_line(error)}"
        ) from None
    return path


@dataclass
class Evaluation:
    """Everything one eval_paper invocation produced."""

    rows: list[dict[str, Any]]
    skipped: list[Skipped]
    data_files: list[Path]
    from_cache: int  # runs whose metrics came from the cache
    evaluated: int  # runs evaluated by this invocation


def evaluate_all(args: argparse.Namespace, out: Path) -> Evaluation:
    """Evaluate every run under ``args.root`` (cached), then the baseline per data file."""
    from tqdm import tqdm

    root: Path = args.root
    if not root.is_dir():
        raise UserError(f"--root {root}: no such directory; train runs with train.py first")
    run_dirs = discover_runs(root)
    if not run_dirs:
        raise UserError(
            f"no runs under {root} (expected {root}/<experiment>/<run>/{CONFIG_FILE}); "
            "train some with train.py or pass --root"
        )
    device = _resolve_device(args.device)
    explicit_data = args.data is not None
    if explicit_data:
        _data_file(args.data, explicit=True)
    (out / "cache").mkdir(parents=True, exist_ok=True)  # fail now, not after evaluating
    cache = ResultCache(out / "cache")
    version = code_version()
    data_hashes: dict[Path, str] = {}
    rows: list[dict[str, Any]] = []
    skipped: list[Skipped] = []
    evaluated = from_cache = 0

    def skip(path: Path, reason: str) -> None:
        skipped.append(Skipped(str(path), reason))
        tqdm.write(f"eval_paper: skipped {path}: {reason}", file=sys.stderr)

    progress = tqdm(run_dirs, desc="evaluating runs", unit="run", file=sys.stderr)
    for run_dir in progress:
        progress.set_postfix_str(f"{run_dir.parent.name}/{run_dir.name}")
        try:
            run = read_run(run_dir, args.checkpoint)
            data_path = _data_file(args.data if explicit_data else _config_data_path(run),
                                   explicit_data)
            if data_path not in data_hashes:
                data_hashes[data_path] = file_sha256(data_path)
            key = {
                "checkpoint_sha256": file_sha256(run.checkpoint),
                "data_sha256": data_hashes[data_path],
                "config_sha256": file_sha256(run_dir / CONFIG_FILE),
                "code": version,
                "device": device,
                "batch_size": args.batch_size,
            }
            record = cache.get(key)
            if record is None:
                record = evaluate_checkpoint(run, data_path, device, args.batch_size)
                gc.collect()  # each rebuilt model and trainer holds ~75 MB until a full collection
                cache.put(key, record)
                evaluated += 1
            else:
                from_cache += 1
        except (RunError, CheckpointError) as error:
            skip(run_dir, one_line(error))
            continue
        rows.append({
            "experiment": run.experiment, "run": run.name, "seed": run.seed,
            "checkpoint": run.checkpoint.name, "source": run.source, "finished": run.finished,
            "epoch": record.get("epoch"), "global_step": record.get("global_step"),
            "data": str(data_path), "families": record.get("families"), **record["metrics"],
        })
    progress.close()

    data_files = sorted({Path(r["data"]) for r in rows})
    if not args.no_baseline:
        for data_path in data_files:
            key = {"baseline": "librosa.pyin", "data_sha256": data_hashes[data_path],
                   "code": version, "hop": BASELINE_HOP, "frame_length": BASELINE_FRAME_LENGTH}
            record = cache.get(key)
            if record is None:
                log.info("running the pYIN baseline on the test split of %s", data_path)
                try:
                    record = pitch_baseline(data_path)
                except (ValueError, OSError) as error:
                    skip(data_path, f"pYIN baseline failed: {one_line(error)}")
                    continue
                cache.put(key, record)
            label = BASELINE_NAME if len(data_files) == 1 else f"{BASELINE_NAME} [{data_path.name}]"
            rows.append({"experiment": label, "run": "pyin", "seed": None, "checkpoint": None,
                         "source": SOURCE_BASELINE, "finished": True, "epoch": None,
                         "global_step": None, "data": str(data_path),
                         "families": record.get("families"), **record["metrics"]})
    return Evaluation(rows, skipped, data_files, from_cache, evaluated)


def table_notes(evaluation: Evaluation) -> list[str]:
    """The notes printed under the table."""
    rows = evaluation.rows
    notes = [
        "Mean (std) and median over seeds; std is the sample standard deviation (ddof = 1), "
        f"{DASH} for a single seed; n = number of seeds (runs).",
        "Bold: best, italic: second best per column among the trained experiments (the "
        "baseline is not ranked; ties share a mark). LSD: lower is better; RPA, RCA: higher; "
        "−OD: closest to 0 is best, since an octave bias either way is equally wrong.",
        "Data: test split of " + ", ".join(f"`{p}`" for p in evaluation.data_files) + ".",
    ]
    original = [f"{r['experiment']}/{r['run']}" for r in rows if r["source"] == SOURCE_ORIGINAL]
    if original:
        notes.append(
            "Rows marked (original) are the paper authors' released checkpoints, read without "
            "their code and translated into our models by legacy.py: " + ", ".join(original) + "."
        )
    if any(r["source"] == SOURCE_BASELINE for r in rows):
        notes.append(
            f"{BASELINE_NAME}: librosa.pyin (no training) on the same peak-normalized test split, "
            f"hop {BASELINE_HOP} with centred frames so that frame t is centred on sample "
            f"{BASELINE_HOP}·t like the model's CQT frame t, first T = N // {BASELINE_HOP} "
            "frames, "
            "f0 searched between the first and last CQT bin frequencies, every frame scored as "
            f"voiced (pYIN's unvoiced frames keep their best f0 guess). Audio metrics: {DASH}."
        )
    unfinished = [f"{r['experiment']}/{r['run']}" for r in rows if r["finished"] is False]
    if unfinished:
        notes.append("Training not finished (no `done` marker) for: " + ", ".join(unfinished) + ".")
    return notes


def family_rows_table(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per experiment and instrument family: RPA and RCA (%) averaged over seeds, with n seeds."""
    grouped: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for row in rows:
        for family in row.get("families") or ():
            label = _label(row["experiment"], row["source"])
            grouped.setdefault((label, family["family"]), []).append(family)
    return [
        {"experiment": label, "family": family, "n": len(items),
         "examples": items[0]["n_examples"],
         "rpa_percent": 100 * float(np.mean([i["rpa"] for i in items])),
         "rca_percent": 100 * float(np.mean([i["rca"] for i in items])),
         "median_cents_error": float(np.mean([i["median_cents_error"] for i in items]))}
        for (label, family), items in grouped.items()
    ]


def render_family_markdown(table: Sequence[dict[str, Any]]) -> str:
    """The per-family table as Markdown: one row per experiment, RPA / RCA (%) per family."""
    families = list(dict.fromkeys(r["family"] for r in table))
    experiments = list(dict.fromkeys(r["experiment"] for r in table))
    cell = {(r["experiment"], r["family"]): r for r in table}
    lines = ["| experiment | " + " | ".join(f"{f} RPA / RCA (%)" for f in families) + " |",
             "|---|" + "---:|" * len(families)]
    for experiment in experiments:
        values = []
        for family in families:
            r = cell.get((experiment, family))
            values.append(DASH if r is None else f"{r['rpa_percent']:.1f} / {r['rca_percent']:.1f}")
        lines.append(f"| {experiment} | " + " | ".join(values) + " |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> Evaluation:
    """Entry point: evaluate, write results/*, print the Markdown table. Returns what it did."""
    args = build_parser().parse_args(argv)
    torch.set_float32_matmul_precision("high")  # as train.py, so GPU numbers match training's
    for name in ("lightning", "lightning.pytorch", "lightning.fabric", "pytorch_lightning"):
        logging.getLogger(name).setLevel(logging.WARNING)
    out: Path = args.out
    evaluation = evaluate_all(args, out)

    rows = evaluation.rows
    if not any(r["source"] != SOURCE_BASELINE for r in rows):
        # nothing is written: earlier results in --out stay as they were
        first = evaluation.skipped[0] if evaluation.skipped else None
        reason = f"; first: {Path(first.path).name}: {first.reason[:160]}" if first else ""
        raise UserError(
            f"no run could be evaluated ({len(evaluation.skipped)} skipped{reason}); "
            "fix or remove those runs"
        )
    table = summarize(rows)
    markdown = render_markdown(table, table_notes(evaluation), evaluation.skipped)
    atomic_write_text(out / "runs.csv", runs_csv(rows))
    atomic_write_text(out / "skipped.csv", _csv_text(
        ["path", "reason"], [{"path": s.path, "reason": s.reason} for s in evaluation.skipped]))
    atomic_write_text(out / "table.csv", table_csv(table))
    atomic_write_text(out / "table.md", markdown)
    atomic_write_text(out / "table.tex", render_latex(table))
    if any(r["source"] != SOURCE_BASELINE for r in rows):
        plot_rpa_per_seed(rows, out / "rpa_per_seed.png")
    family_table = family_rows_table(rows)
    if family_table:
        atomic_write_text(out / "families.csv", _csv_text(list(family_table[0]), family_table))
        family_markdown = render_family_markdown(family_table)
        atomic_write_text(out / "families.md", family_markdown)
        markdown += "\n\n### Per instrument family (real-instrument set)\n\n" + family_markdown
    print(markdown)
    log.info("%d run(s) evaluated, %d from the cache, %d skipped; results in %s",
             evaluation.evaluated, evaluation.from_cache, len(evaluation.skipped), out)
    return evaluation


if __name__ == "__main__":
    run_cli_main(main, known_errors=(RunError, CheckpointError))
