"""`make demo`: the main job on CPU, end to end, in minutes.

1. generates the paper's dataset (if missing) under data/;
2. trains SOT-2048 and MSS-Lin with the short CPU preset (paper-experiments/presets/cpu-quick.yaml);
3. tests each with its best-validation-LSD checkpoint on the held-out test split;
4. prints a Markdown table (LSD, RPA, RCA, -OD, plus median cents error and within-octave
   accuracy, the honest evidence at this short length) and saves a figure of predicted
   against true f0 for both to demo-output/f0_demo.png.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import train  # noqa: E402
from checkpoints import load_checkpoint  # noqa: E402
from command_line import run_cli_main  # noqa: E402
from plotting import draw_f0_scatter  # noqa: E402

EXPERIMENTS = ("SOT-2048", "MSS-Lin")
PRESET = REPO / "paper-experiments" / "presets" / "cpu-quick.yaml"


def _table(rows: dict[str, dict[str, float]]) -> str:
    header = ("| experiment | LSD ↓ | RPA (%) ↑ | RCA (%) ↑ | −OD | median error (cents) ↓ "
              "| within half an octave (%) ↑ | log-f0 correlation ↑ |")
    lines = [header, "|" + "---|" * 8]
    for name, r in rows.items():
        lines.append(
            f"| {name} | {r['lsd']:.2f} | {100 * r['rpa']:.1f} | {100 * r['rca']:.1f} | {-r['od']:.2f} "
            f"| {r['median_cents_error']:.0f} | {100 * r['within_octave']:.1f} | {r['log_f0_corr']:.2f} |"
        )
    return "\n".join(lines)


def _f0_figure(models: dict[str, torch.nn.Module], datamodule, out: Path) -> None:
    import matplotlib.pyplot as plt

    test = datamodule.test_dataloader()
    figure, axes = plt.subplots(1, len(models), figsize=(5 * len(models), 5), squeeze=False)
    for axis, (name, model) in zip(axes[0], models.items()):
        predicted, true = [], []
        with torch.no_grad():
            for batch in test:
                predicted.append(model.estimate(batch["x"])["f0_hz"])
                true.append(batch["f0_hz"].expand_as(predicted[-1]))
        draw_f0_scatter(axis, torch.cat(predicted).numpy(), torch.cat(true).numpy(), name,
                        limits_hz=(30.0, 8000.0))
    figure.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, dpi=110)
    plt.close(figure)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "demo-output")
    parser.add_argument("--data", type=Path, default=REPO / "data" / "40_1950_4096_04_1_4000_8_1_harmonic.pth")
    parser.add_argument("--max-steps", type=int, default=None, help="override the preset's step count")
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args(argv)

    started = time.perf_counter()
    results: dict[str, dict[str, float]] = {}
    models = {}
    datamodule = None
    for experiment in EXPERIMENTS:
        cli_args = [
            "--config", str(REPO / "paper-experiments" / f"{experiment}.yaml"),
            "--config", str(PRESET),
            "--data.init_args.data_path", str(args.data),
            "--checkpoint_root", str(args.out / "checkpoints"),
            "--seed_everything", str(args.seed),
        ]
        if args.max_steps is not None:
            cli_args += ["--trainer.max_steps", str(args.max_steps)]
        print(f"\n=== training {experiment} (CPU preset) ===", flush=True)
        cli = experiment_cli.build_cli(cli_args)
        results[experiment] = train.train_and_test(cli)
        best = sorted((cli.run_dir / "checkpoints").glob("best-lsd-*.ckpt"))
        models[experiment] = load_checkpoint(best[-1] if best else cli.run_dir / "checkpoints" / "last.ckpt")
        datamodule = cli.datamodule

    table = _table(results)
    figure = args.out / "f0_demo.png"
    datamodule.setup("test")
    _f0_figure(models, datamodule, figure)
    (args.out / "demo_results.md").write_text(table + "\n")
    print("\n" + table)
    print(f"\nfigure: {figure}\ntable: {args.out / 'demo_results.md'}")
    print(f"total time: {(time.perf_counter() - started) / 60:.1f} min")


if __name__ == "__main__":
    run_cli_main(main)
