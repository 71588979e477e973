"""The paper's claim measured without training: gradient descent on the frozen synth's f0 alone.

    python scripts/f0_descent.py [--steps 300] [--out results/f0_descent]

For each paper loss (the training loss of SOT-2048, SOT-512, SOT-512-LogF, SOT-NoCut, MSS-Lin and
MSS-LogLin, built from paper-experiments/<name>.yaml, with that experiment's decoder: MSS-LogLin's
has the roll-off), targets across the paper's range (f0 log-spaced over 40..1950 Hz, harmonic
amplitudes drawn as the synthetic set draws them, rendered by the synth and scaled to peak 0.9
as the data set is) are fitted from starting points an offset of -2..+2 octaves away:

- the f0 parameter is the MIDI number, one per signal, constant over the 16 control frames;
  Adam (lr ``--lr`` semitones) on the experiment's loss; ``--steps`` steps;
- "true amplitudes": the prediction has the target's harmonic amplitudes (20 slots, the
  target's 8, scaled as the target was scaled to its peak of 0.9, and zeros), so that at the
  true f0 it equals the target; only f0 moves;
- "learned amplitudes": the 20 amplitudes are learned too (exp-sigmoid of logits, as the
  encoder's head, starting from 0.4 each; Adam lr ``--amplitude-lr``).

A fit succeeds when the final f0 is within 50 cents of the target's. Writes, under ``--out``:
``f0_descent.csv`` (one row per loss, mode, offset: the fraction of targets within 50 cents and
the median final error in cents), ``f0_descent.md`` (the table), ``f0_descent.png`` (fraction
within 50 cents against the starting offset, one line per loss, one panel per mode). This is
the property behind the paper's loss-landscape figure: the size of each loss's basin around f0.
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from sotddsp.core.atomic_files import atomic_write_bytes, atomic_write_text
from sotddsp.core.command_line import positive_int, run_cli_main
from sotddsp.core.result_tables import csv_text
from sotddsp.core.run_layout import experiment_config
from sotddsp.dsp.spectral import hz_to_midi, midi_to_hz
from sotddsp.dsp.synth import HarmonicSynth
from sotddsp.model.cli import build_cli
from sotddsp.model.encoder import exp_sigmoid

LOSSES = ("SOT-2048", "SOT-512", "SOT-512-LogF", "SOT-NoCut", "MSS-Lin", "MSS-LogLin")
MODES = ("true amplitudes", "learned amplitudes")
OFFSETS_OCTAVES = np.round(np.arange(-2.0, 2.0 + 1e-9, 0.25), 2)
N_HARMONICS = 20
SAMPLE_RATE, N_SAMPLES, N_FRAMES = 16000, 4096, 16
TOLERANCE_CENTS = 50.0


def targets(n_targets: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """f0 (M,) Hz log-spaced over 40..1950 Hz and amplitudes (M, 8), drawn as the synthetic set
    draws them (n_active ~ U{1..8} lowest harmonics, each ~ U[0.4, 1])."""
    g = torch.Generator().manual_seed(seed)
    f0 = torch.logspace(math.log10(40.0), math.log10(1950.0), n_targets, dtype=torch.float64)
    n_active = torch.randint(1, 9, (n_targets,), generator=g)
    amps = 0.4 + 0.6 * torch.rand(n_targets, 8, generator=g, dtype=torch.float64)
    amps = torch.where(torch.arange(8) < n_active[:, None], amps, 0.0)
    return f0.float(), amps.float()


def start_batch(n_targets: int, seed: int, offsets_octaves: np.ndarray = OFFSETS_OCTAVES
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Every (target, offset) pair as one signal, target-major: (f0 (M,) Hz, amplitudes (M, 20)
    with the target's 8 then zeros, starting MIDI number (M,)), M = n_targets * len(offsets)."""
    f0_true, amps8 = targets(n_targets, seed)
    n_offsets = len(offsets_octaves)
    f0_batch = f0_true.repeat_interleave(n_offsets)
    amps_batch = torch.zeros(f0_batch.shape[0], N_HARMONICS)
    amps_batch[:, :8] = amps8.repeat_interleave(n_offsets, dim=0)
    offsets = torch.tensor(np.asarray(offsets_octaves), dtype=torch.float32).repeat(n_targets)
    return f0_batch, amps_batch, hz_to_midi(f0_batch) + 12.0 * offsets


def render_targets(f0_batch: torch.Tensor, amps_batch: torch.Tensor
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """(target audio (M, N), true amplitudes (M, 20)): rendered as the data set renders (the
    synth without roll-off, 4096 samples) and scaled to a peak of 0.9; the amplitudes scaled
    alike, so that the prediction at the true f0 equals the target."""
    with torch.no_grad():
        rendered = HarmonicSynth(n_samples=N_SAMPLES)(
            amps_batch[:, None, :8].expand(-1, N_FRAMES, 8).contiguous(),
            f0_batch[:, None, None].expand(-1, N_FRAMES, 1).contiguous())
        scale = 0.9 / rendered.abs().amax(-1, keepdim=True)  # (B, 1), as the data set's peak
    return rendered * scale, amps_batch * scale


def fit(synth: nn.Module, loss: nn.Module, target_audio: torch.Tensor, true_amps: torch.Tensor,
        start_midi: torch.Tensor, learn_amplitudes: bool, steps: int, lr: float,
        amplitude_lr: float, on_step: Callable[[], object] | None = None) -> torch.Tensor:
    """Adam on ``loss(synth(...), target_audio)``; returns the final f0 (B,) in Hz. ``on_step``
    is called after every step (a progress bar's update)."""
    midi = start_midi.clone().requires_grad_()
    groups = [{"params": [midi], "lr": lr}]
    if learn_amplitudes:
        # exp_sigmoid(z) = 0.4 at z = logit(0.2 ** (1 / ln 10))
        start = math.log(0.2 ** (1 / math.log(10)) / (1 - 0.2 ** (1 / math.log(10))))
        logits = torch.full((midi.shape[0], N_HARMONICS), start).requires_grad_()
        groups.append({"params": [logits], "lr": amplitude_lr})
    optimizer = torch.optim.Adam(groups)
    batch = target_audio.shape[0]
    for _ in range(steps):
        amps = exp_sigmoid(logits) if learn_amplitudes else true_amps
        f0 = midi_to_hz(midi)
        audio = synth(amps[:, None, :].expand(batch, N_FRAMES, N_HARMONICS),
                      f0[:, None, None].expand(batch, N_FRAMES, 1))
        # the mean over the batch times B: each signal's parameters get its own loss's gradient
        value = loss(audio, target_audio) * batch
        optimizer.zero_grad(set_to_none=True)
        value.backward()
        optimizer.step()
        if on_step is not None:
            on_step()
    return midi_to_hz(midi.detach())


def offset_rows(final: torch.Tensor, f0_batch: torch.Tensor, n_targets: int,
                offsets_octaves: np.ndarray = OFFSETS_OCTAVES) -> list[dict]:
    """One row per starting offset: the fraction of targets whose final f0 (M,) lies within 50
    cents of the true f0 (M,), and the median final |error| in cents."""
    cents = (1200 * torch.log2(final / f0_batch)).abs().reshape(n_targets, len(offsets_octaves))
    return [{"offset_octaves": float(offset),
             "within_50_cents": float((cents[:, j] < TOLERANCE_CENTS).float().mean()),
             "median_error_cents": float(cents[:, j].median())}
            for j, offset in enumerate(offsets_octaves)]


def run(args: argparse.Namespace) -> list[dict]:
    torch.manual_seed(0)
    f0_batch, amps_batch, start_midi = start_batch(args.targets, args.seed)
    target_audio, true_amps = render_targets(f0_batch, amps_batch)
    rows = []
    progress = tqdm(total=len(LOSSES) * len(MODES), desc="f0 descent", unit="fit")
    for experiment in LOSSES:
        model = build_cli([
            "--config", str(experiment_config(experiment)), "--checkpoint_root", args.tmp,
            "--trainer.logger", "false", "--trainer.accelerator", "cpu",
        ]).model
        for mode in MODES:
            progress.set_postfix_str(f"{experiment}, {mode}")
            final = fit(model.synth, model.loss, target_audio, true_amps, start_midi,
                        mode == MODES[1], args.steps, args.lr, args.amplitude_lr)
            rows += [{"loss": experiment, "mode": mode, **row}
                     for row in offset_rows(final, f0_batch, args.targets)]
            progress.update()
    progress.close()
    return rows


def add_fit_arguments(parser: argparse.ArgumentParser) -> None:
    """The fit's settings: --steps, --targets, --lr, --amplitude-lr, --seed."""
    parser.add_argument("--steps", type=positive_int, default=300)
    parser.add_argument("--targets", type=positive_int, default=12)
    parser.add_argument("--lr", type=float, default=0.1, help="Adam lr of f0 (semitones)")
    parser.add_argument("--amplitude-lr", type=float, default=0.05)
    parser.add_argument("--seed", type=int, default=0)


def markdown(rows: list[dict], offsets_shown: tuple[float, ...]) -> str:
    """Fraction within 50 cents (%) per loss and mode, at a few starting offsets."""
    header = "| loss | amplitudes | " + " | ".join(f"{o:+g} oct" for o in offsets_shown) + \
        " | all offsets |"
    lines = [header, "|---|---|" + "---:|" * (len(offsets_shown) + 1)]
    for experiment in LOSSES:
        for mode in MODES:
            mine = [r for r in rows if r["loss"] == experiment and r["mode"] == mode]
            by_offset = {r["offset_octaves"]: r["within_50_cents"] for r in mine}
            mean = np.mean([r["within_50_cents"] for r in mine])
            cells = [f"{100 * by_offset[o]:.0f}" for o in offsets_shown]
            lines.append(f"| {experiment} | {mode.split()[0]} | " + " | ".join(cells) +
                         f" | {100 * mean:.0f} |")
    return "\n".join(lines) + "\n"


def figure(rows: list[dict]) -> bytes:
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    for ax, mode in zip(axes, MODES):
        for experiment in LOSSES:
            mine = [r for r in rows if r["loss"] == experiment and r["mode"] == mode]
            style = "-" if experiment.startswith("SOT") else "--"
            ax.plot([r["offset_octaves"] for r in mine],
                    [100 * r["within_50_cents"] for r in mine], style, marker="o", ms=3,
                    label=experiment)
        ax.set_title(f"f0 descent, {mode}")
        ax.set_xlabel("starting offset from the true f0 (octaves)")
        ax.grid(alpha=0.3)
        ax.set_ylim(-3, 103)
    axes[0].set_ylabel("targets ending within 50 cents (%)")
    axes[1].legend(fontsize=8)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    return buffer.getvalue()


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_fit_arguments(parser)
    parser.add_argument("--out", type=Path, default=Path("results") / "f0_descent")
    args = parser.parse_args(argv)
    import tempfile

    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        args.tmp = tmp
        rows = run(args)
    columns = ["loss", "mode", "offset_octaves", "within_50_cents", "median_error_cents"]
    atomic_write_text(args.out / "f0_descent.csv", csv_text(columns, rows))
    table = markdown(rows, (-2.0, -1.0, -0.5, -0.25, 0.25, 0.5, 1.0, 2.0))
    atomic_write_text(args.out / "f0_descent.md", table)
    atomic_write_bytes(args.out / "f0_descent.png", figure(rows))
    print(table)
    print(f"{args.targets} targets x {len(OFFSETS_OCTAVES)} offsets, {args.steps} Adam steps; "
          f"{(time.perf_counter() - started) / 60:.1f} min; wrote {args.out}/f0_descent.*")
    return rows


if __name__ == "__main__":
    run_cli_main(main)
