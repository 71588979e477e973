"""A real-instrument test set: isolated notes of General MIDI instruments rendered by FluidSynth.

Nothing is downloaded: the notes are written as a MIDI file (mido) and rendered by the Debian
packages ``fluidsynth`` and ``fluid-soundfont-gm`` (the FluidR3 GM SoundFont, sampled
recordings of real instruments); ``python real_data.py`` / ``sotddsp-real-data``
(``sotddsp.apps.real_data``) installs them with ``scripts/install_fluidsynth.sh`` when missing.

    python real_data.py            # -> data/fluidr3_notes_sr16000_4096.pth and .csv

What is rendered: for each instrument of each family (``INSTRUMENTS``), MIDI notes every
``note_step`` semitones over its playable range (as far as FluidR3 sounds it), clipped to the
paper's f0 range (40-1950 Hz, i.e. MIDI 28-94), at each velocity. Each note sounds alone (reverb and chorus
off, an "all sound off" before each note). The excerpt is ``n_samples`` samples starting
``offset_ms`` (100 ms) after the note starts sounding (its first non-zero sample, a few ms
after the scheduled note-on), past the attack. Excerpts quieter than ``min_rms_db`` dBFS
(RMS, at gain 1) are dropped (none at the defaults; a guard for other fonts and settings).

True f0: the MIDI note in equal temperament, f0 = 440 * 2 ** ((note - 69) / 12) Hz.

File format: the synthetic set's (``files.save_dataset``): ``test_tensors`` holds every
excerpt (float32 [N, n_samples], not normalized; the loader scales each to peak 0.9),
``test_thetas["frequency"]`` [N, 1] Hz, ``test_thetas["weights"]`` [N, 8] zeros (a real
instrument's harmonic amplitudes are unknown). ``train`` and ``val`` hold copies of the first
excerpt of each family, only so that ``PreloadedSinusoidDataModule`` can load the file: this
set is for testing. ``meta["records"][i]`` describes test example i (family, program,
instrument, note, velocity, f0_hz, rms_dbfs); the same table is written beside the file as CSV.
"""

from __future__ import annotations

import csv
import io
import logging
import math
import shutil
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sotddsp.core.atomic_files import atomic_write_text
from sotddsp.core.checks import check_int
from sotddsp.core.command_line import UserError, optional_import

__all__ = [
    "FAMILIES",
    "GENERATOR",
    "INSTRUMENTS",
    "Instrument",
    "Note",
    "default_output",
    "find_renderer",
    "midi_note_to_hz",
    "missing_parts",
    "plan_notes",
    "records_of",
    "render_dataset",
    "render_excerpts",
    "write_midi",
    "write_records_csv",
]

log = logging.getLogger("real_data")

GENERATOR = "real_data.render_dataset"
SOUNDFONT = Path("/usr/share/sounds/sf2/FluidR3_GM.sf2")
MIDI_MIN, MIDI_MAX = 28, 94  # 41.2 and 1864.7 Hz: the notes inside the paper's 40-1950 Hz
N_WEIGHTS = 8  # harmonic slots of the synthetic set's ``weights``
RECORD_FIELDS = ("family", "program", "instrument", "note", "velocity", "f0_hz", "rms_dbfs")

# MIDI timing: 500 ticks per beat at 500,000 us per beat, so one tick is one millisecond.
_TICKS_PER_BEAT = 500
_TEMPO_US = 500_000
_LEAD_MS = 50  # program change -> note-on
_TAIL_MS = 50  # note-off -> "all sound off" of the next slot
_ALL_SOUND_OFF, _RESET_CONTROLLERS = 120, 121


@dataclass(frozen=True)
class Instrument:
    """A General MIDI program (0-based) and the MIDI notes it plays, ``low``..``high``."""

    family: str
    program: int
    name: str
    low: int
    high: int


INSTRUMENTS: tuple[Instrument, ...] = (
    Instrument("strings", 40, "violin", 55, 93),
    Instrument("strings", 42, "cello", 36, 76),
    Instrument("strings", 43, "contrabass", 28, 55),
    Instrument("brass", 56, "trumpet", 54, 82),
    Instrument("brass", 57, "trombone", 40, 72),
    Instrument("brass", 58, "tuba", 28, 58),
    Instrument("brass", 60, "french horn", 34, 77),
    Instrument("reeds", 71, "clarinet", 50, 89),
    Instrument("reeds", 68, "oboe", 58, 91),
    Instrument("reeds", 65, "alto sax", 49, 81),
    Instrument("reeds", 70, "bassoon", 34, 72),
    Instrument("flutes", 73, "flute", 60, 94),
    Instrument("flutes", 74, "recorder", 72, 94),
    Instrument("flutes", 72, "piccolo", 74, 94),
    Instrument("keys", 0, "acoustic grand piano", 28, 94),
    Instrument("keys", 4, "electric piano", 28, 94),
    Instrument("keys", 19, "church organ", 36, 94),
    Instrument("plucked", 24, "nylon guitar", 40, 83),
    Instrument("plucked", 46, "orchestral harp", 28, 81),
    Instrument("voice", 52, "choir aahs", 40, 81),
    Instrument("voice", 53, "voice oohs", 40, 81),
    Instrument("voice", 54, "synth voice", 40, 84),
)
FAMILIES: tuple[str, ...] = tuple(dict.fromkeys(i.family for i in INSTRUMENTS))


def midi_note_to_hz(note: float) -> float:
    """Equal-temperament frequency of MIDI note ``note``: 440 * 2 ** ((note - 69) / 12) Hz."""
    return 440.0 * 2.0 ** ((note - 69) / 12.0)


@dataclass(frozen=True)
class Note:
    """One note to render: instrument, MIDI note number and velocity (1..127)."""

    instrument: Instrument
    note: int
    velocity: int

    @property
    def f0_hz(self) -> float:
        return midi_note_to_hz(self.note)


def plan_notes(
    families: Sequence[str] = FAMILIES,
    velocities: Sequence[int] = (40, 80, 120),
    note_step: int = 5,
) -> list[Note]:
    """Notes to render, in order: family, instrument, note, velocity.

    For each instrument of each family in ``families``: MIDI notes low, low + note_step, ...
    up to its ``high``, clipped to MIDI_MIN..MIDI_MAX (the paper's f0 range), each at every
    velocity.
    """
    unknown = [f for f in families if f not in FAMILIES]
    if unknown or not families:
        raise ValueError(
            f"families must be a non-empty subset of {list(FAMILIES)}, got {list(families)}"
        )
    if not velocities or any(isinstance(v, bool) or not 1 <= v <= 127 for v in velocities):
        raise ValueError(f"velocities must be integers in 1..127, got {list(velocities)}")
    check_int(note_step, "note_step")
    notes = []
    for family in dict.fromkeys(families):
        for instrument in (i for i in INSTRUMENTS if i.family == family):
            low, high = max(instrument.low, MIDI_MIN), min(instrument.high, MIDI_MAX)
            for note in range(low, high + 1, note_step):
                notes.extend(Note(instrument, note, int(v)) for v in velocities)
    return notes


def _slot_ms(offset_ms: float, excerpt_ms: float) -> tuple[int, int]:
    """(hold, slot) in ms: the note is held past the excerpt's end, then released."""
    hold = math.ceil(offset_ms + excerpt_ms) + 50
    return hold, _LEAD_MS + hold + _TAIL_MS


def write_midi(
    notes: Sequence[Note], path: str | Path, offset_ms: float, excerpt_ms: float
) -> list[int]:
    """Write ``notes`` one by one to a type-0 MIDI file (channel 0); return note-on times (ms).

    Slot i starts at i * slot ms with "all sound off" and "reset controllers" (so nothing of
    the previous note is heard), then a program change; the note starts ``_LEAD_MS`` later
    and is held for ``offset_ms + excerpt_ms + 50`` ms.
    """
    mido = optional_import("mido", "writing the notes' MIDI file")
    hold, slot = _slot_ms(offset_ms, excerpt_ms)
    events: list[tuple[int, int, Any]] = []
    onsets = []
    for i, n in enumerate(notes):
        start, onset = i * slot, i * slot + _LEAD_MS
        events += [
            (start, 0, mido.Message("control_change", control=_ALL_SOUND_OFF, value=0)),
            (start, 1, mido.Message("control_change", control=_RESET_CONTROLLERS, value=0)),
            (start, 2, mido.Message("program_change", program=n.instrument.program)),
            (onset, 3, mido.Message("note_on", note=n.note, velocity=n.velocity)),
            (onset + hold, 4, mido.Message("note_off", note=n.note, velocity=0)),
        ]
        onsets.append(onset)
    events.append(
        (len(notes) * slot, 0, mido.Message("control_change", control=_ALL_SOUND_OFF, value=0))
    )
    track = mido.MidiTrack([mido.MetaMessage("set_tempo", tempo=_TEMPO_US, time=0)])
    now = 0
    for when, _, message in sorted(events, key=lambda e: (e[0], e[1])):
        track.append(message.copy(time=when - now))
        now = when
    track.append(mido.MetaMessage("end_of_track", time=_TAIL_MS))
    midi = mido.MidiFile(type=0, ticks_per_beat=_TICKS_PER_BEAT)
    midi.tracks.append(track)
    midi.save(str(path))
    return onsets


def missing_parts(soundfont: str | Path = SOUNDFONT) -> list[str]:
    """What the renderer lacks: "fluidsynth" when the program is not on PATH, and ``soundfont``
    when the file does not exist (an empty list when both are there)."""
    missing = [] if shutil.which("fluidsynth") else ["fluidsynth"]
    return missing + ([] if Path(soundfont).is_file() else [str(soundfont)])


def find_renderer(soundfont: str | Path = SOUNDFONT) -> str:
    """Path of the ``fluidsynth`` program, after checking that ``soundfont`` is a SoundFont.

    Installs nothing (the command, ``sotddsp.apps.real_data``, may). Raises UserError (one line,
    with the apt-get command or --soundfont) when the program or the file is missing, or when the
    file has no RIFF 'sfbk' header.
    """
    soundfont = Path(soundfont)
    missing = missing_parts(soundfont)
    if missing:
        hint = (
            "pass --soundfont FILE.sf2"
            if "fluidsynth" not in missing
            else "install it with `sudo apt-get install fluidsynth fluid-soundfont-gm`"
        )
        raise UserError(f"{' and '.join(missing)} not found: {hint}")
    with open(soundfont, "rb") as handle:
        header = handle.read(12)
    if header[:4] != b"RIFF" or header[8:12] != b"sfbk":
        raise UserError(f"{soundfont} is not a SoundFont (no RIFF 'sfbk' header): pass a .sf2 file")
    return str(shutil.which("fluidsynth"))


def render_midi(
    fluidsynth: str, soundfont: Path, midi: Path, wav: Path, sample_rate: int
) -> np.ndarray:
    """Render ``midi`` to mono float32 (n,) at ``sample_rate``: gain 1, no reverb or chorus."""
    import soundfile as sf

    # an empty default-soundfont stops FluidSynth from silently falling back to another font
    command = [
        fluidsynth,
        "-ni",
        "-q",
        "-o",
        "synth.default-soundfont=",
        "-R",
        "0",
        "-C",
        "0",
        "-g",
        "1.0",
        "-O",
        "float",
        "-T",
        "wav",
        "-r",
        str(sample_rate),
        "-F",
        str(wav),
        str(soundfont),
        str(midi),
    ]
    result = subprocess.run(command, check=False, capture_output=True, text=True)
    if result.returncode != 0 or not wav.is_file():
        reason = (result.stderr.strip().splitlines() or [f"exit status {result.returncode}"])[-1]
        raise UserError(f"fluidsynth could not render with {soundfont}: {reason}")
    audio, rate = sf.read(str(wav), dtype="float32", always_2d=True)
    if rate != sample_rate:
        raise UserError(
            f"fluidsynth wrote {rate} Hz instead of {sample_rate} Hz; use another --sample-rate"
        )
    return audio.mean(axis=1)


def _sounding_from(audio: np.ndarray, onset_ms: int, sample_rate: int) -> int:
    """First non-zero sample from 20 ms before to 100 ms after a note-on (the voice's start;
    the slot is silent before it), or the note-on's sample if the note stays silent."""
    lo, hi = (round(t * sample_rate / 1000.0) for t in (onset_ms - 20, onset_ms + 100))
    sounding = np.flatnonzero(audio[lo:hi])
    return lo + int(sounding[0]) if sounding.size else round(onset_ms * sample_rate / 1000.0)


def render_excerpts(
    notes: Sequence[Note],
    soundfont: str | Path = SOUNDFONT,
    sample_rate: int = 16000,
    n_samples: int = 4096,
    offset_ms: float = 100.0,
    jobs: int = 2,
    fluidsynth: str = "fluidsynth",
) -> np.ndarray:
    """Render each note alone and cut its excerpt: float32 (len(notes), n_samples), unnormalized.

    Excerpt i starts ``offset_ms`` after note i starts sounding (its first non-zero sample:
    FluidSynth starts voices on 64-sample block boundaries, so this is exact where the
    scheduled note-on is not) and holds ``n_samples`` samples. The notes are split into
    ``jobs`` consecutive parts rendered by concurrent FluidSynth processes; each note sounds
    alone, so the result does not depend on ``jobs``.
    """
    check_int(jobs, "jobs")
    if not notes:
        return np.zeros((0, n_samples), dtype=np.float32)
    excerpt_ms = 1000.0 * n_samples / sample_rate
    parts = [list(p) for p in np.array_split(np.arange(len(notes)), min(jobs, len(notes)))]
    out = np.zeros((len(notes), n_samples), dtype=np.float32)
    with tempfile.TemporaryDirectory(prefix="real_data_") as tmp:

        def render_part(k: int) -> None:
            midi, wav = Path(tmp) / f"part{k}.mid", Path(tmp) / f"part{k}.wav"
            onsets = write_midi([notes[i] for i in parts[k]], midi, offset_ms, excerpt_ms)
            audio = render_midi(fluidsynth, Path(soundfont), midi, wav, sample_rate)
            for i, onset in zip(parts[k], onsets):
                start = _sounding_from(audio, onset, sample_rate) + round(
                    offset_ms * sample_rate / 1000.0
                )
                excerpt = audio[start : start + n_samples]
                out[i, : excerpt.shape[0]] = (
                    excerpt  # a short rendering leaves zeros, dropped as silent
                )

        with ThreadPoolExecutor(max_workers=len(parts)) as pool:
            list(pool.map(render_part, range(len(parts))))
    return out


def _rms_dbfs(x: np.ndarray) -> np.ndarray:
    """RMS level in dBFS of each row of x (N, n), -inf for silence. Returns float64 (N,)."""
    with np.errstate(divide="ignore"):
        return 20.0 * np.log10(np.sqrt(np.mean(np.square(x, dtype=np.float64), axis=1)))


def _fluidsynth_version(fluidsynth: str) -> str:
    result = subprocess.run([fluidsynth, "--version"], check=False, capture_output=True, text=True)
    return (result.stdout.strip().splitlines() or ["unknown"])[0]


def render_dataset(
    notes: Sequence[Note],
    sample_rate: int = 16000,
    n_samples: int = 4096,
    offset_ms: float = 100.0,
    min_rms_db: float = -60.0,
    soundfont: str | Path = SOUNDFONT,
    jobs: int = 2,
) -> dict[str, Any]:
    """Render ``notes`` (e.g. from ``plan_notes``) and return them in the data set format.

    Each note's excerpt is cut as in ``render_excerpts``; those below ``min_rms_db`` dBFS are
    dropped.

    Returns {"train_tensors", "val_tensors", "test_tensors": float32 [n, n_samples],
    "*_thetas": {"frequency": float32 [n, 1] Hz (MIDI note, A4 = 440 Hz), "weights": float32
    [n, 8] zeros}, "meta": dict with "records" (one dict per test example, RECORD_FIELDS),
    the settings, and "train_test_index" / "val_test_index" (the test examples copied there)}.
    Raises UserError when FluidSynth or the SoundFont is missing (``find_renderer``; the command
    installs them first) or every excerpt is silent.
    """
    if not 8000 <= sample_rate <= 96000:
        raise ValueError(
            f"sample_rate must be within 8000..96000 Hz (FluidSynth's range), got {sample_rate}"
        )
    check_int(n_samples, "n_samples")
    if not offset_ms >= 0:
        raise ValueError(f"offset_ms must be >= 0 (ms after the note-on), got {offset_ms!r}")
    if not notes:
        raise ValueError("notes must hold at least one Note; see plan_notes")
    fluidsynth = find_renderer(soundfont)
    excerpts = render_excerpts(
        notes, soundfont, sample_rate, n_samples, offset_ms, jobs, fluidsynth
    )
    levels = _rms_dbfs(excerpts)
    keep = np.flatnonzero(levels >= min_rms_db)
    if keep.size == 0:
        raise UserError(f"every excerpt is below {min_rms_db} dBFS: check --soundfont {soundfont}")
    if keep.size < len(notes):
        log.info(
            "dropped %d of %d excerpts below %g dBFS",
            len(notes) - keep.size,
            len(notes),
            min_rms_db,
        )
    kept = [notes[i] for i in keep]
    records = [
        {
            "family": n.instrument.family,
            "program": n.instrument.program,
            "instrument": n.instrument.name,
            "note": n.note,
            "velocity": n.velocity,
            "f0_hz": n.f0_hz,
            "rms_dbfs": float(levels[i]),
        }
        for n, i in zip(kept, keep)
    ]
    test_x = torch.from_numpy(excerpts[keep])
    test_f0 = torch.tensor([[n.f0_hz] for n in kept], dtype=torch.float32)
    first: dict[str, int] = {}
    for i, record in enumerate(records):
        first.setdefault(record["family"], i)
    first_of_family = list(first.values())
    meta: dict[str, Any] = {
        "format_version": 1,
        "generator": GENERATOR,
        "sample_rate": sample_rate,
        "n_samples": n_samples,
        "n_examples": len(records),
        "soundfont": str(soundfont),
        "fluidsynth": _fluidsynth_version(fluidsynth),
        "families": list(dict.fromkeys(n.instrument.family for n in notes)),
        "offset_ms": float(offset_ms),
        "min_rms_db": float(min_rms_db),
        "n_dropped_silent": len(notes) - len(records),
        "f0_convention": "MIDI note, equal temperament, A4 = 440 Hz: 440 * 2 ** ((note - 69) / 12)",
        "weights": "zeros: the harmonic amplitudes of real instruments are unknown",
        "splits": "test holds every example; train and val hold copies of the first test example "
        "of each family (test indices in train_test_index, val_test_index), for loaders only",
        "train_test_index": first_of_family,
        "val_test_index": first_of_family,
        "records": records,
    }
    data: dict[str, Any] = {
        "meta": meta,
        "test_tensors": test_x,
        "test_thetas": {"frequency": test_f0, "weights": torch.zeros(len(records), N_WEIGHTS)},
    }
    for split in ("train", "val"):
        index = torch.tensor(first_of_family)
        data[f"{split}_tensors"] = test_x[index].clone()
        data[f"{split}_thetas"] = {
            "frequency": test_f0[index].clone(),
            "weights": torch.zeros(len(first_of_family), N_WEIGHTS),
        }
    return data


def write_records_csv(records: Sequence[Mapping[str, Any]], path: str | Path) -> Path:
    """Write one row per test example (``index`` then RECORD_FIELDS) to ``path`` atomically."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(("index", *RECORD_FIELDS))
    for i, record in enumerate(records):
        row = [
            f"{record[k]:.6f}" if isinstance(record[k], float) else record[k] for k in RECORD_FIELDS
        ]
        writer.writerow((i, *row))
    atomic_write_text(path, buffer.getvalue())
    return Path(path)


def records_of(meta: Mapping[str, Any]) -> list[dict[str, Any]] | None:
    """The per-example records in a data set's ``meta`` if render_dataset wrote it, else None."""
    if meta.get("generator") != GENERATOR:
        return None
    return [dict(r) for r in meta["records"]]


def default_output(sample_rate: int = 16000, n_samples: int = 4096) -> Path:
    """``data/fluidr3_notes_sr<rate>_<n_samples>.pth``."""
    return Path("data") / f"fluidr3_notes_sr{sample_rate}_{n_samples}.pth"
