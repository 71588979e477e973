"""A real-instrument example for the README: a FluidR3 GM phrase through estimate.py.

    python scripts/real_example.py [--checkpoint CKPT] [--program 73] [--out figures/real_example.png]

Renders a legato phrase (C5 D5 E5 G5 E5 D5 C5, 0.4 s a note) of one General MIDI program
(default 73, flute; 40 is violin) with FluidSynth, as real_data.py renders its notes, and runs
``estimate.py`` on it (the default model, ``sotddsp/weights/default.ckpt``, unless
``--checkpoint``): the f0 track over the spectrogram, copied to ``--out``, and the f0 CSV and
resynthesis beside it under ``outputs/real_example/``. Prints each note's median estimated f0 against its equal-tempered f0.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

import numpy as np

from sotddsp.apps import estimate
from sotddsp.apps.real_data import ensure_renderer
from sotddsp.core.command_line import run_cli_main
from sotddsp.data.real import SOUNDFONT, midi_note_to_hz, render_midi

PHRASE = (72, 74, 76, 79, 76, 74, 72)
NOTE_MS = 400


def write_phrase(path: Path, program: int) -> list[tuple[float, float, int]]:
    """A type-0 MIDI file of PHRASE; returns (start s, end s, MIDI note) per note."""
    import mido

    ticks_per_beat, tempo = 480, 500_000  # 1 tick = 500000 / 480 us
    ticks = lambda ms: round(ms * 1000 / (tempo / ticks_per_beat))
    track = mido.MidiTrack([mido.MetaMessage("set_tempo", tempo=tempo, time=0),
                            mido.Message("program_change", program=program, time=0)])
    spans, lead = [], 200
    track.append(mido.Message("note_on", note=PHRASE[0], velocity=90, time=ticks(lead)))
    for i, note in enumerate(PHRASE):
        start = (lead + i * NOTE_MS) / 1000
        spans.append((start, start + NOTE_MS / 1000, note))
        track.append(mido.Message("note_off", note=note, velocity=0, time=ticks(NOTE_MS)))
        if i + 1 < len(PHRASE):
            track.append(mido.Message("note_on", note=PHRASE[i + 1], velocity=90, time=0))
    track.append(mido.MetaMessage("end_of_track", time=ticks(500)))
    midi = mido.MidiFile(type=0, ticks_per_beat=ticks_per_beat)
    midi.tracks.append(track)
    midi.save(str(path))
    return spans


def note_errors(
    time_s: np.ndarray, f0_hz: np.ndarray, spans: list[tuple[float, float, int]]
) -> list[tuple[int, float, float, float]]:
    """Per note of ``spans`` (start s, end s, MIDI note): (MIDI note, its equal-tempered f0 in Hz,
    the median of ``f0_hz`` over the frames of ``time_s`` (s) at least 50 ms inside the note, the
    error 1200 log2(median / true) in cents)."""
    rows = []
    for start, end, note in spans:
        inside = (time_s >= start + 0.05) & (time_s < end - 0.05)
        if not inside.any():
            raise ValueError(f"no frame lies inside MIDI note {note} ({start:.3f}-{end:.3f} s)")
        f0 = float(np.median(f0_hz[inside]))
        true = midi_note_to_hz(note)
        rows.append((note, true, f0, 1200 * float(np.log2(f0 / true))))
    return rows


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, default=None)
    parser.add_argument("--program", type=int, default=73, help="General MIDI program (0-127)")
    parser.add_argument("--out", type=Path, default=Path("figures") / "real_example.png")
    args = parser.parse_args(argv)
    fluidsynth = ensure_renderer(SOUNDFONT)
    outputs = Path("outputs") / "real_example"
    with tempfile.TemporaryDirectory() as tmp:
        spans = write_phrase(Path(tmp) / "phrase.mid", args.program)
        audio = render_midi(fluidsynth, SOUNDFONT, Path(tmp) / "phrase.mid",
                            Path(tmp) / "render.wav", 16000)
        audio = audio[: int((spans[-1][1] + 0.3) * 16000)]  # the phrase and its release
        import soundfile as sf

        wav = outputs / "phrase.wav"
        wav.parent.mkdir(parents=True, exist_ok=True)
        sf.write(wav, audio, 16000, subtype="FLOAT")
    model_args = [] if args.checkpoint is None else ["-m", str(args.checkpoint)]
    result = estimate.main([*model_args, str(wav), "-o", str(outputs), "-e", "csv,png,wav"])
    written = result["files"][0]["outputs"]
    track = np.loadtxt(written["csv"], delimiter=",", skiprows=1)  # time, frequency, ...
    for note, true, f0, cents in note_errors(track[:, 0], track[:, 1], spans):
        print(f"MIDI {note}: {true:7.1f} Hz true, {f0:7.1f} Hz estimated ({cents:+.0f} cents)")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(written["png"], args.out)
    print(f"wrote {args.out}")
    return args.out


if __name__ == "__main__":
    run_cli_main(main)
