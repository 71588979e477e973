"""Evaluate every trained run on the test split and write the paper's results table.

    python eval_paper.py                      # every run under checkpoints/
    python eval_paper.py --root ~/their-checkpoints --checkpoint best --device auto

Runs are found as ``<root>/<experiment>/<run>/train_config.yaml`` with checkpoints in
``<root>/<experiment>/<run>/checkpoints/*.ckpt`` (our layout and the authors' released one;
their Lightning 1.x configs and checkpoints are read through ``checkpoints.py`` and
``original_format.py``). Each model is rebuilt from its run's own ``train_config.yaml`` and
tested with ``trainer.test``, the code path of training's final test, so a run's numbers equal
its ``test_metrics.json``. The table itself is result_tables.py's (pure functions).

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
import functools
import gc
import hashlib
import importlib.metadata
import io
import json
import logging
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import yaml

import metrics
import original_format
from atomic_files import atomic_write_bytes, atomic_write_text
from checkpoints import (
    CheckpointError,
    ConfigError,
    build_from_config,
    config_file_for,
    load_checkpoint,
    load_weights,
    read_checkpoint,
)
from command_line import OneLineArgumentParser, UserError, one_line, positive_int, run_cli_main
from experiment_cli import check_compatible
from models.autoencoder import HarmonicAutoencoder
from models.spectral import cqt_frequencies
from result_tables import (
    DASH,
    SOURCE_BASELINE,
    SOURCE_ORIGINAL,
    SOURCE_OURS,
    Skipped,
    csv_text,
    family_rows_table,
    label,
    render_family_markdown,
    render_latex,
    render_markdown,
    runs_csv,
    summarize,
    table_csv,
)
from run_layout import (
    BASE_CONFIG,
    BEST_CHECKPOINT_GLOB,
    CHECKPOINT_DIR,
    CONFIG_FILE,
    DONE_MARKER,
    LAST_CHECKPOINT,
    REPO,
    best_checkpoints,
    tested_checkpoint,
)

__all__ = [
    "RunError",
    "discover_runs",
    "evaluate_checkpoint",
    "load_checkpoint",
    "main",
    "pitch_baseline",
]

log = logging.getLogger("eval_paper")

# Bump when evaluation changes in a way the source hash below cannot see.
EVAL_VERSION = "1"
# Source files whose code decides the numbers: any change re-evaluates (see code_version).
EVAL_SOURCES = (
    "eval_paper.py", "checkpoints.py", "original_format.py", "experiment_cli.py", "metrics.py",
    "losses.py", "datamodule.py", "data_files.py", "models/autoencoder.py", "models/encoder.py",
    "models/spectral.py", "models/synth.py", "csrc/native_kernels.c", "csrc/sot_merge.h",
    "csrc/sot_merge_rows.h", "csrc/harmonic_synth.h", "csrc/harmonic_synth_rows.h",
)

BASELINE_NAME = "pYIN (baseline)"
BASELINE_HOP = 256  # the model's control-frame hop: T = N // 256 frames per example
BASELINE_FRAME_LENGTH = 2048  # 128 ms at 16 kHz: about 4 periods of the lowest CQT bin


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
    finished = source == SOURCE_ORIGINAL or (run_dir / DONE_MARKER).exists()
    return Run(
        run_dir=run_dir, experiment=experiment, name=run_dir.name, source=source,
        seed=seed if isinstance(seed, int) and not isinstance(seed, bool) else None,
        config=config, checkpoint=checkpoint, finished=finished,
    )


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
        config_file = config_file_for(run.config, Path(tmp), config_text)
        cli = build_from_config(config_file, extra, Path(tmp))
        model: HarmonicAutoencoder = cli.model
        datamodule = cli.datamodule
        load_weights(model, contents, original=run.source == SOURCE_ORIGINAL)
        try:
            datamodule.prepare_data()
            datamodule.setup("test")
            check_compatible(model, datamodule)
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

    from datamodule import PreloadedSinusoidDataModule

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
            digest.update((REPO / name).read_bytes())
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
# The figure
# ----------------------------------------------------------------------------------------------

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
            by_label.setdefault(label(row["experiment"], row["source"]), []).append(row)
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

def build_parser() -> argparse.ArgumentParser:
    """The command line (bad arguments raise UserError: one line, exit 2)."""
    parser = OneLineArgumentParser(
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
    parser.add_argument("--batch-size", type=positive_int, default=None,
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
    config = original_format.translate_config(run.config) if run.source == SOURCE_ORIGINAL \
        else run.config
    with contextlib.suppress(AttributeError, KeyError, TypeError):
        return Path(config["data"]["init_args"]["data_path"])
    base = yaml.safe_load(BASE_CONFIG.read_text())
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
        except (RunError, CheckpointError, ConfigError) as error:
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
            "their code and translated into our models by original_format.py: " + ", ".join(original) + "."
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
    steps = [f"{r['run']} at step {r['global_step']:,}" for r in rows
             if r["source"] == SOURCE_OURS and r["global_step"] is not None]
    if steps:
        notes.append("Checkpoints evaluated: " + ", ".join(steps) + ".")
    unfinished = [f"{r['experiment']}/{r['run']}" for r in rows if r["finished"] is False]
    if unfinished:
        notes.append("Training not finished (no `done` marker) for: " + ", ".join(unfinished) + ".")
    return notes


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
    atomic_write_text(out / "skipped.csv", csv_text(
        ["path", "reason"], [{"path": s.path, "reason": s.reason} for s in evaluation.skipped]))
    atomic_write_text(out / "table.csv", table_csv(table))
    atomic_write_text(out / "table.md", markdown)
    atomic_write_text(out / "table.tex", render_latex(table))
    if any(r["source"] != SOURCE_BASELINE for r in rows):
        plot_rpa_per_seed(rows, out / "rpa_per_seed.png")
    family_table = family_rows_table(rows)
    if family_table:
        atomic_write_text(out / "families.csv", csv_text(list(family_table[0]), family_table))
        family_markdown = render_family_markdown(family_table)
        atomic_write_text(out / "families.md", family_markdown)
        markdown += "\n\n### Per instrument family (real-instrument set)\n\n" + family_markdown
    print(markdown)
    log.info("%d run(s) evaluated, %d from the cache, %d skipped; results in %s",
             evaluation.evaluated, evaluation.from_cache, len(evaluation.skipped), out)
    return evaluation


if __name__ == "__main__":
    run_cli_main(main, known_errors=(RunError, CheckpointError, ConfigError))
