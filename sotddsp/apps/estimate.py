"""A trained harmonic autoencoder as a pitch and harmonic estimator for any recording.

    python estimate.py AUDIO.wav [--out DIR]                  # the default model (package data)
    python estimate.py CHECKPOINT.ckpt AUDIO.wav [--out DIR]  # any train.py checkpoint
    sotddsp-pitch AUDIO.wav                                   # installed: the same command

Reads WAV, FLAC or OGG (anything libsndfile reads), mixes to mono, resamples to the model's
rate (``scipy.signal.resample_poly`` with the exact rational ratio) and scales the whole file
to peak 0.9, as each training example was. The signal is cut into chunks of the model's
training length (``model.synth.n_samples``, 4096 samples), the tail zero-padded; each chunk is
framed exactly as in training (T = chunk // hop frames, the CQT zero-padded at the chunk's
edges), so every frame sees the context it had in training. Frame t of the file is centred
at sample t * hop: time t * hop / sample_rate seconds.

Writes to DIR (default ``outputs/estimate/<audio name>``):
- ``<name>_f0.csv``: time_s, f0_hz, amp_1..amp_K per frame (amplitudes of the scaled signal);
- ``<name>_spectrogram.png``: spectrogram with the f0 track over it;
- ``<name>_resynthesis.wav``: the model's harmonic resynthesis at its rate (32-bit float),
  phase-continuous over the whole file.
Prints the real-time factor (processing time / audio duration). Bad input -> one line, exit 2.
"""

from __future__ import annotations

import argparse
import io
import math
import sys
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from sotddsp.core.atomic_files import atomic_write_bytes, atomic_write_text
from sotddsp.core.command_line import OneLineArgumentParser, UserError, console_script, one_line
from sotddsp.data.datamodule import DEFAULT_PEAK
from sotddsp.dsp.synth import remove_above_nyquist, upsample_linear, upsample_with_windows
from sotddsp.model.autoencoder import HarmonicAutoencoder
from sotddsp.model.checkpoints import (
    CheckpointError,
    ConfigError,
    default_checkpoint,
    load_checkpoint,
)

__all__ = [
    "cli",
    "estimate_track",
    "load_audio",
    "load_model",
    "main",
    "peak_normalize",
    "read_audio",
    "resample",
    "resynthesize",
]

PEAK = DEFAULT_PEAK  # the training data's per-example peak (PreloadedSinusoidDataModule)


def load_model(checkpoint: str | Path | None = None, device: str = "cpu") -> HarmonicAutoencoder:
    """The trained model of a checkpoint (None: the default model, shipped in the package), in
    eval mode on ``device``, through ``checkpoints.load_checkpoint``.

    Raises UserError (one line) for a missing file or anything that is not a loadable checkpoint.
    """
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            path = default_checkpoint() if checkpoint is None else Path(checkpoint)
    except CheckpointError as err:
        raise UserError(f"{one_line(err)}") from None
    for warning in caught:
        print(f"note: {warning.message}", file=sys.stderr)
    if not path.is_file():
        raise UserError(f"{path}: checkpoint not found")
    try:
        model = load_checkpoint(path, device=device)
    except (CheckpointError, ConfigError) as err:
        raise UserError(f"{path}: not a usable train.py checkpoint ({one_line(err)})") from None
    except Exception as err:  # noqa: BLE001  (foreign or corrupt files fail in many ways)
        raise UserError(
            f"{path}: not a usable train.py checkpoint ({type(err).__name__}: {one_line(err)})"
        ) from None
    return model.eval()


def resample(audio: np.ndarray, rate_in: int, rate_out: int) -> np.ndarray:
    """Resample mono audio (N,) from ``rate_in`` to ``rate_out`` Hz with ``resample_poly``.

    Up/down factors are rate_out / g and rate_in / g with g = gcd(rate_in, rate_out) (exact);
    the result has ceil(N * rate_out / rate_in) samples, float32 (unchanged if the rates match).
    """
    from scipy.signal import resample_poly

    if rate_in == rate_out:
        return audio.astype(np.float32, copy=False)
    g = math.gcd(rate_in, rate_out)
    return resample_poly(audio.astype(np.float64), rate_out // g, rate_in // g).astype(np.float32)


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


def read_audio(path: str | Path, sample_rate: int) -> tuple[np.ndarray, int]:
    """``load_audio`` then ``resample``: (float32 (N,) at ``sample_rate``, the file's rate)."""
    audio, rate = load_audio(path)
    return resample(audio, rate, sample_rate), rate


def peak_normalize(audio: np.ndarray, peak: float = PEAK) -> tuple[np.ndarray, float]:
    """Scale audio (N,) to max |x| = peak: (scaled float32 (N,), gain); silence keeps gain 1."""
    top = float(np.max(np.abs(audio)))
    gain = peak / top if top > 0 else 1.0
    return (audio * gain).astype(np.float32), gain


@torch.inference_mode()
def estimate_track(
    model: HarmonicAutoencoder,
    audio: np.ndarray,
    chunk_samples: int | None = None,
    batch_chunks: int = 16,
) -> dict[str, np.ndarray]:
    """f0 and harmonic amplitudes of a whole signal, frame by frame.

    audio: (N,) at ``model.sample_rate``. The signal is zero-padded to a whole number of chunks
    of ``chunk_samples`` (default ``model.synth.n_samples``, the training length; a multiple of
    the hop), and ``batch_chunks`` chunks at a time go through ``model.compute_features`` and
    ``model.encode``. Returns {"time_s": (T,) frame centres t * hop / sample_rate in s,
    "f0_hz": (T,) Hz, "amplitudes": (T, K)}, float64 / float32, with T = ceil(N / hop).
    """
    hop = model.hop_length
    chunk = int(model.synth.n_samples) if chunk_samples is None else chunk_samples
    if chunk < hop or chunk % hop != 0:
        raise ValueError(
            f"chunk_samples must be a positive multiple of the hop ({hop}), got {chunk}"
        )
    if batch_chunks < 1:
        raise ValueError(f"batch_chunks must be >= 1, got {batch_chunks}")
    if audio.ndim != 1 or audio.shape[0] == 0:
        raise ValueError(f"audio must have shape (N,) with N > 0, got {audio.shape}")
    n_frames = -(-audio.shape[0] // hop)
    n_chunks = -(-audio.shape[0] // chunk)
    padded = np.zeros(n_chunks * chunk, dtype=np.float32)
    padded[: audio.shape[0]] = audio
    chunks = torch.from_numpy(padded).view(n_chunks, chunk)
    f0_parts, amp_parts = [], []
    for start in range(0, n_chunks, batch_chunks):
        f0, amplitudes = model.encode(
            model.compute_features(chunks[start : start + batch_chunks].to(model.device))
        )
        f0_parts.append(f0.reshape(-1).cpu())
        amp_parts.append(amplitudes.reshape(-1, amplitudes.shape[-1]).cpu())
    return {
        "time_s": np.arange(n_frames) * hop / model.sample_rate,
        "f0_hz": torch.cat(f0_parts)[:n_frames].double().numpy(),
        "amplitudes": torch.cat(amp_parts)[:n_frames].float().numpy(),
    }


@torch.inference_mode()
def resynthesize(
    model: HarmonicAutoencoder,
    f0_hz: np.ndarray | Tensor,
    amplitudes: np.ndarray | Tensor,
    block_frames: int = 256,
) -> np.ndarray:
    """The model's synthesizer on the whole track, in blocks, with continuous phase.

    f0_hz: (T,) Hz; amplitudes: (T, K). Equal (to float64 rounding) to
    ``model.decode(f0_hz[None], amplitudes[None], T * hop)[0]`` in float64, using memory for
    ``block_frames`` frames at a time: harmonics at or above Nyquist are zeroed per control
    frame (as the synthesizer does first), each block's controls are upsampled with two frames
    of context (as the synthesizer upsamples them), rendered with one hop of margin on each side
    (for its roll-off filter) by ``model.decode`` at one control frame per sample, after a
    silent first sample whose frequency sets the running phase. Returns float32 (T * hop,).
    """
    hop, rate = model.hop_length, model.sample_rate
    f0 = torch.as_tensor(f0_hz, dtype=torch.float64, device=model.device).reshape(1, -1, 1)
    amps = torch.as_tensor(amplitudes, dtype=torch.float64, device=model.device)[None]
    k = torch.arange(1, amps.shape[-1] + 1, dtype=torch.float64, device=model.device)
    amps = remove_above_nyquist(amps, f0 * k, rate)
    n_frames = f0.shape[1]
    out = np.empty(n_frames * hop, dtype=np.float32)
    phase = 0.0  # sum of 2 pi f / rate over the samples before the current block, mod 2 pi
    for a in range(0, n_frames, block_frames):
        b = min(a + block_frames, n_frames)
        lo, hi = max(a - 2, 0), min(b + 2, n_frames)
        f0_audio = upsample_linear(f0[:, lo:hi], (hi - lo) * hop)[0, :, 0]
        amp_audio = upsample_with_windows(amps[:, lo:hi], (hi - lo) * hop)[0]
        s0, s1 = (max(a - 1, 0) - lo) * hop, (min(b + 1, n_frames) - lo) * hop  # with margins
        core0, core1 = (a - lo) * hop, (b - lo) * hop
        omega = f0_audio * (2.0 * math.pi / rate)
        start_phase = (phase - float(omega[s0:core0].sum())) % (2.0 * math.pi)
        f0_in = torch.cat(
            [f0_audio.new_tensor([start_phase * rate / (2.0 * math.pi)]), f0_audio[s0:s1]]
        )
        amp_in = torch.cat([amp_audio.new_zeros(1, amp_audio.shape[1]), amp_audio[s0:s1]])
        audio = model.decode(f0_in[None], amp_in[None], f0_in.shape[0])[0, 1:]
        out[a * hop : b * hop] = audio[core0 - s0 : core1 - s0].float().cpu().numpy()
        phase = (phase + float(omega[core0:core1].sum())) % (2.0 * math.pi)
    return out


def _spectrogram_db(
    audio: np.ndarray, rate: int, max_columns: int = 4000
) -> tuple[np.ndarray, ...]:
    """Hann STFT power in dB: (times (M,) s, freqs (F,) Hz, dB (F, M)), n_fft 1024, hop >= 256."""
    n_fft = 1024
    hop = max(256, -(-audio.shape[0] // max_columns))
    padded = np.concatenate([np.zeros(n_fft // 2), audio, np.zeros(n_fft // 2)])
    n_cols = max(1, 1 + (padded.shape[0] - n_fft) // hop)
    index = np.arange(n_fft)[None, :] + hop * np.arange(n_cols)[:, None]
    frames = padded[index] * np.hanning(n_fft)
    power = np.abs(np.fft.rfft(frames, axis=1)) ** 2
    return (
        np.arange(n_cols) * hop / rate,
        np.fft.rfftfreq(n_fft, 1.0 / rate),
        10.0 * np.log10(np.maximum(power.T, 1e-10)),
    )


def _plot_png(audio: np.ndarray, rate: int, track: dict[str, np.ndarray], title: str) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    times, freqs, db = _spectrogram_db(audio, rate)
    figure, axis = plt.subplots(figsize=(10, 4.5))
    axis.pcolormesh(
        times, freqs[1:], db[1:], shading="auto", cmap="magma", vmin=db.max() - 80, vmax=db.max()
    )
    axis.plot(track["time_s"], track["f0_hz"], color="cyan", lw=1.2, label="estimated f0")
    axis.set_yscale("log")
    axis.set_ylim(30, rate / 2)
    axis.set_xlabel("time (s)")
    axis.set_ylabel("frequency (Hz)")
    axis.set_title(title)
    axis.legend(loc="upper right", fontsize=8)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    plt.close(figure)
    return buffer.getvalue()


def _csv_text(track: dict[str, np.ndarray]) -> str:
    n_harmonics = track["amplitudes"].shape[1]
    header = ",".join(["time_s", "f0_hz", *(f"amp_{k}" for k in range(1, n_harmonics + 1))])
    table = np.column_stack([track["time_s"], track["f0_hz"], track["amplitudes"]])
    buffer = io.StringIO()
    np.savetxt(
        buffer,
        table,
        delimiter=",",
        fmt=["%.6f", "%.4f", *["%.6g"] * n_harmonics],
        header=header,
        comments="",
    )
    return buffer.getvalue()


def _parser() -> argparse.ArgumentParser:
    p = OneLineArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("paths", type=Path, nargs="+", metavar="[CHECKPOINT] AUDIO",
                   help="a train.py checkpoint (.ckpt; default: the model shipped in the package), "
                        "then a WAV, FLAC or OGG file")
    p.add_argument(
        "--out", type=Path, default=None, help="output directory (default outputs/estimate/<name>)"
    )
    p.add_argument("--device", default="cpu", help="torch device (default cpu)")
    p.add_argument(
        "--chunk-samples",
        type=int,
        default=None,
        help="samples per chunk (default: the model's training length)",
    )
    p.add_argument("--batch-chunks", type=int, default=16, help="chunks per encoder call")
    return p


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Command line. Returns {"csv", "png", "wav": output paths, "n_frames", "duration_s",
    "seconds": processing time, "real_time_factor": seconds / duration_s, "gain"}."""
    args = _parser().parse_args(argv)
    if len(args.paths) > 2:
        raise UserError(f"expected [CHECKPOINT] AUDIO, got {len(args.paths)} paths")
    args.checkpoint = args.paths[0] if len(args.paths) == 2 else None
    args.audio = args.paths[-1]
    audio, file_rate = load_audio(args.audio)  # bad audio fails before the slower model load
    t0 = time.perf_counter()
    model = load_model(args.checkpoint, args.device)
    load_s = time.perf_counter() - t0
    audio, gain = peak_normalize(resample(audio, file_rate, model.sample_rate))
    duration = audio.shape[0] / model.sample_rate

    t1 = time.perf_counter()
    track = estimate_track(model, audio, args.chunk_samples, args.batch_chunks)
    t2 = time.perf_counter()
    resynthesis = resynthesize(model, track["f0_hz"], track["amplitudes"])
    t3 = time.perf_counter()

    import soundfile as sf

    name = args.audio.stem
    out = args.out if args.out is not None else Path("outputs") / "estimate" / name
    paths = {
        "csv": out / f"{name}_f0.csv",
        "png": out / f"{name}_spectrogram.png",
        "wav": out / f"{name}_resynthesis.wav",
    }
    atomic_write_text(paths["csv"], _csv_text(track))
    wav = io.BytesIO()
    sf.write(wav, resynthesis, model.sample_rate, format="WAV", subtype="FLOAT")
    atomic_write_bytes(paths["wav"], wav.getvalue())
    atomic_write_bytes(paths["png"], _plot_png(audio, model.sample_rate, track, args.audio.name))

    seconds = t3 - t1
    rtf = seconds / duration
    print(
        f"{args.audio}: {duration:.2f} s at {file_rate} Hz -> {model.sample_rate} Hz, "
        f"scaled by {gain:.4g} "
        f"to peak {PEAK}; {track['f0_hz'].shape[0]} frames"
    )
    print(
        f"estimation {t2 - t1:.2f} s + resynthesis {t3 - t2:.2f} s on {args.device}: "
        f"real-time factor "
        f"{rtf:.4f} ({1 / rtf:.0f}x faster than real time); model loaded in {load_s:.1f} s"
    )
    print("wrote " + ", ".join(str(p) for p in paths.values()))
    return {
        **paths,
        "n_frames": int(track["f0_hz"].shape[0]),
        "duration_s": duration,
        "seconds": seconds,
        "real_time_factor": rtf,
        "gain": gain,
    }


# The console script (and the thin script of a checkout).
cli = console_script(main)


if __name__ == "__main__":
    cli()
