"""The synthetic data set (sotddsp/data/synthetic.py): settings, generation against float64
NumPy references, file names, concurrent generation.

Shapes: waveforms [N, n_samples] float32 at 16 kHz; thetas["frequency"] [N, 1] (or [N, T] with
vibrato/glide) in Hz; thetas["weights"] [N, K] linear amplitudes.
"""

from __future__ import annotations

import dataclasses
import logging
import multiprocessing as mp
from pathlib import Path

import numpy as np
import pytest
import scipy.stats
import torch

from sotddsp.data.datamodule import PreloadedSinusoidDataModule
from sotddsp.data.files import SPLITS, load_dataset
from sotddsp.data.synthetic import SynthSettings, ensure_dataset, generate_dataset

SR = 16000
def all_split(data: dict, key: str) -> torch.Tensor:
    if key == "tensors":
        return torch.cat([data[f"{s}_tensors"] for s in SPLITS])
    return torch.cat([data[f"{s}_thetas"][key] for s in SPLITS])


def reference_wave(f0_hz: float, weights: np.ndarray, n_samples: int, sr: int = SR,
                   inharmonicity: float = 0.0) -> np.ndarray:
    """float64 NumPy oracle: sum_k a_k sin(2 pi f_k (n + 1) / sr), f_k = k f0 sqrt(1 + B k^2),
    partials at or above Nyquist left out (phase = cumulative sum of 2 pi f / sr)."""
    n = np.arange(1, n_samples + 1, dtype=np.float64)
    k = np.arange(1, len(weights) + 1, dtype=np.float64)
    f = k * f0_hz * np.sqrt(1.0 + inharmonicity * k**2)
    keep = f < sr / 2
    return (weights[keep, None] * np.sin(2 * np.pi * f[keep, None] * n[None, :] / sr)).sum(0)


def magnitude_spectrum(x: np.ndarray, sr: int = SR) -> tuple[np.ndarray, np.ndarray]:
    """Hann-windowed |rfft| of a 1-D wave; returns (freqs Hz (F,), magnitudes (F,))."""
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return np.fft.rfftfreq(len(x), 1.0 / sr), spec


def peak_near(freqs: np.ndarray, spec: np.ndarray, f_hz: float, half_width_hz: float) -> float:
    band = np.abs(freqs - f_hz) <= half_width_hz
    return float(freqs[band][np.argmax(spec[band])])


# ---------------------------------------------------------------------------------------------
# Generation
# ---------------------------------------------------------------------------------------------

def test_deterministic_given_seed(small: dict, small_settings: SynthSettings) -> None:
    again = generate_dataset(small_settings)
    other = generate_dataset(dataclasses.replace(small_settings, seed=8))
    for key in ("tensors", "frequency", "weights"):
        assert torch.equal(all_split(small, key), all_split(again, key))
        assert not torch.equal(all_split(small, key), all_split(other, key))
    assert small["meta"] == again["meta"]


def test_shapes_and_disjoint_splits(small: dict, small_settings: SynthSettings) -> None:
    for split, n in zip(SPLITS, small_settings.splits):
        assert small[f"{split}_tensors"].shape == (n, 1024)
        assert small[f"{split}_tensors"].dtype == torch.float32
        assert small[f"{split}_thetas"]["frequency"].shape == (n, 1)
        assert small[f"{split}_thetas"]["weights"].shape == (n, 8)
    for key in ("tensors", "frequency", "weights"):
        rows = all_split(small, key)
        assert torch.unique(rows, dim=0).shape[0] == rows.shape[0], key
    assert small["meta"]["split_sizes"] == [120, 50, 30]
    assert small["meta"]["sample_rate"] == SR and small["meta"]["frequency_per_frame"] is False


def test_ranges_and_active_harmonics() -> None:
    data = generate_dataset(SynthSettings(n_examples=400, n_samples=256, seed=1))  # default 280/80/40
    f0 = all_split(data, "frequency")
    w = all_split(data, "weights")
    assert f0.min() >= 40.0 and f0.max() <= 1950.0
    active = w > 0
    assert torch.all(active[:, 0]), "harmonic 1 always on"
    assert torch.all((w[active] >= 0.4) & (w[active] <= 1.0))
    n_active = active.sum(dim=1)
    # active harmonics are the lowest: the mask is a prefix of ones
    assert torch.equal(active, torch.arange(8) < n_active[:, None])
    assert set(n_active.tolist()) == set(range(1, 9))


def test_waveform_matches_float64_reference(small: dict) -> None:
    """Constant controls: the synth output is the plain sum of harmonics below Nyquist."""
    x = small["test_tensors"]
    f0 = small["test_thetas"]["frequency"][:, 0]
    w = small["test_thetas"]["weights"]
    for i in range(8):
        ref = reference_wave(float(f0[i]), w[i].double().numpy(), 1024)
        np.testing.assert_allclose(x[i].double().numpy(), ref, atol=2e-3)


def test_spectrum_peaks_at_f0_and_harmonics() -> None:
    data = generate_dataset(SynthSettings(n_examples=60, f0_min=150.0, f0_max=900.0, min_harmonics=3, seed=2))
    x = data["val_tensors"]
    f0, w = data["val_thetas"]["frequency"][:, 0], data["val_thetas"]["weights"]
    for i in range(4):
        freqs, spec = magnitude_spectrum(x[i].double().numpy())
        f = float(f0[i])
        harmonics = [k for k in range(1, 9) if w[i, k - 1] > 0 and k * f < SR / 2 - f / 2]
        assert len(harmonics) >= 2
        for k in harmonics:
            assert abs(peak_near(freqs, spec, k * f, f / 2) - k * f) <= 2 * SR / 4096
        # the global maximum is one of the active harmonics
        top = freqs[np.argmax(spec)]
        assert min(abs(top - k * f) for k in harmonics) <= 2 * SR / 4096


def test_no_aliasing_above_nyquist() -> None:
    """f0 = 1900 Hz, 8 harmonics on: harmonics 5..8 (>= 9.5 kHz) must not alias into the band."""
    data = generate_dataset(SynthSettings(n_examples=3, f0_min=1900.0, f0_max=1900.0, min_harmonics=8, seed=0))
    freqs, spec = magnitude_spectrum(data["train_tensors"][0].double().numpy())
    # aliases of 5*1900 = 9500 -> 6500 Hz, 6*1900 -> 4600 Hz, 7*1900 -> 2700 Hz, 8*1900 -> 800 Hz
    peak = spec.max()
    for alias in (6500.0, 4600.0, 2700.0, 800.0):
        band = np.abs(freqs - alias) < 30
        assert spec[band].max() < 1e-3 * peak, alias


def test_paper_defaults_full_set() -> None:
    data = generate_dataset()
    shapes = [data[f"{s}_tensors"].shape for s in SPLITS]
    assert shapes == [(2800, 4096), (800, 4096), (400, 4096)]
    f0 = all_split(data, "frequency")[:, 0].double().numpy()
    # f0 ~ U[40, 1950]: Kolmogorov-Smirnov against the uniform law (fixed seed, so deterministic)
    assert scipy.stats.kstest(f0, scipy.stats.uniform(40, 1910).cdf).pvalue > 1e-3
    counts = torch.bincount((all_split(data, "weights") > 0).sum(1), minlength=9)[1:]
    assert counts.min() > 400 and counts.max() < 600  # U{1..8}: 500 expected each
    assert SynthSettings().filename() == "40_1950_4096_04_1_4000_8_1_harmonic.pth"
    assert data["meta"]["split_sizes"] == [2800, 800, 400]


def test_noise_gives_requested_snr() -> None:
    clean = generate_dataset(SynthSettings(n_examples=30, n_samples=1024, seed=3))
    noisy = generate_dataset(SynthSettings(n_examples=30, n_samples=1024, seed=3, snr_db=20.0))
    assert torch.equal(all_split(clean, "frequency"), all_split(noisy, "frequency"))
    s = all_split(clean, "tensors").double()
    n = all_split(noisy, "tensors").double() - s
    snr = 10 * torch.log10(s.pow(2).mean(1) / n.pow(2).mean(1))
    assert torch.all((snr - 20.0).abs() < 0.5), snr
    assert noisy["meta"]["snr_db"] == 20.0


def test_vibrato_and_glide_per_frame_f0() -> None:
    base = generate_dataset(SynthSettings(n_examples=30, n_samples=1024, seed=4))
    vib = generate_dataset(SynthSettings(n_examples=30, n_samples=1024, seed=4, vibrato_cents=50.0,
                           vibrato_hz=5.0))
    glide = generate_dataset(SynthSettings(n_examples=30, n_samples=1024, seed=4, glide_cents=-100.0))
    f0 = all_split(base, "frequency").double()  # (30, 1)
    for data in (vib, glide):
        assert data["meta"]["frequency_per_frame"] is True
        for split, n in zip(SPLITS, (21, 6, 3)):
            assert data[f"{split}_thetas"]["frequency"].shape == (n, 16)
    vib_cents = 1200 * torch.log2(all_split(vib, "frequency").double() / f0)  # (30, 16)
    assert vib_cents.abs().max() <= 50.0 + 1e-3
    assert vib_cents.std() > 1.0  # 0.064 s of a 5 Hz vibrato: a visible excursion
    glide_cents = 1200 * torch.log2(all_split(glide, "frequency").double() / f0)
    expected = torch.linspace(50.0, -50.0, 16, dtype=torch.float64).expand(30, 16)
    torch.testing.assert_close(glide_cents, expected, atol=1e-3, rtol=0)
    assert not torch.equal(all_split(glide, "tensors"), all_split(base, "tensors"))


def test_inharmonicity_shifts_partials_up() -> None:
    b = 1e-3
    data = generate_dataset(SynthSettings(n_examples=3, f0_min=300.0, f0_max=300.0, min_harmonics=8,
                            inharmonicity=b, seed=0))
    x = data["train_tensors"][0].double().numpy()
    w = data["train_thetas"]["weights"][0].double().numpy()
    assert float(data["train_thetas"]["frequency"][0, 0]) == 300.0
    np.testing.assert_allclose(x, reference_wave(300.0, w, 4096, inharmonicity=b), atol=2e-3)
    freqs, spec = magnitude_spectrum(x)
    for k in (4, 6, 8):
        stretched = k * 300.0 * np.sqrt(1 + b * k**2)
        found = peak_near(freqs, spec, k * 300.0 + 40.0, 80.0)
        assert abs(found - stretched) <= 2 * SR / 4096
        assert found > k * 300.0 + 10.0


def test_inharmonic_partials_above_nyquist_are_silent() -> None:
    # partial 4 of f0 = 1900 Hz with B = 0.01 sits at 8185 Hz (its k f0 = 7600 Hz is below Nyquist)
    data = generate_dataset(SynthSettings(n_examples=3, f0_min=1900.0, f0_max=1900.0, n_harmonics=4,
                            min_harmonics=4, inharmonicity=0.01, seed=0))
    freqs, spec = magnitude_spectrum(data["train_tensors"][0].double().numpy())
    alias = SR - 4 * 1900.0 * np.sqrt(1.16)  # 7815 Hz
    assert spec[np.abs(freqs - alias) < 30].max() < 1e-3 * spec.max()


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"f0_max": 8000.0}, "f0_max"),
        ({"f0_min": 500.0, "f0_max": 400.0}, "f0_min"),
        ({"amp_min": -0.1}, "amp_min"),
        ({"min_harmonics": 9}, "min_harmonics"),
        ({"n_samples": 1000}, "n_samples"),
        ({"split_sizes": (10, 10, 10)}, "split_sizes"),
        ({"n_examples": 0}, "n_examples"),
        ({"vibrato_cents": -1.0}, "vibrato_cents"),
        ({"inharmonicity": -1e-3}, "inharmonicity"),
        ({"snr_db": float("nan")}, "snr_db"),
    ],
)
def test_bad_generator_arguments(kwargs: dict, name: str) -> None:
    with pytest.raises(ValueError, match=name) as info:
        generate_dataset(SynthSettings(**kwargs))
    assert "\n" not in str(info.value)


def test_filename_round_trip() -> None:
    cases = [
        {},
        {"snr_db": 20.0},
        {"snr_db": -5.0, "vibrato_cents": 50.0, "vibrato_hz": 6.5},
        {"glide_cents": 100.0, "inharmonicity": 0.001},
        {"n_examples": 200, "split_sizes": (100, 50, 50), "seed": 3, "amp_min": 0.25},
        {"f0_min": 40.5, "n_frames": 8, "sample_rate": 22050, "inharmonicity": 1e-5},
    ]
    for params in cases:
        settings = SynthSettings(**params)
        assert SynthSettings.from_filename(settings.filename()) == settings, settings.filename()
        assert settings.changed() == params
    assert SynthSettings(snr_db=20.0).filename().endswith("_harmonic_snr20.pth")
    assert SynthSettings(vibrato_cents=50.0).filename() == \
        "40_1950_4096_04_1_4000_8_1_harmonic_vib50.pth"
    assert SynthSettings(glide_cents=100.0).filename().endswith("_glide100.pth")
    assert SynthSettings(inharmonicity=0.001).filename().endswith("_inh0.001.pth")
    # the default split, given explicitly, names the same file
    assert SynthSettings(split_sizes=(2800, 800, 400)).filename() == SynthSettings().filename()
    assert SynthSettings.from_filename("data/my_data.pth") is None




# ---------------------------------------------------------------------------------------------
# Files
# ---------------------------------------------------------------------------------------------



def write_authors_file(path: Path, n: int = 12, n_samples: int = 512) -> dict:
    """The authors' release layout: the same examples under every split name, no meta."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, n_samples, generator=g) * 0.3
    x[3] = 0.0  # a silent example
    thetas = {"frequency": 40 + 1900 * torch.rand(n, 1, generator=g),
              "weights": torch.rand(n, 8, generator=g)}
    data = {f"{s}_tensors": x for s in SPLITS} | {f"{s}_thetas": thetas for s in SPLITS}
    torch.save(data, path)
    return data






















def _generate_concurrently(path: str, barrier, queue) -> None:
    torch.set_num_threads(1)
    records = []
    handler = logging.Handler()
    handler.emit = records.append
    log = logging.getLogger("synthetic_data")
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    barrier.wait()
    dm = PreloadedSinusoidDataModule(data_path=path, batch_size=8)
    dm.prepare_data()
    dm.setup()
    queue.put((len(records), float(dm.train_dataset.x.double().sum())))


def test_two_processes_generate_one_file(tmp_path: Path) -> None:
    path = tmp_path / "40_1950_1024_04_1_300_8_1_harmonic.pth"
    ctx = mp.get_context("fork")
    barrier, queue = ctx.Barrier(2), ctx.Queue()
    procs = [ctx.Process(target=_generate_concurrently, args=(str(path), barrier, queue))
             for _ in range(2)]
    for p in procs:
        p.start()
    results = [queue.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    assert sorted(r[0] for r in results) == [0, 1], "exactly one process generated the file"
    assert results[0][1] == results[1][1]
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]
    assert load_dataset(path)["train_tensors"].shape == (210, 1024)
    assert ensure_dataset(path) is False


# ---------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------





