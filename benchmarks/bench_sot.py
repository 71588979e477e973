"""Time W_2^2 forward + backward on SOT-sized batches: ours vs the straightforward reference vs POT.

Inputs are flattop power spectra (hop 256, 4096 samples -> 16 frames) of random harmonic
signals (f0 ~ U[40, 1950] Hz, 1..8 harmonics, as the paper's data), so most bins are near zero.
The prediction is divided by the target's mass (the SOT cutoff normalization) and gets the
gradient. Timings are medians over interleaved repeats after a warm-up, in one process.

    python benchmarks/bench_sot.py            # full run
    python benchmarks/bench_sot.py --quick    # fewer repeats
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from collections.abc import Callable

import torch
from reference_sot import reference_wasserstein_1d
from torch import Tensor

from sotddsp.dsp.ot import native_kernel_available, wasserstein_1d
from sotddsp.dsp.spectral import STFT

SAMPLE_RATE = 16000
N_SAMPLES = 4096


def harmonic_signals(batch: int, generator: torch.Generator) -> Tensor:
    """Random harmonic signals (batch, 4096) at 16 kHz, peak 0.9, as the paper's synthetic set."""
    t = torch.arange(N_SAMPLES, dtype=torch.float64) / SAMPLE_RATE
    f0 = 40.0 + 1910.0 * torch.rand(batch, 1, generator=generator, dtype=torch.float64)
    k = torch.arange(1, 9, dtype=torch.float64)
    amps = 0.4 + 0.6 * torch.rand(batch, 8, generator=generator, dtype=torch.float64)
    n_active = torch.randint(1, 9, (batch, 1), generator=generator)
    amps = amps * (k[None, :] <= n_active) * (k[None, :] * f0 < SAMPLE_RATE / 2)
    audio = (amps[:, :, None] * torch.sin(2 * math.pi * f0[:, :, None] * k[None, :, None] * t)).sum(
        1
    )
    return (0.9 * audio / audio.abs().amax(-1, keepdim=True)).float()


def sot_weights(batch: int, n_fft: int, seed: int) -> tuple[Tensor, Tensor, Tensor]:
    """(prediction, target, positions): float32 weights (batch, 16, F), F = n_fft // 2 + 1; (F,)."""
    generator = torch.Generator().manual_seed(seed)
    stft = STFT(n_fft, 256, window="flattop")
    target = torch.view_as_real(stft.complex_spectrum(harmonic_signals(batch, generator)))
    pred = torch.view_as_real(stft.complex_spectrum(harmonic_signals(batch, generator)))
    target, pred = target.square().sum(-1), pred.square().sum(-1)
    mass = target.sum(-1, keepdim=True) + 1e-12
    positions = torch.arange(n_fft // 2 + 1, dtype=torch.float32) / (n_fft / 2)
    return pred / mass, target / mass, positions


def _pot_wasserstein_1d(u: Tensor, v: Tensor, positions: Tensor, p: float) -> Tensor:
    """POT's ot.wasserstein_1d (torch backend, no cutoff): it works along axis 0, so (n, M)."""
    import ot

    n = u.shape[-1]
    u_cols = u.reshape(-1, n).T
    v_cols = v.reshape(-1, n).T
    values = positions[:, None].expand(n, u_cols.shape[1])
    return ot.wasserstein_1d(values, values, u_cols, v_cols, p=p, require_sort=False)


def _max_rel_value_diff(
    pred: Tensor, target: Tensor, positions: Tensor, p: float, dtype: torch.dtype
) -> float:
    """max |ours - reference| / |reference| over rows, both backends, inputs cast to ``dtype``."""
    pred, target, positions = pred.to(dtype), target.to(dtype), positions.to(dtype)
    with torch.no_grad():
        ref = reference_wasserstein_1d(pred, target, positions, p=p, cutoff=True)
        return max(
            float(
                (
                    (wasserstein_1d(pred, target, positions, p, True, backend) - ref).abs()
                    / ref.abs()
                ).max()
            )
            for backend in ("auto", "torch")
        )


def _time_once(fn: Callable[[], Tensor], u: Tensor) -> float:
    u.grad = None
    start = time.perf_counter()
    fn().sum().backward()
    return time.perf_counter() - start


def bench_shape(n_fft: int, batch: int, repeats: int, warmup: int, p: float = 2.0) -> list[dict]:
    """Median forward+backward seconds of each method at (batch, 16, n_fft // 2 + 1)."""
    pred, target, positions = sot_weights(batch, n_fft, seed=n_fft)
    u = pred.clone().requires_grad_(True)
    methods: dict[str, tuple[Callable[[], Tensor], str]] = {
        "ours (sotddsp.dsp.ot.wasserstein_1d)": (
            lambda: wasserstein_1d(u, target, positions, p=p, cutoff=True),
            "cutoff=True; C merge kernel"
            if native_kernel_available()
            else "cutoff=True; torch ops",
        ),
        "ours, torch ops (backend='torch', the CUDA path)": (
            lambda: wasserstein_1d(u, target, positions, p=p, cutoff=True, backend="torch"),
            "cutoff=True",
        ),
        "reference (sort + 2 searchsorted)": (
            lambda: reference_wasserstein_1d(u, target, positions, p=p, cutoff=True),
            "cutoff=True",
        ),
        "POT ot.wasserstein_1d (torch)": (
            lambda: _pot_wasserstein_1d(u, target, positions, p=p),
            "no cutoff (POT has no such mode); require_sort=False",
        ),
    }
    times: dict[str, list[float]] = {name: [] for name in methods}
    for _ in range(warmup):
        for fn, _note in methods.values():
            _time_once(fn, u)
    for _ in range(repeats):
        for name, (fn, _note) in methods.items():
            times[name].append(_time_once(fn, u))
    ours = statistics.median(times["ours (sotddsp.dsp.ot.wasserstein_1d)"])
    value_rel_diff = {
        str(dtype).removeprefix("torch."): _max_rel_value_diff(pred, target, positions, p, dtype)
        for dtype in (torch.float32, torch.float64)
    }
    rows = []
    for name, (_fn, note) in methods.items():
        median = statistics.median(times[name])
        rows.append(
            {
                "shape": f"({batch}, 16, {n_fft // 2 + 1})",
                "method": name,
                "mode": note,
                "median_ms": 1e3 * median,
                "ratio_vs_ours": median / ours,
                "repeats": repeats,
                **{f"max_rel_value_diff_vs_reference_{k}": d for k, d in value_rel_diff.items()},
            }
        )
    return rows


def markdown_table(rows: list[dict]) -> str:
    """The rows as a Markdown table (time in ms, ratio = method time / ours)."""
    lines = [
        "| shape | method | mode | median fwd+bwd (ms) | time / ours |",
        "|---|---|---|---:|---:|",
    ]
    for row in rows:
        lines.append(
            f"| {row['shape']} | {row['method']} | {row['mode']} | {row['median_ms']:.2f} "
            f"| {row['ratio_vs_ours']:.2f}x |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> list[dict]:
    """Run the benchmark, print a Markdown table, return its rows (one dict per shape and method).

    ``argv`` are command-line options (e.g. ``["--quick"]``); None means none, not ``sys.argv``.
    """
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats (about 10 s)")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch CPU threads (default 1: on a shared machine OpenMP threads wait on each other "
        "and timings become noise; 0 keeps torch's default)",
    )
    args = parser.parse_args([] if argv is None else argv)
    if args.batch <= 0:
        raise ValueError(f"--batch must be positive, got {args.batch}")
    if args.threads < 0:
        raise ValueError(f"--threads must be >= 0, got {args.threads}")
    previous_threads = torch.get_num_threads()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    repeats, warmup = (7, 2) if args.quick else (25, 3)
    rows: list[dict] = []
    try:
        threads = torch.get_num_threads()
        for n_fft in (2048, 512):
            rows.extend(bench_shape(n_fft, args.batch, repeats, warmup))
    finally:
        torch.set_num_threads(previous_threads)
    print(
        f"W_2^2 forward + backward (grad wrt the prediction), float32, CPU, "
        f"{threads} thread(s), torch {torch.__version__}, median of {repeats} interleaved repeats"
    )
    print(markdown_table(rows))
    for row in rows[:: len(rows) // 2]:
        print(
            f"{row['shape']}: max relative difference of W_2^2 values, ours (both backends) vs "
            f"reference: float32 {row['max_rel_value_diff_vs_reference_float32']:.1e}, "
            f"float64 {row['max_rel_value_diff_vs_reference_float64']:.1e}"
        )
    return rows


if __name__ == "__main__":
    main(sys.argv[1:])
