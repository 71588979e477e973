"""The data-set file format, shared by the synthetic set (synthetic_data.py) and the
real-instrument set (real_data.py): validated, atomic I/O.

A ``torch.save``d dict, the authors' release format: ``train_tensors``, ``val_tensors``,
``test_tensors`` (float32 [N, n_samples] waveforms) and ``train_thetas``, ``val_thetas``,
``test_thetas`` (dicts: ``frequency`` [N, 1] in Hz, or [N, T] per control frame; ``weights``
[N, K], the harmonic amplitudes as drawn). Our files add ``meta`` (``format_version``,
``sample_rate``, the generator's settings, and for real notes their ``records``).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import torch

from sotddsp.core.atomic_files import atomic_write
from sotddsp.core.command_line import one_line

__all__ = [
    "AUTHORS_SAMPLE_RATE",
    "FORMAT_VERSION",
    "SPLITS",
    "DataFormatError",
    "format_problem",
    "load_dataset",
    "save_dataset",
]

logger = logging.getLogger("data_files")

FORMAT_VERSION = 1
SPLITS = ("train", "val", "test")
AUTHORS_SAMPLE_RATE = 16000  # their release has no meta: it was rendered at 16 kHz
DEFAULT_FIX = "regenerate it (python synthetic_data.py, or python real_data.py for real notes)"


class DataFormatError(ValueError):
    """A data file is missing, unreadable or not in the expected format (one-line message)."""


def format_problem(data: object) -> str | None:
    """The first problem that makes ``data`` not a valid data set dict, or None."""
    if not isinstance(data, dict):
        return f"holds a {type(data).__name__}, not a dict"
    missing = [f"{s}_{part}" for s in SPLITS for part in ("tensors", "thetas")
               if f"{s}_{part}" not in data]
    if missing:
        return f"misses the keys {missing}"
    n_samples = n_harmonics = None
    for split in SPLITS:
        x = data[f"{split}_tensors"]
        if not torch.is_tensor(x) or x.ndim != 2 or not x.is_floating_point():
            shape = tuple(x.shape) if torch.is_tensor(x) else type(x).__name__
            return f"{split}_tensors must be a float tensor [N, n_samples], got {shape}"
        if x.shape[0] == 0 or x.shape[1] == 0:
            return f"{split}_tensors is empty ({tuple(x.shape)})"
        if n_samples is not None and x.shape[1] != n_samples:
            return (f"{split}_tensors has {x.shape[1]} samples per example, "
                    f"the train split {n_samples}")
        n_samples = x.shape[1]
        thetas = data[f"{split}_thetas"]
        if not isinstance(thetas, dict) or "frequency" not in thetas or "weights" not in thetas:
            return f"{split}_thetas must be a dict with 'frequency' and 'weights'"
        f0, w = thetas["frequency"], thetas["weights"]
        for name, t in (("frequency", f0), ("weights", w)):
            if not torch.is_tensor(t) or t.ndim != 2 or t.shape[0] != x.shape[0] \
                    or not t.is_floating_point():
                shape = tuple(t.shape) if torch.is_tensor(t) else type(t).__name__
                return (f"{split}_thetas['{name}'] must be a float tensor "
                        f"[{x.shape[0]}, ...], got {shape}")
        if n_harmonics is not None and w.shape[1] != n_harmonics:
            return (f"{split}_thetas['weights'] has {w.shape[1]} harmonics, "
                    f"the train split {n_harmonics}")
        n_harmonics = w.shape[1]
        for name, t in ((f"{split}_tensors", x), (f"{split}_thetas['frequency']", f0),
                        (f"{split}_thetas['weights']", w)):
            if not torch.isfinite(t).all():
                return f"{name} holds NaN or inf values"
    meta = data.get("meta")
    if meta is not None:
        if not isinstance(meta, dict):
            return f"meta must be a dict, got {type(meta).__name__}"
        rate = meta.get("sample_rate")
        if isinstance(rate, bool) or not isinstance(rate, int) or rate <= 0:
            return f"meta['sample_rate'] must be a positive integer, got {rate!r}"
    return None


def save_dataset(data: dict[str, Any], path: str | os.PathLike) -> Path:
    """Write a data set dict to ``path`` atomically (``atomic_files``); return the path.

    Raises ValueError if ``data`` is not in the data set format.
    """
    problem = format_problem(data)
    if problem is not None:
        raise ValueError(f"data is not a data set dict: {problem}")
    return atomic_write(path, lambda handle: torch.save(data, handle))


def load_dataset(path: str | os.PathLike, fix: str = DEFAULT_FIX) -> dict[str, Any]:
    """Load and validate a data set file (ours or the authors' release).

    Returns the authors' keys with float32 tensors ([N, n_samples] waveforms, ``frequency``
    [N, 1] or [N, T] Hz, ``weights`` [N, K]) and ``meta``; for the authors' release (no
    ``meta``) meta is {"sample_rate": 16000, "format_version": None}. Logs a warning when
    train, val and test hold the same examples (the authors' release): metrics on them are
    then not held out. Raises DataFormatError (one line: file, problem, ``fix``) for a missing,
    unreadable or malformed file or NaN/inf values.
    """
    path = Path(path)
    if not path.is_file():
        raise DataFormatError(f"{path}: file not found; {fix}")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 (torch raises many types for corrupt files)
        raise DataFormatError(
            f"{path}: not a readable torch file ({type(err).__name__}: {one_line(err, 120)}); "
            f"delete it and {fix}"
        ) from None
    problem = format_problem(data)
    if problem is not None:
        raise DataFormatError(f"{path}: wrong format: {problem}; {fix}")

    out: dict[str, Any] = {}
    for split in SPLITS:
        thetas = data[f"{split}_thetas"]
        out[f"{split}_tensors"] = data[f"{split}_tensors"].to(torch.float32).contiguous()
        out[f"{split}_thetas"] = {
            "frequency": thetas["frequency"].to(torch.float32).contiguous(),
            "weights": thetas["weights"].to(torch.float32).contiguous(),
        }
    meta = data.get("meta")
    out["meta"] = dict(meta) if meta is not None else {
        "sample_rate": AUTHORS_SAMPLE_RATE, "format_version": None,
    }
    train, val, test = (out[f"{s}_tensors"] for s in SPLITS)
    if train.shape == val.shape == test.shape and torch.equal(train, val) \
            and torch.equal(train, test):
        logger.warning(
            "%s: train, val and test hold the same %d examples (as in the authors' release); "
            "validation and test metrics are not held out", path, train.shape[0],
        )
    return out
