"""The reference runs' figures: their curves side by side (training loss, validation LSD, RPA and
median cents error against the training step, one line per run, from each run's curves.csv),
and with ``--f0-out`` the per-frame predicted against true f0 of each run's best-validation
checkpoint on the synthetic test split, one panel per run.

    python scripts/reference_figures.py [--root reference-runs] [--out figures/reference_curves.png]
                                        [--f0-out figures/reference_f0.png]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from sotddsp.core.atomic_files import atomic_write_bytes
from sotddsp.core.command_line import UserError, run_cli_main
from sotddsp.core.run_layout import (
    BEST_CHECKPOINT_GLOB,
    CHECKPOINT_DIR,
    CURVES_FILE,
    best_checkpoints,
    checkpoint_step,
    read_curves,
)
from sotddsp.data.synthetic import DEFAULT_DATA_PATH
from sotddsp.model.plotting import curves_figure, figure_png, models_f0_figure


def f0_figure(root: Path, data: Path):
    """One panel per run under ``root``: its newest best-validation checkpoint's per-frame
    predicted f0 against the true f0 of the test split of ``data``."""
    from sotddsp.data.datamodule import PreloadedSinusoidDataModule
    from sotddsp.model.checkpoints import load_checkpoint

    models = {}
    for run in sorted(p.parent for p in root.glob(f"*/*/{CURVES_FILE}")):
        found = best_checkpoints(run)
        if found:
            models[f"{run.name}, step {checkpoint_step(found[-1]):,}"] = load_checkpoint(found[-1])
    if not models:
        raise UserError(f"no {BEST_CHECKPOINT_GLOB} under {root}/<experiment>/<run>/{CHECKPOINT_DIR}/")
    datamodule = PreloadedSinusoidDataModule(data_path=str(data), batch_size=64)
    datamodule.setup("test")
    return models_f0_figure(models, datamodule.test_dataloader())


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=Path("reference-runs"))
    parser.add_argument("--out", type=Path, default=Path("figures") / "reference_curves.png")
    parser.add_argument("--f0-out", type=Path, default=None,
                        help="also draw predicted against true f0 of each run's best checkpoint")
    parser.add_argument("--data", type=Path, default=Path(DEFAULT_DATA_PATH))
    args = parser.parse_args(argv)
    runs = {}
    for path in sorted(args.root.glob(f"*/*/{CURVES_FILE}")):
        rows = read_curves(path.parent)
        if not rows:
            raise UserError(f"{path}: no rows, or not a readable CSV file; restore it from the "
                            "run's commit, or move the run out of --root")
        runs[path.parent.name] = rows
    if not runs:
        raise UserError(f"no {CURVES_FILE} under {args.root}/<experiment>/<run>/")
    steps = {name: max(int(r["step"]) for r in rows) for name, rows in runs.items()}
    title = "Reference runs: " + ", ".join(f"{n} (step {s:,})" for n, s in steps.items())
    atomic_write_bytes(args.out, figure_png(curves_figure(runs, title)))
    print(f"wrote {args.out}")
    if args.f0_out is not None:
        atomic_write_bytes(args.f0_out, figure_png(f0_figure(args.root, args.data)))
        print(f"wrote {args.f0_out}")
    return args.out


if __name__ == "__main__":
    run_cli_main(main)
