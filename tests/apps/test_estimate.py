"""estimate.py / ``sotddsp-pitch`` (sotddsp/apps/estimate.py): many files or folders through a
model, the CSV, npz, png and wav outputs, and the same numbers as the Python API.

The numbers themselves are model/pitch.py's (tests/model/test_pitch.py); here: what the command
writes where, that its tables are the API's track of the same audio, and that a bad file among
good ones is reported in one line without stopping the others.
"""

from __future__ import annotations

import logging
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from helpers.entrypoints import error_line_problems, run_python
from helpers.models import N_HARMONICS, forced_model, write_tiny_checkpoint

from sotddsp.apps import estimate
from sotddsp.core import run_layout
from sotddsp.core.command_line import UserError, run_cli_main
from sotddsp.model import cli as experiment_cli
from sotddsp.model import loader
from sotddsp.model.pitch import PitchModel

HOP = 256  # samples per frame at 16 kHz
RATE = 16000  # Hz
HEADER = ["time", "frequency", "confidence",
          *(f"amplitude_{k}" for k in range(1, N_HARMONICS + 1))]


def read_csv(path: Path) -> tuple[list[str], np.ndarray]:
    lines = path.read_text().splitlines()
    return lines[0].split(","), np.loadtxt(lines[1:], delimiter=",", ndmin=2)


def tone(path: Path, hz: float, seconds: float, rate: int) -> np.ndarray:
    """A 2-harmonic tone at ``hz`` written to ``path`` (its format from the extension);
    returns the samples as written (float64 (N,))."""
    t = np.arange(round(seconds * rate)) / rate
    audio = 0.4 * np.sin(2 * np.pi * hz * t) + 0.2 * np.sin(4 * np.pi * hz * t)
    subtype = {".wav": "FLOAT", ".flac": "PCM_24", ".ogg": "VORBIS"}[path.suffix]
    sf.write(path, audio, rate, subtype=subtype)
    return sf.read(path)[0]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A checkpoint of a tiny random model (helpers.models): fast and deterministic."""
    return write_tiny_checkpoint(tmp_path_factory.mktemp("tiny") / "tiny.ckpt", seed=5)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory, tiny_data_path: Path) -> Path:
    """A checkpoint as train.py writes it (its Trainer, callbacks and embedded config), of an
    untrained SOT-2048 model: saving without fitting keeps the test fast."""
    root = tmp_path_factory.mktemp("runs")
    cli = experiment_cli.build_cli([
        "--config", str(run_layout.REPO / "paper-experiments" / "SOT-2048.yaml"),
        "--config", str(run_layout.REPO / "paper-experiments" / "presets" / "debug.yaml"),
        "--data.init_args.data_path", str(tiny_data_path),
        "--checkpoint_root", str(root),
    ])
    cli.trainer.strategy.connect(cli.model)
    path = root / "untrained.ckpt"
    cli.trainer.save_checkpoint(path)
    assert run_layout.CONFIG_KEY in torch.load(path, map_location="cpu", weights_only=True)
    return path


def test_two_files_in_one_call_write_the_apis_track_as_csv(tiny: Path, tmp_path: Path) -> None:
    a = tone(tmp_path / "a.wav", 220.0, 0.9, 16000)
    b = tone(tmp_path / "b.wav", 330.0, 0.5, 22050)
    out = estimate.main(["-m", str(tiny), str(tmp_path / "a.wav"), str(tmp_path / "b.wav"),
                         "-q"])
    assert [record["audio"].name for record in out["files"]] == ["a.wav", "b.wav"]
    model = loader.load_model(tiny)
    for name, audio, rate in (("a", a, 16000), ("b", b, 22050)):
        header, table = read_csv(tmp_path / f"{name}.f0.csv")
        n_frames = math.ceil(math.ceil(audio.shape[0] * RATE / rate) / HOP)
        assert header == HEADER and table.shape == (n_frames, 3 + N_HARMONICS)
        np.testing.assert_allclose(table[:, 0], np.arange(n_frames) * HOP / RATE, rtol=0,
                                   atol=1e-9)  # s
        track = model.predict(audio.astype(np.float32), rate)
        # float32 values written with 9 significant digits read back exactly
        np.testing.assert_array_equal(table[:, 1].astype(np.float32), track.frequency)
        np.testing.assert_array_equal(table[:, 2].astype(np.float32), track.confidence)
        np.testing.assert_array_equal(table[:, 3:].astype(np.float32), track.amplitudes)
        assert ((table[:, 2] >= 0) & (table[:, 2] <= 1)).all()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.f0.csv", "a.wav", "b.f0.csv",
                                                           "b.wav"]


def test_a_sine_through_the_api_and_the_command_gives_identical_numbers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A deterministic model whose f0 is the CQT frame's strongest bin: a 440 Hz sine reads
    440 Hz (within the bin spacing's rounding) with confidence 1, through both."""
    model = PitchModel(forced_model(bin=None), "argmax")
    monkeypatch.setattr(loader, "load_model", lambda name, device: model)
    t = np.arange(24000) / RATE
    sf.write(tmp_path / "a4.wav", 0.5 * np.sin(2 * np.pi * 440.0 * t), RATE, subtype="FLOAT")
    estimate.main([str(tmp_path / "a4.wav"), "-e", "csv,npz", "-o", str(tmp_path / "o"), "-q"])
    track = model.predict(sf.read(tmp_path / "a4.wav", dtype="float32")[0], RATE)
    _, table = read_csv(tmp_path / "o" / "a4.f0.csv")
    np.testing.assert_array_equal(table[:, 1].astype(np.float32), track.frequency)
    inside = slice(2, -3)  # the frames whose CQT sees the tone on both sides
    assert np.abs(1200 * np.log2(track.frequency[inside] / 440.0)).max() < 20  # cents (1/3 bin)
    np.testing.assert_allclose(track.confidence, 1.0, atol=1e-6)
    saved = np.load(tmp_path / "o" / "a4.f0.npz")
    for key in ("time", "frequency", "confidence", "amplitudes"):
        np.testing.assert_array_equal(saved[key], getattr(track, key))


def test_npz_png_and_wav_outputs(tiny: Path, tmp_path: Path) -> None:
    audio = tone(tmp_path / "c.flac", 196.0, 0.7, 44100)
    estimate.main(["-m", str(tiny), str(tmp_path / "c.flac"), "-e", "npz,png,wav", "-q"])
    assert not (tmp_path / "c.f0.csv").exists()
    track = loader.load_model(tiny).predict(audio.astype(np.float32), 44100, activations=True)
    saved = np.load(tmp_path / "c.f0.npz")
    assert set(saved.files) == {"time", "frequency", "confidence", "amplitudes", "activations",
                                "bin_frequencies", "sample_rate", "hop_length", "gain"}
    for key in ("time", "frequency", "confidence", "amplitudes", "activations",
                "bin_frequencies"):
        np.testing.assert_array_equal(saved[key], getattr(track, key))
    assert int(saved["sample_rate"]) == RATE and int(saved["hop_length"]) == HOP
    np.testing.assert_array_equal(saved["confidence"], saved["activations"].max(axis=1))
    assert (tmp_path / "c.f0.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    resynthesis, rate = sf.read(tmp_path / "c.resynthesis.wav")
    assert rate == RATE and resynthesis.shape == (track.time.shape[0] * HOP,)


def test_a_folder_and_its_sub_folders(tiny: Path, tmp_path: Path) -> None:
    songs = tmp_path / "songs"
    (songs / "live").mkdir(parents=True)
    tone(songs / "one.wav", 220.0, 0.3, RATE)
    tone(songs / "live" / "two.flac", 300.0, 0.3, RATE)
    (songs / "notes.txt").write_text("not audio")
    (songs / "one.resynthesis.wav").write_bytes((songs / "one.wav").read_bytes())  # skipped
    estimate.main(["-m", str(tiny), str(songs), "-q"])
    assert (songs / "one.f0.csv").exists() and not (songs / "live" / "two.f0.csv").exists()
    assert not (songs / "one.resynthesis.f0.csv").exists()
    out = estimate.main(["-m", str(tiny), str(songs), "-r", "-o", str(tmp_path / "out"), "-q"])
    assert sorted(str(p.relative_to(tmp_path / "out")) for p in (tmp_path / "out").rglob("*")
                  ) == ["live", "live/two.f0.csv", "one.f0.csv"]
    assert len(out["files"]) == 2


def test_a_failing_file_is_one_line_and_the_others_are_written(
    tiny: Path, tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    tone(tmp_path / "good1.wav", 220.0, 0.3, RATE)
    tone(tmp_path / "good2.wav", 220.0, 0.3, RATE)
    (tmp_path / "broken.wav").write_text("not audio")
    args = ["-m", str(tiny), str(tmp_path / "good1.wav"), str(tmp_path / "broken.wav"),
            str(tmp_path / "missing.wav"), str(tmp_path / "good2.wav"), "-q"]
    monkeypatch.setattr(sys, "argv", ["sotddsp-pitch", *args])
    with pytest.raises(SystemExit) as exit_info:
        run_cli_main(lambda: estimate.main(args))
    assert exit_info.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert [line.split(": ")[:2] for line in lines] == [
        ["sotddsp-pitch", "error"]] * 3
    assert "missing.wav: audio file not found" in lines[0]
    assert "broken.wav: not a readable audio file" in lines[1]
    assert lines[2].endswith("2 of 4 inputs failed (above); the outputs of the other 2 are written")
    assert (tmp_path / "good1.f0.csv").exists() and (tmp_path / "good2.f0.csv").exists()


def test_the_earlier_checkpoint_then_audio_form_still_works_with_a_note(
    checkpoint: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """``estimate.py CHECKPOINT AUDIO`` with a checkpoint train.py wrote (its Trainer's keys)."""
    tone(tmp_path / "s.ogg", 250.0, 0.4, 22050)
    with caplog.at_level(logging.WARNING):
        out = estimate.main([str(checkpoint), str(tmp_path / "s.ogg"), "-q"])
    assert any("deprecated" in r.getMessage() and "-m " in r.getMessage() for r in caplog.records)
    assert out["model"] == str(checkpoint)
    _, table = read_csv(tmp_path / "s.f0.csv")
    assert table.shape[1] == 3 + 20 and np.isfinite(table).all()


@pytest.mark.parametrize(("args", "says"), [
    (["a.wav", "model.ckpt"], (r"model\.ckpt: a checkpoint among the audio paths; choose the "
                               r"model with -m/--model")),
    (["-e", "csv,mp4", "a.wav"], r"unknown format 'mp4': choose from csv, npz, png, wav"),
    (["a.wav", "a.flac"], r"a\.wav and .*a\.flac would both write .*a\.f0\.\*"),
    ([], r"no audio file given"),
    (["--chunk-samples", "1000", "a.wav"], r"--chunk-samples must be a multiple of the model's hop"),
])
def test_bad_arguments_are_one_line(
    args: list[str], says: str, tiny: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    tone(tmp_path / "a.wav", 220.0, 0.2, RATE)
    tone(tmp_path / "a.flac", 220.0, 0.2, RATE)
    with pytest.raises(UserError, match=says) as raised:
        estimate.main(["-m", str(tiny), *args])
    assert "\n" not in str(raised.value)
    assert not list(tmp_path.glob("*.f0.*"))


def test_stereo_is_mixed_to_mono(tmp_path: Path) -> None:
    left = np.linspace(-0.5, 0.5, 1000)
    sf.write(tmp_path / "s.wav", np.stack([left, 0.5 * left], axis=1), RATE, subtype="FLOAT")
    mono, rate = estimate.load_audio(tmp_path / "s.wav")
    assert rate == RATE
    np.testing.assert_allclose(mono, 0.75 * left, atol=1e-7)
    sf.write(tmp_path / "empty.wav", np.zeros(0), RATE)
    with pytest.raises(UserError, match="holds no samples"):
        estimate.load_audio(tmp_path / "empty.wav")


def test_list_models_names_the_shipped_ones(capsys: pytest.CaptureFixture) -> None:
    estimate.main(["--list-models"])
    printed = capsys.readouterr().out
    assert loader.describe_model("default") in printed


@pytest.mark.parametrize("args", [["--help"], ["--list-models"], ["missing.wav"],
                                  ["a.wav", "-e", "mp4"]])
def test_help_listing_and_bad_arguments_load_no_model(args: list[str]) -> None:
    """What the tool answers before it needs a model (help, the shipped models, a missing file,
    a bad option) imports neither torch nor Lightning: an instant answer, not seconds of
    imports. A subprocess, so that no other test's imports count."""
    code = (
        "import sys\n"
        "from sotddsp.apps import estimate\n"
        "sys.argv = ['sotddsp-pitch', *sys.argv[1:]]\n"
        "try:\n"
        "    estimate.cli()\n"
        "finally:\n"
        "    print(sorted(m for m in ('torch', 'lightning') if m in sys.modules))\n"
    )
    done = run_python(code, args, timeout=120)
    assert done.stdout.strip().splitlines()[-1] == "[]", done.stdout + done.stderr
    if args[0].startswith("--"):
        assert done.returncode == 0, done.stderr
        assert "default:" in done.stdout  # the shipped model, described from its provenance
    else:
        assert done.returncode == run_layout.EXIT_USER_ERROR
        assert error_line_problems(done.stderr, "sotddsp-pitch")[1] == []
