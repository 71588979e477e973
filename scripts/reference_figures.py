"""The reference runs' curves side by side: training loss, validation LSD, RPA and median cents
error against the training step, one line per run (from each run's curves.csv).

    python scripts/reference_figures.py [--root reference-runs] [--out figures/reference_curves.png]
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

from atomic_files import atomic_write_bytes
from command_line import UserError, run_cli_main
from plotting import curves_figure, figure_png
from run_layout import CURVES_FILE


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=Path("reference-runs"))
    parser.add_argument("--out", type=Path, default=Path("figures") / "reference_curves.png")
    args = parser.parse_args(argv)
    runs = {}
    for path in sorted(args.root.glob(f"*/*/{CURVES_FILE}")):
        with open(path, newline="") as handle:
            runs[path.parent.name] = list(csv.DictReader(handle))
    if not runs:
        raise UserError(f"no {CURVES_FILE} under {args.root}/<experiment>/<run>/")
    steps = {name: max(int(r["step"]) for r in rows) for name, rows in runs.items()}
    title = "Reference runs: " + ", ".join(f"{n} (step {s:,})" for n, s in steps.items())
    atomic_write_bytes(args.out, figure_png(curves_figure(runs, title)))
    print(f"wrote {args.out}")
    return args.out


if __name__ == "__main__":
    run_cli_main(main)
