"""Export a run's model as the package's default model: ``sotddsp/weights/default.ckpt`` (the
weights and the config, nothing to resume training) and ``default.json``, its provenance.

    python scripts/export_default_model.py                  # select: best validation RPA
    python scripts/export_default_model.py --run reference-runs/MSS-Lin/MSS-Lin-42
    python scripts/export_default_model.py --checkpoint RUN/checkpoints/best-lsd-299-13201.ckpt

Without --run or --checkpoint, the model is *selected*: among the finished runs under --root
(``done`` marker) trained for the full budget (``trainer.max_steps`` = --budget-steps, the
paper's 25,000), each run's tested checkpoint is evaluated on the **validation** split, and the
one with the highest validation RPA wins (ties: the lower validation median |error|, then the
name). The test split is never looked at to choose. A table of the candidates is printed.

With --run: the checkpoint the run tested (``test_metrics.json``), else, while it trains, its
best-validation checkpoint so far (``checkpoints.reference_checkpoint``).
Provenance: the run, the checkpoint, its epoch and step, its validation metrics (an evaluation
of the checkpoint on the validation split: curves.csv rows written before the MetricsHistory
fix lag one validation), its test metrics (``test_metrics.json`` when the run tested this
checkpoint, else an evaluation on the test split, as eval_paper.py computes them), how it was
chosen, and the sha256 of the written file. Prints the provenance.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import yaml

from sotddsp.apps.evaluate import config_data_path, data_file, evaluate_checkpoint
from sotddsp.core.command_line import OneLineArgumentParser, UserError, run_cli_main
from sotddsp.core.result_tables import SOURCE_OURS, cents_text
from sotddsp.core.run_layout import (
    DONE_MARKER,
    EXPERIMENTS_DIR,
    REPO,
    TEST_METRICS_FILE,
)
from sotddsp.model.checkpoints import (
    DEFAULT_WEIGHTS,
    CheckpointError,
    ConfigError,
    export_weights,
    reference_checkpoint,
)
from sotddsp.model.runs import Run, RunError, discover_runs, read_run

# the paper's budget, 25,000 steps, as the experiments' shared config states it
PAPER_BUDGET_STEPS = int(yaml.safe_load((EXPERIMENTS_DIR / "base.yaml").read_text())
                         ["trainer"]["max_steps"])

REPORTED = ("rpa", "rca", "lsd", "median_cents_error")


def split_metrics(run_dir: Path, checkpoint: Path, split: Literal["test", "val"]
                  ) -> dict[str, float]:
    """``REPORTED`` of ``checkpoint`` on the run's ``split`` split, as eval_paper.py computes
    them (``evaluate_checkpoint``), keyed ``<split>_<metric>``."""
    run = dataclasses.replace(read_run(run_dir, "last"), checkpoint=checkpoint)
    record = evaluate_checkpoint(run, data_file(config_data_path(run), explicit=False), "cpu",
                                 None, split=split)
    return {f"{split}_{k}": float(record["metrics"][k]) for k in REPORTED}


def test_metrics(run_dir: Path, checkpoint: Path) -> dict[str, float]:
    """The test metrics (``REPORTED``) of ``checkpoint``: the run's own when it tested this one,
    else an evaluation on the test split of the run's data (``evaluate_checkpoint``)."""
    recorded_path = run_dir / TEST_METRICS_FILE
    if recorded_path.is_file():
        recorded = json.loads(recorded_path.read_text())
        if recorded.get("checkpoint") == checkpoint.name:
            return {f"test_{k}": float(recorded[k]) for k in REPORTED if k in recorded}
    return split_metrics(run_dir, checkpoint, "test")


@dataclasses.dataclass(frozen=True)
class Candidate:
    """A finished full-budget run, its tested checkpoint and that checkpoint's validation
    metrics (``val_<metric>``)."""

    run_dir: Path
    checkpoint: Path
    validation: dict[str, float]

    @property
    def rank_key(self) -> tuple[float, float, str]:
        return (-self.validation["val_rpa"], self.validation["val_median_cents_error"],
                self.run_dir.name)


def full_budget_runs(root: Path, budget_steps: int) -> list[Run]:
    """Our finished runs under ``root`` (``<experiment>/<run>``, as ``read_run`` reads them)
    whose config trains for ``budget_steps`` steps; short-budget studies, unfinished runs and the
    authors' runs are left out. A finished run that cannot be read raises UserError."""
    chosen = []
    for run_dir in discover_runs(root):
        try:
            run = read_run(run_dir, "best")
        except RunError as error:
            if (run_dir / DONE_MARKER).exists():
                raise UserError(f"{run_dir}: {error}") from None
            continue  # still training, no best checkpoint yet
        trainer = run.config.get("trainer")
        if (run.source == SOURCE_OURS and run.finished and isinstance(trainer, dict)
                and trainer.get("max_steps") == budget_steps):
            chosen.append(run)
    return chosen


def select_by_validation(root: Path, budget_steps: int) -> list[Candidate]:
    """The candidates of ``full_budget_runs``, best first by validation RPA (``rank_key``).
    Raises UserError when there is none."""
    runs = full_budget_runs(root, budget_steps)
    if not runs:
        raise UserError(f"--root {root}: no finished run of {budget_steps:,} steps yet; wait "
                        "for one, or name a run with --run")
    candidates = [
        Candidate(run.run_dir, run.checkpoint, split_metrics(run.run_dir, run.checkpoint, "val"))
        for run in runs
    ]
    return sorted(candidates, key=lambda c: c.rank_key)


def candidates_table(candidates: Sequence[Candidate]) -> str:
    """A Markdown table of the candidates, best first (validation split only)."""
    lines = ["| run | checkpoint | val RPA (%) | val median \\|error\\| (cents) | val LSD |",
             "|---|---|--:|--:|--:|"]
    for c in candidates:
        v = c.validation
        lines.append(f"| {c.run_dir.name} | {c.checkpoint.name} | {100 * v['val_rpa']:.1f} "
                     f"| {cents_text(v['val_median_cents_error'])} | {v['val_lsd']:.2f} |")
    return "\n".join(lines)


def export(run_dir: Path, checkpoint: Path | None, out: Path, chosen_by: str,
           validation: dict[str, float] | None = None) -> dict[str, Any]:
    """Write ``out`` and its provenance (``out`` with .json); returns the provenance.
    ``validation``: the checkpoint's validation metrics when already computed."""
    checkpoint = reference_checkpoint(run_dir) if checkpoint is None else checkpoint
    run_dir = checkpoint.parent.parent
    try:
        name = str(run_dir.resolve().relative_to(REPO.resolve()))
    except ValueError:
        name = str(run_dir)
    provenance: dict[str, Any] = {
        "run": name,
        "finished": (run_dir / DONE_MARKER).exists(),
        "chosen_by": chosen_by,
        **(validation if validation is not None else split_metrics(run_dir, checkpoint, "val")),
        **test_metrics(run_dir, checkpoint),
    }
    return export_weights(checkpoint, out, provenance)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = OneLineArgumentParser(prog="export_default_model.py",
                                   description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", type=Path, default=None,
                        help="the run directory (default: select by validation RPA)")
    parser.add_argument("--root", type=Path, default=REPO / "reference-runs",
                        help="where to select from (default: reference-runs)")
    parser.add_argument("--budget-steps", type=int, default=PAPER_BUDGET_STEPS,
                        help=f"the full budget a candidate trained for ({PAPER_BUDGET_STEPS:,})")
    parser.add_argument("--checkpoint", type=Path, default=None,
                        help="the checkpoint (default: the run's tested one, else its best)")
    parser.add_argument("--out", type=Path, default=DEFAULT_WEIGHTS,
                        help=f"the weights file (default: {DEFAULT_WEIGHTS})")
    args = parser.parse_args(argv)
    if args.checkpoint is not None and not args.checkpoint.is_file():
        raise UserError(f"--checkpoint {args.checkpoint}: file not found")
    if args.run is not None and not args.run.is_dir():
        raise UserError(f"--run {args.run}: no such run directory")
    if args.checkpoint is not None or args.run is not None:
        run_dir = args.run if args.checkpoint is None else args.checkpoint.parent.parent
        provenance = export(run_dir, args.checkpoint, args.out, chosen_by="named")
    else:
        candidates = select_by_validation(args.root, args.budget_steps)
        print(candidates_table(candidates), file=sys.stderr)
        best = candidates[0]
        provenance = export(best.run_dir, best.checkpoint, args.out,
                            chosen_by=f"best validation RPA of {len(candidates)} finished "
                                      f"{args.budget_steps:,}-step runs under {args.root.name}",
                            validation=best.validation)
    json.dump(provenance, sys.stdout, indent=2)
    print()
    return provenance


if __name__ == "__main__":
    run_cli_main(main, known_errors=(CheckpointError, ConfigError, RunError))
