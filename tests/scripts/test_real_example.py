"""scripts/real_example.py, the README's flute figure: its per-note arithmetic against exact
identities, and the whole script on the shipped default model (where FluidSynth is present)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import real_example

from sotddsp.data.real import midi_note_to_hz


def test_note_errors_are_the_median_inside_each_note_in_cents() -> None:
    """A track an octave above the first note and a fifth (7 semitones) below the second, with
    outliers in the 50 ms margins that the median must not see."""
    time_s = np.arange(0, 1.0, 0.016)
    spans = [(0.0, 0.5, 69), (0.5, 1.0, 72)]
    f0 = np.where(time_s < 0.5, 2 * 440.0, midi_note_to_hz(72 - 7))
    f0[(np.abs(time_s - 0.5) < 0.05)] = 10.0  # the margins around the note change
    rows = real_example.note_errors(time_s, f0, spans)
    assert [row[0] for row in rows] == [69, 72]
    assert rows[0][1] == pytest.approx(440.0) and rows[0][2] == pytest.approx(880.0)
    assert rows[0][3] == pytest.approx(1200.0)
    assert rows[1][3] == pytest.approx(-700.0)


def test_a_note_without_frames_is_an_error() -> None:
    with pytest.raises(ValueError, match="MIDI note 60"):
        real_example.note_errors(np.array([0.0, 0.016]), np.array([1.0, 1.0]), [(1.0, 1.2, 60)])


def test_the_script_writes_the_figure_and_one_line_per_note(
    fluidsynth: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)  # it writes outputs/real_example/ under the working directory
    out = real_example.main(["--out", str(tmp_path / "figure.png")])
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("MIDI ")]
    assert [int(line.split()[1].rstrip(":")) for line in lines] == list(real_example.PHRASE)
    track = np.loadtxt(tmp_path / "outputs" / "real_example" / "phrase.f0.csv", delimiter=",",
                       skiprows=1)
    assert track.shape[1] == 3 + 20 and np.all(track[:, 1] > 0)
