"""`make demo`: the main job on CPU, end to end, and what it can and cannot show.

1. the reference table: the runs at the paper's budget shipped in reference-runs/, evaluated
   from their checkpoints on the held-out test split in seconds (eval_paper.py; the same rows as
   the README's table, without the slower pYIN baseline row);
2. a live short training: SOT-2048 and MSS-Lin with the short CPU preset
   (paper-experiments/presets/cpu-quick.yaml), each tested with its best-validation-LSD
   checkpoint, a Markdown table (LSD, RPA, RCA, -OD, median cents error, within half an octave,
   log-f0 correlation) and a figure of predicted against true f0, demo-output/f0_demo.png.

The data set is generated on first use.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from sotddsp.apps import evaluate as eval_paper
from sotddsp.apps import train
from sotddsp.core.atomic_files import atomic_write_bytes
from sotddsp.core.command_line import run_cli_main
from sotddsp.core.run_layout import (
    BEST_CHECKPOINT_GLOB,
    CHECKPOINT_DIR,
    EXPERIMENTS_DIR,
    LAST_CHECKPOINT,
    REPO,
    best_checkpoints,
)
from sotddsp.model.checkpoints import load_checkpoint
from sotddsp.model.cli import build_cli
from sotddsp.model.plotting import figure_png, models_f0_figure

EXPERIMENTS = ("SOT-2048", "MSS-Lin")
PRESET = EXPERIMENTS_DIR / "presets" / "cpu-quick.yaml"
REFERENCE_ROOT = REPO / "reference-runs"

WHAT_EACH_SHOWS = """\
What each table can show:
- the reference table: the paper's budget (25,000 steps at batch 64, lr 1e-4) for one seed;
  whether SOT finds f0 where MSS does not, as far as one seed of each can say (while a run
  still trains, its best checkpoint so far: the table's notes give each run's step);
- the live run: 640 CPU steps at lr 1e-3, batch 16, a few minutes; it shows the mechanism only
  (SOT's predictions follow the true pitch, MSS's collapse), and it is chaotic: a change at the
  level of rounding, another CPU, or another seed moves its numbers (docs/RESULTS.md)."""


def _table(rows: dict[str, dict[str, float]]) -> str:
    header = ("| experiment | LSD ↓ | RPA (%) ↑ | RCA (%) ↑ | −OD | median error (cents) ↓ "
              "| within half an octave (%) ↑ | log-f0 correlation ↑ |")
    lines = [header, "|" + "---|" * 8]
    for name, r in rows.items():
        lines.append(
            f"| {name} | {r['lsd']:.2f} | {100 * r['rpa']:.1f} | {100 * r['rca']:.1f} "
            f"| {-r['od']:.2f} | {r['median_cents_error']:.0f} | {100 * r['within_octave']:.1f} "
            f"| {r['log_f0_corr']:.2f} |"
        )
    return "\n".join(lines)


def reference_table(out: Path) -> bool:
    """Evaluate the shipped reference runs (no baseline row), finished or still training (the
    table's notes say which, and at which step); False when there are none."""
    runs = sorted(REFERENCE_ROOT.glob(f"*/*/{CHECKPOINT_DIR}/{BEST_CHECKPOINT_GLOB}"))
    print("\n=== the reference runs (reference-runs/, the paper's budget) ===", flush=True)
    if not runs:
        print("this checkout holds no reference run with a best checkpoint yet")
        return False
    eval_paper.main(["--root", str(REFERENCE_ROOT), "--out", str(out / "reference"),
                     "--device", "cpu", "--no-baseline"])
    return True


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "demo-output")
    parser.add_argument("--data", type=Path,
                        default=REPO / "data" / "40_1950_4096_04_1_4000_8_1_harmonic.pth")
    parser.add_argument("--max-steps", type=int, default=None,
                        help="override the preset's step count")
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args(argv)

    started = time.perf_counter()
    reference_table(args.out)
    results: dict[str, dict[str, float]] = {}
    models = {}
    datamodule = None
    for experiment in EXPERIMENTS:
        cli_args = [
            "--config", str(EXPERIMENTS_DIR / f"{experiment}.yaml"),
            "--config", str(PRESET),
            "--data.init_args.data_path", str(args.data),
            "--checkpoint_root", str(args.out / "checkpoints"),
            "--seed_everything", str(args.seed),
        ]
        if args.max_steps is not None:
            cli_args += ["--trainer.max_steps", str(args.max_steps)]
        print(f"\n=== live short run: training {experiment} (CPU preset) ===", flush=True)
        cli = build_cli(cli_args)
        results[experiment] = train.train_and_test(cli)
        best = best_checkpoints(cli.run_dir)
        models[experiment] = load_checkpoint(best[-1] if best
                                             else cli.run_dir / CHECKPOINT_DIR / LAST_CHECKPOINT)
        datamodule = cli.datamodule

    table = _table(results)
    figure = args.out / "f0_demo.png"
    datamodule.setup("test")
    atomic_write_bytes(figure, figure_png(models_f0_figure(models, datamodule.test_dataloader())))
    (args.out / "demo_results.md").write_text(table + "\n")
    print("\n=== live short run (640 CPU steps; the table of demo_results.md) ===\n\n" + table)
    print("\n" + WHAT_EACH_SHOWS)
    print(f"\nfigure: {figure}\ntable: {args.out / 'demo_results.md'}")
    print(f"total time: {(time.perf_counter() - started) / 60:.1f} min")


if __name__ == "__main__":
    run_cli_main(main)
