"""SOT (cutoff) against the predicted f0 of a 20-harmonic prediction, for a fixed harmonic target.

Shows why short runs drift low: with the paper's cutoff, a prediction louder than the target is
matched only up to the target's mass, so a lower f0 with more harmonics can fit the target's
spectral distribution better than the true f0; a quieter prediction pays for its missing mass
at the top bin, and its f0 gradient also points down.

    python scripts/sot_f0_probe.py
"""

from __future__ import annotations

import torch

from sotddsp.dsp.losses import SpectralOTLoss
from sotddsp.dsp.synth import HarmonicSynth

TARGET_HZ = 400.0
PREDICTED_HZ = (60, 100, 150, 200, 250, 300, 350, 400, 500, 600, 800)


def main() -> None:
    synth = HarmonicSynth()
    sot = SpectralOTLoss()  # n_fft 2048, flattop, power, cutoff, p = 2
    target_amplitudes = torch.zeros(1, 16, 8)
    target_amplitudes[..., :4] = torch.tensor([1.0, 0.7, 0.5, 0.6])
    target = synth(target_amplitudes, torch.full((1, 16, 1), TARGET_HZ))
    target = target / target.abs().max() * 0.9
    print(f"target: 4 harmonics of {TARGET_HZ:.0f} Hz, mean power {target.square().mean():.3f}")
    print("| prediction: 20 harmonics of amplitude | mean power | " +
          " | ".join(f"{f} Hz" for f in PREDICTED_HZ) + " |")
    print("|---|---|" + "---|" * len(PREDICTED_HZ))
    for amplitude in (0.05, 0.2):
        cells, power = [], 0.0
        for f0_hz in PREDICTED_HZ:
            f0 = torch.full((1, 16, 1), float(f0_hz), requires_grad=True)
            prediction = synth(torch.full((1, 16, 20), amplitude), f0)
            loss = sot(prediction, target)
            (grad,) = torch.autograd.grad(loss, f0)
            arrow = "↑" if grad.sum() < 0 else "↓"  # the direction gradient descent moves f0
            cells.append(f"{loss.item():.4f} {arrow}")
            power = prediction.square().mean().item() if f0_hz == TARGET_HZ else power
        print(f"| {amplitude} | {power:.3f} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
