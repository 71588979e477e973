"""Spectral front ends: windows, an STFT (end-padded as the paper's, or an explicit other framing)
and the paper's CQT (pure torch).

Windows and CQT kernels are non-persistent buffers: they follow ``.to(device)`` but are
not written to ``state_dict``, so checkpoints stay small and stay loadable when a front
end's settings change.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from nnAudio.features import CQT as _NnAudioCQT
from torch import Tensor, nn
from torch.autograd.function import FunctionCtx, once_differentiable

from sotddsp.core.checks import check_int, check_positive

__all__ = [
    "CQT",
    "FRAMINGS",
    "STFT",
    "Framing",
    "cqt_frequencies",
    "cqt_n_bins",
    "get_window",
    "hz_to_midi",
    "midi_to_hz",
]

# How an STFT cuts a signal of N samples into frames of n_fft (see STFT).
Framing = Literal["padded", "full", "centered"]
FRAMINGS: tuple[str, ...] = ("padded", "full", "centered")

# Generalized cosine coefficients a_k: w[j] = sum_k (-1)^k a_k cos(2 pi k j / n) (periodic).
# Values as in scipy.signal.windows.
_COSINE_WINDOWS: dict[str, tuple[float, ...]] = {
    "hann": (0.5, 0.5),
    "hamming": (0.54, 0.46),
    "blackman": (0.42, 0.50, 0.08),
    "flattop": (0.21557895, 0.41663158, 0.277263158, 0.083578947, 0.006947368),
    "rectangular": (1.0,),
}


def get_window(name: str, n: int, dtype: torch.dtype | None = None) -> Tensor:
    """Periodic (DFT-even) window of length ``n``, as ``scipy.signal.get_window(name, n)``.

    ``name`` is one of "hann", "hamming", "blackman", "flattop", "rectangular".
    w[j] = sum_k (-1)^k a_k cos(2 pi k j / n), j = 0..n-1, computed in float64.
    Returns a Tensor (n,) of ``dtype`` (default: torch's default dtype, float32 unless changed).
    """
    if name not in _COSINE_WINDOWS:
        raise ValueError(f"window must be one of {sorted(_COSINE_WINDOWS)}, got {name!r}")
    check_int(n, "n")
    dtype = torch.get_default_dtype() if dtype is None else dtype
    if n == 1:
        return torch.ones(1, dtype=dtype)
    phase = 2.0 * math.pi * torch.arange(n, dtype=torch.float64) / n
    window = torch.zeros(n, dtype=torch.float64)
    for k, a_k in enumerate(_COSINE_WINDOWS[name]):
        window += (-1) ** k * a_k * torch.cos(k * phase)
    return window.to(dtype)


def hz_to_midi(f: Tensor | float) -> Tensor:
    """MIDI note number 69 + 12 log2(f / 440) of frequencies ``f`` in Hz (any shape).

    DDSP's convention: 0 Hz maps to MIDI 0 (not -inf). Returns a Tensor of ``f``'s shape
    (float64 for Python scalars).
    """
    f = torch.as_tensor(f, dtype=torch.float64 if not torch.is_tensor(f) else None)
    safe = torch.where(f > 0, f, torch.ones_like(f))
    midi = 69.0 + 12.0 * torch.log2(safe / 440.0)
    return torch.where(f > 0, midi, torch.zeros_like(midi))


def midi_to_hz(m: Tensor | float) -> Tensor:
    """Frequency 440 * 2^((m - 69) / 12) in Hz of MIDI numbers ``m`` (any shape).

    Returns a Tensor of ``m``'s shape (float64 for Python scalars).
    """
    m = torch.as_tensor(m, dtype=torch.float64 if not torch.is_tensor(m) else None)
    return 440.0 * torch.pow(2.0, (m - 69.0) / 12.0)


def cqt_n_bins(sample_rate: int = 16000, fmin: float = 32.7, bins_per_semitone: int = 3) -> int:
    """Number of CQT bins below Nyquist: bins_per_semitone * floor(12 log2((sr / 2) / fmin)).

    285 at 16 kHz with the defaults.
    """
    check_positive(sample_rate, "sample_rate")
    if not 0 < fmin < sample_rate / 2:
        raise ValueError(f"fmin must be in (0, sample_rate / 2), got {fmin!r}")
    check_int(bins_per_semitone, "bins_per_semitone")
    return bins_per_semitone * math.floor(12.0 * math.log2((sample_rate / 2) / fmin))


def cqt_frequencies(
    sample_rate: int = 16000,
    fmin: float = 32.7,
    bins_per_semitone: int = 3,
    n_bins: int | None = None,
) -> Tensor:
    """Centre frequencies in Hz of the CQT bins: fmin * 2^(q / (12 bins_per_semitone)).

    ``n_bins`` defaults to ``cqt_n_bins(sample_rate, fmin, bins_per_semitone)``.
    Returns a float64 Tensor (Q,); the last entry is about 7.75 kHz at the defaults.
    """
    if n_bins is None:
        n_bins = cqt_n_bins(sample_rate, fmin, bins_per_semitone)
    check_int(n_bins, "n_bins")
    check_int(bins_per_semitone, "bins_per_semitone")
    q = torch.arange(n_bins, dtype=torch.float64)
    return fmin * torch.pow(2.0, q / (12 * bins_per_semitone))


class _SpectrumMagnitude(torch.autograd.Function):
    """|X| (or |X|^2 with ``power``) of X = rfft(window * frame / norm) for the frames of padded
    audio, with a backward by one inverse real FFT and an overlap-add.

    audio: (B, L) already padded, L = (T - 1) hop + n; window: (n,) in audio's dtype; norm:
    sqrt(n) (normalized) or 1. Returns (B, T, n // 2 + 1) in audio's dtype. With Y = g X / |X|
    (0 where |X| = 0), or Y = 2 g X for the power, the frame gradient is
    n irfft(Y') window / norm, Y' the one-sided Y with its interior bins halved, overlap-added
    back at the frames' offsets. |X| is sqrt(re^2 + im^2). ``torch.stft``'s values and
    autograd's gradient to rounding, with far fewer passes on the CPU.
    """

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: FunctionCtx, audio: Tensor, window: Tensor, n_fft: int, hop: int, norm: float,
        power: bool,
    ) -> Tensor:
        scaled_window = window / norm
        spectrum = torch.fft.rfft(audio.unfold(-1, n_fft, hop) * scaled_window, dim=-1)
        energy = torch.view_as_real(spectrum).square().sum(-1)  # |X|^2, (B, T, F)
        magnitude = None if power else energy.sqrt_()
        ctx.save_for_backward(spectrum, scaled_window, *(() if power else (magnitude,)))
        ctx.shape = (audio.shape[-1], n_fft, hop, power)
        return energy if power else magnitude

    @staticmethod
    @once_differentiable
    def backward(  # type: ignore[override]
        ctx: FunctionCtx, grad: Tensor
    ) -> tuple[Tensor, None, None, None, None, None]:
        spectrum, scaled_window, *magnitude = ctx.saved_tensors
        length, n_fft, hop, power = ctx.shape
        if power:
            scale = 2.0 * grad
        else:
            scale = torch.where(magnitude[0] > 0, grad / magnitude[0], 0.0)
        y = spectrum * scale
        y[..., 1 : (n_fft + 1) // 2] *= 0.5  # the bins irfft counts twice
        frames = torch.fft.irfft(y, n=n_fft, dim=-1).mul_(scaled_window * n_fft)  # (B, T, n)
        batch, n_frames = frames.shape[:2]
        out = frames.new_zeros(batch, length)
        if n_fft % hop == 0:  # overlap-add by n / hop shifted block sums
            blocks = frames.reshape(batch, n_frames, n_fft // hop, hop)
            tiled = out[:, : (n_frames - 1 + n_fft // hop) * hop].view(batch, -1, hop)
            for q in range(n_fft // hop):
                tiled[:, q : q + n_frames] += blocks[:, :, q]
        else:
            for t in range(n_frames):
                out[:, t * hop : t * hop + n_fft] += frames[:, t]
        return out, None, None, None, None, None


class STFT(nn.Module):
    """Magnitude STFT of (B, N) audio; ``framing`` says how the signal is cut into frames.

    - "padded" (default, the paper's: TF's ``pad_end=True``): not centered, zero-padded at the
      end: n_frames = ceil(N / hop_length), the signal padded to (n_frames - 1) hop + n_fft
      samples; frames near the end reach past the signal (7 of 16 at N 4096, n_fft 2048, hop 256).
    - "full" (not the paper's): only the frames that lie entirely inside the signal, no padding:
      n_frames = floor((N - n_fft) / hop_length) + 1 (9 at N 4096, n_fft 2048, hop 256); needs
      N >= n_fft.
    - "centered" (not the paper's; ``torch.stft(center=True, pad_mode="reflect")``): frame t is
      centred on sample t hop, the signal reflect-padded by n_fft // 2 on both sides:
      n_frames = 1 + (N + 2 (n_fft // 2) - n_fft) // hop_length, i.e. 1 + N // hop_length for
      even n_fft (17 at N 4096, hop 256); needs N > n_fft // 2.

    ``normalized`` divides by sqrt(n_fft) (torch's ``normalized=True``). The window is periodic
    (``get_window``).
    """

    window: Tensor

    def __init__(
        self,
        n_fft: int,
        hop_length: int,
        window: str = "hann",
        normalized: bool = True,
        sample_rate: int = 16000,
        framing: Framing = "padded",
    ) -> None:
        super().__init__()
        check_int(n_fft, "n_fft")
        check_int(hop_length, "hop_length")
        check_positive(sample_rate, "sample_rate")
        if framing not in FRAMINGS:
            raise ValueError(f"framing must be one of {FRAMINGS}, got {framing!r}")
        self.n_fft = n_fft
        self.hop_length = hop_length
        self.normalized = normalized
        self.sample_rate = sample_rate
        self.framing = framing
        # Kept in float64 and cast to the audio's dtype in forward, so float64 audio is exact.
        self.register_buffer("window", get_window(window, n_fft, torch.float64), persistent=False)

    @property
    def n_bins(self) -> int:
        """F = n_fft // 2 + 1."""
        return self.n_fft // 2 + 1

    @property
    def frequencies(self) -> Tensor:
        """Bin frequencies k * sample_rate / n_fft in Hz: float64 Tensor (F,), window's device."""
        k = torch.arange(self.n_bins, dtype=torch.float64, device=self.window.device)
        return k * self.sample_rate / self.n_fft

    def n_frames(self, n_samples: int) -> int:
        """Frames of a signal of ``n_samples`` under this framing (see the class docstring);
        a ValueError when the framing cannot frame that many samples."""
        if n_samples < 1:
            raise ValueError(f"audio must have at least one sample, got N = {n_samples}")
        if self.framing == "padded":
            return -(-n_samples // self.hop_length)
        if self.framing == "full":
            if n_samples < self.n_fft:
                raise ValueError(
                    f"framing='full' needs signals of at least n_fft = {self.n_fft} samples, got "
                    f"N = {n_samples}; use a shorter n_fft or framing='padded'"
                )
            return (n_samples - self.n_fft) // self.hop_length + 1
        if n_samples <= self.n_fft // 2:
            raise ValueError(
                f"framing='centered' reflect-pads n_fft // 2 = {self.n_fft // 2} samples, so it "
                f"needs signals longer than that, got N = {n_samples}; use a shorter n_fft"
            )
        return 1 + (n_samples + 2 * (self.n_fft // 2) - self.n_fft) // self.hop_length

    def _check_audio(self, audio: Tensor) -> int:
        """n_frames of ``audio`` (B, N), after checking its shape."""
        if audio.ndim != 2:
            raise ValueError(f"audio must have shape (B, N), got {tuple(audio.shape)}")
        return self.n_frames(audio.shape[-1])

    def framed_audio(self, audio: Tensor) -> Tensor:
        """``audio`` (B, N) as the frames read it: (B, (n_frames - 1) hop + n_fft), frame t being
        samples [t hop, t hop + n_fft) of it: zero-padded at the end ("padded"), cut after the
        last full frame ("full"), reflect-padded by n_fft // 2 each side and cut ("centered")."""
        n_frames = self._check_audio(audio)
        length = (n_frames - 1) * self.hop_length + self.n_fft
        if self.framing == "padded":
            return nn.functional.pad(audio, (0, length - audio.shape[-1]))
        if self.framing == "centered":
            half = self.n_fft // 2
            audio = nn.functional.pad(audio[:, None], (half, half), mode="reflect")[:, 0]
        return audio[:, :length]

    def complex_spectrum(self, audio: Tensor) -> Tensor:
        """Complex STFT of ``audio`` (B, N) by ``torch.stft``: Tensor (B, n_frames, F), complex.

        "full" and "centered" are torch.stft's own framings (center=False on the raw signal;
        center=True, pad_mode="reflect"); "padded" pads the end first.
        """
        self._check_audio(audio)
        if self.framing == "padded":
            audio = self.framed_audio(audio)
        spec = torch.stft(
            audio,
            n_fft=self.n_fft,
            hop_length=self.hop_length,
            win_length=self.n_fft,
            window=self.window.to(audio.dtype),
            center=self.framing == "centered",
            pad_mode="reflect",
            normalized=self.normalized,
            onesided=True,
            return_complex=True,
        )
        return spec.transpose(-1, -2)

    def magnitude(self, audio: Tensor, power: bool = False) -> Tensor:
        """|STFT| (or |STFT|^2 with ``power``) of ``audio`` (B, N): Tensor (B, n_frames, F).

        The values of ``complex_spectrum(audio).abs()`` (squared), by ``_SpectrumMagnitude`` on
        ``framed_audio(audio)``, whose backward costs one inverse real FFT (autograd carries it
        through the padding or cut). The gradient of |z| at z = 0 is 0, so silence is safe.
        """
        framed = self.framed_audio(audio)
        norm = math.sqrt(self.n_fft) if self.normalized else 1.0
        return _SpectrumMagnitude.apply(framed, self.window.to(audio.dtype), self.n_fft,
                                        self.hop_length, norm, power)

    def forward(self, audio: Tensor) -> Tensor:
        """Magnitude |STFT| of ``audio`` (B, N): Tensor (B, n_frames, F) (see ``magnitude``)."""
        return self.magnitude(audio)


class CQT(nn.Module):
    """The paper's CQT: nnAudio ``CQT1992v2``, centered, constant padding, magnitude.

    Kernels are non-persistent buffers (not in ``state_dict``); built on CPU, they follow
    ``.to(device)``. ``forward(audio (B, N)) -> (B, 1 + N // hop_length, Q)``.
    """

    def __init__(
        self,
        sample_rate: int = 16000,
        fmin: float = 32.7,
        bins_per_semitone: int = 3,
        n_bins: int | None = None,
        hop_length: int = 256,
    ) -> None:
        super().__init__()
        check_int(hop_length, "hop_length")
        if n_bins is None:
            n_bins = cqt_n_bins(sample_rate, fmin, bins_per_semitone)
        freqs = cqt_frequencies(sample_rate, fmin, bins_per_semitone, n_bins)
        if freqs[-1] >= sample_rate / 2:
            raise ValueError(
                f"n_bins={n_bins} puts the top CQT bin at {float(freqs[-1]):.1f} Hz, above "
                f"Nyquist ({sample_rate / 2} Hz); reduce n_bins"
            )
        self.sample_rate = sample_rate
        self.fmin = fmin
        self.bins_per_semitone = bins_per_semitone
        self.n_bins = n_bins
        self.hop_length = hop_length
        self.cqt = _NnAudioCQT(
            sr=sample_rate,
            hop_length=hop_length,
            fmin=fmin,
            n_bins=n_bins,
            bins_per_octave=12 * bins_per_semitone,
            center=True,
            pad_mode="constant",
            output_format="Magnitude",
            verbose=False,
        )
        for name, buffer in list(self.cqt.named_buffers(recurse=False)):
            self.cqt.register_buffer(name, buffer, persistent=False)
        self.register_buffer("_frequencies", freqs, persistent=False)

    @property
    def frequencies(self) -> Tensor:
        """Bin centre frequencies in Hz, float64 Tensor (Q,) (see ``cqt_frequencies``)."""
        return self._frequencies

    def forward(self, audio: Tensor) -> Tensor:
        """CQT magnitude of ``audio`` (B, N): Tensor (B, 1 + N // hop_length, Q)."""
        if audio.ndim != 2:
            raise ValueError(f"audio must have shape (B, N), got {tuple(audio.shape)}")
        return self.cqt(audio).transpose(-1, -2)
