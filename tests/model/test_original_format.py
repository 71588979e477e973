"""The paper authors' released checkpoints: their config translates to ours, their pickles load
without their code, and with their weights our model gives the f0 and amplitudes of an
independent functional forward written on their key names."""

from __future__ import annotations

import copy
import io
import math
import pickle
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml
from helpers.models import assert_same_model, cli_built_model
from references.authors_format import (
    AUTHORS_MODULE,
    authors_state_dict,
    fixture_config,
    reference_cqt,
    reference_forward,
    write_authors_checkpoint,
    write_checkpoint_pickled_like_theirs,
)
from references.paper_reference import numpy_decoder

from sotddsp.apps import evaluate as eval_paper
from sotddsp.core import run_layout
from sotddsp.data.datamodule import peak_normalize
from sotddsp.data.files import load_dataset
from sotddsp.model import checkpoints, original_format
from sotddsp.model import cli as experiment_cli

EXPERIMENTS = run_layout.EXPERIMENTS_DIR
CHECKPOINT_NAME = "best-lsd-epoch=1234-step=24690.ckpt"
RUN = "c6m8cytv-42"

@pytest.fixture(scope="module")
def authors_tree(tmp_path_factory: pytest.TempPathFactory, tiny_data_path: Path) -> Path:
    """checkpoints/SOT-2048/c6m8cytv-42/{train_config.yaml, checkpoints/best-lsd-...ckpt}, as
    released, with random weights of their shapes and the tiny data set as data_path."""
    root = tmp_path_factory.mktemp("authors") / "checkpoints"
    run = root / "SOT-2048" / RUN
    (run / "checkpoints").mkdir(parents=True)
    config = fixture_config()
    config["data"]["init_args"]["data_path"] = str(tiny_data_path)
    (run / "train_config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    write_authors_checkpoint(run / "checkpoints" / CHECKPOINT_NAME, authors_state_dict(),
                             tmp_path_factory.mktemp("scratch"))
    return root


def checkpoint_path(root: Path) -> Path:
    return root / "SOT-2048" / RUN / "checkpoints" / CHECKPOINT_NAME


# ----------------------------------------------------------------------------------------------
# Config translation
# ----------------------------------------------------------------------------------------------

def _resolved(config_file: Path, tmp: Path, *extra: str) -> dict[str, Any]:
    cli = experiment_cli.build_cli(["--config", str(config_file), "--trainer.logger", "false",
                           "--checkpoint_root", str(tmp), *extra])
    resolved = yaml.safe_load(cli.parser.dump(cli.config, skip_none=False))
    return {k: resolved[k] for k in ("model", "experiment", "seed_everything")}


def test_fixture_config_is_detected_and_ours_is_not() -> None:
    assert original_format.is_original_config(fixture_config())
    ours = yaml.safe_load((EXPERIMENTS / "base.yaml").read_text())
    assert not original_format.is_original_config(ours)


def test_translated_fixture_resolves_to_our_sot_2048_experiment(tmp_path: Path) -> None:
    translated = original_format.write_translated_config(fixture_config(), tmp_path)
    theirs = _resolved(translated, tmp_path)
    ours = _resolved(EXPERIMENTS / "SOT-2048.yaml", tmp_path, "--seed_everything", "42")
    assert theirs == ours
    assert theirs["experiment"] == "SOT-2048" and theirs["seed_everything"] == 42


def _loss_without_sample_rate(loss: dict[str, Any]) -> dict[str, Any]:
    loss = copy.deepcopy(loss)
    terms = loss["init_args"]["terms"].values() if "terms" in loss["init_args"] else [loss]
    for term in terms:
        term["init_args"].pop("sample_rate", None)
    return loss


def _their_sot(config: dict[str, Any]) -> dict[str, Any]:
    return config["model"]["loss_fn"]["init_args"]["losses"][1]["init_args"]


@pytest.mark.parametrize("experiment", ["SOT-512-LogF", "SOT-NoCut", "SOT-2048-SS", "MSS-LogLin"])
def test_translated_variants_match_our_experiment_files(experiment: str) -> None:
    config = fixture_config()
    roll_off = False
    if experiment == "SOT-512-LogF":
        config["model"]["transform"]["n_fft"] = 512
        _their_sot(config)["log_scaled_x"] = True
    elif experiment == "SOT-NoCut":
        _their_sot(config)["limit_quantile_range"] = False
    elif experiment == "SOT-2048-SS":
        losses = config["model"]["loss_fn"]["init_args"]
        losses["losses"][0]["init_args"]["fft_sizes"] = [512]
        losses["weights"] = [0.1, 1]
    else:  # an MSS loss used alone, linear + log, with the decoder's roll-off
        mss = config["model"]["loss_fn"]["init_args"]["losses"][0]
        mss["init_args"]["logmag_weight"] = 1
        config["model"]["loss_fn"] = mss
        config["model"]["decoder"]["init_args"]["apply_roll_off"] = True
        roll_off = True
    config["group"] = experiment
    translated = original_format.translate_config(config)
    expected = yaml.safe_load((EXPERIMENTS / f"{experiment}.yaml").read_text())
    assert translated["experiment"] == experiment
    assert _loss_without_sample_rate(translated["model"]["loss"]) == expected["model"]["loss"]
    assert translated["model"]["synth"]["init_args"]["roll_off"] is roll_off


@pytest.mark.parametrize("path, value, named", [
    (("model", "loss_fn", "class_path"), "losses.SpectralConvergence", "model.loss_fn.class_path"),
    (("model", "encoder", "init_args", "activation_fn"), "relu", "activation_fn"),
    (("model", "decoder", "class_path"), "synths.Noise", "model.decoder.class_path"),
    (("model", "freq_hz_min"), 50.0, "freq_hz_min"),
])
def test_untranslatable_configs_raise_one_line(path: tuple, value: Any, named: str) -> None:
    config = fixture_config()
    target = config
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    with pytest.raises(original_format.OriginalFormatError) as error:
        original_format.translate_config(config)
    message = str(error.value)
    assert named in message and "\n" not in message


# ----------------------------------------------------------------------------------------------
# Loading their pickles
# ----------------------------------------------------------------------------------------------

def test_plain_torch_load_fails_but_the_restricted_loader_reads_weights(authors_tree: Path) -> None:
    path = checkpoint_path(authors_tree)
    with pytest.raises(ModuleNotFoundError, match=AUTHORS_MODULE):
        torch.load(path, map_location="cpu", weights_only=False)
    with pytest.raises(pickle.UnpicklingError):
        torch.load(path, map_location="cpu", weights_only=True)
    loaded = checkpoints.read_checkpoint(path)
    expected = authors_state_dict()
    assert loaded.state_dict.keys() == expected.keys()
    assert all(torch.equal(loaded.state_dict[k], expected[k]) for k in expected)
    assert (loaded.epoch, loaded.global_step, loaded.config_yaml) == (1234, 24690, None)
    assert AUTHORS_MODULE + ".PESTOEncoder" in loaded.stubbed
    assert f"{AUTHORS_MODULE}.PESTOEncoder" in loaded.stubbed
    assert AUTHORS_MODULE not in sys.modules


class _Exploit:
    """Pickles to a call of os.system / builtins.eval (what a restricted loader must refuse)."""

    def __init__(self, function: Any, argument: str) -> None:
        self.function, self.argument = function, argument

    def __reduce__(self) -> tuple:
        return self.function, (self.argument,)


def test_restricted_unpickler_never_calls_unknown_globals(tmp_path: Path) -> None:
    import os

    import numpy as np

    marker = tmp_path / "pwned"
    payload = {"a": _Exploit(os.system, f"touch {marker}"),
               "b": _Exploit(eval, f"open({str(marker)!r}, 'w')"),
               "c": _Exploit(np.memmap, str(marker)),  # a numpy class that writes files
               "weights": torch.arange(3.0)}
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    buffer.seek(0)
    loaded = torch.load(buffer, pickle_module=original_format.restricted_pickle, weights_only=False)
    assert not marker.exists()
    assert all(isinstance(loaded[k], original_format.StubObject) for k in "abc")
    assert torch.equal(loaded["weights"], torch.arange(3.0))


def test_restricted_unpickler_keeps_tensors_arrays_and_torch_values() -> None:
    import collections

    import numpy as np

    payload = {"array": np.arange(3.0), "scalar": np.float32(2.5), "np_dtype": np.dtype("int16"),
               "params": collections.OrderedDict(w=torch.nn.Parameter(torch.ones(2))),
               "module": torch.nn.Conv1d(1, 2, 3), "dtype": torch.float16,
               "size": torch.Size([2, 3]), "device": torch.device("cpu")}
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    buffer.seek(0)
    loaded = torch.load(buffer, pickle_module=original_format.restricted_pickle, weights_only=False)
    assert np.array_equal(loaded["array"], np.arange(3.0)) and loaded["scalar"] == np.float32(2.5)
    assert loaded["np_dtype"] == np.dtype("int16")
    assert isinstance(loaded["params"]["w"], torch.nn.Parameter)
    assert torch.equal(loaded["module"].weight, payload["module"].weight)
    assert (loaded["dtype"], loaded["size"], loaded["device"]) == (
        torch.float16, torch.Size([2, 3]), torch.device("cpu"))


def test_feature_buffer_comparison_flags_different_kernels() -> None:
    features = torch.nn.Module()
    features.register_buffer("kernel", torch.linspace(-1.0, 1.0, 8), persistent=False)
    same = {"feature_extractor.kernel": torch.linspace(-1.0, 1.0, 8) + 1e-6,
            "encoder.x": torch.zeros(1)}
    assert original_format.compare_feature_buffers(same, features) == {"feature_extractor.kernel": True}
    other = {"feature_extractor.kernel": torch.linspace(-1.0, 1.0, 8).flip(0),
             "feature_extractor.unknown": torch.zeros(2)}
    assert original_format.compare_feature_buffers(other, features) == {
        "feature_extractor.kernel": False, "feature_extractor.unknown": False}


# ----------------------------------------------------------------------------------------------
# Their weights in our model, and eval_paper over their tree
# ----------------------------------------------------------------------------------------------

def test_our_model_with_their_weights_matches_the_functional_reference(
    authors_tree: Path, tiny_data_path: Path
) -> None:
    model = checkpoints.load_checkpoint(checkpoint_path(authors_tree))
    assert not model.training
    state = checkpoints.read_checkpoint(checkpoint_path(authors_tree)).state_dict
    assert all(original_format.compare_feature_buffers(state, model.features).values())

    audio = peak_normalize(load_dataset(tiny_data_path)["test_tensors"][:6], 0.9)  # (6, 4096)
    with torch.no_grad():
        estimate = model.estimate(audio)
        f0_ref, amplitudes_ref = reference_forward(state, reference_cqt(audio))
    assert estimate["f0_hz"].shape == (6, 16) and estimate["amplitudes"].shape == (6, 16, 20)
    # the random weights give varied outputs, so the comparison can fail
    assert f0_ref.std() > 1.0 and amplitudes_ref.std() > 1e-3
    torch.testing.assert_close(estimate["f0_hz"], f0_ref, rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(estimate["amplitudes"], amplitudes_ref, rtol=1e-5, atol=1e-7)


def test_their_checkpoint_builds_the_model_the_cli_builds(authors_tree: Path) -> None:
    """load_checkpoint builds their translated config by class path; the experiment CLI, which
    reads base.yaml first, builds the same model from it."""
    path = checkpoint_path(authors_tree)
    assert_same_model(checkpoints.load_checkpoint(path), cli_built_model(path))


def test_eval_paper_reports_their_run_as_original(authors_tree: Path, tmp_path: Path) -> None:
    before = sorted(str(p.relative_to(authors_tree)) for p in authors_tree.rglob("*"))
    out = tmp_path / "results"
    evaluation = eval_paper.main(["--root", str(authors_tree), "--out", str(out),
                                  "--device", "cpu", "--no-baseline"])
    assert not evaluation.skipped
    (row,) = evaluation.rows
    assert (row["experiment"], row["run"], row["seed"], row["source"], row["checkpoint"]) == (
        "SOT-2048", RUN, 42, "original", CHECKPOINT_NAME)
    assert (row["epoch"], row["global_step"]) == (1234, 24690)
    assert 0.0 <= row["rpa"] <= 1.0 and math.isfinite(row["lsd"])
    runs_csv = (out / "runs.csv").read_text().splitlines()
    assert ",original," in runs_csv[1]
    table = (out / "table.md").read_text()
    assert "| SOT-2048 (original) | 1 |" in table and f"SOT-2048/{RUN}" in table
    # nothing was written into their tree
    assert sorted(str(p.relative_to(authors_tree)) for p in authors_tree.rglob("*")) == before


# ----------------------------------------------------------------------------------------------
# A checkpoint pickled the way theirs were, and the decoder it rebuilds
# ----------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def pickled_like_theirs(tmp_path_factory: pytest.TempPathFactory, tiny_data_path: Path) -> Path:
    """Two released-style runs, SOT-2048 (no roll-off) and MSS-LogLin (roll-off on)."""
    root = tmp_path_factory.mktemp("pickled") / "checkpoints"
    for experiment in ("SOT-2048", "MSS-LogLin"):
        config = fixture_config()
        config["group"] = experiment
        config["data"]["init_args"]["data_path"] = str(tiny_data_path)
        if experiment == "MSS-LogLin":
            mss = config["model"]["loss_fn"]["init_args"]["losses"][0]
            mss["init_args"]["logmag_weight"] = 1
            config["model"]["loss_fn"] = mss
            config["model"]["decoder"]["init_args"]["apply_roll_off"] = True
        run = root / experiment / RUN / "checkpoints"
        run.mkdir(parents=True)
        (run.parent / "train_config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
        write_checkpoint_pickled_like_theirs(run / CHECKPOINT_NAME, authors_state_dict(seed=3))
    return root


def test_a_checkpoint_pickled_like_theirs_loads_without_their_modules(
    pickled_like_theirs: Path, tiny_data_path: Path
) -> None:
    from sotddsp.dsp import losses as our_losses

    path = pickled_like_theirs / "SOT-2048" / RUN / "checkpoints" / CHECKPOINT_NAME
    with pytest.raises(pickle.UnpicklingError):
        torch.load(path, map_location="cpu", weights_only=True)
    model = checkpoints.load_checkpoint(path)
    # no stand-in is left (their module names are not ours: nothing of ours is top level)
    assert all(name not in sys.modules for name in ("encoder", "synths", "features", "losses"))
    assert not hasattr(our_losses, "MixOfLosses") and not hasattr(our_losses, "Wasserstein1D")
    _, stubbed = original_format.restricted_torch_load(path)
    assert {"encoder.PESTOEncoder", "losses.MixOfLosses", "synths.Sinusoidal",
            "features.FeatureExtractor", "functools.partial"} <= set(stubbed)
    state = authors_state_dict(seed=3)
    audio = peak_normalize(load_dataset(tiny_data_path)["test_tensors"][:4], 0.9)
    with torch.no_grad():
        estimate = model.estimate(audio)
        f0_ref, amplitudes_ref = reference_forward(state, reference_cqt(audio))
    torch.testing.assert_close(estimate["f0_hz"], f0_ref, rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(estimate["amplitudes"], amplitudes_ref, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("experiment, roll_off", [("SOT-2048", False), ("MSS-LogLin", True)])
def test_their_models_resynthesize_with_the_papers_decoder(
    pickled_like_theirs: Path, experiment: str, roll_off: bool
) -> None:
    """Identical controls through the rebuilt model's decoder and the NumPy decoder of PAPER.md:
    f0 rising 300 -> 900 Hz over 16 frames (upper harmonics cross Nyquist between frames) and
    20 random amplitudes per frame; with the roll-off (and its 2-sample delay) for MSS-LogLin."""
    path = pickled_like_theirs / experiment / RUN / "checkpoints" / CHECKPOINT_NAME
    model = checkpoints.load_checkpoint(path)
    assert model.synth.roll_off is roll_off
    rng = np.random.default_rng(11)
    f0 = np.linspace(300.0, 900.0, 16).astype(np.float32)
    amps = rng.uniform(0.0, 1.0, size=(16, 20)).astype(np.float32)
    with torch.no_grad():
        audio = model.decode(torch.from_numpy(f0)[None], torch.from_numpy(amps)[None], 4096)
    expected = numpy_decoder(amps.astype(np.float64), f0.astype(np.float64)[:, None], 4096,
                             roll_off)
    peak = np.abs(expected).max()
    assert np.abs(audio[0].double().numpy() - expected).max() < 2e-5 * peak
