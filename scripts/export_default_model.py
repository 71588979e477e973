"""Export a run's model as the package's default model: ``sotddsp/weights/default.ckpt`` (the
weights and the config, nothing to resume training) and ``default.json``, its provenance.

    python scripts/export_default_model.py                       # the reference SOT-2048 run
    python scripts/export_default_model.py --run reference-runs/MSS-Lin/MSS-Lin-42
    python scripts/export_default_model.py --checkpoint RUN/checkpoints/best-lsd-299-13201.ckpt

The checkpoint: ``--checkpoint``, else the one the run tested (``test_metrics.json``), else,
while it trains, its best-validation checkpoint so far (``checkpoints.reference_checkpoint``).
Provenance: the run, the checkpoint, its epoch and step, its validation metrics at that step
(``curves.csv``), its test metrics (``test_metrics.json`` when the run tested this checkpoint,
else an evaluation on the test split of the run's data, as eval_paper.py computes them), and the
sha256 of the written file. Prints the provenance.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sotddsp.apps.evaluate import config_data_path, data_file, evaluate_checkpoint
from sotddsp.core.command_line import OneLineArgumentParser, UserError, run_cli_main
from sotddsp.core.run_layout import CURVES_FILE, DONE_MARKER, REPO, TEST_METRICS_FILE
from sotddsp.model.checkpoints import (
    DEFAULT_WEIGHTS,
    REFERENCE_RUN,
    CheckpointError,
    ConfigError,
    export_weights,
    read_checkpoint,
    reference_checkpoint,
)
from sotddsp.model.runs import RunError, read_run

REPORTED = ("rpa", "rca", "lsd", "median_cents_error")


def validation_metrics(run_dir: Path, step: int | None) -> dict[str, float]:
    """The validation metrics (``REPORTED``) of ``curves.csv`` at ``step``, or {} without them."""
    path = run_dir / CURVES_FILE
    if step is None or not path.is_file():
        return {}
    with open(path, newline="") as handle:
        rows = [r for r in csv.DictReader(handle) if r["split"] == "val" and int(r["step"]) == step]
    if not rows:
        return {}
    return {f"val_{k}": float(rows[-1][f"val/{k}"]) for k in REPORTED if rows[-1].get(f"val/{k}")}


def test_metrics(run_dir: Path, checkpoint: Path) -> dict[str, float]:
    """The test metrics (``REPORTED``) of ``checkpoint``: the run's own when it tested this one,
    else an evaluation on the test split of the run's data (``evaluate_checkpoint``)."""
    recorded_path = run_dir / TEST_METRICS_FILE
    if recorded_path.is_file():
        recorded = json.loads(recorded_path.read_text())
        if recorded.get("checkpoint") == checkpoint.name:
            return {f"test_{k}": float(recorded[k]) for k in REPORTED if k in recorded}
    run = dataclasses.replace(read_run(run_dir, "last"), checkpoint=checkpoint)
    record = evaluate_checkpoint(run, data_file(config_data_path(run), explicit=False), "cpu", None)
    return {f"test_{k}": float(record["metrics"][k]) for k in REPORTED}


def export(run_dir: Path, checkpoint: Path | None, out: Path) -> dict[str, Any]:
    """Write ``out`` and its provenance (``out`` with .json); returns the provenance."""
    checkpoint = reference_checkpoint(run_dir) if checkpoint is None else checkpoint
    run_dir = checkpoint.parent.parent
    try:
        name = str(run_dir.resolve().relative_to(REPO.resolve()))
    except ValueError:
        name = str(run_dir)
    provenance: dict[str, Any] = {
        "run": name,
        "finished": (run_dir / DONE_MARKER).exists(),
        **validation_metrics(run_dir, read_checkpoint(checkpoint).global_step),
        **test_metrics(run_dir, checkpoint),
    }
    return export_weights(checkpoint, out, provenance)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = OneLineArgumentParser(prog="export_default_model.py",
                                   description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", type=Path, default=REFERENCE_RUN,
                        help="the run directory (default: the reference SOT-2048 run)")
    parser.add_argument("--checkpoint", type=Path, default=None,
                        help="the checkpoint (default: the run's tested one, else its best)")
    parser.add_argument("--out", type=Path, default=DEFAULT_WEIGHTS,
                        help=f"the weights file (default: {DEFAULT_WEIGHTS})")
    args = parser.parse_args(argv)
    if args.checkpoint is not None and not args.checkpoint.is_file():
        raise UserError(f"--checkpoint {args.checkpoint}: file not found")
    provenance = export(args.run, args.checkpoint, args.out)
    json.dump(provenance, sys.stdout, indent=2)
    print()
    return provenance


if __name__ == "__main__":
    run_cli_main(main, known_errors=(CheckpointError, ConfigError, RunError))
