"""`make demo`: the evidence on the paper's claim, on CPU, and what a short run can and cannot
show.

1. the reference table: the finished runs at the paper's budget shipped in reference-runs/,
   evaluated from their checkpoints on the held-out test split (eval_paper.py --finished-only,
   without the slower pYIN row): mean (std), median and n over seeds, each run's step, the
   seeds that localize f0 beside the short-budget share, a note naming the runs still
   training, and a table of those runs' latest validation;
2. the shipped short-budget distribution: the share of seeds that localize f0 per experiment,
   with its 95 % Wilson interval (reference-runs/short-budget/summary.md, scripts/short_budget.py);
3. a live short-budget run of seed 0 of SOT-2048 and of MSS-Lin (the cpu-quick preset: lr 1e-3,
   batch 16, 640 steps; the two at once, one thread each; --seeds for more) through the same
   script, each live seed printed beside the shipped row of the same seed with the CPU kernels
   each ran on, and a figure of predicted against true f0 (demo-output/f0_demo.png).

The data set is generated on first use.
"""

from __future__ import annotations

import argparse
import csv
import json
import time
from pathlib import Path
from typing import Any

import short_budget

from sotddsp.apps import evaluate as eval_paper
from sotddsp.core.atomic_files import atomic_write_bytes
from sotddsp.core.command_line import run_cli_main
from sotddsp.core.result_tables import cents_text
from sotddsp.core.run_layout import (
    BEST_CHECKPOINT_GLOB,
    CHECKPOINT_DIR,
    REPO,
    TEST_METRICS_FILE,
    best_checkpoints,
    recorded_step,
    run_directory,
)
from sotddsp.data.datamodule import PreloadedSinusoidDataModule
from sotddsp.model.checkpoints import load_checkpoint
from sotddsp.model.plotting import figure_png, models_f0_figure
from sotddsp.model.runs import discover_runs, latest_validation, run_finished

EXPERIMENTS = ("SOT-2048", "MSS-Lin")
REFERENCE_ROOT = REPO / "reference-runs"
SHIPPED_STUDY = short_budget.DEFAULT_ROOT
SHIPPED_SEEDS = SHIPPED_STUDY / short_budget.SEEDS_CSV  # the study's per-seed table
DATA = REPO / "data" / "40_1950_4096_04_1_4000_8_1_harmonic.pth"

WHAT_EACH_SHOWS = """\
What each part can show, and what it cannot:
- the reference table is the paper's budget (25,000 steps at batch 64, lr 1e-4); n is the
  number of finished seeds per experiment so far. The runs still training are listed below it
  with their latest validation: where a run stands, not a test result, and it can still move.
  Whether SOT finds f0 where MSS does not, at the paper's budget, is a claim about these rows
  once several seeds have finished.
- the short-budget distribution (640 steps at lr 1e-3) is about many seeds of a cheap recipe:
  the share that localize f0 (median |error| <= 100 cents, a rule fixed before any result).
  It says how often a short run finds f0, not what the paper's budget does.
- the live seeds show the recipe running end to end. A short run is chaotic: on a CPU whose
  kernels differ from the shipped runs' (AVX2 against AVX-512, another torch build, another
  thread count), the same seed ends somewhere else from the first steps on. Compare the live
  seeds with the shipped distribution, never with the shipped seed of the same number."""


def reference_table(out: Path) -> bool:
    """Evaluate the shipped reference runs (no baseline row); False when there are none."""
    runs = sorted(REFERENCE_ROOT.glob(f"*/*/{CHECKPOINT_DIR}/{BEST_CHECKPOINT_GLOB}"))
    print("\n=== 1. the reference runs (reference-runs/, the paper's budget) ===", flush=True)
    if not runs:
        print("this checkout holds no reference run with a best checkpoint yet")
        return False
    beside = ["--short-budget", str(SHIPPED_SEEDS)] if SHIPPED_SEEDS.is_file() else []
    eval_paper.main(["--root", str(REFERENCE_ROOT), "--out", str(out / "reference"),
                     "--device", "cpu", "--no-baseline", "--finished-only", *beside])
    progress = still_training(REFERENCE_ROOT)
    if progress:
        print("\nThe runs still training, at their latest validation (validation split, from "
              "curves.csv; not tested yet):\n\n" + progress)
    return True


def still_training(root: Path) -> str:
    """A Markdown table of the runs under ``root`` whose training has not finished: each run's
    last step and its latest validation (800 examples; from curves.csv, not a test result); a
    median |error| under 10 cents with one decimal.
    '' when every run has finished."""
    lines = []
    for run_dir in discover_runs(root):
        if run_finished(run_dir):
            continue
        val = latest_validation(run_dir)
        if val is None:
            lines.append(f"| {run_dir.parent.name}/{run_dir.name} | – | – | – | – |")
            continue
        step = recorded_step(run_dir)
        cents = val.get("median_cents_error", float("nan"))
        rpa = 100 * val.get("rpa", float("nan"))
        lines.append(f"| {run_dir.parent.name}/{run_dir.name} | {step:,} | {int(val['step']):,} "
                     f"| {cents_text(cents)} | {rpa:.1f} |")
    if not lines:
        return ""
    header = ("| run still training | step | last validation at step "
              "| its median \\|error\\| (cents) | its RPA (%) |")
    return "\n".join([header, "|---|--:|--:|--:|--:|", *lines])


def shipped_summary() -> list[dict[str, str]]:
    """Print the shipped study's per-experiment table; return its per-seed rows ([] if none)."""
    print("\n=== 2. the shipped short-budget distribution (reference-runs/short-budget/) ===")
    summary = SHIPPED_STUDY / short_budget.SUMMARY_MD
    if not summary.is_file() or not SHIPPED_SEEDS.is_file():
        print("this checkout ships no short-budget study")
        return []
    blocks = summary.read_text().strip().split("\n\n")
    rule = [b for b in blocks if b.startswith("Rule")]
    tables = [b for b in blocks if b.startswith("|")]
    print("\n\n".join(rule + tables[:1]))  # the rule, and the per-experiment table
    with open(SHIPPED_SEEDS, newline="") as handle:
        return list(csv.DictReader(handle))


def cpu_kernels(run_dir: Path) -> str:
    """The CPU kernels a finished run ran on (its test_metrics.json "machine" record), or
    "not recorded" for a run tested before the record existed."""
    try:
        machine = json.loads((run_dir / TEST_METRICS_FILE).read_text()).get("machine") or {}
    except (OSError, ValueError):
        machine = {}
    if not machine:
        return "not recorded"
    return f"{machine['cpu_capability']}, {machine['threads']} thread(s)"


def comparison_table(live: list[dict[str, Any]], shipped: list[dict[str, str]],
                     live_root: Path, shipped_root: Path) -> str:
    """Each live seed's median |error|, localization, steps and CPU kernels beside the shipped
    row of the same experiment and seed ('–' when the shipped study has none)."""
    by_key = {(r["experiment"], int(r["seed"])): r for r in shipped}
    header = ("| experiment | seed | live median \\|error\\| (cents) | shipped | live steps "
              "| shipped steps | live localizes | same as shipped | live CPU kernels "
              "| shipped CPU kernels |")
    lines = [header, "|---|--:|--:|--:|--:|--:|---|---|---|---|"]
    limit = short_budget.LOCALIZE_MAX_MEDIAN_CENTS
    for row in live:
        experiment, seed = row["experiment"], int(row["seed"])
        ship = by_key.get((experiment, seed))
        live_cents = float(row["median_abs_cents"])
        if ship is None:
            shipped_cents, shipped_steps, same, shipped_kernels = "–", "–", "–", "–"
        else:
            shipped_cents = f"{float(ship['median_abs_cents']):.0f}"
            shipped_steps = ship["steps"]
            same = "yes" if (abs(float(ship["median_abs_cents"]) - live_cents) < 0.5
                             and int(ship["steps"]) == int(row["steps"])) else "no"
            shipped_kernels = cpu_kernels(run_directory(shipped_root, experiment, seed))
        lines.append(f"| {experiment} | {seed} | {live_cents:.0f} | {shipped_cents} "
                     f"| {row['steps']} | {shipped_steps} "
                     f"| {'yes' if live_cents <= limit else 'no'} | {same} "
                     f"| {cpu_kernels(run_directory(live_root, experiment, seed))} "
                     f"| {shipped_kernels} |")
    return "\n".join(lines)


def f0_figure(root: Path, seed: int, out: Path) -> Path | None:
    """Predicted against true f0 on the test split, one panel per experiment (seed ``seed``)."""
    models = {}
    for experiment in EXPERIMENTS:
        best = best_checkpoints(run_directory(root, experiment, seed))
        if best:
            models[f"{experiment}, seed {seed}"] = load_checkpoint(best[-1])
    if not models:
        return None
    datamodule = PreloadedSinusoidDataModule(data_path=str(DATA), batch_size_val=100)
    datamodule.setup("test")
    atomic_write_bytes(out, figure_png(models_f0_figure(models, datamodule.test_dataloader())))
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "demo-output")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], metavar="SEED",
                        help="the live seeds of each experiment (0)")
    parser.add_argument("--skip-reference", action="store_true",
                        help="leave out the reference table (part 1)")
    args = parser.parse_args(argv)

    started = time.perf_counter()
    if not args.skip_reference:
        reference_table(args.out)
    shipped = shipped_summary()
    print(f"\n=== 3. live: seeds {', '.join(map(str, args.seeds))} of "
          f"{' and '.join(EXPERIMENTS)} at the short budget ===", flush=True)
    live_root = args.out / "short-budget"
    live = short_budget.main(["--experiments", *EXPERIMENTS, "--seed-list",
                              *map(str, args.seeds), "--root", str(live_root), "--jobs", "2"])
    table = comparison_table(live, shipped, live_root, SHIPPED_STUDY)
    (args.out / "demo_results.md").write_text(table + "\n")
    print("\n=== the live seeds beside the shipped ones ===\n\n" + table)
    figure = f0_figure(live_root, args.seeds[0], args.out / "f0_demo.png")
    print("\n" + WHAT_EACH_SHOWS)
    print(f"\nfigures: {live_root / short_budget.SEEDS_FIGURE}, {figure}\n"
          f"table: {args.out / 'demo_results.md'}")
    print(f"total time: {(time.perf_counter() - started) / 60:.1f} min")


if __name__ == "__main__":
    run_cli_main(main)
