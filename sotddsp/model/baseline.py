"""The pYIN baseline of the results table (``librosa.pyin``, no training), scored like the model
on the same peak-normalized test split, and the per-family scoring both share on the
real-instrument set.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np

from sotddsp.core.command_line import optional_import
from sotddsp.data.datamodule import PreloadedSinusoidDataModule
from sotddsp.data.real import records_of
from sotddsp.dsp import metrics
from sotddsp.dsp.metrics import family_breakdown
from sotddsp.dsp.spectral import cqt_frequencies

__all__ = ["BASELINE_FRAME_LENGTH", "BASELINE_HOP", "family_rows", "pitch_baseline"]

BASELINE_HOP = 256  # the model's control-frame hop: T = N // 256 frames per example
BASELINE_FRAME_LENGTH = 2048  # 128 ms at 16 kHz: about 4 periods of the lowest CQT bin


def family_rows(predicted_f0: Any, meta: dict[str, Any]) -> list[dict[str, Any]] | None:
    """RPA/RCA per instrument family (``metrics.family_breakdown``) of predicted f0 (N, T) in Hz
    on a data file's test split, when the file is the real-instrument set (its ``meta`` holds
    ``records``), else None."""
    records = records_of(meta)
    if records is None:
        return None
    return family_breakdown(predicted_f0, records)


def pitch_baseline(data_path: Path, batch_size: int = 64) -> dict[str, float]:
    """pYIN (``librosa.pyin``) f0 on the test split, scored with ``metrics.pitch_metrics``.

    Audio comes from ``PreloadedSinusoidDataModule`` (peak-normalized to 0.9, as training).
    Frames: hop 256 with ``center=True`` puts frame t's centre at sample 256 t, the centre of
    the model's CQT frame t; the first T = N // 256 frames are kept, the model's T. Search
    range: the first to the last CQT bin frequency (32.7 Hz .. 7.75 kHz at 16 kHz), the
    model's output range. Every frame is voiced here, so pYIN's voicing decision is ignored
    (``fill_na=None`` keeps its best f0 guess in frames it calls unvoiced).
    Returns {"metrics": {"rpa", "rca", "od", "median_cents_error", "within_octave"}} and, on
    the real-instrument set, "families": the per-family breakdown.
    """
    from tqdm import tqdm

    librosa = optional_import("librosa", "the pYIN baseline")
    datamodule = PreloadedSinusoidDataModule(
        str(data_path), batch_size=batch_size, generate_if_missing=False
    )
    datamodule.setup("test")
    sample_rate = datamodule.sample_rate
    frequencies = cqt_frequencies(sample_rate=sample_rate)
    fmin, fmax = float(frequencies[0]), float(frequencies[-1])
    predicted, true = [], []
    batches = tqdm(datamodule.test_dataloader(), desc="pYIN baseline", unit="batch",
                   file=sys.stderr, leave=False)
    for batch in batches:
        audio = batch["x"].double().numpy()
        n_frames = audio.shape[-1] // BASELINE_HOP
        f0, _, _ = librosa.pyin(
            audio, fmin=fmin, fmax=fmax, sr=sample_rate, frame_length=BASELINE_FRAME_LENGTH,
            hop_length=BASELINE_HOP, center=True, pad_mode="constant", fill_na=None,
        )
        f0 = np.nan_to_num(f0[:, :n_frames], nan=fmin)
        predicted.append(f0)
        true.append(np.broadcast_to(batch["f0_hz"].double().numpy(), f0.shape)
                    if batch["f0_hz"].shape[-1] == 1 else batch["f0_hz"].double().numpy())
    record: dict[str, Any] = {
        "metrics": metrics.pitch_metrics(np.concatenate(predicted), np.concatenate(true))
    }
    families = family_rows(np.concatenate(predicted), datamodule.meta)
    if families is not None:
        record["families"] = families
    return record
