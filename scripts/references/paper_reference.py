"""The paper's system written out from PAPER.md, independently of the project's code: oracles
for the tests and for scripts/fidelity_report.py.

- The decoder ("Decoder") in NumPy, float64: frame controls (T, C), audio (N,), Hz, 16 kHz.
- The losses ("Losses"): NumPy STFT frames, the MSS loss, and SOT's W_p^p by a full merged
  sort with the authors' cutoff, in torch (differentiable by autograd through the sort).
"""

from __future__ import annotations

import math

import numpy as np
import scipy.signal
import torch
from torch import Tensor

SR = 16000


def numpy_ola_upsample(x: np.ndarray, n_samples: int) -> np.ndarray:
    """Literal DDSP overlap-add: x (T, C) -> (n_samples, C), float64."""
    n_frames = x.shape[0]
    hop = n_samples // n_frames
    window = scipy.signal.get_window("hann", 2 * hop)  # periodic
    frames = np.concatenate([x, x[-1:]], axis=0)
    out = np.zeros(((n_frames + 2) * hop, x.shape[1]))
    for t in range(n_frames + 1):
        out[t * hop : t * hop + 2 * hop] += window[:, None] * frames[t][None, :]
    return out[hop:-hop]


def numpy_linear_upsample(x: np.ndarray, n_samples: int) -> np.ndarray:
    """Half-pixel-centred linear interpolation: x (T, C) -> (n_samples, C), float64."""
    n_frames = x.shape[0]
    centres = (np.arange(n_frames) + 0.5) * n_samples / n_frames - 0.5
    n = np.arange(n_samples)
    return np.stack([np.interp(n, centres, x[:, c]) for c in range(x.shape[1])], axis=1)


def numpy_synth(amps: np.ndarray, f0: np.ndarray, n_samples: int, sr: int = SR) -> np.ndarray:
    """Float64 reference of the whole synth, PAPER.md "Decoder": amps (T, K), f0 (T, 1) -> (N,).

    Harmonic k is zeroed where k f0 >= sr / 2 first per control frame, then again per sample
    after the upsampling.
    """
    k = np.arange(1, amps.shape[1] + 1)
    frame_masked = np.where(k[None, :] * f0 >= sr / 2, 0.0, amps)
    a = numpy_ola_upsample(frame_masked, n_samples)
    f = numpy_linear_upsample(f0, n_samples)[:, 0]
    phase = np.cumsum(2 * np.pi * f / sr)
    out = np.zeros(n_samples)
    for harmonic in k:
        out += np.where(harmonic * f < sr / 2, a[:, harmonic - 1], 0.0) * np.sin(harmonic * phase)
    return out


def numpy_roll_off_ir(n_bands: int = 65, sr: int = SR, roll_off_hz: float = 500.0) -> np.ndarray:
    """PAPER.md's roll-off filter, written in NumPy: (2 (n_bands - 1),) float64, causal."""
    freqs = np.linspace(0.0, sr / 2, n_bands)
    a0 = 10 ** (-6 / 20)
    with np.errstate(divide="ignore"):
        mags = np.where(freqs <= roll_off_hz, 1.0, a0 ** np.log2(freqs / roll_off_hz))
    ir = np.fft.irfft(mags)  # zero-phase form
    size = ir.shape[0]
    window = np.roll(scipy.signal.get_window("hann", size), size // 2)  # zero-phase form
    return np.roll(ir * window, size // 2)


def numpy_decoder(
    amps: np.ndarray, f0: np.ndarray, n_samples: int, roll_off: bool, sr: int = SR
) -> np.ndarray:
    """The whole decoder: ``numpy_synth``, then with ``roll_off`` the full convolution with
    ``numpy_roll_off_ir`` cropped to n_samples from sample (128 - 1) // 2 - 1 = 62."""
    audio = numpy_synth(amps, f0, n_samples, sr)
    if not roll_off:
        return audio
    ir = numpy_roll_off_ir(sr=sr)
    start = (ir.shape[0] - 1) // 2 - 1
    return np.convolve(audio, ir)[start : start + n_samples]


# ---------------------------------------------------------------------------------- losses


def numpy_frames(audio: np.ndarray, n_fft: int, hop: int, framing: str = "padded") -> np.ndarray:
    """The STFT's frames (T, n_fft) of a 1-D signal, not windowed, starting every ``hop`` samples:
    "padded" (the paper's): zeros appended up to (ceil(N / hop) - 1) hop + n_fft samples;
    "full": the signal as it is, only frames that fit inside it; "centered": the signal
    reflect-padded by n_fft // 2 on both sides (np.pad's "reflect": the edge sample not
    repeated), as torch.stft(center=True, pad_mode="reflect")."""
    if framing == "padded":
        signal = np.zeros((math.ceil(len(audio) / hop) - 1) * hop + n_fft)
        signal[: len(audio)] = audio
    elif framing == "full":
        signal = audio
    elif framing == "centered":
        signal = np.pad(audio, n_fft // 2, mode="reflect")
    else:
        raise ValueError(f"unknown framing {framing!r}")
    return np.stack([signal[s : s + n_fft] for s in range(0, len(signal) - n_fft + 1, hop)])


def numpy_power_frames(
    audio: np.ndarray, n_fft: int, hop: int, window: str, framing: str = "padded"
) -> np.ndarray:
    """|STFT|^2 (frames, F) of a 1-D float64 signal, framed by ``numpy_frames`` (default: the
    paper's, end-padded, not centered), periodic window, / sqrt(n_fft)."""
    frames = numpy_frames(audio, n_fft, hop, framing) * scipy.signal.get_window(window, n_fft)
    return np.abs(np.fft.rfft(frames, axis=-1) / math.sqrt(n_fft)) ** 2


def numpy_mss(pred: np.ndarray, target: np.ndarray, fft_sizes: tuple[int, ...],
              mag_weight: float, logmag_weight: float) -> float:
    """The MSS loss of one example pair (N,): sum over sizes of mag_weight mean|S - S^| +
    logmag_weight mean|log S - log S^|, Hann, hop size / 4, log floored at 1e-5."""
    total = 0.0
    for size in fft_sizes:
        s_hat = np.sqrt(numpy_power_frames(pred, size, size // 4, "hann"))
        s = np.sqrt(numpy_power_frames(target, size, size // 4, "hann"))
        log = lambda a: np.log(np.maximum(a, 1e-5))
        total += mag_weight * np.abs(s - s_hat).mean()
        total += logmag_weight * np.abs(log(s) - log(s_hat)).mean()
    return float(total)


def merged_sort_w1d(u: Tensor, v: Tensor, x: Tensor, p: float, cutoff: str | None) -> Tensor:
    """W_p^p written out from PAPER.md "Losses", differentiable by autograd through the sort.

    Concatenate both cumulative sums and sort them into levels q_1 <= ... <= q_2n (q_0 = 0);
    each quantile function is x[clip(searchsorted(cumsum, q_m, side="left"), n - 1)]; the
    interval (q_{m-1}, q_m] costs (q_m - q_{m-1}) |x_u - x_v|^p. cutoff "drop": every interval
    whose upper level q_m exceeds 1 costs nothing; "clip": q -> min(q, 1). (..., n) -> (...).
    """
    n = u.shape[-1]
    cum_u, cum_v = u.cumsum(-1), v.cumsum(-1)
    levels = torch.sort(torch.cat([cum_u, cum_v], -1), dim=-1, stable=True).values
    lookup = levels.detach().contiguous()
    idx_u = torch.searchsorted(cum_u.detach().contiguous(), lookup).clamp(max=n - 1)
    idx_v = torch.searchsorted(cum_v.detach().contiguous(), lookup).clamp(max=n - 1)
    x_rows = x.expand(*levels.shape[:-1], n)
    cost = (x_rows.gather(-1, idx_u) - x_rows.gather(-1, idx_v)).abs().pow(p)
    if cutoff == "drop":
        cost = cost * (lookup <= 1.0)
    elif cutoff == "clip":
        levels = levels.clamp(max=1.0)
    delta = torch.diff(levels, dim=-1, prepend=torch.zeros_like(levels[..., :1]))
    return (delta * cost).sum(-1)


def sot_positions(n_fft: int, log_frequency: bool, sr: int = SR) -> tuple[np.ndarray, np.ndarray]:
    """(positions sorted, the bin order): k / (n_fft / 2), or the log-frequency positions
    (midi(f) - midi(32.7)) / (midi(f_top) - midi(32.7)) with midi(0 Hz) = 0 and f_top the top
    CQT bin (32.7 Hz * 2^(284 / 36) at 16 kHz), stably sorted."""
    n_bins = n_fft // 2 + 1
    if not log_frequency:
        return np.arange(n_bins) / (n_fft / 2), np.arange(n_bins)
    midi = lambda f: 69 + 12 * np.log2(f / 440.0)
    n_cqt = 3 * math.floor(12 * math.log2((sr / 2) / 32.7))
    f_top = 32.7 * 2 ** ((n_cqt - 1) / 36)
    freqs = np.arange(n_bins) * sr / n_fft
    with np.errstate(divide="ignore"):
        m = np.where(freqs > 0, midi(np.maximum(freqs, 1e-300)), 0.0)
    raw = (m - midi(32.7)) / (midi(f_top) - midi(32.7))
    order = np.argsort(raw, kind="stable")
    return raw[order], order


def numpy_sot(pred: np.ndarray, target: np.ndarray, n_fft: int, log_frequency: bool,
              cutoff: bool, p: float = 2.0) -> float:
    """The SOT loss of one example pair (N,), float64: flattop power frames (hop 256), the
    target over its mass and the prediction over the target's (cutoff, the authors' drop rule)
    or over its own (NoCut), merged-sort W_p^p per frame, mean over frames."""
    positions, order = sot_positions(n_fft, log_frequency)
    p_frames = numpy_power_frames(pred, n_fft, 256, "flattop")[:, order]
    t_frames = numpy_power_frames(target, n_fft, 256, "flattop")[:, order]
    t_mass = t_frames.sum(-1, keepdims=True) + 1e-12
    p_mass = t_mass if cutoff else p_frames.sum(-1, keepdims=True) + 1e-12
    w = merged_sort_w1d(torch.from_numpy(p_frames / p_mass), torch.from_numpy(t_frames / t_mass),
                        torch.from_numpy(positions), p, "drop" if cutoff else None)
    return float(w.mean())
