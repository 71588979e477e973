"""The checkpoint reader's default model (sotddsp/model/checkpoints.py): the weights shipped in
the package load and match their provenance; a run's model to ship is chosen as documented."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from helpers.entrypoints import REPO
from helpers.models import assert_same_model, cli_built_model

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


# ----------------------------------------------------------------------------------------------
# building by class path, without the CLI
# ----------------------------------------------------------------------------------------------

V0_CHECKPOINT = REPO / "tests" / "fixtures" / "v0-run" / "SOT-2048" / "SOT-2048-42" / "checkpoints" \
    / "last.ckpt"


@pytest.mark.parametrize("path", [checkpoints.DEFAULT_WEIGHTS, V0_CHECKPOINT],
                         ids=["default-model", "flat-layout-run"])
def test_load_checkpoint_builds_the_model_the_cli_builds(path: Path) -> None:
    """The plain build (class paths, FRONT_END_LINKS, class defaults) against the experiment
    CLI's (jsonargparse, base.yaml first, its links) on a train.py checkpoint of today and one
    of the flat layout (old class paths)."""
    assert_same_model(checkpoints.load_checkpoint(path), cli_built_model(path))


@pytest.mark.parametrize(("change", "says"), [
    ({"encoder": {"class_path": "os.system", "init_args": {}}},
     r"model\.encoder\.class_path: class path 'os\.system' is outside sotddsp\. and torch\.optim\."),
    ({"encoder": {"class_path": "sotddsp.model.encoder.Gone", "init_args": {}}},
     r"model\.encoder\.class_path: class 'sotddsp\.model\.encoder\.Gone' no longer exists"),
    ({"synth": {"class_path": "sotddsp.dsp.synth.HarmonicSynth", "init_args": {"speed": 2}}},
     r"^model\.synth: .*speed"),
    ({"temperature": -1.0}, r"^model: temperature must be > 0"),
    ({"features": None}, r"no model\.features section"),
])
def test_build_model_refuses_what_it_cannot_build_in_one_line(change: dict, says: str) -> None:
    from helpers.models import TINY_MODEL_CONFIG

    with pytest.raises(checkpoints.ConfigError, match=says) as raised:
        checkpoints.build_model({**TINY_MODEL_CONFIG, **change})
    assert "\n" not in str(raised.value)
