"""Front ends (models/spectral.py) against independent NumPy/SciPy/librosa references."""

from __future__ import annotations

import math

import librosa
import numpy as np
import pytest
import scipy.signal
import torch
from references.paper_reference import numpy_frames

from sotddsp.dsp.spectral import (
    CQT,
    STFT,
    cqt_frequencies,
    cqt_n_bins,
    get_window,
    hz_to_midi,
    midi_to_hz,
)

SR = 16000


def numpy_stft_magnitude(
    audio: np.ndarray, n_fft: int, hop: int, window: str, normalized: bool,
    framing: str = "padded",
) -> np.ndarray:
    """|STFT| (frames, n_fft // 2 + 1) of a 1-D float64 signal, framed by
    ``paper_reference.numpy_frames`` (default: end-padded, not centered)."""
    frames = numpy_frames(audio, n_fft, hop, framing) * scipy.signal.get_window(
        window, n_fft, fftbins=True)
    spec = np.fft.rfft(frames, axis=-1)
    if normalized:
        spec = spec / math.sqrt(n_fft)
    return np.abs(spec)


@pytest.fixture(scope="module")
def cqt() -> CQT:
    return CQT()


@pytest.mark.parametrize("name", ["hann", "hamming", "blackman", "flattop"])
@pytest.mark.parametrize("n", [1, 7, 512, 2048])
def test_window_equals_scipy_periodic(name: str, n: int) -> None:
    expected = scipy.signal.get_window(name, n, fftbins=True)
    got = get_window(name, n)
    assert got.shape == (n,) and got.dtype == torch.get_default_dtype()
    np.testing.assert_allclose(got.double().numpy(), expected, rtol=0, atol=1e-7)
    exact = get_window(name, n, dtype=torch.float64)
    np.testing.assert_allclose(exact.numpy(), expected, rtol=0, atol=1e-14)


def test_rectangular_window_is_ones() -> None:
    np.testing.assert_array_equal(get_window("rectangular", 9).numpy(), np.ones(9))


@pytest.mark.parametrize(
    ("kwargs", "argument"),
    [
        ({"n_fft": 0, "hop_length": 256}, "n_fft"),
        ({"n_fft": -8, "hop_length": 256}, "n_fft"),
        ({"n_fft": 512, "hop_length": 0}, "hop_length"),
        ({"n_fft": 512, "hop_length": -1}, "hop_length"),
        ({"n_fft": 512, "hop_length": 128, "window": "kaiser"}, "window"),
        ({"n_fft": 512, "hop_length": 128, "framing": "center"}, "framing"),
    ],
)
def test_stft_rejects_bad_arguments(kwargs: dict, argument: str) -> None:
    with pytest.raises(ValueError) as info:
        STFT(**kwargs)
    message = str(info.value)
    assert argument in message and "\n" not in message


def test_get_window_rejects_unknown_name() -> None:
    with pytest.raises(ValueError, match="window"):
        get_window("triangle", 16)


@pytest.mark.parametrize("n_samples", [4096, 4095, 1000, 300])
@pytest.mark.parametrize(("n_fft", "window"), [(2048, "flattop"), (512, "hann"), (64, "hann")])
def test_stft_matches_numpy_reference(n_samples: int, n_fft: int, window: str) -> None:
    """(B, N) float64 audio -> (B, ceil(N / hop), n_fft // 2 + 1) magnitudes as the NumPy oracle."""
    hop = 256 if n_fft >= 256 else n_fft // 4
    audio = torch.randn(
        2, n_samples, dtype=torch.float64, generator=torch.Generator().manual_seed(1)
    )
    stft = STFT(n_fft, hop, window=window).double()
    got = stft(audio)
    assert got.shape == (2, math.ceil(n_samples / hop), n_fft // 2 + 1)
    for b in range(2):
        expected = numpy_stft_magnitude(audio[b].numpy(), n_fft, hop, window, normalized=True)
        np.testing.assert_allclose(got[b].numpy(), expected, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize(("framing", "n_frames"), [("padded", 16), ("full", 9), ("centered", 17)])
def test_stft_framings_frame_counts_at_the_papers_size(framing: str, n_frames: int) -> None:
    """4096 samples, n_fft 2048, hop 256: 16 end-padded frames (the paper's), 9 inside the
    signal, 17 centered; the values as the NumPy frames (float64)."""
    audio = torch.randn(2, 4096, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    stft = STFT(2048, 256, window="flattop", framing=framing).double()
    got = stft(audio)
    assert stft.n_frames(4096) == n_frames and got.shape == (2, n_frames, 1025)
    expected = numpy_stft_magnitude(audio[1].numpy(), 2048, 256, "flattop", True, framing)
    assert expected.shape == (n_frames, 1025)
    np.testing.assert_allclose(got[1].numpy(), expected, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("framing", ["full", "centered"])
@pytest.mark.parametrize(("n_samples", "n_fft", "hop"), [(4095, 512, 256), (1000, 101, 30),
                                                         (300, 64, 16), (64, 64, 7)])
def test_stft_other_framings_match_numpy_frames(
    framing: str, n_samples: int, n_fft: int, hop: int
) -> None:
    """Frame counts floor((N - n_fft) / hop) + 1 ("full") and 1 + (N + 2 (n_fft // 2) - n_fft)
    // hop ("centered", odd n_fft included), values as NumPy frames cut from the waveform."""
    audio = torch.randn(2, n_samples, dtype=torch.float64,
                        generator=torch.Generator().manual_seed(n_samples))
    stft = STFT(n_fft, hop, window="hann", framing=framing).double()
    expected_frames = ((n_samples - n_fft) // hop + 1 if framing == "full"
                       else 1 + (n_samples + 2 * (n_fft // 2) - n_fft) // hop)
    got = stft(audio)
    assert got.shape == (2, expected_frames, n_fft // 2 + 1) == (2, stft.n_frames(n_samples),
                                                                stft.n_bins)
    for b in range(2):
        expected = numpy_stft_magnitude(audio[b].numpy(), n_fft, hop, "hann", True, framing)
        np.testing.assert_allclose(got[b].numpy(), expected, rtol=1e-9, atol=1e-12)


def test_stft_default_framing_is_the_papers_end_padding() -> None:
    audio = torch.randn(3, 4000, generator=torch.Generator().manual_seed(2))
    default, padded = STFT(512, 128), STFT(512, 128, framing="padded")
    assert default.framing == "padded"
    for power in (False, True):
        assert torch.equal(default.magnitude(audio, power), padded.magnitude(audio, power))


@pytest.mark.parametrize(
    ("framing", "n_samples", "says"),
    [("full", 511, r"framing='full' needs signals of at least n_fft = 512 samples, got N = 511"),
     ("centered", 256, r"framing='centered' .* longer than that, got N = 256")],
)
def test_stft_framings_reject_too_short_signals(framing: str, n_samples: int, says: str) -> None:
    stft = STFT(512, 128, framing=framing)
    audio = torch.zeros(1, n_samples)
    for call in (lambda: stft(audio), lambda: stft.complex_spectrum(audio),
                 lambda: stft.n_frames(n_samples)):
        with pytest.raises(ValueError, match=says):
            call()
    assert stft.n_frames(n_samples + 1) >= 1


def test_stft_normalization_is_sqrt_n_fft() -> None:
    audio = torch.randn(1, 1024, dtype=torch.float64)
    normalized = STFT(256, 64, normalized=True).double()(audio)
    raw = STFT(256, 64, normalized=False).double()(audio)
    expected = numpy_stft_magnitude(audio[0].numpy(), 256, 64, "hann", normalized=False)
    np.testing.assert_allclose(raw[0].numpy(), expected, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(normalized * 16.0, raw, rtol=1e-12, atol=1e-12)


def test_stft_frequencies_in_hz() -> None:
    freqs = STFT(2048, 256, sample_rate=SR).frequencies
    assert freqs.shape == (1025,)
    assert freqs[0] == 0 and freqs[-1] == SR / 2
    np.testing.assert_allclose(freqs.numpy(), np.fft.rfftfreq(2048, 1 / SR), rtol=1e-6)


def test_stft_window_is_not_persistent() -> None:
    stft = STFT(2048, 256, window="flattop")
    assert stft.state_dict() == {}
    assert stft.window.device == torch.device("cpu")
    assert stft.to("meta").window.device == torch.device("meta")


def test_cqt_bin_count_and_frequencies() -> None:
    assert cqt_n_bins() == 285
    assert cqt_n_bins(sample_rate=22050) == 3 * math.floor(12 * math.log2(11025 / 32.7))
    freqs = cqt_frequencies()
    assert freqs.shape == (285,)
    np.testing.assert_allclose(freqs.numpy(), 32.7 * 2.0 ** (np.arange(285) / 36), rtol=1e-12)
    assert 7740.0 < float(freqs[-1]) < 7760.0  # top bin ~7.75 kHz, below Nyquist


def test_midi_conversions_match_librosa() -> None:
    f = np.array([32.7, 55.0, 440.0, 1000.0, 7750.0])
    np.testing.assert_allclose(
        hz_to_midi(torch.tensor(f)).numpy(), librosa.hz_to_midi(f), rtol=1e-12
    )
    assert float(hz_to_midi(0.0)) == 0.0
    assert float(hz_to_midi(440.0)) == 69.0
    m = torch.tensor([0.0, 24.0, 69.0, 118.5], dtype=torch.float64)
    np.testing.assert_allclose(midi_to_hz(m).numpy(), librosa.midi_to_hz(m.numpy()), rtol=1e-12)
    torch.testing.assert_close(hz_to_midi(midi_to_hz(m)), m)


def test_cqt_shape_frequencies_and_state_dict(cqt: CQT) -> None:
    """4095 samples at 16 kHz -> (B, 16 frames, 285 bins); kernels are not saved."""
    out = cqt(torch.randn(3, 4095))
    assert out.shape == (3, 16, 285)
    assert torch.isfinite(out).all() and (out >= 0).all()
    assert out.shape[1] == 1 + 4095 // 256
    np.testing.assert_allclose(cqt.frequencies.double().numpy(), cqt.cqt.frequencies, rtol=1e-6)
    assert 7740.0 < float(cqt.frequencies[-1]) < 7760.0
    assert cqt.state_dict() == {}


@pytest.mark.parametrize("q", [60, 150, 250])
def test_cqt_of_a_sine_peaks_at_its_bin(cqt: CQT, q: int) -> None:
    f = float(cqt_frequencies()[q])
    t = torch.arange(4095, dtype=torch.float64) / SR
    audio = torch.sin(2 * math.pi * f * t).float()[None]
    frames = cqt(audio)[0]
    assert int(frames[8].argmax()) == q  # a middle frame, away from the padded edges


def test_cqt_follows_to_device(cqt: CQT) -> None:
    moved = CQT(n_bins=36).to("meta")
    assert {buf.device for buf in moved.buffers()} == {torch.device("meta")}
    assert moved.frequencies.device == torch.device("meta")
    assert cqt.frequencies.device == torch.device("cpu")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cqt_and_stft_on_cuda(cqt: CQT) -> None:
    audio = torch.randn(2, 4095)
    cpu = cqt(audio)
    gpu = CQT().cuda()(audio.cuda())
    torch.testing.assert_close(gpu.cpu(), cpu, rtol=1e-4, atol=1e-4)
    for framing in ("padded", "full", "centered"):
        stft = STFT(512, 128, framing=framing)
        torch.testing.assert_close(
            stft.cuda()(audio.cuda()).cpu(), STFT(512, 128, framing=framing)(audio), rtol=1e-4,
            atol=1e-5
        )


def test_cqt_rejects_bins_above_nyquist() -> None:
    with pytest.raises(ValueError, match="n_bins"):
        CQT(n_bins=300)


@pytest.mark.parametrize("framing", ["padded", "full", "centered"])
@pytest.mark.parametrize("power", [False, True])
@pytest.mark.parametrize(("n_fft", "hop"), [(2048, 256), (64, 16), (101, 30)])
def test_stft_magnitude_gradient_equals_autograd_through_torch_stft(
    n_fft: int, hop: int, power: bool, framing: str
) -> None:
    """STFT.magnitude's backward (one inverse real FFT + overlap-add) against autograd through
    torch.stft and complex abs, float64: hop dividing n_fft or not, odd n_fft, |X| and |X|^2,
    every framing ("full" and "centered" by torch.stft's own center=False / center=True)."""
    stft = STFT(n_fft, hop, window="flattop" if power else "hann", framing=framing).double()
    gen = torch.Generator().manual_seed(n_fft)
    audio = torch.randn(3, 4096, generator=gen, dtype=torch.float64)
    upstream = torch.randn(3, stft.n_frames(4096), n_fft // 2 + 1, generator=gen,
                           dtype=torch.float64)
    ours_in = audio.clone().requires_grad_()
    ours = stft.magnitude(ours_in, power=power)
    (ours_grad,) = torch.autograd.grad((ours * upstream).sum(), ours_in)
    ref_in = audio.clone().requires_grad_()
    ref = stft.complex_spectrum(ref_in).abs()
    ref = ref.square() if power else ref
    (ref_grad,) = torch.autograd.grad((ref * upstream).sum(), ref_in)
    torch.testing.assert_close(ours, ref.detach(), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(ours_grad, ref_grad, rtol=0, atol=1e-12 * float(ref_grad.abs().max()))


@pytest.mark.parametrize("framing", ["padded", "full", "centered"])
@pytest.mark.parametrize("power", [False, True])
def test_stft_magnitude_gradcheck_and_silence(power: bool, framing: str) -> None:
    stft = STFT(15, 4, framing=framing).double()
    audio = torch.randn(2, 64, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda a: stft.magnitude(a, power=power),
                                    (audio.requires_grad_(),))
    silence = torch.zeros(1, 64, dtype=torch.float64, requires_grad=True)
    (grad,) = torch.autograd.grad(stft.magnitude(silence, power=power).sum(), silence)
    assert torch.equal(grad, torch.zeros_like(grad))
