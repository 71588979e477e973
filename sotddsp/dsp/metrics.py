"""Evaluation metrics of the paper (prediction first; each returns a Python float).

Audio metrics take waveforms pred (B, N) and target (B, N) (Tensor or array).
Pitch metrics take f0 in Hz: pred (B, T) (or (B,)) and true (B, T), (B, 1) or (B,), the
latter broadcast over frames; every frame counts as voiced. They are computed in float64
NumPy with mir_eval.melody's formulas (cents relative to 10 Hz, strict 50-cent tolerance).
Every pitch metric counts frames: each of the B x T frames weighs the same (a note is T frames).

The shares within a tolerance are per frame and strict, as RPA is: ``within_cents_accuracy(pred,
true, 50)`` is the raw pitch accuracy itself (the same frames, the same strict ``|d| < 50``), and
``within_cents_accuracy(pred, true, 100)`` is mir_eval's RPA with ``cent_tolerance=100``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from sotddsp.dsp.losses import MultiScaleSpectralLoss
from sotddsp.dsp.spectral import STFT

__all__ = [
    "family_breakdown",
    "log_f0_correlation",
    "log_spectral_distance",
    "median_cents_error",
    "median_f0_hz",
    "median_signed_cents_error",
    "mse",
    "multiscale_spectral_distance",
    "octave_difference",
    "pitch_metrics",
    "raw_chroma_accuracy",
    "raw_pitch_accuracy",
    "within_cents_accuracy",
    "within_octave_accuracy",
]

ArrayLike = Tensor | np.ndarray

LSD_N_FFT = 1024
LSD_HOP = 256
POWER_FLOOR = 1e-5
CENT_TOLERANCE = 50.0


def _audio_pair(pred_audio: ArrayLike, target_audio: ArrayLike) -> tuple[Tensor, Tensor]:
    pred = torch.as_tensor(pred_audio).detach()
    target = torch.as_tensor(target_audio).detach().to(pred.device)
    if pred.ndim != 2 or pred.shape != target.shape:
        raise ValueError(
            f"pred_audio and target_audio must both have shape (B, N), got "
            f"{tuple(pred.shape)} and {tuple(target.shape)}"
        )
    dtype = torch.promote_types(torch.promote_types(pred.dtype, target.dtype), torch.float32)
    return pred.to(dtype), target.to(dtype)


def log_spectral_distance(pred_audio: ArrayLike, target_audio: ArrayLike) -> float:
    """Mean squared dB difference of STFT power (the paper's LSD, no square root).

    pred_audio, target_audio: (B, N) waveforms. STFT 1024, hop 256, periodic Hann, normalized,
    not centered, end-padded (the MSS front end); P = |STFT|^2 floored at 1e-5. Returns
    mean over batch, frames and bins of (10 log10 P_pred - 10 log10 P_target)^2, in dB^2.
    """
    pred, target = _audio_pair(pred_audio, target_audio)
    stft = STFT(LSD_N_FFT, LSD_HOP, "hann").to(pred.device)
    with torch.no_grad():
        pred_db = 10.0 * torch.log10(stft(pred.double()).pow(2).clamp_min(POWER_FLOOR))
        target_db = 10.0 * torch.log10(stft(target.double()).pow(2).clamp_min(POWER_FLOOR))
    return float((pred_db - target_db).pow(2).mean())


def multiscale_spectral_distance(pred_audio: ArrayLike, target_audio: ArrayLike) -> float:
    """MSS lin + log over sizes 2048..64: ``MultiScaleSpectralLoss(mag_weight=1, logmag_weight=1)``.

    pred_audio, target_audio: (B, N) waveforms. Returns the loss value (mean over the batch).
    """
    pred, target = _audio_pair(pred_audio, target_audio)
    loss = MultiScaleSpectralLoss(mag_weight=1.0, logmag_weight=1.0).to(pred.device)
    with torch.no_grad():
        return float(loss(pred, target))


def mse(pred_audio: ArrayLike, target_audio: ArrayLike) -> float:
    """Mean squared error of waveforms (B, N): mean over batch and samples of (pred - target)^2."""
    pred, target = _audio_pair(pred_audio, target_audio)
    return float((pred.double() - target.double()).pow(2).mean())


def _f0_pair(pred_f0_hz: ArrayLike, true_f0_hz: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Validated float64 arrays (B, T), true broadcast over frames."""
    pred = _to_numpy(pred_f0_hz)
    true = _to_numpy(true_f0_hz)
    if pred.ndim == 1:
        pred = pred[:, None]
    if true.ndim == 1:
        true = true[:, None]
    if pred.ndim != 2 or pred.shape[1] == 0:
        raise ValueError(f"pred_f0_hz must have shape (B, T) or (B,), got {pred.shape}")
    if true.ndim != 2 or true.shape[0] != pred.shape[0] or true.shape[1] not in (1, pred.shape[1]):
        raise ValueError(
            f"true_f0_hz must have shape (B, T), (B, 1) or (B,) with B, T = {pred.shape}, "
            f"got {true.shape}"
        )
    for name, value in (("pred_f0_hz", pred), ("true_f0_hz", true)):
        if not np.all(np.isfinite(value) & (value > 0)):
            raise ValueError(f"{name} must be finite and positive (every frame is voiced)")
    return pred, np.broadcast_to(true, pred.shape)


def _to_numpy(x: ArrayLike) -> np.ndarray:
    if isinstance(x, Tensor):
        x = x.detach().cpu().double().numpy()
    return np.asarray(x, dtype=np.float64)


def _cents_difference(pred_f0_hz: ArrayLike, true_f0_hz: ArrayLike) -> np.ndarray:
    """d = cents(true) - cents(pred) = 1200 log2(true / pred), float64 (B, T)."""
    pred, true = _f0_pair(pred_f0_hz, true_f0_hz)
    return 1200.0 * np.log2(true / 10.0) - 1200.0 * np.log2(pred / 10.0)


def within_cents_accuracy(pred_f0_hz: ArrayLike, true_f0_hz: ArrayLike,
                          tolerance_cents: float) -> float:
    """Fraction of frames with |cents(true) - cents(pred)| < ``tolerance_cents`` (strict), in
    [0, 1]: mir_eval's raw pitch accuracy with ``cent_tolerance=tolerance_cents``."""
    if not tolerance_cents > 0:
        raise ValueError(f"tolerance_cents must be > 0, got {tolerance_cents}")
    d = np.abs(_cents_difference(pred_f0_hz, true_f0_hz))
    return float(np.mean(d < tolerance_cents))


def raw_pitch_accuracy(pred_f0_hz: ArrayLike, true_f0_hz: ArrayLike) -> float:
    """Fraction of frames with |cents(true) - cents(pred)| < 50 (mir_eval RPA), in [0, 1]."""
    return within_cents_accuracy(pred_f0_hz, true_f0_hz, CENT_TOLERANCE)


def raw_chroma_accuracy(pred_f0_hz: ArrayLike, true_f0_hz: ArrayLike) -> float:
    """Fraction of frames within 50 cents modulo octaves (mir_eval RCA), in [0, 1].

    With |d| the absolute cents difference: ||d| - 1200 floor(|d| / 1200 + 0.5)| < 50.
    """
    d = np.abs(_cents_difference(pred_f0_hz, true_f0_hz))
    octave = 1200.0 * np.floor(d / 1200.0 + 0.5)
    return float(np.mean(np.abs(d - octave) < CENT_TOLERANCE))


def octave_difference(pred_f0_hz: ArrayLike, true_f0_hz: ArrayLike) -> float:
    """Mean octave difference OD = mean(sign(d) floor((|d| + 50) / 1200)).

    d = cents(true) - cents(pred) per frame.
    Positive when predictions are octaves too low; the paper's table reports -OD.
    """
    d = _cents_difference(pred_f0_hz, true_f0_hz)
    return float(np.mean(np.sign(d) * np.floor((np.abs(d) + 50.0) / 1200.0)))


def median_cents_error(pred_f0_hz: ArrayLike, true_f0_hz: ArrayLike) -> float:
    """Median over all frames of |cents(true) - cents(pred)|, in cents."""
    return float(np.median(np.abs(_cents_difference(pred_f0_hz, true_f0_hz))))


def median_signed_cents_error(pred_f0_hz: ArrayLike, true_f0_hz: ArrayLike) -> float:
    """Median over all frames of cents(pred) - cents(true) = 1200 log2(pred / true), in cents.

    Positive when the predictions are too high (the opposite sign of ``octave_difference``'s d).
    """
    return float(np.median(-_cents_difference(pred_f0_hz, true_f0_hz)))


def median_f0_hz(f0_hz: ArrayLike) -> float:
    """Median over all frames of f0 (B, T) or (B,), in Hz (finite and positive)."""
    f0 = _to_numpy(f0_hz)
    if f0.ndim not in (1, 2) or f0.size == 0:
        raise ValueError(f"f0_hz must have shape (B, T) or (B,) and not be empty, got {f0.shape}")
    if not np.all(np.isfinite(f0) & (f0 > 0)):
        raise ValueError("f0_hz must be finite and positive (every frame is voiced)")
    return float(np.median(f0))


def within_octave_accuracy(pred_f0_hz: ArrayLike, true_f0_hz: ArrayLike) -> float:
    """Fraction of frames with |cents(true) - cents(pred)| < 600 (half an octave), in [0, 1]."""
    return float(np.mean(np.abs(_cents_difference(pred_f0_hz, true_f0_hz)) < 600.0))


def log_f0_correlation(pred_f0_hz: ArrayLike, true_f0_hz: ArrayLike) -> float:
    """Pearson correlation over all frames of log2 f0, predicted vs true, in [-1, 1].

    Does the model localize pitch at all, even with a bias (e.g. a whole number of octaves)?
    0.0 when either side is constant (the correlation is undefined).
    """
    pred, true = _f0_pair(pred_f0_hz, true_f0_hz)
    a = np.log2(pred).ravel()
    b = np.log2(true).ravel()
    a = a - a.mean()
    b = b - b.mean()
    denominator = math.sqrt(float(np.dot(a, a)) * float(np.dot(b, b)))
    return float(np.dot(a, b) / denominator) if denominator > 0 else 0.0


def pitch_metrics(pred_f0_hz: ArrayLike, true_f0_hz: ArrayLike) -> dict[str, float]:
    """All pitch metrics as floats: "rpa" (raw_pitch_accuracy), "rca" (raw_chroma_accuracy),
    "od" (octave_difference), "median_cents_error" (median |error|, cents), "within_octave"
    (within_octave_accuracy), "log_f0_corr" (log_f0_correlation), "median_signed_cents"
    (median_signed_cents_error: pred - true, cents), "within_50_cents" and "within_100_cents"
    (within_cents_accuracy at 50 and 100 cents, per frame, strict: the first equals "rpa") and
    "median_pred_hz" (median_f0_hz of the prediction)."""
    return {
        "log_f0_corr": log_f0_correlation(pred_f0_hz, true_f0_hz),
        "rpa": raw_pitch_accuracy(pred_f0_hz, true_f0_hz),
        "rca": raw_chroma_accuracy(pred_f0_hz, true_f0_hz),
        "od": octave_difference(pred_f0_hz, true_f0_hz),
        "median_cents_error": median_cents_error(pred_f0_hz, true_f0_hz),
        "within_octave": within_octave_accuracy(pred_f0_hz, true_f0_hz),
        "median_signed_cents": median_signed_cents_error(pred_f0_hz, true_f0_hz),
        "within_50_cents": within_cents_accuracy(pred_f0_hz, true_f0_hz, 50.0),
        "within_100_cents": within_cents_accuracy(pred_f0_hz, true_f0_hz, 100.0),
        "median_pred_hz": median_f0_hz(pred_f0_hz),
    }


def family_breakdown(
    f0_pred: ArrayLike, records: Sequence[Mapping[str, Any]]
) -> list[dict[str, Any]]:
    """Pitch accuracy per instrument family on the real-instrument test split
    (``sotddsp.data.real``).

    f0_pred: predicted f0 in Hz, (N, T) or (N,) (Tensor or array), row i for test example i.
    records: ``meta["records"]`` of the file (N dicts with "family" and "f0_hz", the true f0).
    Every frame counts as voiced; each frame is compared with the example's MIDI f0.

    Returns one dict per family (in order of first appearance) and a final "all" row:
    {"family", "n_examples", "n_frames", "rpa", "rca" (fractions in [0, 1], mir_eval's
    50-cent raw pitch / raw chroma accuracy), "median_cents_error" (cents)}.
    """
    pred = np.asarray(
        f0_pred.detach().cpu().double() if torch.is_tensor(f0_pred) else f0_pred, dtype=np.float64
    )
    if pred.ndim == 1:
        pred = pred[:, None]
    if pred.ndim != 2 or pred.shape[0] != len(records):
        raise ValueError(
            f"f0_pred must have shape (N, T) with N = {len(records)} records, got {pred.shape}"
        )
    true = np.array([float(r["f0_hz"]) for r in records])[:, None]
    families = np.array([r["family"] for r in records])
    groups = [(f, families == f) for f in dict.fromkeys(families.tolist())]
    rows = []
    for name, mask in [*groups, ("all", np.ones(len(records), dtype=bool))]:
        p, t = pred[mask], true[mask]
        rows.append(
            {
                "family": name,
                "n_examples": int(mask.sum()),
                "n_frames": int(p.size),
                "rpa": raw_pitch_accuracy(p, t),
                "rca": raw_chroma_accuracy(p, t),
                "median_cents_error": median_cents_error(p, t),
            }
        )
    return rows
