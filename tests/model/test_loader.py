"""The pitch tool's loader (sotddsp/model/loader.py): a shipped name or a checkpoint path in one
call, with no CLI, no banner and no RNG side effect; unknown names and devices in one line."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers.models import write_tiny_checkpoint

import sotddsp
from sotddsp.model import checkpoints, loader
from sotddsp.model.pitch import PitchModel, PitchTrack


def rng_states() -> tuple:
    states = (torch.get_rng_state(), np.random.get_state(), random.getstate())
    return states[0].clone(), (states[1][0], states[1][1].copy(), *states[1][2:]), states[2]


def same_states(a: tuple, b: tuple) -> bool:
    return (torch.equal(a[0], b[0]) and a[1][0] == b[1][0] and np.array_equal(a[1][1], b[1][1])
            and a[1][2:] == b[1][2:] and a[2] == b[2])


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_checkpoint(tmp_path_factory.mktemp("tiny") / "tiny.ckpt")


def test_the_default_model_is_shipped_with_a_provenance_line() -> None:
    assert loader.shipped_models()["default"] == checkpoints.DEFAULT_WEIGHTS
    line = loader.describe_model("default")
    record = checkpoints.default_provenance()
    assert line.startswith(f"default: {record['run']}, {record['checkpoint']}")
    assert "test RPA" in line and "\n" not in line


@pytest.mark.parametrize("name", ["default", "tiny"])
def test_load_and_predict_print_nothing_and_keep_the_rng_states(
    name: str, tiny_checkpoint: Path, capfd: pytest.CaptureFixture
) -> None:
    """No "Seed set to", no Lightning banner, no progress bar; the torch, NumPy and Python
    generators are where they were (a seeded draw after equals one without the calls)."""
    torch.manual_seed(11)
    np.random.seed(11)
    random.seed(11)
    before = rng_states()
    model = sotddsp.load_model(str(tiny_checkpoint) if name == "tiny" else name, device="cpu")
    track = model.predict(np.sin(2 * np.pi * 220.0 * np.arange(8000) / 16000), 16000)
    assert same_states(before, rng_states())
    assert capfd.readouterr() == ("", "")
    assert isinstance(model, PitchModel) and isinstance(track, PitchTrack)
    assert not model.autoencoder.training and str(model.device) == "cpu"
    assert track.frequency.shape == (32,) and np.isfinite(track.frequency).all()


def test_a_path_loads_what_load_checkpoint_loads(tiny_checkpoint: Path) -> None:
    model = loader.load_model(tiny_checkpoint)
    reference = checkpoints.load_checkpoint(tiny_checkpoint)
    assert model.name == str(tiny_checkpoint) and model.provenance == {}
    for key, value in reference.state_dict().items():
        assert torch.equal(model.autoencoder.state_dict()[key], value), key
    assert loader.load_model().provenance == checkpoints.default_provenance()


def test_an_unknown_name_or_a_folder_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(loader.ModelNotFoundError,
                       match=r"^nope: checkpoint not found, and not a shipped model \(default\)"):
        loader.load_model("nope")
    with pytest.raises(loader.ModelNotFoundError, match="a directory, not a checkpoint file"):
        loader.load_model(tmp_path)


def test_devices_this_machine_lacks_are_one_line_value_errors() -> None:
    assert loader.resolve_device("cpu") == torch.device("cpu")
    assert loader.resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    for bad, says in (("cuda:99", "CUDA"), ("gpu0", "not a torch device name")):
        with pytest.raises(ValueError, match=says) as raised:
            loader.load_model("default", device=bad)
        assert "\n" not in str(raised.value)
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available on this machine"):
            loader.resolve_device("cuda")


def test_the_api_is_exported_at_the_top_level() -> None:
    assert sotddsp.load_model is loader.load_model
    assert sotddsp.PitchModel is PitchModel and sotddsp.PitchTrack is PitchTrack
    with pytest.raises(AttributeError):
        sotddsp.no_such_name  # noqa: B018
