"""The DataModule (sotddsp/data/datamodule.py): the authors' files, batches, shuffling, per-frame
f0, sample rates, and generating a missing file from its name."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch

from sotddsp.data.datamodule import PreloadedSinusoidDataModule
from sotddsp.data.files import SPLITS, DataFormatError, load_dataset, save_dataset
from sotddsp.data.synthetic import SynthSettings, generate_dataset


def write_authors_file(path: Path, n: int = 12, n_samples: int = 512) -> dict:
    """The authors' release layout: the same examples under every split name, no meta."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, n_samples, generator=g) * 0.3
    x[3] = 0.0  # a silent example
    thetas = {"frequency": 40 + 1900 * torch.rand(n, 1, generator=g),
              "weights": torch.rand(n, 8, generator=g)}
    data = {f"{s}_tensors": x for s in SPLITS} | {f"{s}_thetas": thetas for s in SPLITS}
    torch.save(data, path)
    return data


def test_authors_format_with_datamodule(tmp_path: Path, caplog) -> None:
    path = tmp_path / "authors.pth"
    original = write_authors_file(path)
    dm = PreloadedSinusoidDataModule(data_path=str(path), batch_size=5, generate_if_missing=False)
    with caplog.at_level(logging.WARNING, logger="data_files"):
        dm.setup("fit")
    assert any("same 12 examples" in r.getMessage() for r in caplog.records)
    assert dm.sample_rate == 16000 and dm.n_samples == 512
    x = dm.train_dataset.x
    peaks = x.abs().amax(dim=1)
    assert torch.all(torch.isfinite(x))
    assert torch.equal(x[3], torch.zeros(512))
    keep = torch.arange(12) != 3
    torch.testing.assert_close(peaks[keep], torch.full((11,), 0.9))
    # scaling keeps the waveform's shape: x = c * original with c > 0
    ratio = x[0] / original["train_tensors"][0]
    torch.testing.assert_close(ratio, ratio[0].expand(512))
    batch = next(iter(dm.val_dataloader()))
    assert set(batch) == {"x", "f0_hz", "weights", "index"}
    assert batch["x"].shape == (5, 512) and batch["x"].dtype == torch.float32
    assert batch["f0_hz"].shape == (5, 1) and batch["weights"].shape == (5, 8)
    assert batch["index"].dtype == torch.int64 and torch.equal(batch["index"], torch.arange(5))
    torch.testing.assert_close(batch["f0_hz"], original["val_thetas"]["frequency"][:5])


def test_datamodule_batches_and_shuffle(tmp_path: Path, small: dict) -> None:
    path = tmp_path / "small.pth"
    save_dataset(small, path)
    dm = PreloadedSinusoidDataModule(
        data_path=str(path), batch_size=16, batch_size_val=7, seed=5, shuffle=True
    )
    dm.setup()
    batches = list(dm.train_dataloader())
    assert sum(b["x"].shape[0] for b in batches) == 120
    order = torch.cat([b["index"] for b in batches])
    assert sorted(order.tolist()) == list(range(120)) and not torch.equal(order, torch.arange(120))
    b = batches[0]
    assert b["x"].shape == (16, 1024) and b["f0_hz"].shape == (16, 1)
    assert b["weights"].shape == (16, 8)
    assert b["index"].shape == (16,) and b["index"].dtype == torch.int64
    torch.testing.assert_close(b["f0_hz"], small["train_thetas"]["frequency"][b["index"]])
    torch.testing.assert_close(b["x"].abs().amax(1), torch.full((16,), 0.9))
    # reproducible shuffle: a fresh DataModule with the same seed gives the same order
    dm2 = PreloadedSinusoidDataModule(data_path=str(path), batch_size=16, seed=5, shuffle=True)
    dm2.setup()
    assert torch.equal(torch.cat([b["index"] for b in dm2.train_dataloader()]), order)
    val = list(dm.val_dataloader())
    assert [v["x"].shape[0] for v in val] == [7] * 7 + [1]
    assert torch.equal(torch.cat([v["index"] for v in val]), torch.arange(50))
    assert len(dm.test_dataset) == 30


def test_datamodule_does_not_shuffle_by_default(tmp_path: Path, small: dict) -> None:
    """As the authors' loader: every epoch has the same batches, in the split's order."""
    path = tmp_path / "small.pth"
    save_dataset(small, path)
    dm = PreloadedSinusoidDataModule(data_path=str(path), batch_size=16, seed=5)
    dm.setup()
    loader = dm.train_dataloader()
    for epoch in range(3):
        if hasattr(loader.sampler, "set_epoch"):
            loader.sampler.set_epoch(epoch)
        order = torch.cat([b["index"] for b in loader])
        assert torch.equal(order, torch.arange(120))


def test_datamodule_per_frame_f0(tmp_path: Path) -> None:
    path = tmp_path / "vib.pth"
    save_dataset(generate_dataset(SynthSettings(n_examples=20, n_samples=512, vibrato_cents=30.0)), path)
    dm = PreloadedSinusoidDataModule(data_path=str(path), batch_size=4, shuffle=False)
    dm.setup()
    batch = next(iter(dm.train_dataloader()))
    assert batch["f0_hz"].shape == (4, 16)
    assert torch.equal(batch["index"], torch.arange(4))


def test_datamodule_sample_rate_mismatch(tmp_path: Path) -> None:
    path = tmp_path / "sr.pth"
    data = generate_dataset(SynthSettings(n_examples=10, n_samples=512, sample_rate=8000, f0_max=1000.0))
    save_dataset(data, path)
    dm = PreloadedSinusoidDataModule(data_path=str(path), sample_rate=16000)
    with pytest.raises(ValueError, match="8000 Hz") as info:
        dm.setup()
    assert "\n" not in str(info.value)


def test_datamodule_generates_missing_file_from_its_name(tmp_path: Path, caplog) -> None:
    path = tmp_path / "data" / "40_1950_512_04_1_30_8_1_harmonic_seed2.pth"
    dm = PreloadedSinusoidDataModule(data_path=str(path), batch_size=4)
    assert dm.n_samples == 512  # parsed from the name before setup
    with caplog.at_level(logging.INFO, logger="synthetic_data"):
        dm.prepare_data()
        dm.setup()
    generated = [r for r in caplog.records
                 if r.name == "synthetic_data" and "generating" in r.getMessage()]
    assert len(generated) == 1 and "\n" not in generated[0].getMessage()
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]
    expected = generate_dataset(SynthSettings(n_examples=30, n_samples=512, seed=2))
    assert torch.equal(load_dataset(path)["test_tensors"], expected["test_tensors"])
    assert len(dm.train_dataset) == 21 and dm.n_samples == 512


def test_datamodule_missing_file_without_generation(tmp_path: Path) -> None:
    dm = PreloadedSinusoidDataModule(data_path=str(tmp_path / "none.pth"),
                                     generate_if_missing=False)
    with pytest.raises(DataFormatError, match="not found") as info:
        dm.setup()
    assert "\n" not in str(info.value) and "none.pth" in str(info.value)


def test_unwritable_directory_raises_one_line(tmp_path: Path) -> None:
    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory")
    path = blocker / "40_1950_512_04_1_30_8_1_harmonic.pth"
    dm = PreloadedSinusoidDataModule(data_path=str(path))
    with pytest.raises(PermissionError, match="writable") as info:
        dm.prepare_data()
    assert "\n" not in str(info.value)
