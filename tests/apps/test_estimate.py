"""estimate.py: a trained model as a pitch and harmonic estimator on audio files.

An untrained model's f0 is meaningless, so the checks are on plumbing and on properties that
hold exactly: with the encoder's pitch logits forced to a one-hot, the CSV f0 is that bin's
frequency; with a one-hot at the CQT frame's strongest bin, the CSV follows a known glide
frame by frame (also through 44.1 kHz -> 16 kHz resampling); the block-wise resynthesis equals
the model's one-shot decoder.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from torch import Tensor, nn

from sotddsp.apps import estimate
from sotddsp.core import run_layout
from sotddsp.core.command_line import UserError, run_cli_main
from sotddsp.dsp.losses import MultiScaleSpectralLoss
from sotddsp.dsp.spectral import CQT
from sotddsp.dsp.synth import HarmonicSynth, upsample_linear
from sotddsp.model import cli as experiment_cli
from sotddsp.model.autoencoder import HarmonicAutoencoder
from sotddsp.model.encoder import PESTOEncoder

HOP = 256  # samples per frame at 16 kHz
RATE = 16000  # Hz


def _model(roll_off: bool = False) -> HarmonicAutoencoder:
    return HarmonicAutoencoder(
        encoder=PESTOEncoder(),
        features=CQT(),
        synth=HarmonicSynth(roll_off=roll_off),
        loss=MultiScaleSpectralLoss(),
        optimizer=torch.optim.Adam,
    ).eval()


class OneHotEncoder(nn.Module):
    """Pitch logits one-hot at ``bin``, or with bin=None at the input CQT frame's strongest bin.
    Amplitudes: harmonic 1 is 0.5, or with ``probe_bin`` the frame's CQT magnitude in that bin;
    the others 0. frames (N, Q) -> (logits (N, Q), amplitudes (N, K))."""

    def __init__(
        self, bin: int | None, probe_bin: int | None = None, n_harmonics: int = 20
    ) -> None:
        super().__init__()
        self.bin = bin
        self.probe_bin = probe_bin
        self.n_harmonics = n_harmonics

    def forward(self, frames: Tensor) -> tuple[Tensor, Tensor]:
        index = (
            frames.argmax(dim=-1) if self.bin is None else torch.full(frames.shape[:1], self.bin)
        )
        logits = 1000.0 * nn.functional.one_hot(index, frames.shape[-1]).to(frames.dtype)
        amplitudes = torch.zeros(frames.shape[0], self.n_harmonics)
        amplitudes[:, 0] = 0.5 if self.probe_bin is None else frames[:, self.probe_bin]
        return logits, amplitudes


def _forced(bin: int | None, probe_bin: int | None = None) -> HarmonicAutoencoder:
    model = _model()
    model.encoder = OneHotEncoder(bin, probe_bin)
    return model


def _glide(rate: int, seconds: float) -> tuple[np.ndarray, np.ndarray]:
    """A 3-harmonic tone gliding 300 -> 450 Hz (exponentially), rendered by HarmonicSynth at
    ``rate``: (audio (N,), per-sample f0 (N,) in Hz), N = seconds * rate."""
    n = round(seconds * rate)
    n_frames = 100
    n -= n % n_frames
    f0_frames = 300.0 * 1.5 ** torch.linspace(0, 1, n_frames, dtype=torch.float64)[None, :, None]
    amplitudes = torch.tensor([1.0, 0.3, 0.1], dtype=torch.float64).expand(1, n_frames, 3)
    audio = HarmonicSynth(n_samples=n, sample_rate=rate)(amplitudes, f0_frames)[0]
    return 0.5 * audio.numpy(), upsample_linear(f0_frames, n)[0, :, 0].numpy()


def _bursts(n: int, rate: int, times_s: list[float], hz: float) -> np.ndarray:
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


def _read_csv(path: Path) -> tuple[list[str], np.ndarray]:
    lines = path.read_text().splitlines()
    return lines[0].split(","), np.loadtxt(lines[1:], delimiter=",", ndmin=2)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory, tiny_data_path: Path) -> Path:
    """A checkpoint as train.py writes it (its Trainer, callbacks and embedded config), of an
    untrained SOT-2048 model: saving without fitting keeps the test fast."""
    root = tmp_path_factory.mktemp("runs")
    cli = experiment_cli.build_cli(
        [
            "--config",
            str(run_layout.REPO / "paper-experiments" / "SOT-2048.yaml"),
            "--config",
            str(run_layout.REPO / "paper-experiments" / "presets" / "debug.yaml"),
            "--data.init_args.data_path",
            str(tiny_data_path),
            "--checkpoint_root",
            str(root),
        ]
    )
    cli.trainer.strategy.connect(cli.model)
    path = root / "untrained.ckpt"
    cli.trainer.save_checkpoint(path)
    assert run_layout.CONFIG_KEY in torch.load(path, map_location="cpu", weights_only=True)
    return path


def test_forced_pitch_bin_gives_that_frequency_in_every_csv_row(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = _forced(bin=150)
    bin_hz = float(model.features.frequencies[150])  # 32.7 * 2 ** (150 / 36) Hz
    monkeypatch.setattr(estimate, "load_model", lambda path, device: model)
    audio, _ = _glide(RATE, 1.3)
    sf.write(tmp_path / "glide.wav", audio, RATE, subtype="FLOAT")
    out = estimate.main(["model.ckpt", str(tmp_path / "glide.wav"), "--out", str(tmp_path / "out")])

    n_frames = math.ceil(audio.shape[0] / HOP)
    header, table = _read_csv(out["csv"])
    assert header == ["time_s", "f0_hz", *(f"amp_{k}" for k in range(1, 21))]
    assert table.shape == (n_frames, 22) and out["n_frames"] == n_frames
    np.testing.assert_allclose(table[:, 0], np.arange(n_frames) * HOP / RATE, atol=1e-6)  # s
    cents = 1200 * np.log2(table[:, 1] / bin_hz)
    assert np.abs(cents).max() < 1.0
    np.testing.assert_allclose(table[:, 2], 0.5, atol=1e-6)
    assert np.all(table[:, 3:] == 0)

    assert out["png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    resynthesis, rate = sf.read(out["wav"])
    assert rate == RATE and resynthesis.shape == (n_frames * HOP,)
    # a 0.5-amplitude sine at the CSV's f0, phase 2 pi f0 / 16000 at the first sample (float64)
    t = np.arange(1, n_frames * HOP + 1) / RATE
    np.testing.assert_allclose(resynthesis, 0.5 * np.sin(2 * np.pi * table[0, 1] * t), atol=1e-3)
    assert out["real_time_factor"] > 0 and out["gain"] == pytest.approx(
        0.9 / np.abs(audio).max(), rel=1e-5
    )


@pytest.mark.parametrize(("rate", "fmt"), [(16000, "WAV"), (44100, "FLAC")])
def test_csv_rows_are_aligned_with_the_audio(rate: int, fmt: str, tmp_path: Path) -> None:
    """A glide, plus short 4 kHz bursts centred on frames 10, 37 and 90 (rows at t * 256 / 16000 s).
    The encoder's f0 is the CQT frame's strongest bin, its amp_1 the frame's 4 kHz bin."""
    probe = 250  # CQT bin 250: 32.7 * 2 ** (250 / 36) = 4.03 kHz
    model = _forced(bin=None, probe_bin=probe)
    audio, f0_true = _glide(rate, 2.0)
    burst_rows = [10, 37, 90]
    audio = audio + _bursts(
        audio.shape[0],
        rate,
        [r * HOP / RATE for r in burst_rows],
        float(model.features.frequencies[probe]),
    )
    path = tmp_path / f"glide.{fmt.lower()}"
    sf.write(
        path, np.stack([audio, 0.5 * audio], axis=1), rate, format=fmt, subtype="PCM_24"
    )  # stereo
    signal, file_rate = estimate.read_audio(path, RATE)
    assert file_rate == rate and signal.shape == (math.ceil(audio.shape[0] * RATE / rate),)
    track = estimate.estimate_track(model, estimate.peak_normalize(signal)[0])

    n_frames = math.ceil(signal.shape[0] / HOP)
    assert track["f0_hz"].shape == (n_frames,) and track["amplitudes"].shape == (n_frames, 20)
    np.testing.assert_allclose(track["time_s"], np.arange(n_frames) * HOP / RATE)
    assert track["time_s"][-1] < audio.shape[0] / rate  # s: the last frame starts inside the file
    # the bursts show in exactly their rows
    assert sorted(np.argsort(track["amplitudes"][:, 0])[-3:].tolist()) == burst_rows
    # every f0 is a CQT bin's frequency (within a cent) ...
    bins = model.features.frequencies.double().numpy()
    to_bin = 1200 * np.log2(track["f0_hz"][:, None] / bins[None, :])
    assert np.abs(to_bin).min(axis=1).max() < 1.0
    # ... and within 50 cents of the glide at the row's time
    true_at_frames = np.interp(track["time_s"], np.arange(f0_true.shape[0]) / rate, f0_true)
    inside = track["time_s"] < audio.shape[0] / rate - 0.05  # the zero-padded tail excluded
    cents = 1200 * np.log2(track["f0_hz"] / true_at_frames)
    assert np.abs(cents[inside]).max() < 50.0


@pytest.mark.parametrize("roll_off", [False, True])
def test_blockwise_resynthesis_equals_the_one_shot_decoder(roll_off: bool) -> None:
    model = _model(roll_off)
    n_frames = 23
    g = torch.Generator().manual_seed(0)
    f0 = 80.0 * 2 ** (4 * torch.rand(n_frames, generator=g, dtype=torch.float64))  # 80-1280 Hz
    amplitudes = torch.rand(n_frames, 20, generator=g, dtype=torch.float64) / 20
    reference = model.decode(f0[None], amplitudes[None], n_frames * HOP)[0].numpy()  # float64
    for block_frames in (1, 4, 100):
        blockwise = estimate.resynthesize(model, f0, amplitudes, block_frames=block_frames)
        assert blockwise.shape == (n_frames * HOP,)
        np.testing.assert_allclose(blockwise, reference, atol=1e-6, rtol=0)  # float32 output


def test_resample_keeps_frequency_and_length() -> None:
    n = 44100  # 1 s at 44.1 kHz
    x = np.sin(2 * np.pi * 1000.0 * np.arange(n) / 44100)
    y = estimate.resample(x, 44100, 16000)
    assert y.shape == (math.ceil(n * 16000 / 44100),) and y.dtype == np.float32
    reference = np.sin(2 * np.pi * 1000.0 * np.arange(y.shape[0]) / 16000)  # float64
    # resample_poly's default Kaiser filter (beta 5) has about 0.1 % pass-band ripple
    np.testing.assert_allclose(y[200:-200], reference[200:-200], atol=2e-3)


def test_stereo_is_mixed_to_mono(tmp_path: Path) -> None:
    left = np.linspace(-0.5, 0.5, 1000)
    sf.write(tmp_path / "s.wav", np.stack([left, 0.5 * left], axis=1), RATE, subtype="FLOAT")
    mono, rate = estimate.read_audio(tmp_path / "s.wav", RATE)
    assert rate == RATE
    np.testing.assert_allclose(mono, 0.75 * left, atol=1e-7)


def test_a_real_checkpoint_runs_end_to_end(checkpoint: Path, tmp_path: Path) -> None:
    model = estimate.load_model(checkpoint)
    assert isinstance(model, HarmonicAutoencoder) and not model.training
    saved = torch.load(checkpoint, map_location="cpu", weights_only=True)["state_dict"]
    for name, value in model.state_dict().items():
        torch.testing.assert_close(value, saved[name])
    audio, _ = _glide(22050, 0.7)
    sf.write(tmp_path / "tone.ogg", audio, 22050, format="OGG", subtype="VORBIS")
    out = estimate.main([str(checkpoint), str(tmp_path / "tone.ogg"), "--out", str(tmp_path / "o")])
    n_frames = math.ceil(math.ceil(audio.shape[0] * RATE / 22050) / HOP)
    _, table = _read_csv(out["csv"])
    assert table.shape == (n_frames, 22) and np.isfinite(table).all()
    assert out["png"].exists() and sf.info(str(out["wav"])).frames == n_frames * HOP


def _run_cli(
    args: list[str], capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> str:
    monkeypatch.setattr(sys, "argv", ["estimate.py", *args])
    with pytest.raises(SystemExit) as exit_info:
        run_cli_main(lambda: estimate.main(args))
    assert exit_info.value.code == 2
    stderr = capsys.readouterr().err.strip()
    assert len(stderr.splitlines()) == 1 and stderr.startswith("estimate.py: error:"), stderr
    return stderr


def test_bad_input_is_one_line_and_exit_2(
    checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    sf.write(tmp_path / "ok.wav", np.zeros(4096), RATE)
    (tmp_path / "text.wav").write_text("not audio")
    (tmp_path / "text.ckpt").write_text("not a checkpoint")
    torch.save({"state_dict": {}}, tmp_path / "foreign.ckpt")
    assert "audio file not found" in _run_cli(
        [str(checkpoint), str(tmp_path / "no.wav")], capsys, monkeypatch
    )
    assert "not a readable audio file" in _run_cli(
        [str(checkpoint), str(tmp_path / "text.wav")], capsys, monkeypatch
    )
    assert "checkpoint not found" in _run_cli(
        [str(tmp_path / "no.ckpt"), str(tmp_path / "ok.wav")], capsys, monkeypatch
    )
    for bad in ("text.ckpt", "foreign.ckpt"):
        message = _run_cli([str(tmp_path / bad), str(tmp_path / "ok.wav")], capsys, monkeypatch)
        assert "not a usable train.py checkpoint" in message
    sf.write(tmp_path / "empty.wav", np.zeros(0), RATE)
    with pytest.raises(UserError, match="holds no samples"):
        estimate.read_audio(tmp_path / "empty.wav", RATE)
