"""HarmonicSynth and its control helpers against float64 NumPy references.

Shapes: amplitudes (B, T, K), f0 (B, T, 1) in Hz, audio (B, N); sample rate 16 kHz.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.signal
import torch
from references.paper_reference import (
    numpy_linear_upsample,
    numpy_ola_upsample,
    numpy_roll_off_ir,
    numpy_synth,
)

from sotddsp.dsp.synth import (
    HarmonicSynth,
    fft_convolve,
    frequency_sampling_fir,
    harmonic_oscillator_bank,
    remove_above_nyquist,
    roll_off_magnitudes,
    upsample_linear,
    upsample_with_windows,
)

SR = 16000


@pytest.fixture(params=["torch", "native"])
def backend(request: pytest.FixtureRequest) -> str:
    """Both paths of HarmonicSynth face every oracle: torch ops (CPU and CUDA) and the fused C
    kernel (CPU; built by ``make install``, so a missing kernel fails with the reason)."""
    return request.param


def numpy_sinusoids(amps: np.ndarray, f0: float, n_samples: int, sr: int = SR) -> np.ndarray:
    """Closed form for constant controls: sum_k a_k sin(2 pi k f0 (n + 1) / sr), k f0 < sr / 2.

    amps (K,) -> (n_samples,) float64.
    """
    n = np.arange(1, n_samples + 1, dtype=np.float64)
    out = np.zeros(n_samples)
    for k, a in enumerate(amps, start=1):
        if k * f0 < sr / 2:
            out += a * np.sin(2 * np.pi * k * f0 * n / sr)
    return out


def constant_controls(
    amps: list[float], f0: float, n_frames: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Constant controls: amplitudes (1, T, K) and f0 (1, T, 1) in Hz, float32."""
    a = torch.tensor(amps, dtype=torch.float32).expand(1, n_frames, len(amps)).clone()
    f = torch.full((1, n_frames, 1), f0, dtype=torch.float32)
    return a, f


@pytest.mark.parametrize("f0", [55.0, 440.0, 1234.5, 1950.0])
def test_constant_controls_match_closed_form(f0: float, backend: str) -> None:
    amps = [1.0, 0.5, 0.8, 0.4, 0.9, 0.6, 0.7, 0.45]
    a, f = constant_controls(amps, f0, 16)
    audio = HarmonicSynth(backend=backend, n_samples=4096)(a, f)  # (1, 4096)
    assert audio.shape == (1, 4096)
    ref = numpy_sinusoids(np.array(amps), f0, 4096)
    np.testing.assert_allclose(audio[0].numpy(), ref, rtol=0, atol=1e-5)


def test_n_samples_per_call_overrides_the_default(backend: str) -> None:
    """The same 16 frames rendered to 8192 samples (hop 512) instead of 4096."""
    amps = [1.0, 0.5, 0.25]
    a, f = constant_controls(amps, 440.0, 16)
    audio = HarmonicSynth(backend=backend, n_samples=4096)(a, f, 8192)
    assert audio.shape == (1, 8192)
    ref = numpy_sinusoids(np.array(amps), 440.0, 8192)
    np.testing.assert_allclose(audio[0].numpy(), ref, rtol=0, atol=1e-5)


def test_four_second_tone_keeps_phase(backend: str) -> None:
    """64000 samples, 250 frames (hop 256), float32: phase accumulated in float64."""
    amps = [0.9, 0.5, 0.3, 0.7]
    a, f = constant_controls(amps, 1777.7, 250)
    audio = HarmonicSynth(backend=backend, n_samples=64000)(a, f)
    ref = numpy_sinusoids(np.array(amps), float(f[0, 0, 0]), 64000)  # f0 as stored in float32
    assert np.abs(audio[0].numpy() - ref).max() < 1e-5  # float32 phase accumulation: ~1e-2


def test_time_varying_controls_match_numpy_pipeline(backend: str) -> None:
    """Vibrato f0 and fading amplitudes over 4 s against a float64 NumPy synth."""
    rng = np.random.default_rng(0)
    n_frames, n_samples, k = 250, 64000, 6
    t = np.arange(n_frames) / n_frames
    f0 = (600.0 + 400.0 * np.sin(2 * np.pi * 3 * t))[:, None]  # (T, 1) Hz, 200..1000
    amps = rng.uniform(0.0, 1.0, size=(n_frames, k)) * (1 - t)[:, None]  # (T, K)
    audio = HarmonicSynth(backend=backend, n_samples=n_samples)(
        torch.tensor(amps[None], dtype=torch.float32), torch.tensor(f0[None], dtype=torch.float32)
    )
    ref = numpy_synth(amps, f0.astype(np.float32).astype(np.float64), n_samples)
    assert np.abs(audio[0].numpy() - ref).max() < 1e-4


def _two_harmonics_stepping(
    f0_frames: list[float], backend: str
) -> tuple[np.ndarray, np.ndarray]:
    """audio and the audio-rate f0 for amplitudes (1, 0.5) at f0 frames (T,), hop 256."""
    n_frames = len(f0_frames)
    a = torch.tensor([[1.0, 0.5]], dtype=torch.float64).expand(1, n_frames, 2)
    f = torch.tensor(f0_frames, dtype=torch.float64).reshape(1, n_frames, 1)
    synth = HarmonicSynth(n_samples=256 * n_frames, backend=backend).to(torch.float64)
    audio = synth(a.contiguous(), f)[0].numpy()
    centres = (np.arange(n_frames) + 0.5) * 256 - 0.5
    f_audio = np.interp(np.arange(256 * n_frames), centres, np.asarray(f0_frames, float))
    return audio, f_audio


def test_harmonic_leaving_above_nyquist_fades_over_the_crossfade(backend: str) -> None:
    """f0 steps 3 kHz -> 4.5 kHz between frames 1 and 2: harmonic 2 (6 -> 9 kHz) is zeroed in
    frames 2 and 3 before upsampling, so over block 1 (samples 256..511) its amplitude falls
    as 0.5 cos^2(pi j / 512), j = n - 256, and it is silent from sample 512 on; the audio-rate
    crossing (2 f0[n] = 8 kHz at n = 554.2) comes later and changes nothing."""
    audio, f_audio = _two_harmonics_stepping([3000.0, 3000.0, 4500.0, 4500.0], backend)
    n = np.arange(1024)
    phase = np.cumsum(2 * np.pi * f_audio / SR)
    envelope = np.where(n < 256, 0.5, np.where(n < 512, 0.5 * np.cos(np.pi * (n - 256) / 512) ** 2,
                                               0.0))
    expected = np.sin(phase) + envelope * np.sin(2 * phase)
    np.testing.assert_allclose(audio, expected, rtol=0, atol=1e-10)
    # Audio-rate masking alone would keep harmonic 2 at full amplitude up to sample 554.
    audio_rate_only = np.sin(phase) + np.where(2 * f_audio < SR / 2, 0.5, 0.0) * np.sin(2 * phase)
    assert np.abs(audio_rate_only - expected).max() > 0.3


def test_harmonic_entering_below_nyquist_fades_in_and_both_masks_apply(backend: str) -> None:
    """f0 steps 4.5 kHz -> 3 kHz: harmonic 2 is zeroed in frames 0 and 1, so over block 1 it
    rises as 0.5 sin^2(pi j / 512), but only where 2 f0[n] < 8 kHz at audio rate (n >= 469)."""
    audio, f_audio = _two_harmonics_stepping([4500.0, 4500.0, 3000.0, 3000.0], backend)
    n = np.arange(1024)
    phase = np.cumsum(2 * np.pi * f_audio / SR)
    rise = np.where(n < 256, 0.0, np.where(n < 512, 0.5 * np.sin(np.pi * (n - 256) / 512) ** 2,
                                           0.5))
    audible = 2 * f_audio < SR / 2
    assert not audible[468] and audible[469]
    expected = np.sin(phase) + np.where(audible, rise, 0.0) * np.sin(2 * phase)
    np.testing.assert_allclose(audio, expected, rtol=0, atol=1e-10)


def test_rising_f0_with_many_harmonics_matches_the_paper_rule(backend: str) -> None:
    """PAPER.md's case: f0 rising 300 -> 900 Hz over 16 frames, 20 random amplitudes, float32,
    against the float64 NumPy rendering of both maskings; audio-rate masking alone is far off."""
    rng = np.random.default_rng(5)
    f0 = np.linspace(300.0, 900.0, 16)[:, None]
    amps = np.repeat(rng.uniform(0.0, 1.0, size=(1, 20)), 16, axis=0)
    audio = HarmonicSynth(backend=backend, n_samples=4096)(
        torch.tensor(amps[None], dtype=torch.float32), torch.tensor(f0[None], dtype=torch.float32)
    )[0].double().numpy()
    f0_32 = f0.astype(np.float32).astype(np.float64)
    expected = numpy_synth(amps, f0_32, 4096)
    peak = np.abs(expected).max()
    assert np.abs(audio - expected).max() < 1e-5 * peak
    a = numpy_ola_upsample(amps, 4096)
    f = numpy_linear_upsample(f0_32, 4096)[:, 0]
    phase = np.cumsum(2 * np.pi * f / SR)
    audio_rate_only = sum(np.where(k * f < SR / 2, a[:, k - 1], 0.0) * np.sin(k * phase)
                          for k in range(1, 21))
    assert np.abs(audio_rate_only - expected).max() > 0.05 * peak


def test_partials_above_nyquist_are_silent(backend: str) -> None:
    """f0 = 3 kHz, K = 5: 9, 12, 15 kHz are dropped, not aliased to 7, 4, 1 kHz."""
    a, f = constant_controls([1.0] * 5, 3000.0, 16)
    audio = HarmonicSynth(backend=backend, n_samples=4096)(a, f)[0].double().numpy()
    spectrum = np.abs(np.fft.rfft(audio)) / (4096 / 2)  # bins of 3.90625 Hz, exact here
    bin_of = lambda hz: round(hz * 4096 / SR)
    assert spectrum[bin_of(3000)] == pytest.approx(1.0, abs=1e-3)
    assert spectrum[bin_of(6000)] == pytest.approx(1.0, abs=1e-3)
    for alias_hz in (7000, 4000, 1000):
        assert spectrum[bin_of(alias_hz)] < 1e-4
    assert np.sum(spectrum**2) == pytest.approx(2.0, rel=1e-3)  # only two unit partials


def test_remove_above_nyquist_is_inclusive() -> None:
    amps = torch.ones(1, 3, 4)  # (B, N, K)
    freqs = torch.tensor([[[100.0, 7999.0, 8000.0, 9000.0]]]).expand(1, 3, 4)
    out = remove_above_nyquist(amps, freqs, SR)
    assert out.shape == (1, 3, 4)
    assert torch.equal(out[0, 0], torch.tensor([1.0, 1.0, 0.0, 0.0]))


def test_upsample_with_windows_constant_and_step() -> None:
    const = torch.full((2, 16, 3), 0.7)  # (B, T, C)
    up = upsample_with_windows(const, 4096)
    assert up.shape == (2, 4096, 3)
    torch.testing.assert_close(up, torch.full_like(up, 0.7), atol=1e-6, rtol=0)

    step = np.zeros((16, 2))
    step[8:, 0] = 1.0
    step[5:, 1] = np.linspace(0.2, 0.9, 11)
    up = upsample_with_windows(torch.tensor(step[None]), 4096)[0].numpy()  # float64
    np.testing.assert_allclose(up, numpy_ola_upsample(step, 4096), rtol=0, atol=1e-12)
    # The step rises over exactly one hop (256 samples), monotonically, from 0 to 1.
    column = up[:, 0]
    assert np.all(np.diff(column) >= -1e-12)
    assert np.all(column[: 7 * 256 + 1] < 1e-12) and np.all(column[8 * 256 :] > 1 - 1e-12)
    assert np.abs(np.diff(column)).max() < 2 * np.pi / (2 * 256)  # raised-cosine slope bound


def test_upsample_linear_matches_half_pixel_interp() -> None:
    x = np.random.default_rng(1).normal(size=(16, 2))
    up = upsample_linear(torch.tensor(x[None]), 4096)
    assert up.shape == (1, 4096, 2)
    np.testing.assert_allclose(up[0].numpy(), numpy_linear_upsample(x, 4096), rtol=0, atol=1e-12)


def _tone_gain_db(f0: float, backend: str) -> float:
    """Gain of the roll-off in dB at f0: steady-state RMS ratio of filtered / plain tone."""
    a, f = constant_controls([1.0], f0, 16)
    wet = HarmonicSynth(roll_off=True, backend=backend)(a, f)[0, 512:-512].double()
    dry = HarmonicSynth(roll_off=False, backend=backend)(a, f)[0, 512:-512].double()
    return float(20 * torch.log10(wet.pow(2).mean().sqrt() / dry.pow(2).mean().sqrt()))


@pytest.mark.parametrize(("f0", "expected_db"), [(250.0, 0.0), (2000.0, -12.0), (4000.0, -18.0)])
def test_roll_off_magnitude_response(f0: float, expected_db: float, backend: str) -> None:
    """0 dB up to 500 Hz, exactly -6 dB per octave above (a factor 10^(-6/20), not 1/2)."""
    assert _tone_gain_db(f0, backend) == pytest.approx(expected_db, abs=0.05)


def test_roll_off_impulse_response_matches_numpy() -> None:
    ir = HarmonicSynth(roll_off=True).to(torch.float64).impulse_response.numpy()
    expected = numpy_roll_off_ir()
    assert ir.shape == (128,)
    np.testing.assert_allclose(ir, expected, rtol=0, atol=1e-7 * np.abs(expected).max())
    np.testing.assert_allclose(ir[1:], ir[1:][::-1], atol=1e-7)  # symmetric about 64
    assert int(np.argmax(ir)) == 64


def test_roll_off_keeps_the_papers_two_sample_delay() -> None:
    """y = (x * h)[62 : 62 + N]: an impulse at sample 100 comes out centred on sample 102; the
    explicit zero-delay option crops from 64 and centres it on 100."""
    h = numpy_roll_off_ir()
    x = np.zeros(4096)
    x[100] = 1.0
    impulse = torch.tensor(x[None])
    for zero_delay, start, centre in ((False, 62, 102), (True, 64, 100)):
        synth = HarmonicSynth(roll_off=True, roll_off_zero_delay=zero_delay).to(torch.float64)
        y = fft_convolve(impulse, synth.impulse_response, synth.roll_off_crop_start)[0].numpy()
        np.testing.assert_allclose(y, np.convolve(x, h)[start : start + 4096], atol=1e-7)
        assert int(np.argmax(y)) == centre
    assert not HarmonicSynth(roll_off=True).roll_off_zero_delay  # the paper's crop by default


def test_roll_off_synth_is_filtered_plain_synth(backend: str) -> None:
    """The roll-off synth is the plain synth's output convolved with h, cropped from 62."""
    a = torch.rand(2, 16, 20, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    f = 40 + 1900 * torch.rand(2, 16, 1, generator=torch.Generator().manual_seed(4),
                               dtype=torch.float64)
    wet = HarmonicSynth(backend=backend, roll_off=True).to(torch.float64)(a, f)[0].numpy()
    dry = HarmonicSynth(backend=backend, roll_off=False).to(torch.float64)(a, f)[0].numpy()
    np.testing.assert_allclose(wet, np.convolve(dry, numpy_roll_off_ir())[62 : 62 + 4096],
                               rtol=0, atol=1e-6)


def test_fir_design_of_arbitrary_magnitudes_matches_numpy() -> None:
    mags = torch.rand(33, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    ir = np.fft.irfft(mags.numpy()) * np.fft.fftshift(scipy.signal.get_window("hann", 64))
    np.testing.assert_allclose(frequency_sampling_fir(mags).numpy(), np.fft.fftshift(ir),
                               rtol=0, atol=1e-14)


def test_roll_off_magnitudes_match_the_formula() -> None:
    freqs = np.linspace(0, SR / 2, 65)
    expected = np.array([1.0 if f <= 500 else 10 ** (-6 / 20 * np.log2(f / 500)) for f in freqs])
    np.testing.assert_allclose(roll_off_magnitudes(65, SR, 500.0).numpy(), expected, rtol=1e-12)


def test_no_parameters_and_buffers_not_saved() -> None:
    synth = HarmonicSynth(roll_off=True)
    assert list(synth.parameters()) == []
    assert synth.state_dict() == {}
    moved = synth.to(torch.float64)
    assert moved.impulse_response.dtype == torch.float64
    a, f = constant_controls([1.0, 0.5], 300.0, 16)
    assert moved(a.double(), f.double()).dtype == torch.float64


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_runs_on_cuda() -> None:
    synth = HarmonicSynth(roll_off=True).to("cuda")
    assert synth.impulse_response.device.type == "cuda"
    a, f = constant_controls([1.0, 0.5], 300.0, 16)
    out = synth(a.cuda(), f.cuda())
    torch.testing.assert_close(out.cpu(), HarmonicSynth(roll_off=True)(a, f), atol=1e-4, rtol=0)


@pytest.mark.parametrize("roll_off", [False, True])
def test_gradcheck_float64(roll_off: bool, backend: str) -> None:
    """Tiny case: B=1, T=2, N=8 -> hop 4, K=3, all partials below Nyquist."""
    synth = HarmonicSynth(backend=backend, n_samples=8, roll_off=roll_off).to(torch.float64)
    gen = torch.Generator().manual_seed(0)
    a = torch.rand(1, 2, 3, generator=gen, dtype=torch.float64, requires_grad=True)
    f = (300 + 900 * torch.rand(1, 2, 1, generator=gen, dtype=torch.float64)).requires_grad_()
    assert torch.autograd.gradcheck(synth, (a, f), eps=1e-6, atol=1e-5)


def test_gradients_finite_at_paper_size(backend: str) -> None:
    gen = torch.Generator().manual_seed(0)
    a = torch.rand(4, 16, 20, generator=gen, requires_grad=True)
    f = (40 + 1910 * torch.rand(4, 16, 1, generator=gen)).requires_grad_()
    HarmonicSynth(backend=backend, roll_off=True)(a, f).pow(2).sum().backward()
    assert torch.isfinite(a.grad).all() and torch.isfinite(f.grad).all()
    assert f.grad.abs().sum() > 0 and a.grad.abs().sum() > 0


def plain_synth_float64(amplitudes: torch.Tensor, f0: torch.Tensor) -> torch.Tensor:
    """The decoder of PAPER.md in plain float64 torch ops, for autograd: frame-rate mask, Hann
    crossfade, linear f0, audio-rate mask, cumulative phase, sum of sines. (B, T, K), (B, T, 1)
    -> (B, 4096)."""
    batch, n_frames, n_harmonics = amplitudes.shape
    hop = 4096 // n_frames
    k = torch.arange(1, n_harmonics + 1, dtype=torch.float64)
    a = torch.where(f0 * k >= SR / 2, 0.0, amplitudes)
    window = torch.from_numpy(scipy.signal.get_window("hann", 2 * hop))
    a_end = torch.cat([a, a[:, -1:]], 1)
    blocks = a_end[:, :-1, None] * window[hop:, None] + a_end[:, 1:, None] * window[:hop, None]
    a_audio = blocks.reshape(batch, 4096, n_harmonics)
    f_audio = torch.nn.functional.interpolate(f0.transpose(1, 2), size=4096, mode="linear",
                                              align_corners=False).transpose(1, 2)
    a_audio = torch.where(f_audio * k >= SR / 2, 0.0, a_audio)
    phase = torch.cumsum(2 * np.pi * f_audio / SR, dim=1)
    return (a_audio * torch.sin(phase * k)).sum(-1)


def test_both_paths_match_plain_float64_autograd_at_paper_size(backend: str) -> None:
    """Values and gradients (both controls) at B = 4, T = 16, K = 20, float32, against autograd
    through plain float64 ops: f0 from 40 Hz to 1.9 kHz with per-frame jitter, so harmonics
    cross Nyquist between frames; a random projection of the output as the loss."""
    gen = torch.Generator().manual_seed(8)
    jitter = 1 + 0.05 * torch.rand(4, 16, 1, generator=gen)
    f0 = 40 * 2 ** (5.5 * torch.rand(4, 1, 1, generator=gen)) * jitter
    amps = torch.rand(4, 16, 20, generator=gen)
    project = torch.randn(4, 4096, generator=gen, dtype=torch.float64)
    a32, f32 = amps.clone().requires_grad_(), f0.clone().requires_grad_()
    out32 = HarmonicSynth(backend=backend)(a32, f32)
    (out32.double() * project).sum().backward()
    a64, f64 = amps.double().requires_grad_(), f0.double().requires_grad_()
    out64 = plain_synth_float64(a64, f64)
    (out64 * project).sum().backward()
    assert out32.dtype == torch.float32
    torch.testing.assert_close(out32.double(), out64.detach(), rtol=0,
                               atol=1e-5 * float(out64.detach().abs().max()))
    for got, expected in ((a32.grad, a64.grad), (f32.grad, f64.grad)):
        scale = float(expected.abs().max())
        torch.testing.assert_close(got.double(), expected, rtol=0, atol=2e-4 * scale)


def test_native_path_does_not_depend_on_threads_graph_or_batch() -> None:
    gen = torch.Generator().manual_seed(9)
    amps = torch.rand(6, 16, 20, generator=gen)
    f0 = 40 + 1900 * torch.rand(6, 16, 1, generator=gen)
    synth = HarmonicSynth(backend="native")
    previous = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        single = synth(amps, f0)
        torch.set_num_threads(2)
        split = synth(amps, f0)
    finally:
        torch.set_num_threads(previous)
    assert torch.equal(single, split)
    with torch.no_grad():
        assert torch.equal(synth(amps, f0), single)
    rowwise = torch.cat([synth(amps[i : i + 1], f0[i : i + 1]) for i in range(6)])
    assert torch.equal(rowwise, single)
    strided = synth(amps.transpose(1, 2).contiguous().transpose(1, 2), f0)
    assert torch.equal(strided, single)
    assert synth(amps[:0], f0[:0]).shape == (0, 4096)


def test_native_backend_errors_are_one_line(monkeypatch) -> None:
    from sotddsp.dsp import synth as synth_module
    with pytest.raises(ValueError, match="backend"):
        HarmonicSynth(backend="C")
    a, f = constant_controls([1.0], 300.0, 16)
    with pytest.raises(ValueError, match="CPU float32/float64"):
        HarmonicSynth(backend="native")(a.half(), f.half())
    monkeypatch.setattr(synth_module, "_native_kernels", None)
    with pytest.raises(ValueError, match="backend='torch'"):
        HarmonicSynth(backend="native")
    assert torch.equal(HarmonicSynth()(a, f), HarmonicSynth(backend="torch")(a, f))


def test_oscillator_bank_gradients_match_float64_autograd() -> None:
    """The analytic backward against autograd through the plain float64 formula.

    Paper size (B=2, N=4096, K=20), time-varying f0 and amplitudes at audio rate; the loss is
    a fixed random projection of the output, so every sample's gradient counts.
    """
    gen = torch.Generator().manual_seed(3)
    n = 4096
    f0 = 60 + 700 * torch.rand(2, 1, 1, generator=gen) + 40 * torch.rand(2, n, 1, generator=gen)
    amps = torch.rand(2, n, 20, generator=gen)
    project = torch.randn(2, n, generator=gen, dtype=torch.float64)

    f32, a32 = f0.clone().requires_grad_(), amps.clone().requires_grad_()
    out32 = harmonic_oscillator_bank(f32, a32, SR)
    (out32.double() * project).sum().backward()

    f64 = f0.double().requires_grad_()
    a64 = amps.double().requires_grad_()
    phase = torch.cumsum(2 * np.pi * f64 / SR, dim=1)
    k = torch.arange(1, 21, dtype=torch.float64)
    out64 = (a64 * torch.sin(phase * k)).sum(-1)
    (out64 * project).sum().backward()

    assert out32.dtype == torch.float32 and out32.shape == (2, n)
    torch.testing.assert_close(out32.double(), out64.detach(), rtol=0, atol=2e-5)
    for got, expected in ((a32.grad, a64.grad), (f32.grad, f64.grad)):
        scale = float(expected.abs().max())
        torch.testing.assert_close(got.double(), expected, rtol=0, atol=1e-4 * scale)


def test_oscillator_bank_is_bit_identical_to_plain_autograd() -> None:
    """The fused backward is a speed-up only: same values and gradients, bit for bit, as autograd
    through the plain float32 formula (float64 phase wrapped, cast, sine, weighted sum)."""
    gen = torch.Generator().manual_seed(4)
    f0 = 40 + 1900 * torch.rand(3, 1, 1, generator=gen) + 30 * torch.rand(3, 2048, 1, generator=gen)
    amps = torch.rand(3, 2048, 20, generator=gen)
    upstream = torch.randn(3, 2048, generator=gen)

    f_fused, a_fused = f0.clone().requires_grad_(), amps.clone().requires_grad_()
    fused = harmonic_oscillator_bank(f_fused, a_fused, SR)
    (fused * upstream).sum().backward()

    f_plain, a_plain = f0.clone().requires_grad_(), amps.clone().requires_grad_()
    two_pi = 2 * np.pi
    phase = torch.remainder(torch.cumsum(f_plain.double() * (two_pi / SR), dim=1), two_pi)
    k = torch.arange(1, 21, dtype=torch.float64)
    plain = (a_plain * torch.sin(torch.remainder(phase * k, two_pi).float())).sum(-1)
    (plain * upstream).sum().backward()

    assert torch.equal(fused, plain)
    assert torch.equal(a_fused.grad, a_plain.grad)
    assert torch.equal(f_fused.grad, f_plain.grad)


def test_bad_arguments_raise() -> None:
    synth = HarmonicSynth()
    a, f = constant_controls([1.0], 300.0, 16)
    with pytest.raises(ValueError, match="n_samples"):
        HarmonicSynth(n_samples=0)
    with pytest.raises(ValueError, match="sample_rate"):
        HarmonicSynth(sample_rate=-1)
    with pytest.raises(ValueError, match="roll_off_hz"):
        HarmonicSynth(roll_off=True, roll_off_hz=0.0)
    with pytest.raises(ValueError, match="must match"):
        synth(a, f[:, :8])
    with pytest.raises(ValueError, match="amplitudes"):
        synth(a[0], f)
    with pytest.raises(ValueError, match="f0_hz"):
        synth(a, f[..., 0])
    with pytest.raises(ValueError, match="multiple"):
        synth(a[:, :15], f[:, :15])


@pytest.mark.parametrize(("n_partials", "k"), [(1, 2), (1, 13), (4, 2), (8, 2), (5, 4)])
def test_a_subharmonic_carrying_the_notes_partials_renders_the_note(
    n_partials: int, k: int, backend: str
) -> None:
    """The exact alias of scripts/harmonic_profile.py: a note of f0 with partials 1..n is the
    same audio as f0 / k with those amplitudes on harmonics k, 2k, ..., nk (nk <= 20), f0
    moving over the frames and partials crossing Nyquist included. No loss on the audio can tell
    them apart; the paper's RPA counts the second an error of k octaves' worth of cents."""
    generator = torch.Generator().manual_seed(n_partials * 100 + k)
    f0 = torch.linspace(300.0, 1700.0, 16).reshape(1, 16, 1)  # partials 5..8 cross 8 kHz
    note = torch.zeros(1, 16, 20)
    note[..., :n_partials] = 0.4 + 0.6 * torch.rand(1, 1, n_partials, generator=generator)
    alias = torch.zeros(1, 16, 20)
    alias[..., k - 1:n_partials * k:k] = note[..., :n_partials]
    synth = HarmonicSynth(backend=backend, n_samples=4096)
    audio, aliased = synth(note, f0)[0], synth(alias, f0 / k)[0]
    assert audio.abs().max() > 0.3
    # equal up to float32's rounding of f0 / k (its phase drifts by ~1e-5 rad over 4096 samples)
    assert (audio - aliased).abs().max() < 1e-4 * audio.abs().max()
    # the alias's odd-placed harmonics are what keeps it exact: one stray harmonic breaks it
    alias[..., 0] = 0.1
    assert (synth(alias, f0 / k)[0] - audio).abs().max() > 0.01
