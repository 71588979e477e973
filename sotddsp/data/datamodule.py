"""The LightningDataModule of preloaded data-set files (the synthetic set and the real-instrument
set, both in files.py's format): per-waveform peak normalization, batches as dicts, and the
paper's unshuffled training loader (shuffling per (seed, epoch) as an option).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Sampler

from sotddsp.core.checks import check_finite, check_int
from sotddsp.data.files import SPLITS, load_dataset
from sotddsp.data.synthetic import DEFAULT_DATA_PATH, SynthSettings, ensure_dataset, regenerate_hint

__all__ = [
    "DEFAULT_PEAK",
    "EpochShuffleSampler",
    "PreloadedSinusoidDataModule",
    "PreloadedSplit",
    "peak_normalize",
]

DEFAULT_PEAK = 0.9  # each waveform is scaled to this peak when loaded (PAPER.md)


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
        check_int(batch_size, "batch_size")
        if batch_size_val is not None:
            check_int(batch_size_val, "batch_size_val")
        check_int(num_workers, "num_workers", minimum=0)
        if check_finite(peak, "peak") <= 0:
            raise ValueError(f"peak must be > 0, got {peak!r}")
        check_int(sample_rate, "sample_rate")
        if seed is not None:
            check_int(seed, "seed", minimum=0)
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
        data = load_dataset(self.data_path, fix=regenerate_hint(self.data_path))
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
        settings = SynthSettings.from_filename(self.data_path)
        if settings is None:
            raise RuntimeError(
                f"n_samples is unknown until setup() has loaded {self.data_path}; "
                "call setup() first"
            )
        return settings.n_samples

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
