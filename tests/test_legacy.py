"""The paper authors' released checkpoints: their config translates to ours, their pickles load
without their code, and with their weights our model gives the f0 and amplitudes of an
independent functional forward written on their key names."""

from __future__ import annotations

import copy
import importlib
import io
import math
import pickle
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
import yaml
from nnAudio.features import CQT as NnAudioCQT

import eval_paper
import legacy
import train
from models.spectral import CQT
from synthetic_data import load_dataset, peak_normalize

# A copy of the authors' SOT-2048 train_config.yaml and their state_dict key list.
FIXTURE = train.REPO / "tests" / "fixtures" / "original-run"

EXPERIMENTS = train.REPO / "paper-experiments"
CHECKPOINT_NAME = "best-lsd-epoch=1234-step=24690.ckpt"
RUN = "c6m8cytv-42"
AUTHORS_MODULE = "sot_authors_encoder_for_tests"


def fixture_config() -> dict[str, Any]:
    return yaml.safe_load((FIXTURE / "train_config.yaml").read_text())


def authors_keys() -> list[tuple[str, tuple[int, ...], str]]:
    """(key, shape, dtype) of their state_dict, from state_dict_keys.txt."""
    rows = []
    for line in (FIXTURE / "state_dict_keys.txt").read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        key, shape, dtype = line.split("\t")
        rows.append((key, tuple(int(s) for s in shape.strip("()").split(",") if s.strip()), dtype))
    return rows


def authors_state_dict(seed: int = 0) -> dict[str, torch.Tensor]:
    """Random weights of exactly their keys and shapes; their CQT kernels are our front end's."""
    generator = torch.Generator().manual_seed(seed)
    ours = dict(CQT().named_buffers())
    state: dict[str, torch.Tensor] = {}
    for key, shape, dtype in authors_keys():
        if dtype == "int64":
            state[key] = torch.zeros(shape, dtype=torch.int64)
        elif key.startswith("feature_extractor."):
            state[key] = ours[key[len("feature_extractor."):]].clone()
        elif key == "encoder.layernorm.weight":
            state[key] = 1.0 + 0.2 * torch.randn(shape, generator=generator)
        else:
            fan_in = max(1, math.prod(shape[1:]))
            state[key] = torch.randn(shape, generator=generator) / math.sqrt(fan_in)
    return state


def write_authors_checkpoint(
    path: Path, state_dict: dict[str, torch.Tensor], scratch: Path
) -> None:
    """A checkpoint shaped like their Lightning 1.9 ones. ``hyper_parameters`` holds an object
    of a class from a throwaway module, deleted from disk and sys.modules after saving, so
    that (like their encoder.PESTOEncoder) it cannot be imported when loading."""
    module_file = scratch / f"{AUTHORS_MODULE}.py"
    module_file.write_text(
        "import torch\n\n"
        "class PESTOEncoder(torch.nn.Module):\n"
        "    def __init__(self):\n"
        "        super().__init__()\n"
        "        self.conv1 = torch.nn.Conv1d(1, 2, 3)\n"
        "        self.activation = torch.nn.functional.leaky_relu\n"
    )
    sys.path.insert(0, str(scratch))
    try:
        encoder = importlib.import_module(AUTHORS_MODULE).PESTOEncoder()
        checkpoint = {
            "epoch": 1234,
            "global_step": 24690,
            "pytorch-lightning_version": "1.9.0",
            "state_dict": state_dict,
            "hyper_parameters": {"encoder": encoder, "temperature": 0.1, "loss_fn": encoder},
            "callbacks": {"ModelCheckpoint{'monitor': 'val_metrics/log_spectral_distance'}": {
                "best_model_score": torch.tensor(12.5), "best_model_path": "x.ckpt"}},
            "optimizer_states": [{"state": {0: {"step": torch.tensor(3.0)}},
                                  "param_groups": [{"lr": 1e-4, "params": [0]}]}],
            "lr_schedulers": [],
        }
        torch.save(checkpoint, path)
    finally:
        sys.path.remove(str(scratch))
        sys.modules.pop(AUTHORS_MODULE, None)
        module_file.unlink()
        shutil.rmtree(scratch / "__pycache__", ignore_errors=True)


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
# The independent reference: their forward, written on their key names
# ----------------------------------------------------------------------------------------------

def reference_cqt(audio: torch.Tensor) -> torch.Tensor:
    """nnAudio CQT as their config sets it: 16 kHz, fmin 32.7, 36 bins/octave, 285 bins, hop 256,
    centered, constant padding, magnitude; on the first 16 * 256 - 1 samples. (B, 16, 285)."""
    cqt = NnAudioCQT(sr=16000, hop_length=256, fmin=32.7, n_bins=285, bins_per_octave=36,
                     center=True, pad_mode="constant", output_format="Magnitude", verbose=False)
    n_frames = audio.shape[-1] // 256
    return cqt(audio[:, : n_frames * 256 - 1]).transpose(1, 2)[:, :n_frames]


def reference_forward(state: dict[str, torch.Tensor], frames: torch.Tensor,
                      temperature: float = 0.1) -> tuple[torch.Tensor, torch.Tensor]:
    """Their encoder + pitch head on CQT frames (B, T, Q) -> f0 (B, T) Hz, amplitudes (B, T, K)."""
    batch, n_frames, n_bins = frames.shape
    w = {k[len("encoder."):]: v for k, v in state.items() if k.startswith("encoder.")}
    x = frames.reshape(batch * n_frames, 1, n_bins)
    x = F.layer_norm(x, (1, n_bins), w["layernorm.weight"], w["layernorm.bias"])
    x = F.leaky_relu(F.conv1d(x, w["conv1.0.weight"], w["conv1.0.bias"], padding=7), 0.3)
    x = x + F.leaky_relu(F.conv1d(x, w["prefilt_list.0.0.weight"], w["prefilt_list.0.0.bias"],
                                  padding=7), 0.3)
    for name in ("conv2.0", "conv3.0", "conv4.0"):
        x = F.leaky_relu(F.conv1d(x, w[f"{name}.weight"], w[f"{name}.bias"]), 0.3)
    x = F.conv1d(x, w["conv4.3.weight"], w["conv4.3.bias"])  # after dropout (identity in eval)
    h = x.flatten(1)  # (B*T, 3 * 285 = 855)
    toeplitz = w["linear.frequency.0.weight"]  # (1, 1, 855 + 285 - 1)
    logits = F.conv1d(h.unsqueeze(1), toeplitz, padding=n_bins - 1).squeeze(1)  # (B*T, 285)
    z = F.linear(h, w["linear.weights.0.weight"], w["linear.weights.0.bias"])
    amplitudes = 2.0 * torch.sigmoid(z) ** math.log(10.0) + 1e-7
    u = torch.softmax(logits / temperature, dim=-1) @ torch.linspace(0.0, 1.0, n_bins)
    f_low, f_high = 32.7, 32.7 * 2.0 ** ((n_bins - 1) / 36)
    midi_low, midi_high = (69 + 12 * math.log2(f / 440) for f in (f_low, f_high))
    f0 = 440.0 * 2.0 ** ((midi_low + u * (midi_high - midi_low) - 69.0) / 12.0)
    return f0.reshape(batch, n_frames), amplitudes.reshape(batch, n_frames, -1)


# ----------------------------------------------------------------------------------------------
# Config translation
# ----------------------------------------------------------------------------------------------

def _resolved(config_file: Path, tmp: Path, *extra: str) -> dict[str, Any]:
    cli = train.build_cli(["--config", str(config_file), "--trainer.logger", "false",
                           "--checkpoint_root", str(tmp), *extra])
    resolved = yaml.safe_load(cli.parser.dump(cli.config, skip_none=False))
    return {k: resolved[k] for k in ("model", "experiment", "seed_everything")}


def test_fixture_config_is_detected_and_ours_is_not() -> None:
    assert legacy.is_original_config(fixture_config())
    ours = yaml.safe_load((EXPERIMENTS / "base.yaml").read_text())
    assert not legacy.is_original_config(ours)


def test_translated_fixture_resolves_to_our_sot_2048_experiment(tmp_path: Path) -> None:
    translated = legacy.write_translated_config(fixture_config(), tmp_path)
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
    translated = legacy.translate_config(config)
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
    with pytest.raises(legacy.LegacyFormatError) as error:
        legacy.translate_config(config)
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
    loaded = legacy.load_original_checkpoint(path)
    expected = authors_state_dict()
    assert loaded.state_dict.keys() == expected.keys()
    assert all(torch.equal(loaded.state_dict[k], expected[k]) for k in expected)
    assert (loaded.epoch, loaded.global_step, loaded.lightning_version) == (1234, 24690, "1.9.0")
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
    loaded = torch.load(buffer, pickle_module=legacy.restricted_pickle, weights_only=False)
    assert not marker.exists()
    assert all(isinstance(loaded[k], legacy.StubObject) for k in "abc")
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
    loaded = torch.load(buffer, pickle_module=legacy.restricted_pickle, weights_only=False)
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
    assert legacy.compare_feature_buffers(same, features) == {"feature_extractor.kernel": True}
    other = {"feature_extractor.kernel": torch.linspace(-1.0, 1.0, 8).flip(0),
             "feature_extractor.unknown": torch.zeros(2)}
    assert legacy.compare_feature_buffers(other, features) == {
        "feature_extractor.kernel": False, "feature_extractor.unknown": False}


# ----------------------------------------------------------------------------------------------
# Their weights in our model, and eval_paper over their tree
# ----------------------------------------------------------------------------------------------

def test_our_model_with_their_weights_matches_the_functional_reference(
    authors_tree: Path, tiny_data_path: Path
) -> None:
    model = eval_paper.load_checkpoint(checkpoint_path(authors_tree))
    assert not model.training
    state = legacy.load_original_checkpoint(checkpoint_path(authors_tree)).state_dict
    assert all(legacy.compare_feature_buffers(state, model.features).values())

    audio = peak_normalize(load_dataset(tiny_data_path)["test_tensors"][:6], 0.9)  # (6, 4096)
    with torch.no_grad():
        estimate = model.estimate(audio)
        f0_ref, amplitudes_ref = reference_forward(state, reference_cqt(audio))
    assert estimate["f0_hz"].shape == (6, 16) and estimate["amplitudes"].shape == (6, 16, 20)
    # the random weights give varied outputs, so the comparison can fail
    assert f0_ref.std() > 1.0 and amplitudes_ref.std() > 1e-3
    torch.testing.assert_close(estimate["f0_hz"], f0_ref, rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(estimate["amplitudes"], amplitudes_ref, rtol=1e-5, atol=1e-7)


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
