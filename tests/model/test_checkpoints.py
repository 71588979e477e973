"""The checkpoint reader's default model (sotddsp/model/checkpoints.py): the weights shipped in
the package load and match their provenance; a run's model to ship is chosen as documented."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from helpers.entrypoints import REPO

from sotddsp.core.result_cache import file_sha256
from sotddsp.core.run_layout import CHECKPOINT_DIR
from sotddsp.model import checkpoints
from sotddsp.model.autoencoder import count_parameters

PROVENANCE = json.loads(checkpoints.DEFAULT_PROVENANCE.read_text())


def test_the_shipped_default_model_loads_and_estimates() -> None:
    assert checkpoints.default_checkpoint() == checkpoints.DEFAULT_WEIGHTS
    model = checkpoints.load_checkpoint()
    assert not model.training and count_parameters(model) == 46_012
    audio = torch.sin(2 * torch.pi * 220.0 * torch.arange(4096) / 16000)[None]
    with torch.no_grad():
        out = model.estimate(audio)
    assert out["f0_hz"].shape == (1, 16) and torch.isfinite(out["f0_hz"]).all()


def test_the_shipped_weights_hold_weights_and_config_only() -> None:
    saved = torch.load(checkpoints.DEFAULT_WEIGHTS, weights_only=True)
    assert set(saved) == {"state_dict", "epoch", "global_step", checkpoints.CONFIG_KEY}
    assert "class_path: sotddsp." in saved[checkpoints.CONFIG_KEY]
    assert "class_path: losses." not in saved[checkpoints.CONFIG_KEY]


def test_the_provenance_matches_the_shipped_file() -> None:
    saved = torch.load(checkpoints.DEFAULT_WEIGHTS, weights_only=True)
    assert PROVENANCE["sha256"] == file_sha256(checkpoints.DEFAULT_WEIGHTS)
    assert PROVENANCE["global_step"] == saved["global_step"]
    assert PROVENANCE["epoch"] == saved["epoch"]
    for key in ("run", "checkpoint", "val_rpa", "test_rpa"):
        assert key in PROVENANCE, key
    assert 0.0 <= PROVENANCE["val_rpa"] <= 1.0 and 0.0 <= PROVENANCE["test_rpa"] <= 1.0
    source = REPO / PROVENANCE["run"] / CHECKPOINT_DIR / PROVENANCE["checkpoint"]
    if not source.is_file():
        pytest.skip(f"{source} is not in this checkout")
    original = torch.load(source, map_location="cpu", weights_only=True)
    assert original["global_step"] == saved["global_step"]
    assert original["state_dict"].keys() == saved["state_dict"].keys()
    for name, tensor in original["state_dict"].items():
        assert torch.equal(tensor, saved["state_dict"][name]), name


def test_a_runs_model_to_ship_is_the_tested_one_else_the_best_so_far(tmp_path: Path) -> None:
    run = tmp_path / "SOT-2048-42"
    with pytest.raises(checkpoints.CheckpointError, match="no model in"):
        checkpoints.reference_checkpoint(run)
    (run / "checkpoints").mkdir(parents=True)
    for name in ("best-lsd-9-440.ckpt", "best-lsd-119-5280.ckpt", "best-lsd-24-1100.ckpt",
                 "last.ckpt"):
        (run / "checkpoints" / name).write_bytes(b"")
    with pytest.warns(UserWarning, match=r"still training.*best-lsd-119-5280\.ckpt \(step 5,280"):
        assert checkpoints.reference_checkpoint(run) == run / "checkpoints" / "best-lsd-119-5280.ckpt"
    (run / "test_metrics.json").write_text(json.dumps({"checkpoint": "best-lsd-24-1100.ckpt"}))
    assert checkpoints.reference_checkpoint(run) == run / "checkpoints" / "best-lsd-24-1100.ckpt"
