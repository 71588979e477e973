"""Where SOT's f0 landscape comes from: its value per STFT frame, for a harmonic target against
the same harmonics at a shifted f0.

    python scripts/sot_frame_shares.py [--f0 440] [--n-fft 2048]

The paper's SOT frames are not centered and the signal is end-padded, so of the 16 frames of a
4096-sample example (hop 256) the last ones hold a truncated piece of the signal under the head
of the flattop window. Their spectra depend on the phase at the cut, which the f0 moves. The
script prints, for shifts of the prediction's f0 in semitones, the loss (W_2^2 with the paper's
cutoff, and without it), the share of it that comes from the frames that reach past the signal's
end, and the f0 gradient's sign; the W_2^2 of every frame is checked against POT's
``ot.wasserstein_1d`` where POT is installed. Target: harmonics 1..4 with amplitudes
1, 0.7, 0.5, 0.4, scaled to peak 0.9 as the data set is.
"""

from __future__ import annotations

import argparse
import math

import torch

from sotddsp.core.command_line import positive_int, run_cli_main
from sotddsp.dsp.losses import MASS_EPS, SpectralOTLoss
from sotddsp.dsp.synth import HarmonicSynth

SHIFTS_SEMITONES = (-12.0, -6.0, -3.0, -1.0, -0.5, 0.5, 1.0, 3.0, 6.0, 12.0)
N_SAMPLES, N_FRAMES, N_HARMONICS = 4096, 16, 20


def pot_check(loss: SpectralOTLoss, prediction: torch.Tensor, target: torch.Tensor) -> float | None:
    """Largest relative difference of the no-cutoff frame values from POT, or None without POT."""
    try:
        import ot
    except ImportError:
        return None
    prediction, target = prediction.double(), target.double()
    pred, true = loss.spectrum(prediction)[0], loss.spectrum(target)[0]
    positions = loss.positions.double().numpy()
    ours = loss.frame_losses(prediction, target)[0]
    worst = 0.0
    for i in range(pred.shape[0]):
        # each spectrum over its own mass, plus the loss's MASS_EPS, as SOT-NoCut normalizes
        reference = ot.wasserstein_1d(positions, positions,
                                      (pred[i] / (pred[i].sum() + MASS_EPS)).numpy(),
                                      (true[i] / (true[i].sum() + MASS_EPS)).numpy(), p=2)
        worst = max(worst, abs(float(ours[i]) - reference) / max(reference, 1e-30))
    return worst


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--f0", type=float, default=440.0, help="the target's f0 (Hz)")
    parser.add_argument("--n-fft", type=positive_int, default=2048)
    args = parser.parse_args(argv)

    synth = HarmonicSynth(n_samples=N_SAMPLES)
    amplitudes = torch.zeros(1, N_HARMONICS)
    amplitudes[0, :4] = torch.tensor([1.0, 0.7, 0.5, 0.4])

    def render(f0_hz: torch.Tensor) -> torch.Tensor:
        return synth(amplitudes[:, None, :].expand(1, N_FRAMES, N_HARMONICS).contiguous(),
                     f0_hz.reshape(1, 1, 1).expand(1, N_FRAMES, 1).contiguous())

    with torch.no_grad():
        target = render(torch.tensor(args.f0))
        scale = 0.9 / target.abs().max()
        target = target * scale
    amplitudes = amplitudes * scale
    cut = SpectralOTLoss(n_fft=args.n_fft)
    no_cut = SpectralOTLoss(n_fft=args.n_fft, cutoff=False)
    hop = cut.stft.hop_length
    n_frames = math.ceil(N_SAMPLES / hop)
    # frame i covers samples [i*hop, i*hop + n_fft): it reaches past the end when that exceeds N
    partial = torch.tensor([i * hop + args.n_fft > N_SAMPLES for i in range(n_frames)])
    print(f"target: {args.f0:g} Hz, harmonics 1-4; SOT n_fft {args.n_fft}, hop {hop}: "
          f"{int(partial.sum())} of {n_frames} frames reach past the signal's end\n")
    print("| shift (semitones) | SOT (cutoff) | share from partial frames | dL/df0 sign "
          "| SOT-NoCut | share from partial frames | dL/df0 sign | POT check (rel.) |")
    print("|---:|---:|---:|---|---:|---:|---|---:|")
    for shift in SHIFTS_SEMITONES:
        cells = []
        for loss in (cut, no_cut):
            f0 = torch.tensor(args.f0 * 2 ** (shift / 12), requires_grad=True)
            prediction = render(f0)
            per_frame = loss.frame_losses(prediction, target)[0]
            per_frame.mean().backward()
            per_frame = per_frame.detach()
            share = float(per_frame[partial].sum() / per_frame.sum())
            toward = "toward the truth" if (f0.grad.item() > 0) == (shift > 0) else "away"
            cells += [f"{float(per_frame.mean()):.2e}", f"{100 * share:.0f} %", toward]
        with torch.no_grad():
            check = pot_check(no_cut, render(torch.tensor(args.f0 * 2 ** (shift / 12))), target)
        cells.append("–" if check is None else f"{check:.1e}")
        print(f"| {shift:+g} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    run_cli_main(main)
