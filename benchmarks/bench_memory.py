"""Memory under load: does a long CPU training grow, and does eval_paper.py stay bounded?

1. train.py (SOT-2048, the debug preset, batch 16, `--batches` training batches and one
   validation batch an epoch, validation figures on) runs `--epochs` epochs in a subprocess on a
   generated 384-example data set. Its resident set size (RSS, psutil) is sampled every second;
   each new `last.ckpt` (written at every epoch's end) tells which epoch has ended. Printed:
   RSS at the end of the first, middle and last epochs, the peak (the kernel's VmHWM), and the
   growth slope: least squares of RSS on epoch over the second half of the epochs, in MB per
   100 epochs (the first half holds the warm-up: the CQT feature cache filling, allocator pools).
2. eval_paper.py on roots holding 1, 2 and 4 runs (copies of one short run, each with its own
   seed so that none is served from the cache): the peak RSS of each invocation.

    python benchmarks/bench_memory.py [--epochs 40] [--batches 4] [--quick]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import torch
import yaml

from sotddsp.core.run_layout import PRESETS_DIR, REPO, experiment_config

PYTHON = sys.executable
MB = 1024 * 1024


def _environment() -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "WANDB_MODE": "disabled",
            "TQDM_DISABLE": "1",
            "OMP_NUM_THREADS": "1",
        }
    )
    return env


def _peak_rss(pid: int) -> int | None:
    """The kernel's high-water mark of the process's RSS (VmHWM), in bytes; None if gone."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def _sample(process: subprocess.Popen, interval: float, on_sample) -> int:
    """Call on_sample(rss_bytes) every ``interval`` s until the process ends; return its peak RSS
    (the last VmHWM read, or the largest sample where /proc has no VmHWM)."""
    handle = psutil.Process(process.pid)
    peak = 0
    while process.poll() is None:
        try:
            rss = handle.memory_info().rss
        except psutil.NoSuchProcess:
            break
        peak = max(peak, rss, _peak_rss(process.pid) or 0)
        on_sample(rss)
        time.sleep(interval)
    return peak


def _train_command(data: Path, root: Path, epochs: int, batches: int, seed: int = 1) -> list[str]:
    return [
        PYTHON,
        str(REPO / "train.py"),
        "--config",
        str(experiment_config("SOT-2048")),
        "--config",
        str(PRESETS_DIR / "debug.yaml"),
        "--data.init_args.data_path",
        str(data),
        "--data.init_args.batch_size",
        "16",
        "--checkpoint_root",
        str(root),
        "--seed_everything",
        str(seed),
        "--trainer.max_steps",
        str(epochs * batches),
        "--trainer.max_epochs",
        str(epochs),
        "--trainer.limit_train_batches",
        str(batches),
        "--trainer.enable_progress_bar",
        "false",
    ]


def measure_training(data: Path, workdir: Path, epochs: int, batches: int) -> dict:
    """Run the training; return {"rss_by_epoch": {epoch: MB}, "peak": MB, "seconds": s}."""
    root = workdir / "train"
    last = root / "SOT-2048" / "SOT-2048-1" / "checkpoints" / "last.ckpt"
    rss_by_epoch: dict[int, float] = {}
    seen = {"mtime": None}

    def on_sample(rss: int) -> None:
        try:
            mtime = last.stat().st_mtime_ns
        except FileNotFoundError:
            return
        if mtime != seen["mtime"]:
            seen["mtime"] = mtime
            epoch = int(torch.load(last, map_location="cpu", weights_only=True)["epoch"])
            rss_by_epoch.setdefault(epoch, rss / MB)

    log = (workdir / "train.log").open("w")
    start = time.perf_counter()
    process = subprocess.Popen(
        _train_command(data, root, epochs, batches),
        cwd=REPO,
        env=_environment(),
        stdout=subprocess.DEVNULL,
        stderr=log,
    )
    peak = _sample(process, 1.0, on_sample)
    if process.wait() != 0:
        raise SystemExit(
            f"training failed: see {workdir / 'train.log'}\n"
            + (workdir / "train.log").read_text()[-2000:]
        )
    return {"rss_by_epoch": rss_by_epoch, "peak": peak / MB, "seconds": time.perf_counter() - start}


def growth_per_100_epochs(rss_by_epoch: dict[int, float]) -> float:
    """Least-squares slope of RSS (MB) on epoch over the second half of the epochs, x 100."""
    epochs = sorted(rss_by_epoch)
    late = epochs[len(epochs) // 2 :]
    if len(late) < 2:
        return float("nan")
    slope, _ = statistics.linear_regression(late, [rss_by_epoch[e] for e in late])
    return 100.0 * slope


def _eval_root(trained_run: Path, destination: Path, n_runs: int) -> Path:
    """``destination/SOT-2048/SOT-2048-<k>`` for k < n_runs: copies of one run, each config
    with its own seed (another config hash, so eval_paper's cache never serves one for another)."""
    for k in range(n_runs):
        run = destination / "SOT-2048" / f"SOT-2048-{100 + k}"
        shutil.copytree(trained_run, run)
        config_path = run / "train_config.yaml"
        config = yaml.safe_load(config_path.read_text())
        config["seed_everything"] = 100 + k
        config_path.write_text(yaml.safe_dump(config, sort_keys=False))
    return destination


def measure_eval(data: Path, workdir: Path, runs: tuple[int, ...]) -> dict[int, dict]:
    """Peak RSS (MB) and time of eval_paper.py over roots of ``runs`` runs."""
    root = workdir / "short"
    trained = subprocess.run(  # noqa: PLW1510 - the return code is checked below
        _train_command(data, root, epochs=1, batches=2),
        cwd=REPO,
        env=_environment(),
        capture_output=True,
        text=True,
    )
    if trained.returncode != 0:
        raise SystemExit("training the run for eval_paper failed:\n" + trained.stderr[-2000:])
    run = root / "SOT-2048" / "SOT-2048-1"
    results = {}
    for n in runs:
        eval_root = _eval_root(run, workdir / f"eval-root-{n}", n)
        command = [
            PYTHON,
            str(REPO / "eval_paper.py"),
            "--root",
            str(eval_root),
            "--out",
            str(workdir / f"results-{n}"),
            "--no-baseline",
            "--device",
            "cpu",
        ]
        start = time.perf_counter()
        process = subprocess.Popen(
            command,
            cwd=REPO,
            env=_environment(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        peak = _sample(process, 0.1, lambda rss: None)
        _, stderr = process.communicate()
        if process.returncode != 0:
            raise SystemExit(f"eval_paper.py failed on {n} runs:\n{stderr[-2000:]}")
        results[n] = {"peak": peak / MB, "seconds": time.perf_counter() - start}
    return results


def main(argv: list[str] | None = None) -> dict:
    """Command line; ``argv`` None means no options (not sys.argv). Returns the measurements."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=40, help="training epochs (default 40)")
    parser.add_argument("--batches", type=int, default=4, help="training batches of 16 an epoch")
    parser.add_argument(
        "--quick", action="store_true", help="12 epochs, eval_paper on 1 and 2 runs"
    )
    args = parser.parse_args([] if argv is None else argv)
    epochs = 12 if args.quick else args.epochs
    eval_runs = (1, 2) if args.quick else (1, 2, 4)

    from sotddsp.data.files import save_dataset
    from sotddsp.data.synthetic import SynthSettings, generate_dataset

    with tempfile.TemporaryDirectory(prefix="bench_memory-") as tmp:
        workdir = Path(tmp)
        data = workdir / "data.pth"
        save_dataset(generate_dataset(SynthSettings(n_examples=384, split_sizes=(320, 32, 32), seed=1)), data)
        training = measure_training(data, workdir, epochs, args.batches)
        evaluation = (
            measure_eval(data, workdir, eval_runs) if (REPO / "eval_paper.py").is_file() else {}
        )

    rss = training["rss_by_epoch"]
    epochs_seen = sorted(rss)
    first, middle, last = epochs_seen[0], epochs_seen[len(epochs_seen) // 2], epochs_seen[-1]
    slope = growth_per_100_epochs(rss)
    print(
        f"train.py, SOT-2048, CPU, batch 16, {args.batches} training batches an epoch, "
        f"{epochs} epochs ({len(epochs_seen)} sampled) in {training['seconds']:.0f} s:\n"
    )
    print("| measure | RSS (MB) |")
    print("|---|---:|")
    for label, epoch in (
        ("end of first epoch", first),
        ("end of middle epoch", middle),
        ("end of last epoch", last),
    ):
        print(f"| {label} ({epoch}) | {rss[epoch]:.0f} |")
    print(f"| peak (VmHWM) | {training['peak']:.0f} |")
    print(
        f"| growth, epochs {epochs_seen[len(epochs_seen) // 2]}-{last} | "
        f"{slope:+.1f} MB / 100 epochs |"
    )
    if evaluation:
        print("\neval_paper.py (--no-baseline, CPU), peak RSS by number of runs evaluated:\n")
        print("| runs | peak RSS (MB) | time (s) |")
        print("|---:|---:|---:|")
        for n, row in evaluation.items():
            print(f"| {n} | {row['peak']:.0f} | {row['seconds']:.0f} |")
    return {"training": training, "growth_mb_per_100_epochs": slope, "eval_paper": evaluation}


if __name__ == "__main__":
    main(sys.argv[1:])
