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

``localization.md`` (also printed): per experiment, the seeds that localize f0 (median |error|
<= 100 cents, the rule the short-budget study fixed in advance) with a 95 % Wilson interval and
each seed's median |error|; with ``--short-budget SEEDS_CSV`` (a short-budget study's
``seeds.csv``), that study's share beside it; then the runs by seed where two experiments ran
a common seed (``result_tables.render_seed_pairs_markdown``: a seed's runs are paired).

A run still training is evaluated at its best checkpoint so far, and a note names it; with
``--finished-only`` it is left out of the table instead (a note names it), so that a mean over
seeds never mixes a few-hundred-step run with finished ones.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import functools
import gc
import hashlib
import importlib.metadata
import logging
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
import yaml

from sotddsp.core.atomic_files import atomic_write_bytes, atomic_write_text
from sotddsp.core.command_line import (
    OneLineArgumentParser,
    UserError,
    console_script,
    one_line,
    positive_int,
)
from sotddsp.core.result_cache import ResultCache, file_sha256
from sotddsp.core.result_tables import (
    BASELINE_NAME,
    DASH,
    LOCALIZE_MAX_MEDIAN_CENTS,
    SOURCE_BASELINE,
    SOURCE_ORIGINAL,
    SOURCE_OURS,
    Skipped,
    csv_text,
    family_rows_table,
    render_family_markdown,
    render_latex,
    render_localization_markdown,
    render_markdown,
    render_seed_pairs_markdown,
    runs_csv,
    summarize,
    table_csv,
)
from sotddsp.core.run_layout import BASE_CONFIG, CONFIG_FILE, PACKAGE_DIR, REPO
from sotddsp.model import original_format
from sotddsp.model.autoencoder import HarmonicAutoencoder
from sotddsp.model.baseline import (
    BASELINE_FRAME_LENGTH,
    BASELINE_HOP,
    family_rows,
    pitch_baseline,
)
from sotddsp.model.checkpoints import (
    CheckpointError,
    ConfigError,
    build_from_config,
    config_file_for,
    load_checkpoint,
    load_weights,
    read_checkpoint,
)
from sotddsp.model.cli import check_compatible
from sotddsp.model.plotting import figure_png, rpa_per_seed_figure
from sotddsp.model.runs import Run, RunError, discover_runs, read_run, run_finished

__all__ = [
    "RunError",
    "cli",
    "discover_runs",
    "evaluate_checkpoint",
    "load_checkpoint",
    "main",
    "pitch_baseline",
    "read_run",
]

log = logging.getLogger("eval_paper")

# Bump when evaluation changes in a way the source hash below cannot see.
EVAL_VERSION = "1"
# Source files whose code decides the numbers: any change re-evaluates (see code_version).
# The package's, relative to it:
EVAL_SOURCES = (
    "apps/evaluate.py", "model/checkpoints.py", "model/original_format.py", "model/cli.py",
    "model/autoencoder.py", "model/encoder.py", "model/baseline.py", "dsp/metrics.py",
    "dsp/losses.py", "dsp/ot.py", "dsp/spectral.py", "dsp/synth.py", "data/datamodule.py",
    "data/files.py", "core/class_paths.py",
)
# The C kernels' sources, in a checkout (relative to it):
EVAL_KERNEL_SOURCES = (
    "csrc/native_kernels.c", "csrc/sot_merge.h", "csrc/sot_merge_rows.h",
    "csrc/harmonic_synth.h", "csrc/harmonic_synth_rows.h",
)


# ----------------------------------------------------------------------------------------------
# Evaluation
# ----------------------------------------------------------------------------------------------

def _accelerator(device: str) -> str:
    return "gpu" if device == "cuda" else "cpu"


def evaluate_checkpoint(
    run: Run, data_path: Path, device: str, batch_size: int | None,
    split: Literal["test", "val"] = "test",
) -> dict[str, Any]:
    """Test ``run.checkpoint`` on the ``split`` split of ``data_path`` with ``trainer.test``
    (``"val"``: the validation split, through the same test metrics, for choosing among
    checkpoints without looking at the test split; no per-family rows then).

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
        if split == "test":
            cli.trainer.test(model, datamodule=datamodule, verbose=False)
        else:
            cli.trainer.test(model, dataloaders=datamodule.val_dataloader(), verbose=False)
        results = model.test_results()
        families = (family_rows(model.test_predictions()[0], datamodule.meta)
                    if results and split == "test" else None)
    if not results:
        raise RunError(f"the {split} split is empty")
    record = {"metrics": {k: float(v) for k, v in results.items()},
              "epoch": contents.epoch, "global_step": contents.global_step}
    if families is not None:
        record["families"] = families
    return record


@functools.cache
def code_version() -> str:
    """EVAL_VERSION, the torch, nnAudio and librosa versions and a sha256 of the evaluation
    sources, computed once per process (the code that was imported is the code that runs)."""
    digest = hashlib.sha256()
    sources = [(name, PACKAGE_DIR / name) for name in EVAL_SOURCES]
    sources += [(name, REPO / name) for name in EVAL_KERNEL_SOURCES]
    for name, path in sources:
        digest.update(name.encode())
        with contextlib.suppress(OSError):
            digest.update(path.read_bytes())
    versions = [torch.__version__]
    for package in ("nnAudio", "librosa"):
        try:
            versions.append(f"{package}={importlib.metadata.version(package)}")
        except importlib.metadata.PackageNotFoundError:
            versions.append(f"{package}=none")
    return f"{EVAL_VERSION}:{','.join(versions)}:{digest.hexdigest()[:16]}"


# ----------------------------------------------------------------------------------------------
# Command line
# ----------------------------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    """The command line (bad arguments raise UserError: one line, exit 2)."""
    parser = OneLineArgumentParser(
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
    parser.add_argument("--finished-only", action="store_true",
                        help="evaluate only the runs whose training finished (the `done` "
                             "marker; the authors' released runs count as finished); the "
                             "others are named in a note, not evaluated. Default: every run, "
                             "an unfinished one at its best checkpoint so far")
    parser.add_argument("--short-budget", type=Path, default=None, metavar="SEEDS_CSV",
                        help="a short-budget study's seeds.csv (scripts/short_budget.py, e.g. "
                             "reference-runs/short-budget/seeds.csv): its share of seeds that "
                             "localize f0 is put beside this table's")
    return parser


SHORT_BUDGET_COLUMNS = ("experiment", "median_abs_cents")


def read_short_budget(path: Path) -> list[dict[str, Any]]:
    """The rows of a short-budget ``seeds.csv`` (``experiment`` and ``median_abs_cents`` as a
    float); a missing or malformed file is a UserError naming it."""
    try:
        with open(path, newline="") as handle:
            rows = list(csv.DictReader(handle))
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise UserError(f"--short-budget {path}: cannot be read ({one_line(error)}); pass the "
                        "seeds.csv that scripts/short_budget.py wrote") from None
    missing = [c for c in SHORT_BUDGET_COLUMNS if not rows or c not in rows[0]]
    if missing:
        raise UserError(f"--short-budget {path}: no rows with the column(s) {', '.join(missing)}; "
                        "pass the seeds.csv that scripts/short_budget.py wrote")
    for number, row in enumerate(rows, start=2):
        try:
            row["median_abs_cents"] = float(row["median_abs_cents"])
        except (TypeError, ValueError):
            raise UserError(f"--short-budget {path}: line {number}: median_abs_cents "
                            f"{row['median_abs_cents']!r} is not a number; regenerate it with "
                            "scripts/short_budget.py --collect-only") from None
    return rows


def _resolve_device(device: str) -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise UserError(
            "--device cuda was asked for but no CUDA device is available; use --device cpu"
        )
    return device


def config_data_path(run: Run) -> Path:
    """The data file a run's config trains on (the authors' translated), else base.yaml's."""
    config = original_format.translate_config(run.config) if run.source == SOURCE_ORIGINAL \
        else run.config
    with contextlib.suppress(AttributeError, KeyError, TypeError):
        return Path(config["data"]["init_args"]["data_path"])
    base = yaml.safe_load(BASE_CONFIG.read_text())
    return Path(base["data"]["init_args"]["data_path"])


def data_file(path: Path, explicit: bool) -> Path:
    """An existing data file; a config's missing file is generated as training would."""
    if path.is_file():
        return path
    if explicit:
        raise UserError(f"--data {path}: file not found; generate it with synthetic_data.py")
    from sotddsp.data.synthetic import ensure_dataset

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
    left_out: list[str] = field(default_factory=list)  # unfinished, --finished-only


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
        data_file(args.data, explicit=True)
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

    left_out: list[str] = []
    progress = tqdm(run_dirs, desc="evaluating runs", unit="run", file=sys.stderr)
    for run_dir in progress:
        progress.set_postfix_str(f"{run_dir.parent.name}/{run_dir.name}")
        if args.finished_only and not run_finished(run_dir):
            left_out.append(f"{run_dir.parent.name}/{run_dir.name}")
            continue
        try:
            run = read_run(run_dir, args.checkpoint)
            data_path = data_file(args.data if explicit_data else config_data_path(run),
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
                except (ValueError, OSError, UserError) as error:  # UserError: librosa missing
                    skip(data_path, f"pYIN baseline failed: {one_line(error)}")
                    continue
                cache.put(key, record)
            label = BASELINE_NAME if len(data_files) == 1 else f"{BASELINE_NAME} [{data_path.name}]"
            rows.append({"experiment": label, "run": "pyin", "seed": None, "checkpoint": None,
                         "source": SOURCE_BASELINE, "finished": True, "epoch": None,
                         "global_step": None, "data": str(data_path),
                         "families": record.get("families"), **record["metrics"]})
    return Evaluation(rows, skipped, data_files, from_cache, evaluated, left_out)


def table_notes(evaluation: Evaluation) -> list[str]:
    """The notes printed under the table."""
    rows = evaluation.rows
    notes = [
        ("Mean (std) and median over seeds; std is the sample standard deviation (ddof = 1), "
        f"{DASH} for a single seed; n = number of seeds (runs)."),
        ("Bold: best, italic: second best per column among the trained experiments (the "
        "baseline is not ranked; ties share a mark). LSD: lower is better; RPA, RCA: higher; "
        "−OD: closest to 0 is best, since an octave bias either way is equally wrong."),
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
    if evaluation.left_out:
        notes.append("Left out, training not finished (--finished-only): "
                     + ", ".join(evaluation.left_out) + ".")
    return notes


def main(argv: Sequence[str] | None = None) -> Evaluation:
    """Entry point: evaluate, write results/*, print the Markdown table. Returns what it did."""
    args = build_parser().parse_args(argv)
    torch.set_float32_matmul_precision("high")  # as train.py, so GPU numbers match training's
    for name in ("lightning", "lightning.pytorch", "lightning.fabric", "pytorch_lightning"):
        logging.getLogger(name).setLevel(logging.WARNING)
    out: Path = args.out
    short_budget = read_short_budget(args.short_budget) if args.short_budget else []
    evaluation = evaluate_all(args, out)

    rows = evaluation.rows
    if not any(r["source"] != SOURCE_BASELINE for r in rows) and evaluation.left_out \
            and not evaluation.skipped:
        raise UserError(
            f"no run under {args.root} has finished training ({len(evaluation.left_out)} still "
            f"training: {', '.join(evaluation.left_out[:3])}); drop --finished-only to table "
            "them at their best checkpoints so far")
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
        atomic_write_bytes(out / "rpa_per_seed.png", figure_png(rpa_per_seed_figure(rows)))
    family_table = family_rows_table(rows)
    if family_table:
        atomic_write_text(out / "families.csv", csv_text(list(family_table[0]), family_table))
        family_markdown = render_family_markdown(family_table)
        atomic_write_text(out / "families.md", family_markdown)
        markdown += "\n\n### Per instrument family (real-instrument set)\n\n" + family_markdown
        per_run = family_rows_table(rows, per_run=True)
        atomic_write_text(out / "families_per_run.csv", csv_text(list(per_run[0]), per_run))
        per_run_markdown = render_family_markdown(per_run, first_column="run")
        atomic_write_text(out / "families_per_run.md", per_run_markdown)
        if any(r["n"] > 1 for r in family_table):  # else the same numbers as the table above
            markdown += ("\n\nThe same per run (a mean over seeds hides which seed found f0):"
                         "\n\n" + per_run_markdown)
    localization = render_localization_markdown(rows, short_budget)
    if localization:
        pairs = render_seed_pairs_markdown(rows)
        if pairs:
            localization += ("\nBy seed: a seed's runs share their start, batches and dropout "
                             "stream, so a row compares the losses from one start (median "
                             "|error| in cents; ✓: localizes).\n\n" + pairs)
        atomic_write_text(out / "localization.md", localization)
        budget_note = (f" Beside it, the short-budget study `{args.short_budget}`, same rule, "
                       "on the test split its runs were tested on." if short_budget else "")
        markdown += ("\n\n### Seeds that localize f0\n\nA seed localizes when its median "
                     f"|error| is <= {LOCALIZE_MAX_MEDIAN_CENTS:.0f} cents on this test split "
                     "(the rule fixed before any short-budget result); 95 % Wilson interval."
                     + budget_note + "\n\n" + localization)
    print(markdown)
    log.info("%d run(s) evaluated, %d from the cache, %d skipped; results in %s",
             evaluation.evaluated, evaluation.from_cache, len(evaluation.skipped), out)
    return evaluation


# The console script (and the thin script of a checkout).
cli = console_script(main, known_errors=(RunError, CheckpointError, ConfigError))


if __name__ == "__main__":
    cli()
