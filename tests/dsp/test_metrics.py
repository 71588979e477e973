"""Metrics (sotddsp/dsp/metrics.py) against independent oracles: mir_eval.melody, NumPy STFTs,
hand-made cases.

Audio: (B, N) waveforms at 16 kHz. Pitch: f0 in Hz, pred (B, T), true (B, T) / (B, 1) / (B,).
"""

from __future__ import annotations

import mir_eval.melody
import numpy as np
import pytest
import scipy.signal
import torch

from sotddsp.core.result_tables import breakdown_markdown
from sotddsp.dsp import metrics
from sotddsp.dsp.metrics import (
    family_breakdown,
    log_spectral_distance,
    median_cents_error,
    median_f0_hz,
    median_signed_cents_error,
    mse,
    multiscale_spectral_distance,
    octave_difference,
    pitch_metrics,
    raw_chroma_accuracy,
    raw_pitch_accuracy,
    within_cents_accuracy,
    within_octave_accuracy,
)

SR = 16000


def numpy_stft_magnitude(audio: np.ndarray, n_fft: int, hop: int) -> np.ndarray:
    """End-padded, uncentered, Hann (periodic), |rfft| / sqrt(n_fft): (B, N) -> (B, frames, F)."""
    n = audio.shape[-1]
    n_frames = -(-n // hop)
    padded = np.pad(audio, ((0, 0), (0, (n_frames - 1) * hop + n_fft - n)))
    window = scipy.signal.get_window("hann", n_fft)
    frames = np.stack([padded[:, t * hop : t * hop + n_fft] for t in range(n_frames)], axis=1)
    return np.abs(np.fft.rfft(frames * window, axis=-1)) / np.sqrt(n_fft)


def two_signals(batch: int = 3, n: int = 4096) -> tuple[torch.Tensor, torch.Tensor]:
    """Harmonic-ish target and a detuned, noisy prediction, float32 (B, N)."""
    rng = np.random.default_rng(0)
    t = np.arange(n) / SR
    f0 = rng.uniform(100, 1000, size=(batch, 1))
    target = np.sin(2 * np.pi * f0 * t) + 0.3 * np.sin(2 * np.pi * 2 * f0 * t)
    pred = 0.8 * np.sin(2 * np.pi * 1.03 * f0 * t) + 0.01 * rng.normal(size=(batch, n))
    return torch.tensor(pred, dtype=torch.float32), torch.tensor(target, dtype=torch.float32)


def test_lsd_zero_for_identical_and_matches_numpy() -> None:
    pred, target = two_signals()
    assert log_spectral_distance(target, target) == 0.0
    p_pred = np.maximum(numpy_stft_magnitude(pred.double().numpy(), 1024, 256) ** 2, 1e-5)
    p_true = np.maximum(numpy_stft_magnitude(target.double().numpy(), 1024, 256) ** 2, 1e-5)
    expected = np.mean((10 * np.log10(p_pred) - 10 * np.log10(p_true)) ** 2)  # dB^2, 16 frames
    assert log_spectral_distance(pred, target) == pytest.approx(expected, rel=1e-6)
    assert log_spectral_distance(pred.numpy(), target.numpy()) == pytest.approx(expected, rel=1e-6)


def test_lsd_of_silence_is_floor_limited() -> None:
    """All-zero prediction: every bin sits at the floor, 10 log10(1e-5) = -50 dB."""
    _, target = two_signals()
    p_true = np.maximum(numpy_stft_magnitude(target.double().numpy(), 1024, 256) ** 2, 1e-5)
    expected = np.mean((-50.0 - 10 * np.log10(p_true)) ** 2)
    silence = torch.zeros_like(target)
    assert log_spectral_distance(silence, target) == pytest.approx(expected, rel=1e-6)


def test_mse_matches_numpy() -> None:
    pred, target = two_signals()
    expected = np.mean((pred.double().numpy() - target.double().numpy()) ** 2)
    assert mse(pred, target) == pytest.approx(expected, rel=1e-12)
    assert mse(target, target) == 0.0


def test_mss_matches_numpy() -> None:
    """Sizes 2048..64, hop size/4: mean|S - S^| + mean|log max(S, 1e-5) - log max(S^, 1e-5)|."""
    pred, target = two_signals()
    expected = 0.0
    for size in (2048, 1024, 512, 256, 128, 64):
        s_pred = numpy_stft_magnitude(pred.double().numpy(), size, size // 4)
        s_true = numpy_stft_magnitude(target.double().numpy(), size, size // 4)
        expected += np.mean(np.abs(s_pred - s_true))
        log_pred, log_true = np.log(np.maximum(s_pred, 1e-5)), np.log(np.maximum(s_true, 1e-5))
        expected += np.mean(np.abs(log_pred - log_true))
    assert multiscale_spectral_distance(pred, target) == pytest.approx(expected, rel=1e-4)
    assert multiscale_spectral_distance(target, target) == 0.0


def test_audio_metrics_reject_bad_shapes() -> None:
    pred, target = two_signals()
    for fn in (log_spectral_distance, multiscale_spectral_distance, mse):
        with pytest.raises(ValueError, match="pred_audio"):
            fn(pred, target[:, :-1])
        with pytest.raises(ValueError, match="pred_audio"):
            fn(pred[0], target[0])


def _mir_eval(pred: np.ndarray, true: np.ndarray) -> tuple[float, float]:
    """mir_eval RPA and RCA on flattened sequences, every frame voiced."""
    ref_cent = mir_eval.melody.hz2cents(true.ravel())
    est_cent = mir_eval.melody.hz2cents(pred.ravel())
    voicing = np.ones(ref_cent.shape)
    return (
        mir_eval.melody.raw_pitch_accuracy(voicing, ref_cent, voicing, est_cent),
        mir_eval.melody.raw_chroma_accuracy(voicing, ref_cent, voicing, est_cent),
    )


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_pitch_accuracies_match_mir_eval(seed: int) -> None:
    """(B, T) = (32, 16): errors mixing near-misses, octave errors and chroma wrap-around."""
    rng = np.random.default_rng(seed)
    true = np.exp(rng.uniform(np.log(40), np.log(1950), size=(32, 1)))  # Hz, (B, 1)
    octaves = rng.choice([-2, -1, 0, 0, 0, 1, 2], size=(32, 16))
    detune = rng.normal(0, 60, size=(32, 16))  # cents; ~60% within 50
    detune[:, :4] = rng.uniform(-80, 80, size=(32, 4)) + 1200 * rng.choice([-1, 1], size=(32, 4))
    pred = true * 2 ** ((1200 * octaves + detune) / 1200)  # (B, T)
    rpa, rca = _mir_eval(pred, np.broadcast_to(true, pred.shape))
    assert 0.05 < rpa < rca < 0.9  # the draw exercises both metrics non-trivially
    assert raw_pitch_accuracy(pred, true) == pytest.approx(rpa, abs=1e-12)
    assert raw_chroma_accuracy(pred, true) == pytest.approx(rca, abs=1e-12)
    full_true = torch.tensor(np.broadcast_to(true, pred.shape).copy())
    assert raw_pitch_accuracy(torch.tensor(pred), full_true) == pytest.approx(rpa, abs=1e-12)
    assert raw_chroma_accuracy(torch.tensor(pred), true[:, 0]) == pytest.approx(rca, abs=1e-12)


def test_pitch_accuracy_boundaries() -> None:
    true = np.full((1, 4), 440.0)
    cents = np.array([[49.0, -49.0, 51.0, 1200 + 30.0]])
    pred = true * 2 ** (cents / 1200)
    assert raw_pitch_accuracy(pred, true) == 0.5
    assert raw_chroma_accuracy(pred, true) == 0.75  # the octave + 30 cents counts for chroma


def test_octave_difference_hand_made() -> None:
    true = np.array([[200.0]])
    assert octave_difference(np.array([[100.0]]), true) == 1.0  # one octave low -> +1
    assert octave_difference(np.array([[800.0]]), true) == -2.0  # two octaves high -> -2
    assert octave_difference(true * 2 ** (40 / 1200), true) == 0.0  # 40 cents off -> 0
    assert octave_difference(true * 2 ** (-1160 / 1200), true) == 1.0  # 1160 cents low rounds to 1
    pred = np.array([[100.0, 800.0, 200.0, 400.0]])  # +1, -2, 0, -1
    assert octave_difference(pred, true) == pytest.approx(-0.5)


def test_cents_summaries() -> None:
    true = np.full((2, 3), 100.0)
    cents = np.array([[0.0, 100.0, -700.0], [599.0, 1200.0, -2400.0]])
    pred = true * 2 ** (cents / 1200)
    assert median_cents_error(pred, true) == pytest.approx(np.median(np.abs(cents)), abs=1e-9)
    assert within_octave_accuracy(pred, true) == pytest.approx(3 / 6)
    results = pitch_metrics(pred, true[:, :1])
    assert set(results) == {"rpa", "rca", "od", "median_cents_error", "within_octave", "log_f0_corr",
                            "median_signed_cents", "within_50_cents", "within_100_cents",
                            "median_pred_hz"}
    assert all(isinstance(v, float) for v in results.values())
    assert results["rpa"] == pytest.approx(1 / 6)
    assert results["rca"] == pytest.approx(3 / 6)  # 0, 1200 and -2400 cents
    assert results["within_octave"] == within_octave_accuracy(pred, true)
    assert results["median_cents_error"] == median_cents_error(pred, true)
    # d = -cents: |d| = 700 and 599 round to 0 octaves; 1200 too high -> -1, 2400 too low -> +2.
    assert results["od"] == pytest.approx((0 + 0 + 0 + 0 - 1 + 2) / 6)


def test_pitch_metrics_validate_inputs() -> None:
    pred = np.full((2, 4), 100.0)
    with pytest.raises(ValueError, match="true_f0_hz"):
        raw_pitch_accuracy(pred, np.full((3, 1), 100.0))
    with pytest.raises(ValueError, match="true_f0_hz"):
        raw_pitch_accuracy(pred, np.full((2, 3), 100.0))
    with pytest.raises(ValueError, match="pred_f0_hz"):
        octave_difference(np.full((2, 4, 1), 100.0), pred)
    with pytest.raises(ValueError, match="pred_f0_hz"):
        raw_chroma_accuracy(np.zeros((2, 4)), pred)
    with pytest.raises(ValueError, match="true_f0_hz"):
        median_cents_error(pred, -pred)


def test_log_f0_correlation_against_numpy_corrcoef() -> None:
    """log2-f0 Pearson correlation: equals np.corrcoef, is 1 for an octave-shifted copy, 0 if constant."""
    rng = np.random.default_rng(3)
    true = rng.uniform(40.0, 1950.0, size=(32, 1))
    pred = true * rng.uniform(0.5, 2.0, size=(32, 16))
    expected = np.corrcoef(np.log2(pred).ravel(), np.log2(np.broadcast_to(true, pred.shape)).ravel())[0, 1]
    assert metrics.log_f0_correlation(pred, true) == pytest.approx(expected, rel=1e-12)
    assert metrics.log_f0_correlation(np.broadcast_to(true / 8.0, (32, 16)), true) == pytest.approx(1.0)
    assert metrics.log_f0_correlation(np.full((32, 16), 100.0), true) == 0.0
    assert "log_f0_corr" in metrics.pitch_metrics(pred, true)


# ---------------------------------------------------------------------------- per family


def _records(families: list[str], f0: list[float]) -> list[dict]:
    return [{"family": f, "f0_hz": x} for f, x in zip(families, f0)]


def test_family_breakdown_matches_mir_eval_per_family() -> None:
    rng = np.random.default_rng(0)
    families = ["strings", "keys", "strings", "voice", "keys", "strings"]
    true = rng.uniform(50, 1500, size=len(families))  # Hz
    frames = 16
    cents = rng.choice(
        [0.0, 20.0, -49.0, 60.0, 1200.0, -1190.0, 700.0], size=(len(families), frames)
    )
    pred = true[:, None] * 2.0 ** (cents / 1200.0)  # (N, T) Hz
    rows = family_breakdown(torch.from_numpy(pred), _records(families, true.tolist()))
    assert [r["family"] for r in rows] == ["strings", "keys", "voice", "all"]
    for row in rows:
        mask = (
            np.ones(len(families), bool)
            if row["family"] == "all"
            else np.array([f == row["family"] for f in families])
        )
        ref_f0 = np.repeat(true[mask], frames)
        est_f0 = pred[mask].ravel()
        ones = np.ones_like(ref_f0, dtype=bool)
        ref_c, est_c = mir_eval.melody.hz2cents(ref_f0), mir_eval.melody.hz2cents(est_f0)
        assert row["rpa"] == pytest.approx(
            mir_eval.melody.raw_pitch_accuracy(ones, ref_c, ones, est_c)
        )
        assert row["rca"] == pytest.approx(
            mir_eval.melody.raw_chroma_accuracy(ones, ref_c, ones, est_c)
        )
        assert row["n_examples"] == mask.sum() and row["n_frames"] == mask.sum() * frames
    table = breakdown_markdown(rows)
    assert table.count("\n") == 1 + len(rows) and "| all |" in table


def test_family_breakdown_rejects_a_length_mismatch() -> None:
    with pytest.raises(ValueError, match="f0_pred"):
        family_breakdown(np.ones((3, 16)), _records(["keys"] * 2, [100.0, 200.0]))
@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("tolerance", [50.0, 100.0, 600.0])
def test_within_cents_accuracy_is_mir_eval_rpa_at_that_tolerance(seed: int, tolerance: float) -> None:
    """Per frame, strict: mir_eval.melody.raw_pitch_accuracy(cent_tolerance=tolerance); at 50
    cents it is RPA itself, at 600 the within-half-an-octave share."""
    rng = np.random.default_rng(seed)
    true = np.exp(rng.uniform(np.log(40), np.log(1950), size=(32, 1)))
    pred = true * 2 ** (rng.normal(0, 300, size=(32, 16)) / 1200)
    ref_cent = mir_eval.melody.hz2cents(np.broadcast_to(true, pred.shape).ravel())
    est_cent = mir_eval.melody.hz2cents(pred.ravel())
    voicing = np.ones(ref_cent.shape)
    expected = mir_eval.melody.raw_pitch_accuracy(voicing, ref_cent, voicing, est_cent,
                                                  cent_tolerance=tolerance)
    assert 0.05 < expected < 1.0
    assert within_cents_accuracy(pred, true, tolerance) == pytest.approx(expected, abs=1e-12)
    if tolerance == 50.0:
        assert within_cents_accuracy(pred, true, tolerance) == raw_pitch_accuracy(pred, true)
    if tolerance == 600.0:
        assert within_cents_accuracy(pred, true, tolerance) == within_octave_accuracy(pred, true)


def test_within_cents_accuracy_exact_cases() -> None:
    """Frames at 0, +-49, +-51, +-99, +-101 and 1200 cents: 3 of 10 within 50, 7 within 100; the
    tolerance is strict (20 Hz against 40 Hz is exactly 1200 cents: outside 1200, inside 1201)."""
    true = np.full((1, 10), 440.0)
    cents = np.array([[0.0, 49.0, -49.0, 51.0, -51.0, 99.0, -99.0, 101.0, -101.0, 1200.0]])
    pred = true * 2 ** (cents / 1200)
    assert within_cents_accuracy(pred, true, 50.0) == 0.3
    assert within_cents_accuracy(pred, true, 100.0) == 0.7
    assert within_cents_accuracy(np.array([[40.0]]), np.array([[20.0]]), 1200.0) == 0.0
    assert within_cents_accuracy(np.array([[40.0]]), np.array([[20.0]]), 1201.0) == 1.0
    with pytest.raises(ValueError, match="tolerance_cents"):
        within_cents_accuracy(pred, true, 0.0)


def test_median_signed_cents_error_is_positive_when_too_high() -> None:
    """pred - true in cents: an octave too high is +1200, a fifth too low is -700 (exact in
    log2); the median of (+1200, +1200, -700) is +1200, of an even count the mean of the two
    middle values (NumPy's median)."""
    true = np.full((1, 3), 200.0)
    pred = np.array([[400.0, 400.0, 200.0 * 2 ** (-700 / 1200)]])
    assert median_signed_cents_error(pred, true) == pytest.approx(1200.0, abs=1e-9)
    pred4 = np.array([[400.0, 100.0, 200.0 * 2 ** (300 / 1200), 200.0]])  # +1200 -1200 +300 0
    assert median_signed_cents_error(pred4, true[:, :1]) == pytest.approx(150.0, abs=1e-9)
    rng = np.random.default_rng(4)
    true_r = rng.uniform(40.0, 1950.0, size=(16, 1))
    pred_r = true_r * 2 ** (rng.normal(0, 500, size=(16, 16)) / 1200)
    expected = np.median(1200 * np.log2(pred_r / true_r))
    assert median_signed_cents_error(pred_r, true_r) == pytest.approx(expected, abs=1e-9)
    assert median_cents_error(pred_r, true_r) == pytest.approx(
        np.median(np.abs(1200 * np.log2(pred_r / true_r))), abs=1e-9)


def test_median_f0_hz() -> None:
    assert median_f0_hz(np.array([[100.0, 300.0, 200.0]])) == 200.0
    assert median_f0_hz(torch.tensor([100.0, 400.0])) == 250.0
    with pytest.raises(ValueError, match="f0_hz"):
        median_f0_hz(np.array([[100.0, 0.0]]))
    with pytest.raises(ValueError, match="f0_hz"):
        median_f0_hz(np.zeros((0,)))


def test_pitch_metrics_new_keys_are_the_functions() -> None:
    rng = np.random.default_rng(5)
    true = rng.uniform(40.0, 1950.0, size=(8, 1))
    pred = true * 2 ** (rng.normal(0, 200, size=(8, 16)) / 1200)
    results = pitch_metrics(pred, true)
    assert results["median_signed_cents"] == median_signed_cents_error(pred, true)
    assert results["within_50_cents"] == results["rpa"]
    assert results["within_100_cents"] == within_cents_accuracy(pred, true, 100.0)
    assert results["median_pred_hz"] == float(np.median(pred))
