"""Loss against the frequency offset of a sine: SOT is V-shaped, MSS is flat away from a dip.

The README's headline figure. Target: a unit-amplitude 1 kHz sine (16 kHz, 4096 samples, made
by ``HarmonicSynth`` with one harmonic); predictions: sines at 1 kHz + offset, from 40 Hz to
3 kHz (a sine below 0 Hz is a mirrored sine, so offsets stop short of -1 kHz). Curves: SOT
(n_fft 2048, flattop, power, cutoff), MSS lin, MSS lin + log, single-scale L1 and L2 distances of
STFT-2048 magnitudes, and SOT restricted to the 9 frames whose window lies inside the signal
(the other 7 of the 16 end-padded frames leak power across the band and add a ripple).

    python scripts/loss_landscape.py --out figures/loss_landscape.png
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from sotddsp.core.run_layout import REPO
from sotddsp.dsp.losses import MASS_EPS, MultiScaleSpectralLoss, SpectralOTLoss
from sotddsp.dsp.ot import wasserstein_1d
from sotddsp.dsp.spectral import STFT
from sotddsp.dsp.synth import HarmonicSynth

SAMPLE_RATE = 16000
N_SAMPLES = 4096
N_FRAMES = 16
TARGET_HZ = 1000.0
SOT_N_FFT = 2048
SOT_HOP = 256
# Predicted sines from 40 Hz (the data set's lowest f0) to 3 kHz, every 5 Hz.
DEFAULT_OFFSETS_HZ = np.arange(-960.0, 2000.0 + 1e-9, 5.0)
# Frames t with t * hop + n_fft <= N: the window lies inside the signal (t = 0..8).
N_FULL_FRAMES = (N_SAMPLES - SOT_N_FFT) // SOT_HOP + 1

SOT_FULL = f"SOT-2048, {N_FULL_FRAMES} full frames"
CURVES = ("SOT-2048", "MSS lin", "MSS lin+log", "L1 STFT-2048", "L2 STFT-2048", SOT_FULL)


class SpectralL2Loss(nn.Module):
    """Single-scale squared distance of STFT magnitudes (Hann, hop n_fft / 4, normalized).

    forward(input (B, N), target (B, N)) -> (B,): mean over frames and bins of (S^ - S)^2.
    """

    def __init__(self, n_fft: int = 2048) -> None:
        super().__init__()
        self.stft = STFT(n_fft, n_fft // 4, "hann")

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        return (self.stft(input) - self.stft(target)).pow(2).mean((-2, -1))


def sines(frequencies_hz: np.ndarray) -> Tensor:
    """Unit-amplitude sines (M, N_SAMPLES) at frequencies (M,) in Hz, via HarmonicSynth (K = 1)."""
    f0 = torch.as_tensor(frequencies_hz, dtype=torch.float32)[:, None, None].expand(-1, N_FRAMES, 1)
    amplitudes = torch.ones(len(frequencies_hz), N_FRAMES, 1)
    return HarmonicSynth(n_samples=N_SAMPLES, sample_rate=SAMPLE_RATE)(amplitudes, f0)


def _check_offsets(offsets_hz: np.ndarray, target_hz: float) -> np.ndarray:
    offsets_hz = np.asarray(offsets_hz, dtype=np.float64)
    if offsets_hz.ndim != 1 or offsets_hz.size == 0:
        raise ValueError(f"offsets_hz must be a non-empty 1-D array, got shape {offsets_hz.shape}")
    frequencies = target_hz + offsets_hz
    if not np.all((frequencies > 0) & (frequencies < SAMPLE_RATE / 2)):
        raise ValueError(
            f"offsets_hz must keep target_hz + offset inside (0, {SAMPLE_RATE / 2}) Hz"
        )
    return frequencies


def sot_per_frame(offsets_hz: np.ndarray, target_hz: float = TARGET_HZ) -> np.ndarray:
    """SOT-2048 (cutoff) of each STFT frame: float64 (M, 16), W_2^2 per frame.

    As ``SpectralOTLoss.forward`` before its mean over frames: both power spectra divided by
    the target frame's mass (+ MASS_EPS), then ``wasserstein_1d(..., cutoff=True)``.
    """
    frequencies = _check_offsets(offsets_hz, target_hz)
    sot = SpectralOTLoss(n_fft=SOT_N_FFT, hop_length=SOT_HOP, sample_rate=SAMPLE_RATE)
    with torch.no_grad():
        pred = sot.spectrum(sines(frequencies))
        true = sot.spectrum(sines(np.array([target_hz]))).expand_as(pred)
        mass = true.sum(-1, keepdim=True) + MASS_EPS
        w = wasserstein_1d(pred / mass, true / mass, sot.positions, p=2.0, cutoff=True)
    return w.double().numpy()


def loss_landscape(
    offsets_hz: np.ndarray = DEFAULT_OFFSETS_HZ, target_hz: float = TARGET_HZ
) -> dict[str, np.ndarray]:
    """Each loss between sines at target_hz + offsets_hz (M,) and the target_hz sine.

    Returns {name: float64 array (M,)} of raw (not normalized) loss values, names as CURVES;
    SOT_FULL is the mean of ``sot_per_frame`` over the first N_FULL_FRAMES frames.
    Every predicted frequency must lie in (0, SAMPLE_RATE / 2).
    """
    frequencies = _check_offsets(offsets_hz, target_hz)
    losses: dict[str, nn.Module] = {
        "SOT-2048": SpectralOTLoss(
            n_fft=SOT_N_FFT, hop_length=SOT_HOP, sample_rate=SAMPLE_RATE, reduction="none"
        ),
        "MSS lin": MultiScaleSpectralLoss(mag_weight=1.0, logmag_weight=0.0, reduction="none"),
        "MSS lin+log": MultiScaleSpectralLoss(mag_weight=1.0, logmag_weight=1.0, reduction="none"),
        "L1 STFT-2048": MultiScaleSpectralLoss(fft_sizes=(2048,), reduction="none"),
        "L2 STFT-2048": SpectralL2Loss(2048),
    }
    with torch.no_grad():
        prediction = sines(frequencies)
        target = sines(np.array([target_hz])).expand_as(prediction)
        curves = {name: loss(prediction, target).double().numpy() for name, loss in losses.items()}
    curves[SOT_FULL] = sot_per_frame(offsets_hz, target_hz)[:, :N_FULL_FRAMES].mean(-1)
    return curves


def plot(
    offsets_hz: np.ndarray, curves: dict[str, np.ndarray], target_hz: float, out: Path
) -> None:
    """Write the figure: left, every curve / its maximum; right, a +-150 Hz zoom, each curve
    divided by its maximum inside the zoom."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    styles = {
        "SOT-2048": {"color": "C0", "lw": 1.0, "alpha": 0.75},
        SOT_FULL: {"color": "navy", "lw": 1.6, "ls": "--"},
        "MSS lin": {"color": "C1", "lw": 1.3},
        "MSS lin+log": {"color": "C2", "lw": 1.0},
        "L1 STFT-2048": {"color": "C3", "lw": 1.0},
        "L2 STFT-2048": {"color": "C4", "lw": 1.0},
    }
    fig, axes = plt.subplots(1, 2, figsize=(12.5, 4.8), gridspec_kw={"width_ratios": [2.3, 1]})
    zoom = np.abs(offsets_hz) <= 150
    for axis, mask in ((axes[0], np.ones_like(zoom)), (axes[1], zoom)):
        for name in CURVES:
            values = curves[name][mask]
            axis.plot(offsets_hz[mask], values / values.max(), label=name, **styles[name])
        axis.axvline(0.0, color="0.5", lw=0.8, ls=":")
        axis.grid(alpha=0.3)
    axes[0].set_xlabel(
        f"frequency offset of the predicted sine from the {target_hz:.0f} Hz target (Hz)"
    )
    axes[1].set_xlabel("offset (Hz)")
    axes[0].set_ylabel("loss / max loss")
    axes[0].set_title("Loss against a sine's frequency offset (16 kHz, 4096 samples)")
    axes[1].set_title("zoom: ±150 Hz (each / its max here)")
    axes[0].legend(loc="lower right", fontsize=8.5, framealpha=0.95)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=130)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Plot losses against a sine's frequency offset.")
    parser.add_argument("--out", type=Path, default=REPO / "figures" / "loss_landscape.png")
    args = parser.parse_args(argv)
    curves = loss_landscape(DEFAULT_OFFSETS_HZ, TARGET_HZ)
    plot(DEFAULT_OFFSETS_HZ, curves, TARGET_HZ, args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
