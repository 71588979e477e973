"""The data-set file format (sotddsp/data/files.py): atomic, validated saves and loads, one-line
errors for bad files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from sotddsp.data.files import SPLITS, DataFormatError, load_dataset, save_dataset
from sotddsp.data.synthetic import regenerate_hint


def all_split(data: dict, key: str) -> torch.Tensor:
    if key == "tensors":
        return torch.cat([data[f"{s}_tensors"] for s in SPLITS])
    return torch.cat([data[f"{s}_thetas"][key] for s in SPLITS])


def test_save_load_round_trip_is_atomic(tmp_path: Path, small: dict, monkeypatch) -> None:
    path = tmp_path / "sub" / "set.pth"
    save_dataset(small, path)
    save_dataset(small, path)  # overwrite
    assert sorted(p.name for p in path.parent.iterdir()) == ["set.pth"]
    loaded = load_dataset(path)
    for key in ("tensors", "frequency", "weights"):
        assert torch.equal(all_split(loaded, key), all_split(small, key))
    assert loaded["meta"] == small["meta"]

    def failing_save(obj, f) -> None:
        f.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", failing_save)
    with pytest.raises(OSError, match="disk full"):
        save_dataset(small, path)
    assert sorted(p.name for p in path.parent.iterdir()) == ["set.pth"]
    monkeypatch.undo()
    assert torch.equal(load_dataset(path)["train_tensors"], small["train_tensors"])


def _bad_files(tmp_path: Path, small: dict) -> dict[str, Path]:
    good = tmp_path / "good.pth"
    save_dataset(small, good)
    raw = good.read_bytes()
    files = {}
    files["truncated"] = tmp_path / "truncated.pth"
    files["truncated"].write_bytes(raw[: len(raw) // 2])
    files["corrupt"] = tmp_path / "corrupt.pth"
    files["corrupt"].write_bytes(np.random.default_rng(0).bytes(4096))
    missing_key = {k: v for k, v in small.items() if k != "val_thetas"}
    files["missing_key"] = tmp_path / "missing_key.pth"
    torch.save(missing_key, files["missing_key"])
    wrong_rank = dict(small, train_tensors=small["train_tensors"][:, None, :])
    files["wrong_rank"] = tmp_path / "wrong_rank.pth"
    torch.save(wrong_rank, files["wrong_rank"])
    wrong_len = dict(small, test_thetas={"frequency": torch.ones(3, 1),
                                         "weights": torch.ones(3, 8)})
    files["wrong_len"] = tmp_path / "wrong_len.pth"
    torch.save(wrong_len, files["wrong_len"])
    not_dict = tmp_path / "list.pth"
    torch.save([1, 2, 3], not_dict)
    files["not_dict"] = not_dict
    nan = dict(small, val_tensors=small["val_tensors"].clone())
    nan["val_tensors"][2, 5] = float("nan")
    files["nan"] = tmp_path / "nan.pth"
    torch.save(nan, files["nan"])
    files["missing"] = tmp_path / "absent.pth"
    return files


def test_bad_files_raise_one_line_data_format_error(tmp_path: Path, small: dict) -> None:
    expected = {"truncated": "readable", "corrupt": "readable", "missing_key": "val_thetas",
                "wrong_rank": "train_tensors", "wrong_len": "test_thetas", "not_dict": "dict",
                "nan": "NaN", "missing": "not found"}
    for kind, path in _bad_files(tmp_path, small).items():
        with pytest.raises(DataFormatError) as info:
            load_dataset(path, fix=regenerate_hint(path))
        message = str(info.value)
        assert "\n" not in message, kind
        assert path.name in message and expected[kind] in message, (kind, message)
        assert "synthetic_data.py" in message, kind  # the fix
        assert isinstance(info.value, ValueError)
