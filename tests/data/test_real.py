"""The real-instrument set (sotddsp/data/real.py): the note plan, the MIDI it writes, the
renderer check, and (when FluidSynth is installed or installable) three rendered notes loaded like
the synthetic set."""

from __future__ import annotations

from pathlib import Path

import librosa
import mido
import numpy as np
import pytest
import torch

from sotddsp.core.command_line import UserError
from sotddsp.data import real as real_data
from sotddsp.data.datamodule import PreloadedSinusoidDataModule
from sotddsp.data.files import load_dataset, save_dataset
from sotddsp.data.real import (
    FAMILIES,
    INSTRUMENTS,
    MIDI_MAX,
    MIDI_MIN,
    Note,
    plan_notes,
)
from sotddsp.dsp.metrics import family_breakdown

INSTRUMENT = {i.name: i for i in INSTRUMENTS}


def test_plan_covers_every_family_within_the_paper_range_and_each_instrument_range() -> None:
    notes = plan_notes(velocities=(60, 110), note_step=5)
    assert {n.instrument.family for n in notes} == set(FAMILIES)
    assert len(FAMILIES) == 7 and 300 <= len(notes) <= 600
    for n in notes:
        assert MIDI_MIN <= n.note <= MIDI_MAX
        assert n.instrument.low <= n.note <= n.instrument.high
        assert 40.0 <= n.f0_hz <= 1950.0  # Hz, the paper's f0 range
    # every instrument starts at its lowest playable note and steps by 5 semitones
    for instrument in INSTRUMENTS:
        played = sorted({n.note for n in notes if n.instrument == instrument})
        assert played[0] == max(instrument.low, MIDI_MIN)
        assert np.all(np.diff(played) == 5)
    assert {n.velocity for n in notes} == {60, 110}


def test_f0_is_the_equal_tempered_midi_frequency() -> None:
    notes = np.arange(MIDI_MIN, MIDI_MAX + 1)
    ours = np.array([real_data.midi_note_to_hz(int(n)) for n in notes])
    np.testing.assert_allclose(ours, librosa.midi_to_hz(notes), rtol=1e-12)
    assert real_data.midi_note_to_hz(69) == 440.0


@pytest.mark.parametrize("bad", [{"families": ["kazoo"]}, {"velocities": [0]}, {"note_step": 0}])
def test_plan_rejects_bad_arguments(bad: dict) -> None:
    with pytest.raises(ValueError, match=next(iter(bad))):
        plan_notes(**bad)


def test_midi_file_plays_each_note_alone_at_the_returned_onsets(tmp_path: Path) -> None:
    notes = [
        Note(INSTRUMENT["violin"], 69, 100),
        Note(INSTRUMENT["tuba"], 30, 40),
        Note(INSTRUMENT["acoustic grand piano"], 60, 80),
    ]
    onsets = real_data.write_midi(notes, tmp_path / "n.mid", offset_ms=100.0, excerpt_ms=256.0)
    midi = mido.MidiFile(str(tmp_path / "n.mid"))
    assert midi.ticks_per_beat == 500
    events, now_ms = [], 0.0
    for message in midi.tracks[0]:
        now_ms += message.time  # one tick = 1 ms at the file's tempo
        events.append((now_ms, message))
    assert mido.tick2second(1, midi.ticks_per_beat, 500_000) == pytest.approx(1e-3)
    note_ons = [(t, m) for t, m in events if m.type == "note_on" and m.velocity > 0]
    assert [t for t, _ in note_ons] == onsets
    assert [(m.note, m.velocity) for _, m in note_ons] == [(69, 100), (30, 40), (60, 80)]
    programs = [m.program for _, m in events if m.type == "program_change"]
    assert programs == [40, 58, 0]
    # "all sound off" precedes every note, and each note ends before the next slot starts
    sound_off = [t for t, m in events if m.type == "control_change" and m.control == 120]
    note_offs = [t for t, m in events if m.type == "note_off"]
    for i, onset in enumerate(onsets):
        assert sound_off[i] < onset
        assert onset + 100 + 256 < note_offs[i] < sound_off[i + 1]


def test_records_of_only_reads_real_data_meta() -> None:
    assert real_data.records_of({"generator": "synthetic_data.generate_dataset"}) is None
    meta = {"generator": real_data.GENERATOR, "records": [{"family": "keys", "f0_hz": 440.0}]}
    assert real_data.records_of(meta) == [{"family": "keys", "f0_hz": 440.0}]


def test_a_file_that_is_not_a_soundfont_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # FluidSynth itself would silently render with its default font instead
    monkeypatch.setattr(real_data.shutil, "which", lambda name: "/usr/bin/fluidsynth")
    (tmp_path / "bad.sf2").write_bytes(b"RIFF\x00\x00\x00\x00WAVEfmt ")
    with pytest.raises(UserError, match="not a SoundFont"):
        real_data.find_renderer(tmp_path / "bad.sf2")


def test_three_rendered_notes_load_like_the_synthetic_set(fluidsynth: str, tmp_path: Path) -> None:
    notes = [
        Note(INSTRUMENT["violin"], 69, 100),
        Note(INSTRUMENT["trumpet"], 60, 100),
        Note(INSTRUMENT["acoustic grand piano"], 45, 100),
    ]
    data = real_data.render_dataset(notes, jobs=1)
    path = save_dataset(data, tmp_path / "real.pth")
    real_data.write_records_csv(data["meta"]["records"], tmp_path / "real.csv")

    # rendering is deterministic and independent of how the notes are split between processes
    again = real_data.render_excerpts(notes, jobs=3, fluidsynth=fluidsynth)
    assert np.array_equal(again, data["test_tensors"].numpy())

    module = PreloadedSinusoidDataModule(str(path), batch_size=4, generate_if_missing=False)
    module.setup("test")
    batch = next(iter(module.test_dataloader()))
    assert batch["x"].shape == (3, 4096)  # 3 notes of 4096 samples at 16 kHz
    torch.testing.assert_close(batch["x"].abs().amax(dim=1), torch.full((3,), 0.9))
    expected = torch.tensor([[440.0], [261.6255653], [110.0]])  # A4, C4, A2 (Hz)
    torch.testing.assert_close(batch["f0_hz"], expected)
    assert torch.equal(batch["weights"], torch.zeros(3, 8))
    assert len(module.train_dataset) == len(module.val_dataset) == 3  # one copy per family

    meta = load_dataset(path)["meta"]
    records = real_data.records_of(meta)
    assert [(r["family"], r["program"], r["note"], r["velocity"]) for r in records] == [
        ("strings", 40, 69, 100),
        ("brass", 56, 60, 100),
        ("keys", 0, 45, 100),
    ]
    csv_lines = (tmp_path / "real.csv").read_text().splitlines()
    assert csv_lines[0] == "index,family,program,instrument,note,velocity,f0_hz,rms_dbfs"
    assert csv_lines[1].startswith("0,strings,40,violin,69,100,440.000000,")

    # each excerpt is the sustained note: an independent estimator (librosa's YIN) agrees with
    # the MIDI f0 within 50 cents
    for x, record in zip(batch["x"].numpy().astype(np.float64), records):
        f0 = librosa.yin(
            x, fmin=60, fmax=1000, sr=16000, frame_length=2048, hop_length=256, center=False
        )
        assert abs(1200 * np.log2(np.median(f0) / record["f0_hz"])) < 50

    rows = family_breakdown(batch["f0_hz"].expand(3, 16), records)  # true f0 as the prediction
    assert [(r["family"], r["rpa"], r["rca"]) for r in rows] == [
        ("strings", 1.0, 1.0),
        ("brass", 1.0, 1.0),
        ("keys", 1.0, 1.0),
        ("all", 1.0, 1.0),
    ]
