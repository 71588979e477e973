"""Data: generating the paper's 4000-example set, and loading a training epoch from it.

Reports the generation time (and its speed as a multiple of the audio's duration) and the time
to iterate one training epoch of batches from `PreloadedSinusoidDataModule`, per batch, to set
beside a training step (benchmarks/bench_train_step.py reports the data share of a real step).

    python benchmarks/bench_data.py [--quick]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="one repeat")
    args = parser.parse_args(argv)
    repeats = 1 if args.quick else args.repeats

    from sotddsp.data.datamodule import PreloadedSinusoidDataModule
    from sotddsp.data.files import save_dataset
    from sotddsp.data.synthetic import generate_dataset

    generation, saving, epoch = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "paper.pth"
        for _ in range(repeats):
            start = time.perf_counter()
            data = generate_dataset()  # the paper's defaults: 4000 examples, 2800/800/400
            generation.append(time.perf_counter() - start)
            start = time.perf_counter()
            save_dataset(data, path)
            saving.append(time.perf_counter() - start)
        module = PreloadedSinusoidDataModule(data_path=str(path), batch_size=64, seed=0)
        module.setup("fit")
        loader = module.train_dataloader()
        for _ in range(repeats):
            start = time.perf_counter()
            n_batches = sum(1 for _ in loader)
            epoch.append(time.perf_counter() - start)
        audio_seconds = 4000 * 4096 / 16000

    row = {
        "generate 4000 (s)": statistics.median(generation),
        "save (s)": statistics.median(saving),
        "x real time": audio_seconds / statistics.median(generation),
        "batch fetch (ms)": 1000 * statistics.median(epoch) / n_batches,
    }
    print(
        "| generate 4000 examples (s) | × real time | save (s) | one batch of 64 from the DataModule (ms) |\n"
        "|---|---|---|---|\n"
        f"| {row['generate 4000 (s)']:.2f} | {row['x real time']:.0f}× | {row['save (s)']:.2f} "
        f"| {row['batch fetch (ms)']:.2f} |"
    )
    return [row]


if __name__ == "__main__":
    main()
