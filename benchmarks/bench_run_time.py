"""A paper run's wall time, measured on real training steps and projected to the paper's budget.

    python benchmarks/bench_run_time.py [--steps 500] [--device cpu|cuda] [--precision fp32|bf16]
                                        [--experiment SOT-2048] [--processes 1] [--threads N]

Trains the experiment's config (``paper-experiments/<experiment>.yaml``: batch 64, lr 1e-4, the
paper's data set, generated if missing) through the real ``Trainer.fit`` for ``--steps`` steps,
validating on the 800 validation examples after every epoch (44 batches), and measures:

- the training step: wall time of the fit outside validation passes, divided by its steps,
  after the first epoch (which also fills the CQT cache); it includes the data loading, the
  loss, backward, Adam, logging, the progress bar and the epoch-end ``last.ckpt``;
- one validation pass (800 examples, metrics and figures included), the median over passes.

Projection of one paper run: 25,000 steps + 113 validation passes (every 5 epochs of 44
batches: epochs 5, 10, ..., 565) + the test (400 examples, about half a validation pass), and of
the paper's table (7 experiments x 5 seeds = 35 runs) one run after another. With
``--processes P``, P copies run at once as separate processes sharing the machine (or GPU); each
measures its own step, and the table's projection is ceil(35 / P) rounds of the slowest copy's run.
``--precision bf16`` runs the encoder under bf16 autocast (presets/bf16.yaml). Logs go to CSV
(W&B, the default logger, is left out so that the script runs where wandb is not installed).
Prints a Markdown table; ``--json`` writes the numbers.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from sotddsp.core.run_layout import PRESETS_DIR, REPO, experiment_config

PAPER_STEPS = 25_000
BATCHES_PER_EPOCH = 44  # ceil(2800 / 64)
VALIDATION_EVERY = 5  # epochs
TABLE_RUNS = 35  # 7 experiments x 5 seeds
TEST_PASSES = 0.5  # the test: 400 examples against 800 in a validation pass


def paper_validations(steps: int = PAPER_STEPS) -> int:
    """Validation passes in a run of ``steps``: one after every 5th completed epoch."""
    return (steps // BATCHES_PER_EPOCH) // VALIDATION_EVERY


def project(step_s: float, validation_s: float, processes: int = 1) -> dict[str, float]:
    """Hours of one paper run and of the 35-run table (ceil(35 / processes) rounds)."""
    run_s = PAPER_STEPS * step_s + (paper_validations() + TEST_PASSES) * validation_s
    rounds = math.ceil(TABLE_RUNS / processes)
    return {
        "run_h": run_s / 3600,
        "table_h": rounds * run_s / 3600,
        "validation_share": paper_validations() * validation_s / (PAPER_STEPS * step_s),
    }


def step_seconds(first: float, last: float, steps: int,
                 validations: list[tuple[float, float]]) -> float:
    """Seconds a training step: from ``first`` (the start of the first timed step) to ``last``
    (the end of the last), ``steps`` steps, less the validation passes (start, end) that lie
    between them (the pass after the last step is not inside)."""
    inside = sum(end - start for start, end in validations if start >= first and end <= last)
    return (last - first - inside) / steps


def measure(args: argparse.Namespace) -> dict[str, float]:
    """One process: fit ``args.steps`` steps and time steps and validation passes."""
    import torch
    from lightning.pytorch import Callback

    from sotddsp.model.cli import build_cli

    if args.threads:
        torch.set_num_threads(args.threads)

    class Timer(Callback):
        def __init__(self) -> None:
            self.first: float | None = None
            self.last = 0.0
            self.steps = 0
            self.intervals: list[tuple[float, float]] = []  # (start, end) of each pass

        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
            if trainer.current_epoch >= 1 and self.first is None:
                self.first = time.perf_counter()

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
            if self.first is not None:
                self.last = time.perf_counter()
                self.steps += 1

        def on_validation_start(self, trainer, pl_module) -> None:
            self._start = time.perf_counter()

        def on_validation_end(self, trainer, pl_module) -> None:
            if not trainer.sanity_checking:
                self.intervals.append((self._start, time.perf_counter()))

    timer = Timer()
    with tempfile.TemporaryDirectory() as tmp:
        config = ["--config", str(experiment_config(args.experiment))]
        if args.precision == "bf16":
            config += ["--config", str(PRESETS_DIR / "bf16.yaml")]
        cli = build_cli([
            *config,
            "--data.init_args.data_path", str(args.data),
            "--checkpoint_root", str(Path(tmp) / "runs"),
            "--trainer.accelerator", "gpu" if args.device == "cuda" else "cpu",
            "--trainer.max_steps", str(args.steps),
            "--trainer.check_val_every_n_epoch", "1",
            "--trainer.num_sanity_val_steps", "0",
            "--trainer.logger", "lightning.pytorch.loggers.CSVLogger",
            "--trainer.logger.save_dir", str(Path(tmp) / "logs"),
            *(["--data.init_args.batch_size", str(args.batch_size)] if args.batch_size else []),
        ])
        cli.trainer.callbacks.append(timer)
        cli.datamodule.prepare_data()
        cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    if timer.first is None or timer.steps < 2:
        raise SystemExit("bench_run_time.py: error: too few steps after the first epoch; "
                         f"give --steps > {2 * BATCHES_PER_EPOCH}")
    step_s = step_seconds(timer.first, timer.last, timer.steps, timer.intervals)
    passes = [end - start for start, end in timer.intervals]
    return {"step_s": step_s, "validation_s": statistics.median(passes),
            "steps_timed": timer.steps, "validations": len(passes)}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--precision", choices=("fp32", "bf16"), default="fp32")
    parser.add_argument("--experiment", default="SOT-2048")
    parser.add_argument("--processes", type=int, default=1,
                        help="copies run at once, as separate processes")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    parser.add_argument("--batch-size", type=int, default=0,
                        help="training batch size (0: the experiment's, the paper's 64); another "
                             "size is no measurement of a paper run (gpu_check.sh --smoke)")
    parser.add_argument("--data", type=Path,
                        default=REPO / "data" / "40_1950_4096_04_1_4000_8_1_harmonic.pth")
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    parser.add_argument("--quick", action="store_true", help="100 steps (two validations)")
    args = parser.parse_args(argv)
    if args.quick:
        args.steps = 100

    if args.processes == 1:
        results = [measure(args)]
    else:
        from sotddsp.data.synthetic import ensure_dataset

        ensure_dataset(args.data)  # once, before the copies start
        with tempfile.TemporaryDirectory() as tmp:
            outputs = [Path(tmp) / f"copy-{i}.json" for i in range(args.processes)]
            base = [sys.executable, __file__, "--steps", str(args.steps), "--device", args.device,
                    "--precision", args.precision, "--experiment", args.experiment,
                    "--threads", str(args.threads), "--data", str(args.data),
                    "--batch-size", str(args.batch_size)]
            copies = [subprocess.Popen([*base, "--json", str(out)]) for out in outputs]
            if any(copy.wait() != 0 for copy in copies):
                raise SystemExit("bench_run_time.py: error: a copy failed (see its output above)")
            results = [json.loads(out.read_text())["copies"][0] for out in outputs]

    slowest = max(results, key=lambda r: r["step_s"])
    projection = project(slowest["step_s"], slowest["validation_s"], args.processes)
    summary = {
        "device": args.device, "precision": args.precision, "experiment": args.experiment,
        "processes": args.processes, "batch_size": args.batch_size or "the experiment's",
        "copies": results,
        "steps_per_s_total": sum(1 / r["step_s"] for r in results), **projection,
    }
    print(
        "| device | precision | processes | step (s) | steps/s, all copies | validation pass (s) "
        "| validation share | one paper run (h) | 35-run table (h) |\n"
        "|---|---|---:|---:|---:|---:|---:|---:|---:|\n"
        f"| {args.device} | {args.precision} | {args.processes} | {slowest['step_s']:.3f} "
        f"| {summary['steps_per_s_total']:.2f} | {slowest['validation_s']:.2f} "
        f"| {100 * projection['validation_share']:.1f} % | {projection['run_h']:.2f} "
        f"| {projection['table_h']:.1f} |"
    )
    if args.json is not None:
        args.json.write_text(json.dumps(summary, indent=1) + "\n")
    return summary


if __name__ == "__main__":
    main()
