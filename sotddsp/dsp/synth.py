"""DDSP harmonic synthesizer (frozen, no parameters) and its control helpers.

Controls (upsampling, Nyquist masking) are kept apart from the DSP (oscillator bank,
FIR roll-off), as in magenta/ddsp. Frame-rate controls are (B, T, C); audio-rate
controls are (B, N, C); audio is (B, N). Frequencies are in Hz.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import Tensor, nn
from torch.autograd.function import FunctionCtx, once_differentiable

from sotddsp.core.checks import check_int, check_positive
from sotddsp.dsp.native import kernels as _native_kernels  # the C kernels, or None

__all__ = [
    "ROLL_OFF_DB_PER_OCTAVE",
    "HarmonicSynth",
    "fft_convolve",
    "frequency_sampling_fir",
    "harmonic_oscillator_bank",
    "remove_above_nyquist",
    "roll_off_magnitudes",
    "upsample_linear",
    "upsample_with_windows",
]


def _periodic_hann(n: int, dtype: torch.dtype, device: torch.device | None = None) -> Tensor:
    # Computed in float64 (spectral.get_window returns the default dtype).
    j = torch.arange(n, dtype=torch.float64, device=device)
    return torch.sin(math.pi * j / n).pow(2).to(dtype)


def _check_frames(x: Tensor, n_samples: int, name: str) -> None:
    if x.ndim != 3:
        raise ValueError(f"{name} must have shape (B, T, C), got {tuple(x.shape)}")
    check_int(n_samples, "n_samples")
    if x.shape[1] == 0:
        raise ValueError(f"{name} must have at least one frame, got T = 0")


def upsample_with_windows(x: Tensor, n_samples: int) -> Tensor:
    """Upsample frame controls by overlap-adding Hann windows (DDSP, ``add_endpoint=True``).

    x: (B, T, C). The last frame is appended once more (T + 1 frames), hop = n_samples / T,
    each frame is multiplied by a periodic Hann window of 2 * hop samples, the frames are
    overlap-added with that hop and hop samples are trimmed at both ends. Since the rising and
    falling halves of the window sum to 1, output block t (samples t*hop .. (t+1)*hop - 1) is
    x[t] * w[hop + j] + x[t + 1] * w[j], j = 0..hop-1: a raised-cosine crossfade from frame t
    to frame t + 1. Requires n_samples % T == 0. Returns (B, n_samples, C), x's dtype.
    """
    _check_frames(x, n_samples, "x")
    n_frames = x.shape[1]
    if n_samples % n_frames != 0:
        raise ValueError(
            f"n_samples ({n_samples}) must be a multiple of the number of frames T ({n_frames})"
        )
    hop = n_samples // n_frames
    window = _periodic_hann(2 * hop, x.dtype, x.device)
    rise, fall = window[:hop], window[hop:]
    x_end = torch.cat([x, x[:, -1:, :]], dim=1)
    blocks = (
        x_end[:, :-1, None, :] * fall[None, None, :, None]
        + x_end[:, 1:, None, :] * rise[None, None, :, None]
    )
    return blocks.reshape(x.shape[0], n_samples, x.shape[2])


def upsample_linear(x: Tensor, n_samples: int) -> Tensor:
    """Upsample frame controls by linear interpolation (``F.interpolate``, align_corners=False).

    x: (B, T, C) -> (B, n_samples, C); frame t sits at sample (t + 0.5) * n_samples / T - 0.5,
    samples before the first / after the last frame centre hold the edge value.
    """
    _check_frames(x, n_samples, "x")
    y = nn.functional.interpolate(
        x.transpose(1, 2), size=n_samples, mode="linear", align_corners=False
    )
    return y.transpose(1, 2)


def remove_above_nyquist(amplitudes: Tensor, frequencies: Tensor, sample_rate: float) -> Tensor:
    """Zero the amplitudes of partials at or above Nyquist.

    amplitudes and frequencies (Hz) broadcast against each other, e.g. (B, N, K) each.
    Returns amplitudes where frequencies < sample_rate / 2, else 0 (broadcast shape).
    """
    check_positive(sample_rate, "sample_rate")
    return torch.where(frequencies >= sample_rate / 2.0, 0.0, amplitudes)


class _HarmonicSum(torch.autograd.Function):
    """y[n] = sum_k a_k[n] sin(k phi[n]) from phi (B, N) float64 in [0, 2 pi) and a (B, N, K).

    k * phi is wrapped to [0, 2 pi) in float64 and cast to a's dtype before the sine. Forward
    saves sin and cos of the harmonic phases; backward is dy/da_k = sin(k phi) and
    dy/dphi = sum_k k a_k cos(k phi), with the same roundings as autograd through the plain
    formula (bit-identical gradients) in fewer passes and temporaries.
    """

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: FunctionCtx, phase: Tensor, amplitudes: Tensor, grad_enabled: bool
    ) -> Tensor:
        n_harmonics = amplitudes.shape[-1]
        k = torch.arange(1, n_harmonics + 1, device=phase.device, dtype=torch.float64)
        # phase >= 0 and k > 0, so fmod is the remainder; done in place on the float64 product.
        harmonic_phase = (phase[..., None] * k).fmod_(2.0 * math.pi).to(amplitudes.dtype)
        sines = torch.sin(harmonic_phase)
        # needs_input_grad is True even under no_grad, hence the caller's grad mode.
        needs_phase_grad = grad_enabled and ctx.needs_input_grad[0]
        cosines = torch.cos_(harmonic_phase) if needs_phase_grad else None
        ctx.save_for_backward(sines, cosines, amplitudes if needs_phase_grad else None)
        return (amplitudes * sines).sum(-1)

    @staticmethod
    @once_differentiable
    def backward(  # type: ignore[override]
        ctx: FunctionCtx, grad: Tensor
    ) -> tuple[Tensor | None, Tensor | None, None]:
        sines, cosines, amplitudes = ctx.saved_tensors
        grad_amplitudes = grad[..., None] * sines if ctx.needs_input_grad[1] else None
        grad_phase = None
        if cosines is not None:
            # The operations and rounding of autograd through the plain formula (mul, sin, cast,
            # mul by k in float64, sum over k), so training is bit-identical to it.
            k = torch.arange(1, sines.shape[-1] + 1, device=sines.device, dtype=torch.float64)
            grad_harmonic = (grad[..., None] * amplitudes).mul_(cosines).to(torch.float64)
            grad_phase = grad_harmonic.mul_(k).sum(-1)
        return grad_phase, grad_amplitudes, None


def harmonic_oscillator_bank(f0_hz: Tensor, amplitudes: Tensor, sample_rate: float) -> Tensor:
    """Sum of harmonic sinusoids at audio rate: y[n] = sum_k a_k[n] sin(k * phi[n]).

    f0_hz: (B, N, 1) fundamental in Hz at audio rate; amplitudes: (B, N, K) for harmonics
    k = 1..K (mask above-Nyquist partials beforehand). phi[n] = sum_{m<=n} 2 pi f0[m] / sr,
    so the first sample already has phase 2 pi f0[0] / sr. phi is accumulated in float64 and
    k * phi is wrapped to [0, 2 pi) in float64 before the cast to the amplitudes' dtype, so long
    signals keep their phase; gradients flow to f0_hz and amplitudes (an analytic backward).
    Returns (B, N) in the promoted dtype of the inputs.
    """
    if f0_hz.ndim != 3 or f0_hz.shape[-1] != 1:
        raise ValueError(f"f0_hz must have shape (B, N, 1), got {tuple(f0_hz.shape)}")
    if amplitudes.ndim != 3 or amplitudes.shape[:2] != f0_hz.shape[:2]:
        raise ValueError(
            f"amplitudes must have shape (B, N, K) with (B, N) = {tuple(f0_hz.shape[:2])}, "
            f"got {tuple(amplitudes.shape)}"
        )
    two_pi = 2.0 * math.pi
    omega = f0_hz[..., 0].to(torch.float64) * (two_pi / sample_rate)
    phase = torch.remainder(torch.cumsum(omega, dim=1), two_pi)
    dtype = torch.promote_types(f0_hz.dtype, amplitudes.dtype)
    return _HarmonicSum.apply(phase, amplitudes.to(dtype), torch.is_grad_enabled())


# The roll-off's slope: 10^(-6/20) per octave (PAPER.md "Decoder"), not a factor 1/2 (-6.02 dB).
ROLL_OFF_DB_PER_OCTAVE = -6.0


Backend = Literal["auto", "native", "torch"]
_BACKENDS = ("auto", "native", "torch")
_NATIVE_DTYPES = (torch.float32, torch.float64)
# Below this many output samples per thread, one more thread costs more than it saves.
_NATIVE_SAMPLES_PER_THREAD = 1 << 14


def native_synth_available() -> bool:
    """True when the fused CPU kernel of the synthesizer was built (``pip install -e .``)."""
    return _native_kernels is not None


def _native_threads(rows: int, n_samples: int) -> int:
    return max(1, min(torch.get_num_threads(), rows * n_samples // _NATIVE_SAMPLES_PER_THREAD))


class _NativeHarmonicSynth(torch.autograd.Function):
    """Steps 2-4 of ``HarmonicSynth`` fused in C (csrc/harmonic_synth.h), with its backward.

    amplitudes (B, T, K) (masked at frame rate), f0_hz (B, T): contiguous CPU tensors of one
    dtype (float32 or float64), n_samples a multiple of T. Computed in double precision inside;
    sin(k phi) by the rotation recurrence from sin(phi) and cos(phi). Returns (B, n_samples).
    """

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: FunctionCtx, amplitudes: Tensor, f0_hz: Tensor, n_samples: int, sample_rate: float
    ) -> Tensor:
        ctx.save_for_backward(amplitudes, f0_hz)
        ctx.n_samples, ctx.sample_rate = n_samples, sample_rate
        return _native_synth(amplitudes, f0_hz, n_samples, sample_rate)

    @staticmethod
    @once_differentiable
    def backward(  # type: ignore[override]
        ctx: FunctionCtx, grad: Tensor
    ) -> tuple[Tensor | None, Tensor | None, None, None]:
        amplitudes, f0_hz = ctx.saved_tensors
        rows, n_frames, n_harmonics = amplitudes.shape
        need_a, need_f = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        grad = grad.contiguous()
        grad_a = torch.zeros_like(amplitudes) if need_a else None
        grad_f = torch.empty_like(f0_hz) if need_f else None
        if rows > 0 and (need_a or need_f):
            _native_kernels.synth_backward(
                amplitudes.data_ptr(), f0_hz.data_ptr(), grad.data_ptr(),
                0 if grad_a is None else grad_a.data_ptr(),
                0 if grad_f is None else grad_f.data_ptr(),
                rows, n_frames, n_harmonics, ctx.n_samples, float(ctx.sample_rate),
                amplitudes.dtype == torch.float64, _native_threads(rows, ctx.n_samples),
            )
        return grad_a, grad_f, None, None


def _native_synth(amplitudes: Tensor, f0_hz: Tensor, n_samples: int, sample_rate: float) -> Tensor:
    rows, n_frames, n_harmonics = amplitudes.shape
    out = amplitudes.new_empty(rows, n_samples)
    if rows > 0:
        _native_kernels.synth_forward(
            amplitudes.data_ptr(), f0_hz.data_ptr(), out.data_ptr(), rows, n_frames,
            n_harmonics, n_samples, float(sample_rate), amplitudes.dtype == torch.float64,
            _native_threads(rows, n_samples),
        )
    return out


def roll_off_magnitudes(
    n_bands: int = 65, sample_rate: int = 16000, roll_off_hz: float = 500.0
) -> Tensor:
    """Magnitude response flat up to ``roll_off_hz`` and -6 dB per octave above (PAPER.md).

    Bands at f_i = i * (sample_rate / 2) / (n_bands - 1), i = 0..n_bands-1 (0 .. Nyquist);
    m_i = 1 for f_i <= roll_off_hz, else a0 ** log2(f_i / roll_off_hz) with a0 = 10^(-6 / 20).
    Returns float64 Tensor (n_bands,).
    """
    if isinstance(n_bands, bool) or not isinstance(n_bands, int) or n_bands < 2:
        raise ValueError(f"n_roll_off_bands must be an integer >= 2, got {n_bands!r}")
    check_positive(roll_off_hz, "roll_off_hz")
    freqs = torch.linspace(0.0, sample_rate / 2.0, n_bands, dtype=torch.float64)
    octaves = torch.log2(torch.clamp(freqs, min=roll_off_hz) / roll_off_hz)
    a0 = 10.0 ** (ROLL_OFF_DB_PER_OCTAVE / 20.0)
    return torch.where(freqs <= roll_off_hz, 1.0, a0**octaves)


def frequency_sampling_fir(magnitudes: Tensor) -> Tensor:
    """Windowed frequency-sampling FIR (DDSP ``frequency_impulse_response``, window_size=0).

    magnitudes: (F,) zero-phase magnitude response on F bands from 0 to Nyquist.
    h = irfft(magnitudes) (length L = 2 (F - 1), zero-phase form), multiplied by a periodic
    Hann window of length L put in zero-phase form (fftshift), then fftshifted to causal form.
    The result is symmetric about index L // 2 (linear phase, group delay L // 2 samples).
    Returns (L,), magnitudes' dtype.
    """
    if magnitudes.ndim != 1 or magnitudes.shape[0] < 2:
        raise ValueError(
            f"magnitudes must have shape (F,) with F >= 2, got {tuple(magnitudes.shape)}"
        )
    ir = torch.fft.irfft(magnitudes.to(torch.complex128))
    window = torch.fft.fftshift(_periodic_hann(ir.shape[-1], torch.float64, ir.device))
    return torch.fft.fftshift(ir * window).to(magnitudes.dtype)


def fft_convolve(audio: Tensor, impulse_response: Tensor, crop_start: int) -> Tensor:
    """Full linear convolution of ``audio`` (B, N) with an FIR (L,), cropped to N samples.

    y[n] = (audio * h)[crop_start + n], n = 0..N-1 (by FFT). For a causal filter symmetric
    about L // 2 (``frequency_sampling_fir``), crop_start = L // 2 removes its delay and
    DDSP's crop_start = (L - 1) // 2 - 1 (the paper's) leaves a delay of L // 2 - crop_start
    samples (2 for even L). Returns (B, N), audio's dtype.
    """
    if audio.ndim != 2:
        raise ValueError(f"audio must have shape (B, N), got {tuple(audio.shape)}")
    if impulse_response.ndim != 1:
        raise ValueError(
            f"impulse_response must have shape (L,), got {tuple(impulse_response.shape)}"
        )
    n_samples, ir_size = audio.shape[-1], impulse_response.shape[-1]
    if not 0 <= crop_start < ir_size:
        raise ValueError(f"crop_start must be in [0, {ir_size}), got {crop_start!r}")
    fft_size = 1 << (n_samples + ir_size - 2).bit_length()
    spectrum = torch.fft.rfft(audio, n=fft_size) * torch.fft.rfft(
        impulse_response.to(audio.dtype), n=fft_size
    )
    full = torch.fft.irfft(spectrum, n=fft_size)
    return full[..., crop_start : crop_start + n_samples]


class HarmonicSynth(nn.Module):
    """Frozen DDSP harmonic synthesizer: frame controls -> audio (no trainable parameters).

    forward(amplitudes (B, T, K), f0_hz (B, T, 1), n_samples=None) -> audio (B, n_samples)
    (n_samples defaults to the constructor's), as PAPER.md "Decoder" specifies:

    1. harmonic k (k = 1..K) of frame t is silenced where k * f0[t] >= sr / 2, at frame rate;
    2. amplitudes are upsampled with overlapping Hann windows, f0 linearly, so a harmonic that
       crosses Nyquist between two frames fades over the amplitude crossfade;
    3. harmonic k is silenced again at audio rate where k * f0[n] >= sr / 2;
    4. y[n] = sum_k a_k[n] sin(k phi[n]), phi = cumsum(2 pi f0 / sr) (float64);
    5. with ``roll_off``: y is filtered by the FIR of ``roll_off_magnitudes`` (flat to
       ``roll_off_hz``, -6 dB per octave above, ``n_roll_off_bands`` bands over 0 .. sr / 2)
       and cropped from sample (L - 1) // 2 - 1 as DDSP does, which keeps a 2-sample delay.
       ``roll_off_zero_delay=True`` crops from L // 2 instead (no delay; not the paper's).

    ``backend``: "auto" (default) runs steps 2-4 in the fused C kernel (csrc/harmonic_synth.h)
    for CPU float32/float64 inputs when it is built (``native_synth_available()``), in double
    precision with sin(k phi) by the rotation recurrence, and in torch ops otherwise (every
    CUDA tensor); "native" insists on the kernel; "torch" never uses it. Both paths give the same
    audio to float32 rounding (the tests compare both with the same NumPy reference).
    """

    impulse_response: Tensor

    def __init__(
        self,
        n_samples: int = 4096,
        sample_rate: int = 16000,
        roll_off: bool = False,
        roll_off_hz: float = 500.0,
        n_roll_off_bands: int = 65,
        roll_off_zero_delay: bool = False,
        backend: Backend = "auto",
    ) -> None:
        super().__init__()
        if backend not in _BACKENDS:
            raise ValueError(f"backend must be one of {_BACKENDS}, got {backend!r}")
        if backend == "native" and _native_kernels is None:
            raise ValueError(
                "backend='native' needs the synthesizer's C kernel, which is not built; "
                "reinstall with a C compiler present (pip install -e .) or use backend='torch'"
            )
        self.backend = backend
        check_int(n_samples, "n_samples")
        check_positive(sample_rate, "sample_rate")
        self.n_samples = n_samples
        self.sample_rate = sample_rate
        self.roll_off = roll_off
        magnitudes = roll_off_magnitudes(n_roll_off_bands, sample_rate, roll_off_hz)
        if roll_off:
            ir = frequency_sampling_fir(magnitudes).to(torch.get_default_dtype())
            self.register_buffer("impulse_response", ir, persistent=False)
            self.roll_off_hz = roll_off_hz
            self.n_roll_off_bands = n_roll_off_bands
            self.roll_off_zero_delay = roll_off_zero_delay
            ir_size = ir.shape[-1]
            self.roll_off_crop_start = ir_size // 2 if roll_off_zero_delay else (ir_size - 1) // 2 - 1

    def extra_repr(self) -> str:
        text = f"n_samples={self.n_samples}, sample_rate={self.sample_rate}, "
        text += f"roll_off={self.roll_off}"
        if self.roll_off:
            text += f", roll_off_hz={self.roll_off_hz}, n_roll_off_bands={self.n_roll_off_bands}"
            text += f", roll_off_zero_delay={self.roll_off_zero_delay}"
        return text

    def forward(self, amplitudes: Tensor, f0_hz: Tensor, n_samples: int | None = None) -> Tensor:
        """Synthesize (B, n_samples) audio from amplitudes (B, T, K) and f0_hz (B, T, 1) in Hz.

        ``n_samples`` defaults to the constructor's; T must divide it (hop = n_samples / T
        samples per frame). A trained model can thus render signals of any length.
        """
        n_samples = self.n_samples if n_samples is None else n_samples
        if amplitudes.ndim != 3:
            raise ValueError(f"amplitudes must have shape (B, T, K), got {tuple(amplitudes.shape)}")
        if f0_hz.ndim != 3 or f0_hz.shape[-1] != 1:
            raise ValueError(f"f0_hz must have shape (B, T, 1), got {tuple(f0_hz.shape)}")
        if amplitudes.shape[:2] != f0_hz.shape[:2]:
            raise ValueError(
                f"amplitudes (B, T) = {tuple(amplitudes.shape[:2])} must match "
                f"f0_hz (B, T) = {tuple(f0_hz.shape[:2])}"
            )
        k = torch.arange(1, amplitudes.shape[-1] + 1, device=f0_hz.device, dtype=f0_hz.dtype)
        amplitudes = remove_above_nyquist(amplitudes, f0_hz * k, self.sample_rate)
        if self._use_native(amplitudes, f0_hz):
            _check_frames(amplitudes, n_samples, "amplitudes")
            if n_samples % amplitudes.shape[1] != 0:
                raise ValueError(
                    f"n_samples ({n_samples}) must be a multiple of the number of frames T "
                    f"({amplitudes.shape[1]})"
                )
            dtype = torch.promote_types(f0_hz.dtype, amplitudes.dtype)
            a, f = amplitudes.to(dtype).contiguous(), f0_hz[..., 0].to(dtype).contiguous()
            if torch.is_grad_enabled() and (a.requires_grad or f.requires_grad):
                audio = _NativeHarmonicSynth.apply(a, f, n_samples, float(self.sample_rate))
            else:
                audio = _native_synth(a, f, n_samples, float(self.sample_rate))
        else:
            audio = self._synthesize_with_torch(amplitudes, f0_hz, k, n_samples)
        if self.roll_off:
            audio = fft_convolve(audio, self.impulse_response, self.roll_off_crop_start)
        return audio

    def _use_native(self, amplitudes: Tensor, f0_hz: Tensor) -> bool:
        on_cpu = amplitudes.device.type == "cpu" and f0_hz.device.type == "cpu" and \
            amplitudes.dtype in _NATIVE_DTYPES and f0_hz.dtype in _NATIVE_DTYPES
        if self.backend == "native":
            if not on_cpu:
                raise ValueError(
                    f"backend='native' runs on CPU float32/float64 only, got {amplitudes.dtype} "
                    f"on {amplitudes.device.type}; use backend='auto' or 'torch'"
                )
            return True
        return self.backend == "auto" and on_cpu and _native_kernels is not None

    def _synthesize_with_torch(
        self, amplitudes: Tensor, f0_hz: Tensor, k: Tensor, n_samples: int
    ) -> Tensor:
        """Steps 2-4 in torch ops (CPU and CUDA): upsampling, audio-rate mask, oscillator bank."""
        amplitudes_audio = upsample_with_windows(amplitudes, n_samples)
        f0_audio = upsample_linear(f0_hz, n_samples)
        amplitudes_audio = remove_above_nyquist(amplitudes_audio, f0_audio * k, self.sample_rate)
        return harmonic_oscillator_bank(f0_audio, amplitudes_audio, self.sample_rate)
