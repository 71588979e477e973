"""The pitch tool's model (sotddsp/model/pitch.py): a whole recording through a trained model.

An untrained model's f0 is meaningless, so the checks are on properties that hold exactly: with
the encoder's pitch logits forced to a one-hot, the f0 is that bin's frequency and the
confidence 1; with a one-hot at the CQT frame's strongest bin, the track follows a known glide
frame by frame (also through 44.1 kHz -> 16 kHz resampling); with a random tiny model, the
confidence is the peak of a distribution whose soft-argmax (a NumPy oracle) is the f0; the
block-wise resynthesis equals the model's one-shot decoder.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from helpers.models import TINY_MODEL_CONFIG, forced_model, paper_model

from sotddsp.dsp.synth import HarmonicSynth, upsample_linear
from sotddsp.model import pitch
from sotddsp.model.checkpoints import build_model
from sotddsp.model.pitch import PitchModel

HOP = 256  # samples per frame at 16 kHz
RATE = 16000  # Hz


def glide(rate: int, seconds: float) -> tuple[np.ndarray, np.ndarray]:
    """A 3-harmonic tone gliding 300 -> 450 Hz (exponentially), rendered by HarmonicSynth at
    ``rate``: (audio (N,), per-sample f0 (N,) in Hz), N = seconds * rate."""
    n = round(seconds * rate)
    n_frames = 100
    n -= n % n_frames
    f0_frames = 300.0 * 1.5 ** torch.linspace(0, 1, n_frames, dtype=torch.float64)[None, :, None]
    amplitudes = torch.tensor([1.0, 0.3, 0.1], dtype=torch.float64).expand(1, n_frames, 3)
    audio = HarmonicSynth(n_samples=n, sample_rate=rate)(amplitudes, f0_frames)[0]
    return 0.5 * audio.numpy(), upsample_linear(f0_frames, n)[0, :, 0].numpy()


def bursts(n: int, rate: int, times_s: list[float], hz: float) -> np.ndarray:
    """Hann-windowed tone bursts (3 ms, peak 0.2) at ``hz`` Hz centred at ``times_s`` (s),
    sampled at ``rate``: (n,)."""
    t = np.arange(n) / rate
    out = np.zeros(n)
    for centre in times_s:
        u = (t - centre) / 1.5e-3
        out += np.where(
            np.abs(u) < 1,
            0.2 * np.cos(np.pi * u / 2) ** 2 * np.sin(2 * np.pi * hz * (t - centre)),
            0.0,
        )
    return out


def test_a_forced_pitch_bin_gives_that_frequency_with_confidence_one() -> None:
    model = PitchModel(forced_model(bin=150), "forced")
    bin_hz = float(model.autoencoder.features.frequencies[150])  # 32.7 * 2 ** (150 / 36) Hz
    audio, _ = glide(RATE, 1.3)
    track = model.predict(audio, RATE)

    n_frames = math.ceil(audio.shape[0] / HOP)
    assert track.frequency.shape == track.confidence.shape == (n_frames,)
    assert track.amplitudes.shape == (n_frames, 20) and track.activations is None
    np.testing.assert_allclose(track.time, np.arange(n_frames) * HOP / RATE)  # s
    assert np.abs(1200 * np.log2(track.frequency / bin_hz)).max() < 1.0  # cents
    np.testing.assert_allclose(track.confidence, 1.0, atol=1e-6)
    np.testing.assert_allclose(track.amplitudes[:, 0], 0.5, atol=1e-6)
    assert np.all(track.amplitudes[:, 1:] == 0)
    assert track.gain == pytest.approx(0.9 / np.abs(audio).max(), rel=1e-5)

    resynthesis = model.resynthesize(track)
    assert resynthesis.shape == (n_frames * HOP,) and resynthesis.dtype == np.float32
    # a 0.5-amplitude sine at the track's f0, phase 2 pi f0 / 16000 at the first sample
    t = np.arange(1, n_frames * HOP + 1) / RATE
    np.testing.assert_allclose(resynthesis, 0.5 * np.sin(2 * np.pi * track.frequency[0] * t),
                               atol=1e-3)


@pytest.mark.parametrize("rate", [16000, 44100])
def test_rows_are_aligned_with_the_audio(rate: int) -> None:
    """A glide, plus short 4 kHz bursts centred on frames 10, 37 and 90 (rows at t * 256 / 16000 s).
    The encoder's f0 is the CQT frame's strongest bin, its amplitude 1 the frame's 4 kHz bin."""
    probe = 250  # CQT bin 250: 32.7 * 2 ** (250 / 36) = 4.03 kHz
    model = PitchModel(forced_model(bin=None, probe_bin=probe), "forced")
    audio, f0_true = glide(rate, 2.0)
    burst_rows = [10, 37, 90]
    audio = audio + bursts(audio.shape[0], rate, [r * HOP / RATE for r in burst_rows],
                           float(model.autoencoder.features.frequencies[probe]))
    track = model.predict(audio, rate)

    n_frames = math.ceil(math.ceil(audio.shape[0] * RATE / rate) / HOP)
    assert track.frequency.shape == (n_frames,) and track.amplitudes.shape == (n_frames, 20)
    np.testing.assert_allclose(track.time, np.arange(n_frames) * HOP / RATE)
    assert track.time[-1] < audio.shape[0] / rate  # s: the last frame starts inside the file
    # the bursts show in exactly their rows
    assert sorted(np.argsort(track.amplitudes[:, 0])[-3:].tolist()) == burst_rows
    # every f0 is a CQT bin's frequency (within a cent) ...
    bins = model.autoencoder.features.frequencies.double().numpy()
    to_bin = 1200 * np.log2(track.frequency[:, None] / bins[None, :])
    assert np.abs(to_bin).min(axis=1).max() < 1.0
    # ... and within 50 cents of the glide at the row's time
    true_at_frames = np.interp(track.time, np.arange(f0_true.shape[0]) / rate, f0_true)
    inside = track.time < audio.shape[0] / rate - 0.05  # the zero-padded tail excluded
    cents = 1200 * np.log2(track.frequency / true_at_frames)
    assert np.abs(cents[inside]).max() < 50.0


def test_the_confidence_is_the_peak_of_the_distribution_whose_soft_argmax_is_f0() -> None:
    """A random tiny model: the activations are a distribution per frame, the confidence its
    maximum, and the frequency its soft-argmax, recomputed here in NumPy (float64) from
    PAPER.md's pitch head: midi = m_lo + (p . linspace(0, 1, Q)) (m_hi - m_lo)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(3)
        model = PitchModel(build_model(TINY_MODEL_CONFIG).eval(), "tiny")
    audio = np.random.default_rng(0).standard_normal(3 * 4096 + 1000)
    track = model.predict(audio, RATE, activations=True)
    p = track.activations.astype(np.float64)
    assert p.shape == (track.time.shape[0], 285) and (p >= 0).all()
    np.testing.assert_allclose(p.sum(axis=1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(track.confidence, track.activations.max(axis=1))
    assert ((track.confidence >= 1 / 285 - 1e-7) & (track.confidence <= 1)).all()

    def midi(hz: float) -> float:
        return 69 + 12 * math.log2(hz / 440)

    lo, hi = model.autoencoder.f0_low_hz, model.autoencoder.f0_high_hz
    expected = 440 * 2 ** ((midi(lo) + (p @ np.linspace(0, 1, 285)) * (midi(hi) - midi(lo))
                            - 69) / 12)
    np.testing.assert_allclose(track.frequency, expected, rtol=1e-5)
    np.testing.assert_allclose(track.bin_frequencies, np.geomspace(lo, hi, 285), rtol=1e-12)
    # the same f0 as the model's own estimate of the (scaled) first chunk
    scaled = torch.from_numpy(pitch.scale_to_peak(audio.astype(np.float32))[0][:4096])
    with torch.no_grad():
        own = model.autoencoder.estimate(scaled[None])["f0_hz"][0].numpy()
    np.testing.assert_array_equal(track.frequency[:16], own)


@pytest.mark.parametrize(("audio", "rate", "says"), [
    (np.zeros((4096, 2)), RATE, "mono"),
    (np.zeros(0), RATE, "no samples"),
    (np.zeros(4096, dtype=np.int16), RATE, "floating-point"),
    (np.full(4096, np.nan), RATE, "finite"),
    (np.zeros(4096), 0, "sample_rate"),
    (np.zeros(4096), 16000.0, "sample_rate"),
])
def test_bad_audio_is_one_line_value_error(audio: np.ndarray, rate: int, says: str) -> None:
    model = PitchModel(forced_model(bin=100), "forced")
    with pytest.raises(ValueError, match=says) as raised:
        model.predict(audio, rate)
    assert "\n" not in str(raised.value)


def test_torch_input_and_numpy_input_give_the_same_track() -> None:
    model = PitchModel(forced_model(bin=None), "forced")
    audio, _ = glide(RATE, 0.5)
    a, b = model.predict(audio, RATE), model.predict(torch.from_numpy(audio), RATE)
    np.testing.assert_array_equal(a.frequency, b.frequency)
    np.testing.assert_array_equal(a.amplitudes, b.amplitudes)


@pytest.mark.parametrize("roll_off", [False, True])
def test_blockwise_resynthesis_equals_the_one_shot_decoder(roll_off: bool) -> None:
    model = paper_model(roll_off)
    n_frames = 23
    g = torch.Generator().manual_seed(0)
    f0 = 80.0 * 2 ** (4 * torch.rand(n_frames, generator=g, dtype=torch.float64))  # 80-1280 Hz
    amplitudes = torch.rand(n_frames, 20, generator=g, dtype=torch.float64) / 20
    reference = model.decode(f0[None], amplitudes[None], n_frames * HOP)[0].numpy()  # float64
    for block_frames in (1, 4, 100):
        blockwise = pitch.resynthesize(model, f0, amplitudes, block_frames=block_frames)
        assert blockwise.shape == (n_frames * HOP,)
        np.testing.assert_allclose(blockwise, reference, atol=1e-6, rtol=0)  # float32 output


def test_resample_keeps_frequency_and_length() -> None:
    n = 44100  # 1 s at 44.1 kHz
    x = np.sin(2 * np.pi * 1000.0 * np.arange(n) / 44100)
    y = pitch.resample(x, 44100, 16000)
    assert y.shape == (math.ceil(n * 16000 / 44100),) and y.dtype == np.float32
    reference = np.sin(2 * np.pi * 1000.0 * np.arange(y.shape[0]) / 16000)  # float64
    # resample_poly's default Kaiser filter (beta 5) has about 0.1 % pass-band ripple
    np.testing.assert_allclose(y[200:-200], reference[200:-200], atol=2e-3)
