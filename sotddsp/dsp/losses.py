"""Spectral losses: exact 1-D optimal transport along frequency (SOT), multi-scale spectral (MSS).

Thin ``nn.Module`` wrappers over the functional solver of ``ot.py`` (``wasserstein_1d``). Every
loss module has ``forward(input, target)`` on waveforms (B, N), ``input`` being the prediction,
and owns its STFTs; windows are non-persistent buffers, so a loss's ``state_dict()`` is empty and
``.to(device)`` works.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from sotddsp.dsp.ot import CUTOFF_RULES, CutoffRule, wasserstein_1d
from sotddsp.dsp.spectral import STFT, Framing, cqt_frequencies, hz_to_midi

__all__ = [
    "LOG_FLOOR",
    "MASS_EPS",
    "LossMixture",
    "MultiScaleSpectralLoss",
    "SpectralOTLoss",
    "as_mixture",
]

_REDUCTIONS = ("mean", "none")
# Added to a frame's mass before dividing by it, so silent frames give finite values and gradients.
# Far below the mass of any audible frame (a full-scale sine has a mass of order 1 to 1e3).
MASS_EPS = 1e-12
# Floor of magnitudes inside the log of the MSS loss.
LOG_FLOOR = 1e-5


def _check_reduction(reduction: str) -> None:
    if reduction not in _REDUCTIONS:
        raise ValueError(f"reduction must be one of {_REDUCTIONS}, got {reduction!r}")


def _check_waveforms(input: Tensor, target: Tensor, min_samples: int) -> None:
    if input.shape != target.shape or input.ndim != 2:
        raise ValueError(
            f"input and target must both have shape (B, N), got {tuple(input.shape)} and "
            f"{tuple(target.shape)}"
        )
    if input.shape[-1] < min_samples:
        raise ValueError(
            f"signals must have at least {min_samples} samples (the largest FFT size), got "
            f"{input.shape[-1]}; use shorter FFT sizes or longer signals"
        )


class SpectralOTLoss(nn.Module):
    r"""Spectral optimal transport (SOT): per-frame W_p^p between two spectra along frequency.

    STFT (``window``, normalized) magnitude, squared if ``power``; each frame is a mass
    distribution on the bin positions. ``framing`` (``spectral.STFT``) says which frames:
    "padded" (default, the paper's: not centered, end-padded, ceil(N / hop) frames, 16 for 4096
    samples at hop 256, 7 of which reach past the signal's end at n_fft 2048), "full" (not the
    paper's: only the floor((N - n_fft) / hop) + 1 frames inside the signal, 9 at n_fft 2048) or
    "centered" (not the paper's: ``torch.stft(center=True, pad_mode="reflect")``,
    1 + N // hop frames, 17). Positions (unitless, (F,)): linear
    k / (n_fft / 2) in [0, 1], or with ``log_frequency``
    (midi(f_k) - midi(32.7)) / (midi(f_top) - midi(32.7)), f_top the top CQT bin at
    ``sample_rate`` and midi(0 Hz) = 0, bins re-sorted by position (DC lands above bin 1 at
    n_fft 2048). Normalization: with ``cutoff`` the target is divided by its own mass and the
    prediction by the target's mass, and ``wasserstein_1d(..., cutoff=True, cutoff_rule=...)``:
    "drop" (default, the paper's) gives no cost to every merged interval whose upper level
    exceeds 1, "clip" (an explicit variant, not the paper's) clips the intervals at 1. Without
    cutoff ("NoCut") each spectrum is divided by its own mass. ``MASS_EPS`` (1e-12) is added to
    masses so silent frames stay finite.

    ``forward(input (B, N), target (B, N))`` (input = prediction): a scalar, the mean of W_p^p
    over frames and batch ("mean"), or (B,), the mean over frames ("none"). Signals need at least
    n_fft samples (any framing).
    """

    positions: Tensor
    order: Tensor

    def __init__(
        self,
        n_fft: int = 2048,
        hop_length: int = 256,
        window: str = "flattop",
        power: bool = True,
        log_frequency: bool = False,
        cutoff: bool = True,
        p: float = 2.0,
        sample_rate: int = 16000,
        reduction: str = "mean",
        cutoff_rule: CutoffRule = "drop",
        framing: Framing = "padded",
    ) -> None:
        super().__init__()
        if not (isinstance(p, (int, float)) and math.isfinite(p) and p >= 1):
            raise ValueError(f"p must be a finite number >= 1, got {p!r}")
        if cutoff_rule not in CUTOFF_RULES:
            raise ValueError(f"cutoff_rule must be one of {CUTOFF_RULES}, got {cutoff_rule!r}")
        _check_reduction(reduction)
        self.stft = STFT(n_fft, hop_length, window=window, normalized=True, sample_rate=sample_rate,
                         framing=framing)
        self.power = power
        self.log_frequency = log_frequency
        self.cutoff = cutoff
        self.cutoff_rule = cutoff_rule
        self.framing = framing
        self.p = float(p)
        self.reduction = reduction
        n_bins = n_fft // 2 + 1
        if log_frequency:
            f_low = 32.7
            f_top = float(cqt_frequencies(sample_rate=sample_rate, fmin=f_low)[-1])
            freqs = torch.arange(n_bins, dtype=torch.float64) * sample_rate / n_fft
            m_low, m_top = hz_to_midi(f_low), hz_to_midi(f_top)
            raw = (hz_to_midi(freqs) - m_low) / (m_top - m_low)
        else:
            raw = torch.arange(n_bins, dtype=torch.float64) / (n_fft / 2)
        positions, order = torch.sort(raw, stable=True)
        self.register_buffer("positions", positions, persistent=False)
        self.register_buffer("order", order, persistent=False)
        # Linear positions are already sorted: no re-ordering copy of every spectrum.
        self.reorders_bins = not torch.equal(order, torch.arange(n_bins))

    def spectrum(self, audio: Tensor) -> Tensor:
        """Frame spectra (B, frames, F), bins in position order: power |X|^2 or magnitude |X|."""
        spec = self.stft.magnitude(audio, power=self.power)
        return spec.index_select(-1, self.order) if self.reorders_bins else spec

    def frame_losses(self, input: Tensor, target: Tensor) -> Tensor:
        """W_p^p of every frame (B, frames) between prediction ``input`` and ``target``, both
        (B, N) waveforms, normalized as described above; frames = ``self.stft.n_frames(N)``."""
        _check_waveforms(input, target, self.stft.n_fft)
        pred = self.spectrum(input)
        true = self.spectrum(target)
        true_mass = true.sum(-1, keepdim=True) + MASS_EPS
        pred_mass = true_mass if self.cutoff else pred.sum(-1, keepdim=True) + MASS_EPS
        return wasserstein_1d(
            pred / pred_mass, true / true_mass, self.positions, p=self.p, cutoff=self.cutoff,
            cutoff_rule=self.cutoff_rule,
        )

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        """SOT between prediction ``input`` and ``target``, both (B, N) waveforms."""
        per_example = self.frame_losses(input, target).mean(-1)
        return per_example.mean() if self.reduction == "mean" else per_example


class MultiScaleSpectralLoss(nn.Module):
    r"""Multi-scale spectral loss (MSS) on normalized Hann STFT magnitudes, hop = size / 4.

    Per FFT size: mag_weight * mean|S - S^| + logmag_weight * mean|log S - log S^|, with
    log S = log(max(S, 1e-5)); summed over sizes. Means run over frames and bins (and batch for
    "mean"). ``forward(input (B, N), target (B, N))`` -> scalar ("mean") or (B,) ("none").
    The gradient of |X| at X = 0 is 0, so silence gives finite gradients.
    """

    def __init__(
        self,
        fft_sizes: tuple[int, ...] | list[int] = (2048, 1024, 512, 256, 128, 64),
        mag_weight: float = 1.0,
        logmag_weight: float = 0.0,
        reduction: str = "mean",
    ) -> None:
        super().__init__()
        if len(fft_sizes) == 0:
            raise ValueError("fft_sizes must list at least one FFT size, got none")
        for size in fft_sizes:
            if isinstance(size, bool) or not isinstance(size, int) or size < 4:
                raise ValueError(f"fft_sizes must be integers >= 4, got {size!r}")
        if mag_weight < 0 or logmag_weight < 0:
            raise ValueError(
                f"mag_weight and logmag_weight must be >= 0, got {mag_weight} and {logmag_weight}"
            )
        _check_reduction(reduction)
        self.fft_sizes = tuple(fft_sizes)
        self.mag_weight = float(mag_weight)
        self.logmag_weight = float(logmag_weight)
        self.reduction = reduction
        self.stfts = nn.ModuleList(
            STFT(size, size // 4, window="hann", normalized=True) for size in self.fft_sizes
        )

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        """MSS between prediction ``input`` and ``target``, both (B, N) waveforms."""
        _check_waveforms(input, target, max(self.fft_sizes))
        total = input.new_zeros(input.shape[0])
        for stft in self.stfts:
            pred = stft(input)
            true = stft(target)
            if self.mag_weight:
                total = total + self.mag_weight * (pred - true).abs().mean((-2, -1))
            if self.logmag_weight:
                log_diff = pred.clamp(min=LOG_FLOOR).log() - true.clamp(min=LOG_FLOOR).log()
                total = total + self.logmag_weight * log_diff.abs().mean((-2, -1))
        return total.mean() if self.reduction == "mean" else total


class LossMixture(nn.Module):
    """Weighted sum of named losses, each a module with ``forward(input, target)``.

    ``weights`` default to 1 for every term; its keys must equal those of ``terms``.
    ``forward`` returns sum_name weight * term; ``compute_terms`` also returns the unweighted terms.
    """

    def __init__(
        self, terms: dict[str, nn.Module], weights: dict[str, float] | None = None
    ) -> None:
        super().__init__()
        if len(terms) == 0:
            raise ValueError("terms must name at least one loss, got an empty dict")
        for name in terms:
            if not isinstance(name, str) or not name or "." in name:
                raise ValueError(f"terms keys must be non-empty strings without '.', got {name!r}")
        if weights is None:
            weights = {name: 1.0 for name in terms}
        if set(weights) != set(terms):
            raise ValueError(
                f"weights keys {sorted(weights)} must equal terms keys {sorted(terms)}"
            )
        for name, weight in weights.items():
            if not math.isfinite(weight):
                raise ValueError(f"weights[{name!r}] must be finite, got {weight!r}")
        self.terms = nn.ModuleDict(terms)
        self.weights = {name: float(weights[name]) for name in terms}

    def compute_terms(self, input: Tensor, target: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """(weighted total, {name: unweighted term}) for prediction ``input`` and ``target``."""
        values = {name: term(input, target) for name, term in self.terms.items()}
        total = sum(self.weights[name] * value for name, value in values.items())
        assert isinstance(total, Tensor)
        return total, values

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        """Weighted sum of the terms for prediction ``input`` and ``target``."""
        return self.compute_terms(input, target)[0]


def as_mixture(loss: nn.Module, name: str = "loss") -> LossMixture:
    """``loss`` itself if it is a ``LossMixture``, else a one-term mixture ``{name: loss}``."""
    if isinstance(loss, LossMixture):
        return loss
    return LossMixture({name: loss})
