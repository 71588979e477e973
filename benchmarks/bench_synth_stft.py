"""The decoder and the spectral front ends of a training step, forward + backward at batch 64:
each fast path beside the plain one it replaced, interleaved in one process.

- ``HarmonicSynth``: the fused C kernel (``backend="native"``, CPU) against torch ops
  (``backend="torch"``, the CUDA path), f0 and 20 amplitudes per frame, 16 frames, 4096 samples;
- ``STFT.magnitude`` (one inverse real FFT and an overlap-add in the backward) against
  ``torch.stft`` + complex ``abs`` under autograd, for the SOT size (2048, hop 256, power) and
  the six MSS sizes (hop n / 4).

    python benchmarks/bench_synth_stft.py [--repeats 15] [--threads N]

Prints a Markdown table: median milliseconds of each and the plain / fast ratio.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch

from sotddsp.dsp.spectral import STFT
from sotddsp.dsp.synth import HarmonicSynth

BATCH = 64


def interleaved(fast: Callable[[], None], plain: Callable[[], None], repeats: int) -> tuple:
    """Median seconds of ``fast`` and ``plain``, alternating, after two warm-up calls each."""
    for _ in range(2):
        fast(), plain()
    times: tuple[list[float], list[float]] = ([], [])
    for _ in range(repeats):
        for fn, bucket in ((fast, times[0]), (plain, times[1])):
            start = time.perf_counter()
            fn()
            bucket.append(time.perf_counter() - start)
    return statistics.median(times[0]), statistics.median(times[1])


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    parser.add_argument("--quick", action="store_true", help="5 repeats")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    repeats = 5 if args.quick else args.repeats
    gen = torch.Generator().manual_seed(0)
    rows = []

    amplitudes = torch.rand(BATCH, 16, 20, generator=gen).requires_grad_()
    f0 = (40 + 1900 * torch.rand(BATCH, 16, 1, generator=gen)).requires_grad_()
    upstream = torch.randn(BATCH, 4096, generator=gen)

    def synth_step(synth: HarmonicSynth) -> Callable[[], None]:
        def step() -> None:
            torch.autograd.grad((synth(amplitudes, f0) * upstream).sum(), (amplitudes, f0))
        return step

    fast, plain = interleaved(synth_step(HarmonicSynth(backend="native")),
                              synth_step(HarmonicSynth(backend="torch")), repeats)
    rows.append({"what": "HarmonicSynth, C kernel vs torch ops", "fast": fast, "plain": plain})

    audio = (0.3 * torch.randn(BATCH, 4096, generator=gen)).requires_grad_()
    sizes = [(2048, 256, True)] + [(n, n // 4, False) for n in (2048, 1024, 512, 256, 128, 64)]
    for n_fft, hop, power in sizes:
        stft = STFT(n_fft, hop, window="flattop" if power else "hann")
        weights = torch.randn(BATCH, stft.n_frames(4096), n_fft // 2 + 1, generator=gen)

        def ours(stft: STFT = stft, weights: torch.Tensor = weights, power: bool = power) -> None:
            torch.autograd.grad((stft.magnitude(audio, power=power) * weights).sum(), audio)

        def reference(stft: STFT = stft, weights: torch.Tensor = weights,
                      power: bool = power) -> None:
            magnitude = stft.complex_spectrum(audio).abs()
            magnitude = magnitude.square() if power else magnitude
            torch.autograd.grad((magnitude * weights).sum(), audio)

        fast, plain = interleaved(ours, reference, repeats)
        label = f"STFT {n_fft}, hop {hop}, {'power' if power else 'magnitude'}: STFT.magnitude vs torch.stft"
        rows.append({"what": label, "fast": fast, "plain": plain})

    print(f"Forward + backward at batch {BATCH}, {torch.get_num_threads()} thread(s), median of "
          f"{repeats} interleaved repeats.\n")
    print("| what | fast (ms) | plain (ms) | plain / fast |\n|---|---:|---:|---:|")
    for row in rows:
        print(f"| {row['what']} | {1000 * row['fast']:.2f} | {1000 * row['plain']:.2f} "
              f"| **{row['plain'] / row['fast']:.2f}x** |")
    return rows


if __name__ == "__main__":
    main()
