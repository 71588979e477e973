"""The paper's synthetic harmonic data set: generation, validated I/O and a LightningDataModule.

PAPER.md "Data": 4000 examples of 4096 samples at 16 kHz; f0 ~ U[40, 1950] Hz; 8 harmonic
slots with amplitudes ~ U[0.4, 1], of which the n_active ~ U{1..8} lowest are on; rendered by
``models.synth.HarmonicSynth`` (16 constant control frames; partials at or above Nyquist are
silent); each waveform is scaled to peak 0.9 when loaded. Unlike the authors' release (whose
train/val/test were the same 4000 examples), splits are disjoint: 2800 / 800 / 400.

File format (the authors' release, still loadable): a ``torch.save``d dict with
``train_tensors``, ``val_tensors``, ``test_tensors`` (float32 [N, n_samples]) and
``train_thetas``, ``val_thetas``, ``test_thetas`` (dicts: ``frequency`` [N, 1] in Hz, or
[N, T] per control frame when vibrato or glide is on; ``weights`` [N, n_harmonics], the
amplitudes as drawn, including slots the synthesizer silences above Nyquist). Our files add
``meta`` (generator parameters, ``sample_rate``, ``format_version``).

Command line: ``python synthetic_data.py`` writes data/40_1950_4096_04_1_4000_8_1_harmonic.pth.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import inspect
import logging
import math
import os
import re
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Sampler

from models.synth import HarmonicSynth

__all__ = [
    "DataFormatError",
    "PreloadedSinusoidDataModule",
    "PreloadedSplit",
    "default_filename",
    "ensure_dataset",
    "generate_dataset",
    "load_dataset",
    "parse_filename",
    "save_dataset",
]

logger = logging.getLogger("synthetic_data")

FORMAT_VERSION = 1
SPLITS = ("train", "val", "test")
AUTHORS_SAMPLE_RATE = 16000
DEFAULT_DATA_PATH = "data/40_1950_4096_04_1_4000_8_1_harmonic.pth"
DEFAULT_PEAK = 0.9  # each waveform is scaled to this peak when loaded (PAPER.md)
_RENDER_CHUNK = 64  # examples per synthesizer call: (64, 4096, 8) float64 temporaries of ~17 MB


class DataFormatError(ValueError):
    """A data file is missing, unreadable or not in the expected format (one-line message)."""


# ----------------------------------------------------------------------------------------------
# Generation
# ----------------------------------------------------------------------------------------------

def _check_int(value: object, name: str, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")


def _check_finite(value: object, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    return float(value)


def _default_split_sizes(n_examples: int) -> tuple[int, int, int]:
    """70 / 20 / 10 % of n_examples, at least 1 each (2800 / 800 / 400 for the paper's 4000)."""
    n_val = max(1, round(0.2 * n_examples))
    n_test = max(1, round(0.1 * n_examples))
    return n_examples - n_val - n_test, n_val, n_test


def _resolve_split_sizes(
    split_sizes: Sequence[int] | None, n_examples: int
) -> tuple[int, int, int]:
    if split_sizes is None:
        sizes = _default_split_sizes(n_examples)
    else:
        sizes = tuple(split_sizes)
        if len(sizes) != 3:
            raise ValueError(f"split_sizes must have 3 entries (train, val, test), got {sizes!r}")
    for s in sizes:
        _check_int(s, "split_sizes entries", 1)
    if sum(sizes) != n_examples:
        raise ValueError(
            f"split_sizes {sizes} must sum to n_examples ({n_examples}); pass sizes that add up"
        )
    return sizes


def _check_generator_args(
    n_examples: int, f0_min: float, f0_max: float, n_samples: int, amp_min: float,
    amp_max: float, n_harmonics: int, min_harmonics: int, sample_rate: int, n_frames: int,
    seed: int, snr_db: float | None, vibrato_cents: float, vibrato_hz: float,
    glide_cents: float, inharmonicity: float,
) -> None:
    _check_int(n_examples, "n_examples", 3)
    _check_int(sample_rate, "sample_rate", 1)
    f0_min = _check_finite(f0_min, "f0_min")
    f0_max = _check_finite(f0_max, "f0_max")
    if not 0.0 < f0_min <= f0_max < sample_rate / 2:
        raise ValueError(
            f"f0_min and f0_max must satisfy 0 < f0_min <= f0_max < sample_rate / 2 "
            f"({sample_rate / 2:g} Hz), got f0_min={f0_min!r}, f0_max={f0_max!r}"
        )
    _check_int(n_frames, "n_frames", 1)
    _check_int(n_samples, "n_samples", 1)
    if n_samples % n_frames != 0:
        raise ValueError(f"n_samples ({n_samples}) must be a multiple of n_frames ({n_frames})")
    amp_min = _check_finite(amp_min, "amp_min")
    amp_max = _check_finite(amp_max, "amp_max")
    if not 0.0 <= amp_min <= amp_max:
        raise ValueError(
            f"amp_min and amp_max must satisfy 0 <= amp_min <= amp_max, "
            f"got {amp_min!r}, {amp_max!r}"
        )
    _check_int(n_harmonics, "n_harmonics", 1)
    _check_int(min_harmonics, "min_harmonics", 1)
    if min_harmonics > n_harmonics:
        raise ValueError(
            f"min_harmonics must be <= n_harmonics ({n_harmonics}), got {min_harmonics!r}"
        )
    _check_int(seed, "seed", 0)
    if snr_db is not None:
        _check_finite(snr_db, "snr_db")
    if _check_finite(vibrato_cents, "vibrato_cents") < 0:
        raise ValueError(f"vibrato_cents must be >= 0, got {vibrato_cents!r}")
    if _check_finite(vibrato_hz, "vibrato_hz") <= 0:
        raise ValueError(f"vibrato_hz must be > 0, got {vibrato_hz!r}")
    _check_finite(glide_cents, "glide_cents")
    if _check_finite(inharmonicity, "inharmonicity") < 0:
        raise ValueError(f"inharmonicity must be >= 0, got {inharmonicity!r}")


def _render(synth: HarmonicSynth, amplitudes: Tensor, f0_frames: Tensor,
            inharmonicity: float) -> Tensor:
    """amplitudes (B, K), f0_frames (B, T) Hz -> audio (B, N).

    inharmonicity 0: one synthesizer call with K harmonics at k f0. inharmonicity beta > 0:
    partial k at f_k = k f0 sqrt(1 + beta k^2), rendered as K single-partial synthesizer calls
    (each its own "fundamental" f_k, so it is silenced where f_k >= Nyquist) and summed.
    """
    batch, n_frames = f0_frames.shape
    n_harmonics = amplitudes.shape[1]
    amp_frames = amplitudes[:, None, :].expand(batch, n_frames, n_harmonics)
    if inharmonicity == 0.0:
        return synth(amp_frames.contiguous(), f0_frames[:, :, None])
    k = torch.arange(1, n_harmonics + 1, dtype=torch.float64)
    stretch = (k * torch.sqrt(1.0 + inharmonicity * k**2)).to(f0_frames.dtype)  # (K,)
    partial_f = f0_frames[:, :, None] * stretch  # (B, T, K)
    per_partial = synth(
        amp_frames.permute(0, 2, 1).reshape(batch * n_harmonics, n_frames, 1),
        partial_f.permute(0, 2, 1).reshape(batch * n_harmonics, n_frames, 1),
    )
    return per_partial.reshape(batch, n_harmonics, -1).sum(dim=1)


def generate_dataset(
    n_examples: int = 4000,
    f0_min: float = 40.0,
    f0_max: float = 1950.0,
    n_samples: int = 4096,
    amp_min: float = 0.4,
    amp_max: float = 1.0,
    n_harmonics: int = 8,
    min_harmonics: int = 1,
    sample_rate: int = 16000,
    n_frames: int = 16,
    split_sizes: Sequence[int] | None = None,
    seed: int = 0,
    snr_db: float | None = None,
    vibrato_cents: float = 0.0,
    vibrato_hz: float = 5.0,
    glide_cents: float = 0.0,
    inharmonicity: float = 0.0,
) -> dict[str, Any]:
    """Generate the synthetic harmonic data set (authors' format plus ``meta``), deterministically.

    Per example (torch.Generator seeded with ``seed``): f0 ~ U[f0_min, f0_max] Hz;
    n_active ~ U{min_harmonics..n_harmonics}; weights[k] ~ U[amp_min, amp_max] for the
    n_active lowest harmonics, 0 for the others. Rendered by ``HarmonicSynth(n_samples,
    sample_rate)`` from ``n_frames`` control frames; partials at or above Nyquist are silent.
    ``split_sizes`` (train, val, test) must sum to n_examples; None -> 70/20/10 % (at least 1
    each), i.e. (2800, 800, 400) at the default 4000. Splits are consecutive, disjoint blocks
    of examples.

    Beyond the paper (all off by default, so the defaults reproduce it):
    - ``snr_db``: add white Gaussian noise scaled so that each example's
      10 log10(mean(x^2) / mean(noise^2)) equals snr_db exactly.
    - ``vibrato_cents`` / ``vibrato_hz``: f0_t = f0 * 2^(c_t / 1200) with
      c_t = vibrato_cents sin(2 pi vibrato_hz t + phase), phase ~ U[0, 2 pi), t the time (s) of
      control frame t; ``glide_cents`` adds a linear c_t from -glide/2 to +glide/2 over the
      frames. When either is on, ``frequency`` holds the per-frame f0 [N, n_frames] (Hz), and
      ``meta["frequency_per_frame"]`` is True; otherwise ``frequency`` is [N, 1].
    - ``inharmonicity`` B: partial k sounds at k f0 sqrt(1 + B k^2); ``frequency`` stays f0.

    Returns {"train_tensors", "val_tensors", "test_tensors": float32 [n_split, n_samples] (not
    peak-normalized), "train_thetas", "val_thetas", "test_thetas": {"frequency": float32
    [n_split, 1 or n_frames] Hz, "weights": float32 [n_split, n_harmonics]}, "meta": dict}.
    """
    _check_generator_args(
        n_examples, f0_min, f0_max, n_samples, amp_min, amp_max, n_harmonics, min_harmonics,
        sample_rate, n_frames, seed, snr_db, vibrato_cents, vibrato_hz, glide_cents,
        inharmonicity,
    )
    sizes = _resolve_split_sizes(split_sizes, n_examples)
    g = torch.Generator().manual_seed(seed)

    f0 = f0_min + (f0_max - f0_min) * torch.rand(n_examples, generator=g, dtype=torch.float64)
    n_active = torch.randint(min_harmonics, n_harmonics + 1, (n_examples,), generator=g)
    weights = amp_min + (amp_max - amp_min) * torch.rand(
        n_examples, n_harmonics, generator=g, dtype=torch.float64
    )
    weights = torch.where(torch.arange(n_harmonics) < n_active[:, None], weights, 0.0)
    weights = weights.to(torch.float32)

    per_frame = vibrato_cents > 0 or glide_cents != 0
    if per_frame:
        hop = n_samples / n_frames
        # upsample_linear puts control frame t at sample (t + 0.5) hop - 0.5.
        t_sec = ((torch.arange(n_frames, dtype=torch.float64) + 0.5) * hop - 0.5) / sample_rate
        cents = torch.zeros(n_examples, n_frames, dtype=torch.float64)
        if vibrato_cents > 0:
            phase = 2 * math.pi * torch.rand(n_examples, 1, generator=g, dtype=torch.float64)
            cents = cents + vibrato_cents * torch.sin(2 * math.pi * vibrato_hz * t_sec + phase)
        if glide_cents != 0:
            ramp = torch.linspace(-0.5, 0.5, n_frames, dtype=torch.float64) if n_frames > 1 \
                else torch.zeros(1, dtype=torch.float64)
            cents = cents + glide_cents * ramp
        frequency = (f0[:, None] * 2.0 ** (cents / 1200.0)).to(torch.float32)
        f0_frames = frequency
    else:
        frequency = f0[:, None].to(torch.float32)
        f0_frames = frequency.expand(n_examples, n_frames)

    synth = HarmonicSynth(n_samples=n_samples, sample_rate=sample_rate)
    audio = torch.empty(n_examples, n_samples, dtype=torch.float32)
    with torch.no_grad():
        for start in range(0, n_examples, _RENDER_CHUNK):
            stop = min(start + _RENDER_CHUNK, n_examples)
            chunk = _render(synth, weights[start:stop], f0_frames[start:stop], inharmonicity)
            if snr_db is not None:
                noise = torch.randn(chunk.shape, generator=g, dtype=torch.float64)
                p_signal = chunk.double().pow(2).mean(dim=1, keepdim=True)
                p_noise = noise.pow(2).mean(dim=1, keepdim=True)
                noise = noise * torch.sqrt(p_signal / (p_noise * 10.0 ** (snr_db / 10.0)))
                chunk = chunk.double() + noise
            audio[start:stop] = chunk.to(torch.float32)

    meta: dict[str, Any] = {
        "format_version": FORMAT_VERSION,
        "generator": "synthetic_data.generate_dataset",
        "sample_rate": sample_rate,
        "n_examples": n_examples,
        "f0_min": float(f0_min),
        "f0_max": float(f0_max),
        "n_samples": n_samples,
        "amp_min": float(amp_min),
        "amp_max": float(amp_max),
        "n_harmonics": n_harmonics,
        "min_harmonics": min_harmonics,
        "n_frames": n_frames,
        "split_sizes": list(sizes),
        "seed": seed,
        "snr_db": None if snr_db is None else float(snr_db),
        "vibrato_cents": float(vibrato_cents),
        "vibrato_hz": float(vibrato_hz),
        "glide_cents": float(glide_cents),
        "inharmonicity": float(inharmonicity),
        "frequency_per_frame": per_frame,
    }
    data: dict[str, Any] = {"meta": meta}
    bounds = [0, sizes[0], sizes[0] + sizes[1], n_examples]
    for split, lo, hi in zip(SPLITS, bounds[:-1], bounds[1:]):
        data[f"{split}_tensors"] = audio[lo:hi].clone()
        data[f"{split}_thetas"] = {
            "frequency": frequency[lo:hi].clone(),
            "weights": weights[lo:hi].clone(),
        }
    return data


# ----------------------------------------------------------------------------------------------
# File names
# ----------------------------------------------------------------------------------------------

def _compact_number(value: float) -> str:
    """Authors' style: 40.0 -> '40', 0.4 -> '04', 0.25 -> '025'; other non-integers keep '.'."""
    if float(value).is_integer():
        return str(int(value))
    if 0 < value < 1:
        return f"{value:.12f}".rstrip("0").replace(".", "")
    return repr(float(value))


def _parse_compact_number(text: str) -> float:
    if "." in text:
        return float(text)
    if len(text) > 1 and text.startswith("0"):
        return float("0." + text[1:])
    return float(int(text))


def _plain_number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def default_filename(
    n_examples: int = 4000,
    f0_min: float = 40.0,
    f0_max: float = 1950.0,
    n_samples: int = 4096,
    amp_min: float = 0.4,
    amp_max: float = 1.0,
    n_harmonics: int = 8,
    min_harmonics: int = 1,
    sample_rate: int = 16000,
    n_frames: int = 16,
    split_sizes: Sequence[int] | None = None,
    seed: int = 0,
    snr_db: float | None = None,
    vibrato_cents: float = 0.0,
    vibrato_hz: float = 5.0,
    glide_cents: float = 0.0,
    inharmonicity: float = 0.0,
) -> str:
    """File name for ``generate_dataset`` with these arguments (same names and defaults).

    Authors' pattern f0min_f0max_nsamples_ampmin_ampmax_n_nharmonics_minharmonics_harmonic.pth
    (0.4 -> '04'), e.g. '40_1950_4096_04_1_4000_8_1_harmonic.pth' at the defaults, then a suffix
    for each non-default setting in this order: _sr16000, _frames16, _split2800-800-400,
    _seed1, _snr20, _vib50 (or _vib50at6 when vibrato_hz != 5), _glide100, _inh0.001.
    ``parse_filename`` inverts it.
    """
    name = "_".join([
        _compact_number(f0_min), _compact_number(f0_max), str(n_samples),
        _compact_number(amp_min), _compact_number(amp_max), str(n_examples),
        str(n_harmonics), str(min_harmonics), "harmonic",
    ])
    if sample_rate != 16000:
        name += f"_sr{sample_rate}"
    if n_frames != 16:
        name += f"_frames{n_frames}"
    if split_sizes is not None and tuple(split_sizes) != _default_split_sizes(n_examples):
        name += "_split" + "-".join(str(s) for s in split_sizes)
    if seed != 0:
        name += f"_seed{seed}"
    if snr_db is not None:
        name += f"_snr{_plain_number(snr_db)}"
    if vibrato_cents > 0:
        name += f"_vib{_plain_number(vibrato_cents)}"
        if vibrato_hz != 5.0:
            name += f"at{_plain_number(vibrato_hz)}"
    if glide_cents != 0:
        name += f"_glide{_plain_number(glide_cents)}"
    if inharmonicity > 0:
        name += f"_inh{_plain_number(inharmonicity)}"
    return name + ".pth"


_NUM = r"\d+(?:\.\d+)?"
_SNUM = r"-?\d+(?:\.\d+)?(?:e-?\d+)?"
_FILENAME_RE = re.compile(
    rf"(?P<f0_min>{_NUM})_(?P<f0_max>{_NUM})_(?P<n_samples>\d+)_(?P<amp_min>{_NUM})"
    rf"_(?P<amp_max>{_NUM})_(?P<n_examples>\d+)_(?P<n_harmonics>\d+)_(?P<min_harmonics>\d+)"
    r"_harmonic"
    r"(?:_sr(?P<sample_rate>\d+))?"
    r"(?:_frames(?P<n_frames>\d+))?"
    r"(?:_split(?P<split_sizes>\d+-\d+-\d+))?"
    r"(?:_seed(?P<seed>\d+))?"
    rf"(?:_snr(?P<snr_db>{_SNUM}))?"
    rf"(?:_vib(?P<vibrato_cents>{_SNUM})(?:at(?P<vibrato_hz>{_SNUM}))?)?"
    rf"(?:_glide(?P<glide_cents>{_SNUM}))?"
    rf"(?:_inh(?P<inharmonicity>{_SNUM}))?"
    r"\.pth"
)


def parse_filename(name: str | os.PathLike) -> dict[str, Any] | None:
    """Generator arguments encoded in a ``default_filename`` name (directory ignored), or None.

    Only the arguments present in the name are returned (ints for counts, floats otherwise).
    """
    match = _FILENAME_RE.fullmatch(Path(name).name)
    if match is None:
        return None
    fields = {k: v for k, v in match.groupdict().items() if v is not None}
    params: dict[str, Any] = {}
    for key, text in fields.items():
        if key in ("f0_min", "f0_max", "amp_min", "amp_max"):
            params[key] = _parse_compact_number(text)
        elif key == "split_sizes":
            params[key] = tuple(int(s) for s in text.split("-"))
        elif key in ("snr_db", "vibrato_cents", "vibrato_hz", "glide_cents", "inharmonicity"):
            params[key] = float(text)
        else:
            params[key] = int(text)
    return params


# ----------------------------------------------------------------------------------------------
# Validated I/O
# ----------------------------------------------------------------------------------------------

def _generate_command(path: Path) -> str:
    """The CLI command that writes ``path`` with the generator arguments encoded in its name."""
    params = parse_filename(path) or {}
    defaults = {k: p.default for k, p in inspect.signature(generate_dataset).parameters.items()}
    options = []
    for key, value in params.items():
        if value == defaults[key]:
            continue
        text = " ".join(str(v) for v in value) if key == "split_sizes" else (
            _plain_number(value) if isinstance(value, float) else str(value))
        options.append(f"--{key.replace('_', '-')} {text}")
    return " ".join(["python synthetic_data.py", *options, "--out", str(path)])


def _one_line(text: object, limit: int = 200) -> str:
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def _format_problem(data: object) -> str | None:
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
    """Write ``data`` (the dict of ``generate_dataset``) to ``path`` atomically; return the path.

    The file is written to a temporary file in the same directory, flushed and fsynced, then
    moved over ``path`` with ``os.replace``, so readers never see a partial file. Parent
    directories are created. Raises ValueError if ``data`` is not in the data set format.
    """
    problem = _format_problem(data)
    if problem is not None:
        raise ValueError(f"data is not a data set dict: {problem}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    umask = os.umask(0)
    os.umask(umask)
    os.fchmod(fd, 0o666 & ~umask)  # mkstemp creates 0600; give the usual permissions
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(data, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        raise
    with contextlib.suppress(OSError):
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    return path


def load_dataset(path: str | os.PathLike) -> dict[str, Any]:
    """Load and validate a data set file (ours or the authors' release).

    Returns the authors' keys with float32 tensors ([N, n_samples] waveforms, ``frequency``
    [N, 1] or [N, T] Hz, ``weights`` [N, K]) and ``meta``; for the authors' release (no
    ``meta``) meta is {"sample_rate": 16000, "format_version": None}. Logs a warning when
    train, val and test hold the same examples (the authors' release): metrics on them are
    then not held out. Raises DataFormatError (one line: file, problem, fix) for a missing,
    unreadable or malformed file or NaN/inf values.
    """
    path = Path(path)
    regenerate = f"regenerate it with `{_generate_command(path)}`"
    if not path.is_file():
        raise DataFormatError(f"{path}: file not found; {regenerate}")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many types for truncated or corrupt files
        raise DataFormatError(
            f"{path}: not a readable torch file ({type(err).__name__}: {_one_line(err, 120)}); "
            f"delete it and {regenerate}"
        ) from None
    problem = _format_problem(data)
    if problem is not None:
        raise DataFormatError(f"{path}: wrong format: {problem}; {regenerate}")

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


def ensure_dataset(path: str | os.PathLike) -> bool:
    """Generate the data set file at ``path`` if it does not exist; True if this call wrote it.

    Generator arguments are parsed from the file name (``parse_filename``), defaults where the
    name does not match. Safe when several processes call it at once: an exclusive
    ``fcntl.flock`` on ``<path>.lock`` makes later callers wait, then find the file; the file
    itself is written atomically. Logs one line (logger "synthetic_data") when generating.
    Raises PermissionError (one line) when the directory is not writable.
    """
    path = Path(path)
    if path.is_file():
        return False
    lock_path = path.with_name(path.name + ".lock")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        lock_file = open(lock_path, "a")  # noqa: SIM115 (closed by the with block below)
    except OSError as err:
        raise PermissionError(
            f"cannot create {path} ({err.strerror or _one_line(err)}); make {path.parent} "
            f"writable, or generate the file elsewhere with `python synthetic_data.py --out "
            f"DIR/{path.name}` and pass data_path=DIR/{path.name}"
        ) from None
    with lock_file:
        fcntl.flock(lock_file.fileno(), fcntl.LOCK_EX)  # released when the file is closed
        if path.is_file():
            return False
        params = parse_filename(path) or {}
        logger.info(
            "%s not found: generating it (%s)", path,
            ", ".join(f"{k}={v}" for k, v in params.items()) or "paper defaults",
        )
        save_dataset(generate_dataset(**params), path)
        with contextlib.suppress(FileNotFoundError):
            lock_path.unlink()  # processes waiting on the old lock inode then find the file
        return True


# ----------------------------------------------------------------------------------------------
# Datasets and DataModule
# ----------------------------------------------------------------------------------------------

def peak_normalize(x: Tensor, peak: float) -> Tensor:
    """Scale each row of x (B, N) to max |x| = peak; all-zero rows stay zero. Returns (B, N)."""
    max_abs = x.abs().amax(dim=-1, keepdim=True)
    scale = torch.where(max_abs > 0, peak / torch.where(max_abs > 0, max_abs, 1.0), 0.0)
    return x * scale


class PreloadedSplit(Dataset):
    """One split held in memory; items and batches are dicts.

    x: (S, N) float32 waveforms; f0_hz: (S, 1) or (S, T) Hz; weights: (S, K).
    ``dataset[i]`` -> {"x": (N,), "f0_hz": (1,) or (T,), "weights": (K,), "index": () int64};
    ``dataset.__getitems__(indices)`` (used by DataLoader) -> the same keys with a leading
    batch dimension B, gathered with one tensor index each.
    """

    def __init__(self, x: Tensor, f0_hz: Tensor, weights: Tensor) -> None:
        if not (x.shape[0] == f0_hz.shape[0] == weights.shape[0]):
            raise ValueError(
                f"x, f0_hz and weights must have the same length, got {x.shape[0]}, "
                f"{f0_hz.shape[0]}, {weights.shape[0]}"
            )
        self.x = x
        self.f0_hz = f0_hz
        self.weights = weights

    def __len__(self) -> int:
        return self.x.shape[0]

    def __getitem__(self, i: int) -> dict[str, Tensor]:
        index = torch.as_tensor(i, dtype=torch.int64)
        return {"x": self.x[index], "f0_hz": self.f0_hz[index], "weights": self.weights[index],
                "index": index}

    def __getitems__(self, indices: Sequence[int]) -> dict[str, Tensor]:
        index = torch.as_tensor(indices, dtype=torch.int64)
        return {"x": self.x[index], "f0_hz": self.f0_hz[index], "weights": self.weights[index],
                "index": index}


class EpochShuffleSampler(Sampler[int]):
    """A fresh permutation each epoch, a pure function of (seed, epoch).

    Lightning calls ``set_epoch`` before every training epoch, so a run resumed at an
    epoch boundary draws exactly the batches an uninterrupted run would have drawn.
    """

    def __init__(self, n: int, seed: int) -> None:
        self.n = n
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.n

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        return iter(torch.randperm(self.n, generator=generator).tolist())


def collate_batch(batch: dict[str, Tensor]) -> dict[str, Tensor]:
    """DataLoader collate for ``PreloadedSplit.__getitems__``: the batch dict is already built."""
    return batch


class PreloadedSinusoidDataModule(L.LightningDataModule):
    """The synthetic harmonic data set, preloaded, with per-waveform peak normalization.

    Args:
        data_path: data set file (ours or the authors' release).
        batch_size: training batch size; batch_size_val: val/test batch size (None -> batch_size).
        num_workers: DataLoader workers (persistent when > 0).
        peak: each waveform is scaled to max |x| = peak (silent ones stay 0).
        generate_if_missing: generate a missing file (arguments parsed from its name).
        sample_rate: expected sample rate (Hz); a file with another one raises ValueError.
        seed: seed of the training shuffle (None: the global seed, i.e. ``seed_everything``);
            a new permutation each epoch, a function of (seed, epoch) only.
        shuffle: shuffle the training split each epoch. Off by default, as the authors' loader
            (a plain ``DataLoader``): every epoch then has the same batches in the same order.

    Batches: {"x": (B, N) float32, "f0_hz": (B, 1) or (B, T) Hz, "weights": (B, K),
    "index": (B,) int64 index in the split}.
    """

    def __init__(
        self,
        data_path: str = DEFAULT_DATA_PATH,
        batch_size: int = 64,
        batch_size_val: int | None = None,
        num_workers: int = 0,
        peak: float = DEFAULT_PEAK,
        generate_if_missing: bool = True,
        sample_rate: int = 16000,
        seed: int | None = None,
        shuffle: bool = False,
    ) -> None:
        super().__init__()
        _check_int(batch_size, "batch_size", 1)
        if batch_size_val is not None:
            _check_int(batch_size_val, "batch_size_val", 1)
        _check_int(num_workers, "num_workers", 0)
        if _check_finite(peak, "peak") <= 0:
            raise ValueError(f"peak must be > 0, got {peak!r}")
        _check_int(sample_rate, "sample_rate", 1)
        if seed is not None:
            _check_int(seed, "seed", 0)
        self.data_path = Path(data_path)
        self.batch_size = batch_size
        self.batch_size_val = batch_size if batch_size_val is None else batch_size_val
        self.num_workers = num_workers
        self.peak = float(peak)
        self.generate_if_missing = generate_if_missing
        self.seed = seed
        self.shuffle = shuffle
        self._expected_sample_rate = sample_rate
        self._meta: dict[str, Any] | None = None
        self.train_dataset: PreloadedSplit | None = None
        self.val_dataset: PreloadedSplit | None = None
        self.test_dataset: PreloadedSplit | None = None

    def prepare_data(self) -> None:
        """Generate the data file if it is missing and ``generate_if_missing``."""
        if self.generate_if_missing:
            ensure_dataset(self.data_path)

    def setup(self, stage: str | None = None) -> None:
        """Load all three splits (once; every stage uses the same in-memory data)."""
        if self._meta is not None:
            return
        self.prepare_data()
        data = load_dataset(self.data_path)
        rate = data["meta"]["sample_rate"]
        expected = self._expected_sample_rate
        if rate != expected:
            raise ValueError(
                f"{self.data_path} is sampled at {rate} Hz but sample_rate={expected}; use a file "
                f"generated at {expected} Hz, or train at {rate} Hz with --data.init_args.sample_rate "
                f"{rate} --model.features.init_args.sample_rate {rate}"
            )
        splits = {}
        for split in SPLITS:
            thetas = data[f"{split}_thetas"]
            splits[split] = PreloadedSplit(
                peak_normalize(data[f"{split}_tensors"], self.peak),
                thetas["frequency"], thetas["weights"],
            )
        self.train_dataset, self.val_dataset, self.test_dataset = (splits[s] for s in SPLITS)
        self._meta = data["meta"]

    @property
    def meta(self) -> dict[str, Any]:
        """The data file's ``meta`` dict (generator settings, records of real notes); after setup."""
        if self._meta is None:
            raise RuntimeError("the data is not loaded; call setup() first")
        return self._meta

    @property
    def sample_rate(self) -> int:
        """Sample rate (Hz) of the data (from the file after setup, else the expected one)."""
        return self._expected_sample_rate if self._meta is None else self._meta["sample_rate"]

    @property
    def n_samples(self) -> int:
        """Samples per waveform: from the data after setup, else parsed from the file name."""
        if self.train_dataset is not None:
            return self.train_dataset.x.shape[1]
        params = parse_filename(self.data_path)
        if params is None:
            raise RuntimeError(
                f"n_samples is unknown until setup() has loaded {self.data_path}; "
                "call setup() first"
            )
        return params["n_samples"]

    def _loader(self, dataset: PreloadedSplit | None, batch_size: int, train: bool) -> DataLoader:
        if dataset is None:
            raise RuntimeError("the data is not loaded; call setup() first")
        shuffle = train and self.shuffle
        seed = torch.initial_seed() if self.seed is None else self.seed
        return DataLoader(
            dataset,
            batch_size=batch_size,
            sampler=EpochShuffleSampler(len(dataset), seed) if shuffle else None,
            collate_fn=collate_batch,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_dataset, self.batch_size, train=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_dataset, self.batch_size_val, train=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.test_dataset, self.batch_size_val, train=False)


# ----------------------------------------------------------------------------------------------
# Command line
# ----------------------------------------------------------------------------------------------

class _OneLineParser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        print(f"{self.prog}: error: {_one_line(message)}", file=sys.stderr)
        raise SystemExit(2)


def _build_parser() -> argparse.ArgumentParser:
    p = _OneLineParser(
        prog="synthetic_data.py",
        description="Generate the paper's synthetic harmonic data set (defaults reproduce it).",
    )
    p.add_argument("--n-examples", type=int, default=4000)
    p.add_argument("--f0-min", type=float, default=40.0, help="Hz")
    p.add_argument("--f0-max", type=float, default=1950.0, help="Hz")
    p.add_argument("--n-samples", type=int, default=4096)
    p.add_argument("--amp-min", type=float, default=0.4)
    p.add_argument("--amp-max", type=float, default=1.0)
    p.add_argument("--n-harmonics", type=int, default=8)
    p.add_argument("--min-harmonics", type=int, default=1)
    p.add_argument("--sample-rate", type=int, default=16000, help="Hz")
    p.add_argument("--n-frames", type=int, default=16, help="control frames per example")
    p.add_argument("--split-sizes", type=int, nargs=3, default=None,
                   metavar=("TRAIN", "VAL", "TEST"), help="default: 70/20/10 %% of --n-examples")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--snr-db", type=float, default=None, help="add white noise at this SNR (dB)")
    p.add_argument("--vibrato-cents", type=float, default=0.0, help="vibrato depth (cents)")
    p.add_argument("--vibrato-hz", type=float, default=5.0, help="vibrato rate (Hz)")
    p.add_argument("--glide-cents", type=float, default=0.0, help="linear glide over an example")
    p.add_argument("--inharmonicity", type=float, default=0.0,
                   help="B: partial k at k f0 sqrt(1 + B k^2)")
    p.add_argument("--out", type=Path, default=None,
                   help="output file (default: data/<authors' name for these parameters>)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _build_parser().parse_args(argv)
    params = {k: v for k, v in vars(args).items() if k != "out"}
    if params["split_sizes"] is not None:
        params["split_sizes"] = tuple(params["split_sizes"])
    start = time.perf_counter()
    try:
        data = generate_dataset(**params)
    except ValueError as err:
        print(f"synthetic_data.py: error: {_one_line(err)}", file=sys.stderr)
        return 2
    out = args.out if args.out is not None else Path("data") / default_filename(**params)
    try:
        save_dataset(data, out)
    except OSError as err:
        print(f"synthetic_data.py: error: cannot write {out}: {_one_line(err)}", file=sys.stderr)
        return 1
    sizes = data["meta"]["split_sizes"]
    print(
        f"wrote {out}: {params['n_examples']} examples (train/val/test {sizes[0]}/{sizes[1]}/"
        f"{sizes[2]}), {params['n_samples']} samples at {params['sample_rate']} Hz, "
        f"{out.stat().st_size / 1e6:.1f} MB in {time.perf_counter() - start:.1f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
