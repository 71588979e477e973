"""Training-step overhead: whole Lightning step / the encoder's own step, measured alternately.

For the SOT-2048 config at batch 64 (CPU), every training step of a real `Trainer.fit` is timed
from `on_train_batch_start` to `on_train_batch_end` (forward, CQT or its cache, synth, STFTs,
loss, backward, Adam, logging, progress bar). Right after each, a copy of the encoder does its
own forward + backward + Adam step on the same CQT frames, timed alone. The ratio of the medians
is what everything beyond the network costs (PAPER.md measured 1.78 on the authors' code).
The time between batches (the DataLoader's `next`) is reported as the data share of a step.
The encoder step's achieved GFLOP/s (FLOPs counted as in benchmarks/_rates.py) is printed beside
the float32 and bfloat16 2048^3 matmul rates, measured in the same run after training.

    python benchmarks/bench_train_step.py [--steps 30] [--experiment SOT-2048] [--batch-size 64]
"""

from __future__ import annotations

import argparse
import copy
import statistics
import tempfile
import time
from pathlib import Path

import torch
from _rates import encoder_step, encoder_step_flops, matmul_rates, share
from lightning.pytorch import Callback

from sotddsp.core.run_layout import experiment_config


class AlternatingTimer(Callback):
    """Times each whole step, then an encoder-only step on the same frames."""

    def __init__(self, warmup: int) -> None:
        self.warmup = warmup
        self.whole: list[float] = []
        self.encoder_only: list[float] = []
        self.data: list[float] = []
        self._encoder = None
        self._optimizer = None
        self._batch_end = None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        now = time.perf_counter()
        if self._batch_end is not None and trainer.global_step > self.warmup:
            self.data.append(now - self._batch_end)
        self._start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        whole = time.perf_counter() - self._start
        if self._encoder is None:
            self._encoder = copy.deepcopy(pl_module.encoder)
            self._optimizer = torch.optim.Adam(self._encoder.parameters(), lr=1e-4, weight_decay=1e-4)
        with torch.no_grad():
            frames = pl_module.compute_features(batch["x"])
        batch_size, n_frames, n_bins = frames.shape
        self.n_frames = batch_size * n_frames
        start = time.perf_counter()
        encoder_step(self._encoder, self._optimizer, frames.reshape(self.n_frames, n_bins))
        encoder_only = time.perf_counter() - start
        if trainer.global_step > self.warmup:
            self.whole.append(whole)
            self.encoder_only.append(encoder_only)
        self._batch_end = time.perf_counter()


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--experiment", default="SOT-2048")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=8,
                        help="untimed steps: the first epoch (8 batches) fills the CQT cache")
    parser.add_argument("--quick", action="store_true", help="12 steps")
    args = parser.parse_args(argv)
    steps = 12 if args.quick else args.steps

    from sotddsp.data.files import save_dataset
    from sotddsp.data.synthetic import SynthSettings, generate_dataset
    from sotddsp.model.cli import build_cli

    timer = AlternatingTimer(args.warmup)
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "bench.pth"
        n_train = args.batch_size * 8
        settings = SynthSettings(n_examples=n_train + 64, split_sizes=(n_train, 32, 32), seed=1)
        save_dataset(generate_dataset(settings), data)
        cli = build_cli([
            "--config", str(experiment_config(args.experiment)),
            "--data.init_args.data_path", str(data),
            "--data.init_args.batch_size", str(args.batch_size),
            "--checkpoint_root", str(Path(tmp) / "ckpt"),
            "--trainer.accelerator", "cpu",
            "--trainer.max_steps", str(steps + args.warmup),
            "--trainer.limit_val_batches", "0",
            "--trainer.num_sanity_val_steps", "0",
            "--trainer.logger", "lightning.pytorch.loggers.CSVLogger",
            "--trainer.logger.save_dir", str(Path(tmp) / "logs"),
            "--trainer.log_every_n_steps", "20",
        ])
        cli.trainer.callbacks.append(timer)
        cli.datamodule.setup("fit")
        cli.trainer.fit(cli.model, datamodule=cli.datamodule)

    whole = statistics.median(timer.whole)
    encoder = statistics.median(timer.encoder_only)
    data_time = statistics.median(timer.data) if timer.data else 0.0
    rates = matmul_rates()
    encoder_gflops = encoder_step_flops(cli.model.encoder, timer.n_frames) / encoder / 1e9
    row = {
        "experiment": args.experiment,
        "batch": args.batch_size,
        "steps timed": len(timer.whole),
        "whole step (s)": whole,
        "encoder step (s)": encoder,
        "ratio": whole / encoder,
        "data share": data_time / (whole + data_time),
        "threads": torch.get_num_threads(),
        "encoder GFLOP/s": encoder_gflops,
        "fp32 matmul GFLOP/s": rates["fp32"],
        "bf16 matmul GFLOP/s": rates["bf16"],
    }
    print(
        "| experiment | batch | steps | whole step (s) | encoder-only step (s) | ratio | data share |\n"
        "|---|---|---|---|---|---|---|\n"
        f"| {row['experiment']} | {row['batch']} | {row['steps timed']} | {whole:.3f} | {encoder:.3f} "
        f"| **{row['ratio']:.2f}** | {100 * row['data share']:.2f}% |"
    )
    print(
        "\n| encoder step GFLOP/s | fp32 matmul GFLOP/s | share | bf16 matmul GFLOP/s | share |\n"
        "|---:|---:|---:|---:|---:|\n"
        f"| {encoder_gflops:.0f} | {rates['fp32']:.0f} | {share(encoder_gflops, rates['fp32'])} "
        f"| {rates['bf16']:.0f} | {share(encoder_gflops, rates['bf16'])} |"
    )
    return [row]


if __name__ == "__main__":
    main()
