"""The pitch tool: f0, confidence and harmonic amplitudes of recordings with a trained model.

    sotddsp-pitch song.wav                        # song.f0.csv next to it (the default model)
    sotddsp-pitch a.wav b.flac -e csv,npz,png     # several files, several formats
    sotddsp-pitch recordings/ -r -o results/      # every audio file under a folder
    sotddsp-pitch -m runs/SOT-2048/SOT-2048-1/checkpoints/last.ckpt song.wav --device cuda
    sotddsp-pitch --list-models                   # the shipped models and their provenance
    python estimate.py ...                        # a checkout's thin script: the same command

Positional arguments are audio files (anything libsndfile reads: WAV, FLAC, OGG, MP3, ...) or
folders: a folder gives its files with an audio extension (``AUDIO_EXTENSIONS``), with -r
those of its sub-folders too; files whose names start with "." and the resyntheses this tool
writes (``*.resynthesis.wav``) are skipped there. The model is -m/--model: a shipped name
(``default``; --list-models) or a checkpoint path (train.py's, or the paper authors'). The form
of earlier versions, ``estimate.py CHECKPOINT AUDIO``, still works when the first argument ends
in .ckpt, .pth or .pt and -m is not given (a deprecation note says so); a checkpoint anywhere
else among the paths is an error.

Each file is mixed to mono and goes through ``PitchModel.predict`` (model/pitch.py): resampled
to the model's rate, scaled to peak 0.9, framed in chunks of the training length; frame t is at
t * hop / sample_rate s, the hop being the model's own (256 samples at 16 kHz: 16 ms). Per
file ``NAME.EXT``, next to it or under -o DIR (a folder's files keep their place below DIR):
- csv: ``NAME.f0.csv``, columns ``time,frequency,confidence,amplitude_1..amplitude_K``: s, Hz,
  the pitch distribution's peak probability (in [0, 1]; model/pitch.py says what it means),
  linear amplitudes of the signal scaled to peak 0.9;
- npz: ``NAME.f0.npz``: time, frequency, confidence, amplitudes, activations (T, Q: the pitch
  distribution), bin_frequencies (Q,), sample_rate, hop_length, gain;
- png: ``NAME.f0.png``: the spectrogram with the f0 track (opacity: confidence) and the
  confidence below;
- wav: ``NAME.resynthesis.wav``: the model's harmonic resynthesis (float32 at the model's
  rate, phase-continuous, at the level of the scaled signal).

A file that fails (missing, unreadable, empty) is reported in one line and the others go on;
the exit status is then 2. Bad options, an unknown model or an unavailable device end with one
line and exit 2 before anything is written. A summary line (files, audio duration, real-time
factor) goes to stderr at the end unless -q.
"""

from __future__ import annotations

import argparse
import io
import logging
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from sotddsp.core.atomic_files import atomic_write_bytes, atomic_write_text
from sotddsp.core.command_line import (
    OneLineArgumentParser,
    UserError,
    console_script,
    describe_os_error,
    one_line,
    positive_int,
)
from sotddsp.model.shipped import (
    CheckpointError,
    ConfigError,
    ModelNotFoundError,
    describe_model,
    shipped_models,
)

if TYPE_CHECKING:  # torch and Lightning load only when a model does (--help stays instant)
    from sotddsp.model.pitch import PitchModel, PitchTrack

__all__ = [
    "AUDIO_EXTENSIONS",
    "CHECKPOINT_SUFFIXES",
    "EXPORT_FORMATS",
    "RESYNTHESIS_SUFFIX",
    "AudioInput",
    "cli",
    "csv_text",
    "export_formats",
    "find_inputs",
    "load_audio",
    "main",
    "output_paths",
]

log = logging.getLogger(__name__)

EXPORT_FORMATS = ("csv", "npz", "png", "wav")
# The extensions a folder's audio files have (explicit files are read whatever their name).
AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aif", ".aiff", ".aifc",
                    ".au", ".snd", ".w64", ".rf64", ".caf")
CHECKPOINT_SUFFIXES = (".ckpt", ".pth", ".pt")
RESYNTHESIS_SUFFIX = ".resynthesis.wav"
_OUTPUT_SUFFIXES = {"csv": ".f0.csv", "npz": ".f0.npz", "png": ".f0.png",
                    "wav": RESYNTHESIS_SUFFIX}


@dataclass(frozen=True)
class AudioInput:
    """An audio file to process, and the stem of its outputs (``<stem><suffix>``)."""

    path: Path
    output_stem: Path


def export_formats(text: str) -> tuple[str, ...]:
    """The --export-format value: comma-separated names of ``EXPORT_FORMATS``, in order, once
    each. Raises argparse.ArgumentTypeError (one line) for an empty or unknown name."""
    names = [name.strip().lower() for name in text.split(",")]
    unknown = [name for name in names if name not in EXPORT_FORMATS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"unknown format {unknown[0]!r}: choose from {', '.join(EXPORT_FORMATS)}, "
            "comma-separated (e.g. csv,png)")
    return tuple(dict.fromkeys(names))


def output_paths(stem: Path, formats: Sequence[str]) -> dict[str, Path]:
    """{format: file} of one input's outputs: ``<stem>.f0.csv``, ``.f0.npz``, ``.f0.png``,
    ``.resynthesis.wav``."""
    return {fmt: stem.with_name(stem.name + _OUTPUT_SUFFIXES[fmt]) for fmt in formats}


def _folder_files(folder: Path, recursive: bool) -> list[Path]:
    found = folder.rglob("*") if recursive else folder.iterdir()
    return sorted(
        p for p in found
        if p.is_file() and p.suffix.lower() in AUDIO_EXTENSIONS
        and not p.name.startswith(".") and not p.name.lower().endswith(RESYNTHESIS_SUFFIX)
    )


def find_inputs(
    paths: Sequence[Path], recursive: bool, output_dir: Path | None
) -> tuple[list[AudioInput], list[tuple[Path, str]]]:
    """The audio files that ``paths`` name (files as given, folders as their audio files, each
    file once) with their output stems, and the (path, one-line problem) of those that name
    nothing usable. Outputs go next to each file, or under ``output_dir`` (a folder's files
    keep their place below it). Raises UserError when two inputs would write the same outputs."""
    inputs: dict[Path, AudioInput] = {}
    problems: list[tuple[Path, str]] = []
    for path in paths:
        if path.is_dir():
            files = _folder_files(path, recursive)
            if not files:
                hint = "" if recursive else "; -r includes its sub-folders"
                message = (f"{path}: the folder holds no audio file "
                           f"({', '.join(AUDIO_EXTENSIONS[:4])}, ...){hint}")
                problems.append((path, message))
            for file in files:
                where = output_dir / file.parent.relative_to(path) if output_dir else file.parent
                inputs.setdefault(file.resolve(), AudioInput(file, where / file.stem))
        elif path.is_file():
            where = output_dir if output_dir is not None else path.parent
            inputs.setdefault(path.resolve(), AudioInput(path, where / path.stem))
        else:
            problems.append((path, f"{path}: audio file not found"))
    claimed: dict[Path, Path] = {}
    for item in inputs.values():
        other = claimed.setdefault(item.output_stem.resolve(), item.path)
        if other != item.path:
            raise UserError(
                f"{other} and {item.path} would both write {item.output_stem}.f0.*: rename one, "
                "or process them in separate runs with different --output-dir")
    return list(inputs.values()), problems


def load_audio(path: str | Path) -> tuple[np.ndarray, int]:
    """Read an audio file and mix it to mono: (float32 (N,), its sample rate in Hz).

    Raises UserError (one line) for a missing, unreadable, empty or non-finite file.
    """
    import soundfile as sf

    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: audio file not found")
    try:
        audio, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.SoundFileError, RuntimeError, TypeError) as err:
        raise UserError(f"{path}: not a readable audio file ({one_line(err)})") from None
    if audio.shape[0] == 0:
        raise UserError(f"{path}: the file holds no samples")
    mono = audio.mean(axis=1)
    if not np.isfinite(mono).all():
        raise UserError(f"{path}: the audio holds NaN or inf values")
    return mono, int(rate)


def csv_text(track: PitchTrack) -> str:
    """A ``PitchTrack`` as CSV: ``time,frequency,confidence,amplitude_1..amplitude_K``, one row
    per frame; float32 columns with 9 significant digits (they read back exactly)."""
    n_harmonics = track.amplitudes.shape[1]
    header = ",".join(["time", "frequency", "confidence",
                       *(f"amplitude_{k}" for k in range(1, n_harmonics + 1))])
    table = np.column_stack([track.time, track.frequency, track.confidence, track.amplitudes])
    buffer = io.StringIO()
    np.savetxt(buffer, table, delimiter=",", fmt="%.9g", header=header, comments="")
    return buffer.getvalue()


def _npz_bytes(track: PitchTrack) -> bytes:
    buffer = io.BytesIO()
    np.savez_compressed(
        buffer, time=track.time, frequency=track.frequency, confidence=track.confidence,
        amplitudes=track.amplitudes, activations=track.activations,
        bin_frequencies=track.bin_frequencies, sample_rate=track.sample_rate,
        hop_length=track.hop_length, gain=track.gain)
    return buffer.getvalue()


def _wav_bytes(audio: np.ndarray, rate: int) -> bytes:
    import soundfile as sf

    buffer = io.BytesIO()
    sf.write(buffer, audio, rate, format="WAV", subtype="FLOAT")
    return buffer.getvalue()


def _models_epilog() -> str:
    lines = [describe_model(name) for name in shipped_models()] or ["none in this install"]
    return "shipped models (-m NAME):\n" + "\n".join(f"  {line}" for line in lines)


def _parser() -> argparse.ArgumentParser:
    p = OneLineArgumentParser(
        description="\n\n".join(__doc__.split("\n\n")[:2]),
        epilog=_models_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("paths", type=Path, nargs="*", metavar="PATH",
                   help="audio files (WAV, FLAC, OGG, MP3, ...) or folders of them")
    p.add_argument("-m", "--model", default=None, metavar="NAME_OR_PATH",
                   help="a shipped model's name (default: default) or a checkpoint path")
    p.add_argument("-e", "--export-format", type=export_formats, default=("csv",),
                   metavar="FORMATS",
                   help=f"comma-separated, from {', '.join(EXPORT_FORMATS)} (wav: the harmonic "
                        "resynthesis); default csv")
    p.add_argument("-o", "--output-dir", type=Path, default=None, metavar="DIR",
                   help="write the outputs under DIR (default: next to each audio file)")
    p.add_argument("--out", dest="output_dir", type=Path, help=argparse.SUPPRESS)  # deprecated
    p.add_argument("-r", "--recursive", action="store_true",
                   help="folders: include the audio files of their sub-folders")
    p.add_argument("--device", default="cpu",
                   help="torch device: cpu (default), cuda, cuda:1, mps, auto")
    p.add_argument("--batch-chunks", type=positive_int, default=16, metavar="N",
                   help="chunks of the training length per encoder call (default 16)")
    p.add_argument("--chunk-samples", type=positive_int, default=None, metavar="N",
                   help="samples per chunk (default: the model's training length)")
    p.add_argument("--list-models", action="store_true",
                   help="print the shipped models with their provenance and exit")
    p.add_argument("-q", "--quiet", action="store_true",
                   help="no progress bar and no summary line")
    return p


def _split_model(model: str | None, paths: list[Path]) -> tuple[str, list[Path]]:
    """The model and the audio paths; the earlier ``CHECKPOINT AUDIO`` form when -m is absent
    and the first path ends in a checkpoint suffix."""
    if model is None and paths and paths[0].suffix.lower() in CHECKPOINT_SUFFIXES:
        log.warning("deprecated: `estimate.py CHECKPOINT AUDIO`; write `-m %s AUDIO ...`",
                    paths[0])
        model, paths = str(paths[0]), paths[1:]
    for path in paths:
        if path.suffix.lower() in CHECKPOINT_SUFFIXES:
            raise UserError(f"{path}: a checkpoint among the audio paths; choose the model with "
                            "-m/--model, positional arguments are audio files or folders")
    return (model if model is not None else "default"), paths


def _load(model: str, device: str) -> PitchModel:
    from sotddsp.model import loader

    try:
        target = loader.resolve_device(device)
    except ValueError as err:
        raise UserError(f"--device: {one_line(err)}") from None
    try:
        return loader.load_model(model, target)
    except ModelNotFoundError as err:
        raise UserError(one_line(err)) from None
    except (CheckpointError, ConfigError) as err:
        raise UserError(f"{model}: not a usable train.py checkpoint ({one_line(err)})") from None
    except Exception as err:  # noqa: BLE001  (foreign or corrupt files fail in many ways)
        raise UserError(f"{model}: not a usable train.py checkpoint ({type(err).__name__}: "
                        f"{one_line(err)})") from None


def _process(model: PitchModel, item: AudioInput, formats: Sequence[str],
             args: argparse.Namespace) -> dict[str, Any]:
    """One file through the model; its outputs written atomically. Returns {"audio",
    "outputs": {format: path}, "n_frames", "duration_s"}. Raises UserError (one line)."""
    audio, rate = load_audio(item.path)
    track = model.predict(audio, rate, activations="npz" in formats,
                          batch_chunks=args.batch_chunks, chunk_samples=args.chunk_samples)
    outputs = output_paths(item.output_stem, formats)
    for fmt, path in outputs.items():
        if fmt == "csv":
            atomic_write_text(path, csv_text(track))
        elif fmt == "npz":
            atomic_write_bytes(path, _npz_bytes(track))
        elif fmt == "png":
            from sotddsp.model.plotting import figure_png, pitch_track_figure

            figure = pitch_track_figure(audio, rate, track.time, track.frequency,
                                        track.confidence, title=f"{item.path.name} ({model.name})")
            atomic_write_bytes(path, figure_png(figure, dpi=100))
        else:
            atomic_write_bytes(path, _wav_bytes(model.resynthesize(track), model.sample_rate))
    return {"audio": item.path, "outputs": outputs, "n_frames": int(track.time.shape[0]),
            "duration_s": audio.shape[0] / rate}


def _failure(error: Exception) -> str:
    if isinstance(error, OSError) and error.errno is not None:
        return describe_os_error(error) or one_line(error)
    return one_line(error)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Command line. Returns {"files": [per file: {"audio", "outputs": {format: path},
    "n_frames", "duration_s"}], "model": its name, "device", "seconds": processing time,
    "real_time_factor": seconds / total duration}. Raises UserError (one line) when an option,
    the model or the device is bad, and at the end when any file failed."""
    args = _parser().parse_args(argv)
    if args.list_models:
        print(_models_epilog())
        return {"files": []}
    model_name, paths = _split_model(args.model, list(args.paths))
    if not paths:
        raise UserError("no audio file given: sotddsp-pitch AUDIO_OR_FOLDER ... (--help)")
    inputs, failed = find_inputs(paths, args.recursive, args.output_dir)
    if not inputs:
        raise UserError(failed[0][1] if len(failed) == 1 else
                        f"none of the {len(failed)} paths names an audio file: {failed[0][1]}")
    model = _load(model_name, args.device)
    if args.chunk_samples is not None and args.chunk_samples % model.hop_length:
        raise UserError(f"--chunk-samples must be a multiple of the model's hop "
                        f"({model.hop_length}), got {args.chunk_samples}")
    from tqdm import tqdm

    program = Path(sys.argv[0]).name
    for _, problem in failed:
        tqdm.write(f"{program}: error: {problem}", file=sys.stderr)
    n_inputs = len(inputs) + len(failed)
    done: list[dict[str, Any]] = []
    start = time.perf_counter()
    for item in tqdm(inputs, unit="file", file=sys.stderr, disable=True if args.quiet else None):
        try:
            done.append(_process(model, item, args.export_format, args))
        except (UserError, ValueError, OSError) as error:
            if n_inputs == 1:
                raise UserError(_failure(error)) from None
            failed.append((item.path, _failure(error)))
            tqdm.write(f"{program}: error: {_failure(error)}", file=sys.stderr)
    seconds = time.perf_counter() - start
    if failed:
        raise UserError(f"{len(failed)} of {n_inputs} inputs failed (above); the outputs of the "
                        f"other {len(done)} are written")
    duration = sum(record["duration_s"] for record in done)
    rtf = seconds / duration if duration > 0 else float("nan")
    if not args.quiet:
        print(f"{program}: {len(done)} file(s), {duration:.1f} s of audio in {seconds:.2f} s "
              f"(real-time factor {rtf:.3f}), model {model_name} on {model.device}",
              file=sys.stderr)
    return {"files": done, "model": model_name, "device": str(model.device),
            "seconds": seconds, "real_time_factor": rtf}


# The console script (and the thin script of a checkout).
cli = console_script(main)


if __name__ == "__main__":
    cli()
