"""fp32 against bf16 (the encoder under autocast) on the same short run, over seeds.

    python scripts/compare_precision.py [--seeds 42 123 456] [--experiment SOT-2048]
                                        [--threads 1] [--out results/precision]

Each (precision, seed) is one ``train.py`` run of the experiment with the short CPU preset
(paper-experiments/presets/cpu-quick.yaml: lr 1e-3, batch 16, 640 steps), bf16 adding
presets/bf16.yaml; it is tested on the 400 held-out examples with its best-validation-LSD
checkpoint. Writes ``precision.csv`` (one row per run: its test metrics and wall time) and
``precision.md`` (the runs, then the median over seeds of each precision) under ``--out``.
Short runs are chaotic: the comparison is about the spread over seeds, not one seed's number.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from sotddsp.core.atomic_files import atomic_write_text
from sotddsp.core.command_line import UserError, positive_int, run_cli_main
from sotddsp.core.result_tables import csv_text
from sotddsp.core.run_layout import EXPERIMENTS_DIR, REPO, TEST_METRICS_FILE, run_directory

PRESETS = {"fp32": ("cpu-quick.yaml",), "bf16": ("cpu-quick.yaml", "bf16.yaml")}
COLUMNS = ("precision", "seed", "median_cents_error", "log_f0_corr", "rpa", "within_octave",
           "lsd", "minutes")


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=positive_int, nargs="+", default=[42, 123, 456])
    parser.add_argument("--experiment", default="SOT-2048")
    parser.add_argument("--threads", type=positive_int, default=1)
    parser.add_argument("--data", type=Path,
                        default=Path("data/40_1950_4096_04_1_4000_8_1_harmonic.pth"))
    parser.add_argument("--out", type=Path, default=Path("results") / "precision")
    args = parser.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for precision, presets in PRESETS.items():
            for seed in args.seeds:
                configs = [EXPERIMENTS_DIR / f"{args.experiment}.yaml",
                           *(EXPERIMENTS_DIR / "presets" / p for p in presets)]
                root = Path(tmp) / precision
                started = time.perf_counter()
                command = [sys.executable, str(REPO / "train.py"),
                           *(a for c in configs for a in ("--config", str(c))),
                           "--seed_everything", str(seed), "--checkpoint_root", str(root),
                           "--data.init_args.data_path", str(args.data)]
                env = {**os.environ, "OMP_NUM_THREADS": str(args.threads),
                       "MKL_NUM_THREADS": str(args.threads), "TQDM_DISABLE": "1"}
                done = subprocess.run(command, env=env, capture_output=True, text=True,
                                      check=False)
                if done.returncode != 0:
                    raise UserError(f"the {precision} run of seed {seed} failed: "
                                    f"{done.stderr.strip().splitlines()[-1]}")
                record = run_directory(root, args.experiment, seed) / TEST_METRICS_FILE
                metrics = json.loads(record.read_text())
                rows.append({"precision": precision, "seed": seed,
                             "minutes": (time.perf_counter() - started) / 60,
                             **{k: metrics[k] for k in COLUMNS[2:-1]}})
                print(f"{precision} seed {seed}: median error "
                      f"{metrics['median_cents_error']:.0f} cents, log-f0 correlation "
                      f"{metrics['log_f0_corr']:.2f}", flush=True)
    atomic_write_text(args.out / "precision.csv", csv_text(COLUMNS, rows))
    lines = [("| precision | seed | median error (cents) | log-f0 correlation | RPA (%) "
             "| within half an octave (%) | LSD | minutes |"), "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['precision']} | {r['seed']} | {r['median_cents_error']:.0f} "
                     f"| {r['log_f0_corr']:.2f} | {100 * r['rpa']:.1f} "
                     f"| {100 * r['within_octave']:.1f} | {r['lsd']:.2f} | {r['minutes']:.1f} |")
    for precision in PRESETS:
        mine = [r for r in rows if r["precision"] == precision]
        med = {k: statistics.median(r[k] for r in mine) for k in COLUMNS[2:]}
        lines.append(f"| **{precision}, median** | | {med['median_cents_error']:.0f} "
                     f"| {med['log_f0_corr']:.2f} | {100 * med['rpa']:.1f} "
                     f"| {100 * med['within_octave']:.1f} | {med['lsd']:.2f} "
                     f"| {med['minutes']:.1f} |")
    table = "\n".join(lines) + "\n"
    atomic_write_text(args.out / "precision.md", table)
    print(table)
    return rows


if __name__ == "__main__":
    run_cli_main(main)
