"""The paper's synthetic harmonic data set: its settings, generation and file names.

PAPER.md "Data": 4000 examples of 4096 samples at 16 kHz; f0 ~ U[40, 1950] Hz; 8 harmonic
slots with amplitudes ~ U[0.4, 1], of which the n_active ~ U{1..8} lowest are on; rendered by
``sotddsp.dsp.synth.HarmonicSynth`` (16 constant control frames; partials at or above Nyquist
are silent); each waveform is scaled to peak 0.9 when loaded (datamodule.py). Unlike the authors'
release (whose train/val/test were the same 4000 examples), splits are disjoint: 2800 / 800 / 400.
The file format is files.py's.

``SynthSettings`` holds the generator's settings once: its fields are ``generate_dataset``'s
arguments, their checks, the file's ``meta``, the file name and the command line's options.

Command line (``sotddsp.apps.synthetic_data``): ``python synthetic_data.py`` or ``sotddsp-data``
writes data/40_1950_4096_04_1_4000_8_1_harmonic.pth; ``--help`` lists an option for every setting.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import logging
import math
import os
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from sotddsp.core.checks import check_finite, check_int
from sotddsp.core.command_line import one_line
from sotddsp.data.files import FORMAT_VERSION, SPLITS, save_dataset
from sotddsp.dsp.synth import HarmonicSynth

__all__ = [
    "DEFAULT_DATA_PATH",
    "SynthSettings",
    "ensure_dataset",
    "field_type",
    "generate_dataset",
    "regenerate_hint",
]

logger = logging.getLogger("synthetic_data")

DEFAULT_DATA_PATH = "data/40_1950_4096_04_1_4000_8_1_harmonic.pth"
_RENDER_CHUNK = 64  # examples per synthesizer call


def _default_split_sizes(n_examples: int) -> tuple[int, int, int]:
    """70 / 20 / 10 % of n_examples, at least 1 each (2800 / 800 / 400 for the paper's 4000)."""
    n_val = max(1, round(0.2 * n_examples))
    n_test = max(1, round(0.1 * n_examples))
    return n_examples - n_val - n_test, n_val, n_test


@dataclass(frozen=True)
class SynthSettings:
    """The generator's settings; the defaults reproduce the paper's set.

    Beyond the paper (off by default): ``snr_db`` adds white Gaussian noise scaled so that each
    example's 10 log10(mean(x^2) / mean(noise^2)) equals snr_db exactly; ``vibrato_cents`` /
    ``vibrato_hz`` make f0_t = f0 2^(c_t / 1200) with c_t = vibrato_cents sin(2 pi vibrato_hz t
    + phase), phase ~ U[0, 2 pi), t the time (s) of control frame t; ``glide_cents`` adds a
    linear c_t from -glide/2 to +glide/2; ``inharmonicity`` B puts partial k at
    k f0 sqrt(1 + B k^2). With vibrato or glide, ``frequency`` holds the per-frame f0 [N, T].
    Raises ValueError (one line naming the setting) for impossible values.
    """

    n_examples: int = field(default=4000, metadata={"help": "examples in all splits"})
    f0_min: float = field(default=40.0, metadata={"help": "lowest f0 (Hz)"})
    f0_max: float = field(default=1950.0, metadata={"help": "highest f0 (Hz)"})
    n_samples: int = field(default=4096, metadata={"help": "samples per example"})
    amp_min: float = field(default=0.4, metadata={"help": "lowest harmonic amplitude"})
    amp_max: float = field(default=1.0, metadata={"help": "highest harmonic amplitude"})
    n_harmonics: int = field(default=8, metadata={"help": "harmonic slots"})
    min_harmonics: int = field(default=1, metadata={"help": "fewest active harmonics"})
    sample_rate: int = field(default=16000, metadata={"help": "Hz"})
    n_frames: int = field(default=16, metadata={"help": "control frames per example"})
    split_sizes: tuple[int, int, int] | None = field(
        default=None, metadata={"help": "train, val, test sizes (default: 70/20/10 %%)"})
    seed: int = field(default=0, metadata={"help": "seed of the generator"})
    snr_db: float | None = field(default=None, metadata={"help": "add white noise at this SNR (dB)"})
    vibrato_cents: float = field(default=0.0, metadata={"help": "vibrato depth (cents)"})
    vibrato_hz: float = field(default=5.0, metadata={"help": "vibrato rate (Hz)"})
    glide_cents: float = field(default=0.0, metadata={"help": "linear glide over an example"})
    inharmonicity: float = field(default=0.0, metadata={"help": "B: partial k at k f0 sqrt(1 + B k^2)"})

    def __post_init__(self) -> None:
        check_int(self.n_examples, "n_examples", minimum=3)
        check_int(self.sample_rate, "sample_rate")
        f0_min, f0_max = check_finite(self.f0_min, "f0_min"), check_finite(self.f0_max, "f0_max")
        if not 0.0 < f0_min <= f0_max < self.sample_rate / 2:
            raise ValueError(
                f"f0_min and f0_max must satisfy 0 < f0_min <= f0_max < sample_rate / 2 "
                f"({self.sample_rate / 2:g} Hz), got f0_min={self.f0_min!r}, f0_max={self.f0_max!r}"
            )
        check_int(self.n_frames, "n_frames")
        check_int(self.n_samples, "n_samples")
        if self.n_samples % self.n_frames != 0:
            raise ValueError(
                f"n_samples ({self.n_samples}) must be a multiple of n_frames ({self.n_frames})"
            )
        amp_min, amp_max = check_finite(self.amp_min, "amp_min"), check_finite(self.amp_max, "amp_max")
        if not 0.0 <= amp_min <= amp_max:
            raise ValueError(f"amp_min and amp_max must satisfy 0 <= amp_min <= amp_max, "
                             f"got {self.amp_min!r}, {self.amp_max!r}")
        check_int(self.n_harmonics, "n_harmonics")
        check_int(self.min_harmonics, "min_harmonics")
        if self.min_harmonics > self.n_harmonics:
            raise ValueError(f"min_harmonics must be <= n_harmonics ({self.n_harmonics}), "
                             f"got {self.min_harmonics!r}")
        check_int(self.seed, "seed", minimum=0)
        if self.snr_db is not None:
            check_finite(self.snr_db, "snr_db")
        if check_finite(self.vibrato_cents, "vibrato_cents") < 0:
            raise ValueError(f"vibrato_cents must be >= 0, got {self.vibrato_cents!r}")
        if check_finite(self.vibrato_hz, "vibrato_hz") <= 0:
            raise ValueError(f"vibrato_hz must be > 0, got {self.vibrato_hz!r}")
        check_finite(self.glide_cents, "glide_cents")
        if check_finite(self.inharmonicity, "inharmonicity") < 0:
            raise ValueError(f"inharmonicity must be >= 0, got {self.inharmonicity!r}")
        if self.split_sizes is not None:
            sizes = tuple(self.split_sizes)
            if len(sizes) != 3:
                raise ValueError(
                    f"split_sizes must have 3 entries (train, val, test), got {sizes!r}")
            for size in sizes:
                check_int(size, "split_sizes entries")
            if sum(sizes) != self.n_examples:
                raise ValueError(f"split_sizes {sizes} must sum to n_examples "
                                 f"({self.n_examples}); pass sizes that add up")
            object.__setattr__(self, "split_sizes", sizes)

    @property
    def splits(self) -> tuple[int, int, int]:
        """(train, val, test) sizes: ``split_sizes``, or 70/20/10 % (2800/800/400 at 4000)."""
        return self.split_sizes or _default_split_sizes(self.n_examples)

    @property
    def frequency_per_frame(self) -> bool:
        """True when vibrato or glide makes f0 vary over the control frames."""
        return self.vibrato_cents > 0 or self.glide_cents != 0

    def changed(self) -> dict[str, Any]:
        """The settings that differ from the defaults (the default split sizes count as unset)."""
        out = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name == "split_sizes" and value == _default_split_sizes(self.n_examples):
                continue
            if value != f.default:
                out[f.name] = value
        return out

    def meta(self) -> dict[str, Any]:
        """The data file's ``meta``: the format version, the generator and every setting."""
        settings = dataclasses.asdict(self)
        settings["split_sizes"] = list(self.splits)
        return {"format_version": FORMAT_VERSION, "generator": "synthetic_data.generate_dataset",
                **settings, "frequency_per_frame": self.frequency_per_frame}

    def filename(self) -> str:
        """The file name: the authors' pattern f0min_f0max_nsamples_ampmin_ampmax_n_nharmonics_
        minharmonics_harmonic.pth (0.4 -> '04'), e.g. '40_1950_4096_04_1_4000_8_1_harmonic.pth'
        at the defaults, then a suffix for each non-default setting in this order: _sr16000,
        _frames16, _split2800-800-400, _seed1, _snr20, _vib50 (or _vib50at6 when vibrato_hz != 5),
        _glide100, _inh0.001. ``from_filename`` inverts it."""
        name = "_".join([
            _compact_number(self.f0_min), _compact_number(self.f0_max), str(self.n_samples),
            _compact_number(self.amp_min), _compact_number(self.amp_max), str(self.n_examples),
            str(self.n_harmonics), str(self.min_harmonics), "harmonic",
        ])
        changed = self.changed()
        if "sample_rate" in changed:
            name += f"_sr{self.sample_rate}"
        if "n_frames" in changed:
            name += f"_frames{self.n_frames}"
        if "split_sizes" in changed:
            name += "_split" + "-".join(str(s) for s in self.splits)
        if "seed" in changed:
            name += f"_seed{self.seed}"
        if self.snr_db is not None:
            name += f"_snr{_plain_number(self.snr_db)}"
        if self.vibrato_cents > 0:
            name += f"_vib{_plain_number(self.vibrato_cents)}"
            if "vibrato_hz" in changed:
                name += f"at{_plain_number(self.vibrato_hz)}"
        if self.glide_cents != 0:
            name += f"_glide{_plain_number(self.glide_cents)}"
        if self.inharmonicity > 0:
            name += f"_inh{_plain_number(self.inharmonicity)}"
        return name + ".pth"

    @classmethod
    def from_filename(cls, name: str | os.PathLike) -> SynthSettings | None:
        """The settings a ``filename()`` name encodes (directory ignored), or None.

        Raises ValueError when the name parses but its values are impossible.
        """
        match = _FILENAME_RE.fullmatch(Path(name).name)
        if match is None:
            return None
        values: dict[str, Any] = {}
        for key, text in match.groupdict().items():
            if text is None:
                continue
            if key in ("f0_min", "f0_max", "amp_min", "amp_max"):
                values[key] = _parse_compact_number(text)
            elif key == "split_sizes":
                values[key] = tuple(int(s) for s in text.split("-"))
            elif field_type(key) is float:
                values[key] = float(text)
            else:
                values[key] = int(text)
        return cls(**values)

    def command(self, out: str | os.PathLike | None = None) -> str:
        """The command line that writes this set (to ``out`` if given)."""
        options = []
        for key, value in self.changed().items():
            text = " ".join(str(v) for v in value) if key == "split_sizes" else (
                _plain_number(value) if isinstance(value, float) else str(value))
            options.append(f"--{key.replace('_', '-')} {text}")
        if out is not None:
            options.append(f"--out {out}")
        return " ".join(["python synthetic_data.py", *options])


def field_type(name: str) -> type:
    """The base type of a SynthSettings field (int or float; tuples and None stripped)."""
    hint = typing.get_type_hints(SynthSettings)[name]
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        hint = args[0]
    return typing.get_args(hint)[0] if typing.get_origin(hint) is tuple else hint


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




def regenerate_hint(path: str | os.PathLike) -> str:
    """How to make the data file at ``path``: the exact command for a synthetic set's name."""
    try:
        settings = SynthSettings.from_filename(path)
    except ValueError:
        settings = None
    if settings is None:
        return ("regenerate it (python synthetic_data.py --help, or python real_data.py for "
                "real notes)")
    return f"regenerate it with `{settings.command(path)}`"


# ----------------------------------------------------------------------------------------------
# Generation
# ----------------------------------------------------------------------------------------------

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


def generate_dataset(settings: SynthSettings = SynthSettings()) -> dict[str, Any]:
    """Generate the synthetic harmonic data set (files.py's format), deterministically.

    Per example (torch.Generator seeded with ``settings.seed``): f0 ~ U[f0_min, f0_max] Hz;
    n_active ~ U{min_harmonics..n_harmonics}; weights[k] ~ U[amp_min, amp_max] for the
    n_active lowest harmonics, 0 for the others. Rendered by ``HarmonicSynth(n_samples,
    sample_rate)`` from ``n_frames`` control frames; partials at or above Nyquist are silent.
    The splits are consecutive, disjoint blocks of ``settings.splits`` examples.

    Returns {"train_tensors", "val_tensors", "test_tensors": float32 [n_split, n_samples] (not
    peak-normalized), "train_thetas", "val_thetas", "test_thetas": {"frequency": float32
    [n_split, 1 or n_frames] Hz, "weights": float32 [n_split, n_harmonics]}, "meta": dict}.
    """
    s = settings
    n_examples, n_frames, n_samples = s.n_examples, s.n_frames, s.n_samples
    g = torch.Generator().manual_seed(s.seed)
    f0 = s.f0_min + (s.f0_max - s.f0_min) * torch.rand(n_examples, generator=g,
                                                      dtype=torch.float64)
    n_active = torch.randint(s.min_harmonics, s.n_harmonics + 1, (n_examples,), generator=g)
    weights = s.amp_min + (s.amp_max - s.amp_min) * torch.rand(
        n_examples, s.n_harmonics, generator=g, dtype=torch.float64
    )
    weights = torch.where(torch.arange(s.n_harmonics) < n_active[:, None], weights, 0.0)
    weights = weights.to(torch.float32)

    if s.frequency_per_frame:
        hop = n_samples / n_frames
        # upsample_linear puts control frame t at sample (t + 0.5) hop - 0.5.
        t_sec = ((torch.arange(n_frames, dtype=torch.float64) + 0.5) * hop - 0.5) / s.sample_rate
        cents = torch.zeros(n_examples, n_frames, dtype=torch.float64)
        if s.vibrato_cents > 0:
            phase = 2 * math.pi * torch.rand(n_examples, 1, generator=g, dtype=torch.float64)
            cents = cents + s.vibrato_cents * torch.sin(2 * math.pi * s.vibrato_hz * t_sec + phase)
        if s.glide_cents != 0:
            ramp = torch.linspace(-0.5, 0.5, n_frames, dtype=torch.float64) if n_frames > 1 \
                else torch.zeros(1, dtype=torch.float64)
            cents = cents + s.glide_cents * ramp
        frequency = (f0[:, None] * 2.0 ** (cents / 1200.0)).to(torch.float32)
        f0_frames = frequency
    else:
        frequency = f0[:, None].to(torch.float32)
        f0_frames = frequency.expand(n_examples, n_frames)

    # The torch path, not the fused CPU kernel: the file stays bit-identical to earlier versions'.
    synth = HarmonicSynth(n_samples=n_samples, sample_rate=s.sample_rate, backend="torch")
    audio = torch.empty(n_examples, n_samples, dtype=torch.float32)
    with torch.no_grad():
        for start in range(0, n_examples, _RENDER_CHUNK):
            stop = min(start + _RENDER_CHUNK, n_examples)
            chunk = _render(synth, weights[start:stop], f0_frames[start:stop], s.inharmonicity)
            if s.snr_db is not None:
                noise = torch.randn(chunk.shape, generator=g, dtype=torch.float64)
                p_signal = chunk.double().pow(2).mean(dim=1, keepdim=True)
                p_noise = noise.pow(2).mean(dim=1, keepdim=True)
                noise = noise * torch.sqrt(p_signal / (p_noise * 10.0 ** (s.snr_db / 10.0)))
                chunk = chunk.double() + noise
            audio[start:stop] = chunk.to(torch.float32)

    data: dict[str, Any] = {"meta": s.meta()}
    sizes = s.splits
    bounds = [0, sizes[0], sizes[0] + sizes[1], n_examples]
    for split, lo, hi in zip(SPLITS, bounds[:-1], bounds[1:]):
        data[f"{split}_tensors"] = audio[lo:hi].clone()
        data[f"{split}_thetas"] = {
            "frequency": frequency[lo:hi].clone(),
            "weights": weights[lo:hi].clone(),
        }
    return data


def ensure_dataset(path: str | os.PathLike) -> bool:
    """Generate the data set file at ``path`` if it does not exist; True if this call wrote it.

    The settings are parsed from the file name (``SynthSettings.from_filename``), the paper's
    defaults where the name does not match. Safe when several processes call it at once: an exclusive
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
            f"cannot create {path} ({err.strerror or one_line(err)}); make {path.parent} "
            f"writable, or generate the file elsewhere with `python synthetic_data.py --out "
            f"DIR/{path.name}` and pass data_path=DIR/{path.name}"
        ) from None
    with lock_file:
        fcntl.flock(lock_file.fileno(), fcntl.LOCK_EX)  # released when the file is closed
        if path.is_file():
            return False
        settings = SynthSettings.from_filename(path) or SynthSettings()
        logger.info(
            "%s not found: generating it (%s)", path,
            ", ".join(f"{k}={v}" for k, v in settings.changed().items()) or "paper defaults",
        )
        save_dataset(generate_dataset(settings), path)
        with contextlib.suppress(FileNotFoundError):
            lock_path.unlink()  # processes waiting on the old lock inode then find the file
        return True
