"""The authors' release format, rebuilt for tests and scripts/fidelity_report.py without their
code: their config and state_dict keys (original-run/ beside this file), random weights of their
shapes, checkpoints pickled the way theirs were, and their encoder's forward pass written out on
their parameter names (the independent reference for models rebuilt from their checkpoints).
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import math
import shutil
import sys
import types
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
import yaml
from nnAudio.features import CQT as NnAudioCQT

from sotddsp.dsp.spectral import CQT

# A copy of the authors' SOT-2048 train_config.yaml and their state_dict key list.
FIXTURE = Path(__file__).resolve().parent / "original-run"
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
    spec = importlib.util.spec_from_file_location(AUTHORS_MODULE, module_file)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[AUTHORS_MODULE] = module  # where pickle looks the class up
    try:
        spec.loader.exec_module(module)
        encoder = module.PESTOEncoder()
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
        sys.modules.pop(AUTHORS_MODULE, None)
        module_file.unlink()
        shutil.rmtree(scratch / "__pycache__", ignore_errors=True)


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


THEIR_MODULES = ("encoder", "losses", "synths", "features")


def _stand_in(module: types.ModuleType, name: str, init: Any) -> type:
    """A torch.nn.Module subclass named ``module.name``, as pickle records their classes."""
    cls = type(name, (torch.nn.Module,), {"__init__": init, "__module__": module.__name__})
    cls.__qualname__ = name
    setattr(module, name, cls)
    return cls


def write_checkpoint_pickled_like_theirs(path: Path, state_dict: dict[str, torch.Tensor]) -> None:
    """Their Lightning 1.9 checkpoints pickle their encoder, decoder, loss and feature objects in
    ``hyper_parameters``: objects of classes from their modules ``encoder``, ``losses``,
    ``synths`` and ``features``, holding real torch.nn submodules, functools.partial and sets.
    Stand-in modules of those names are put in sys.modules only while saving (whatever held those
    names before comes back afterwards)."""
    saved = {name: sys.modules.get(name) for name in THEIR_MODULES}
    stand_ins = {name: types.ModuleType(name) for name in THEIR_MODULES}
    try:
        sys.modules.update(stand_ins)

        def encoder_init(self: torch.nn.Module) -> None:
            torch.nn.Module.__init__(self)
            self.layernorm = torch.nn.LayerNorm((1, 285))
            self.conv1 = torch.nn.Sequential(torch.nn.Conv1d(1, 40, 15, padding=7),
                                             torch.nn.LeakyReLU(0.3))
            self.activation = functools.partial(F.leaky_relu, negative_slope=0.3)
            self.output_splits = {"frequency", "weights"}

        def synth_init(self: torch.nn.Module) -> None:
            torch.nn.Module.__init__(self)
            self.resample = functools.partial(F.interpolate, mode="linear")
            self.harmonics = set(range(1, 21))

        def mss_init(self: torch.nn.Module) -> None:
            torch.nn.Module.__init__(self)
            self.windows = torch.nn.ParameterList()
            self.fft_sizes = {2048, 1024, 512, 256, 128, 64}

        def sot_init(self: torch.nn.Module) -> None:
            torch.nn.Module.__init__(self)
            self.distance = functools.partial(torch.cdist, p=2.0)

        def mix_init(self: torch.nn.Module) -> None:
            torch.nn.Module.__init__(self)
            self.losses = torch.nn.ModuleList([stand_ins["losses"].MSSLoss(),
                                               stand_ins["losses"].Wasserstein1D()])
            self.weights = [0.05, 1]

        def features_init(self: torch.nn.Module) -> None:
            torch.nn.Module.__init__(self)
            self.cqt = NnAudioCQT(sr=16000, hop_length=256, fmin=32.7, n_bins=285,
                                  bins_per_octave=36, verbose=False)

        encoder = _stand_in(stand_ins["encoder"], "PESTOEncoder", encoder_init)
        synth = _stand_in(stand_ins["synths"], "Sinusoidal", synth_init)
        _stand_in(stand_ins["losses"], "MSSLoss", mss_init)
        _stand_in(stand_ins["losses"], "Wasserstein1D", sot_init)
        mixture = _stand_in(stand_ins["losses"], "MixOfLosses", mix_init)
        features = _stand_in(stand_ins["features"], "FeatureExtractor", features_init)
        checkpoint = {
            "epoch": 396,
            "global_step": 25000,
            "pytorch-lightning_version": "1.9.0",
            "state_dict": state_dict,
            "hyper_parameters": {"encoder": encoder(), "decoder": synth(), "loss_fn": mixture(),
                                 "feature_extractor": features(), "temperature": 0.1},
            "callbacks": {}, "optimizer_states": [], "lr_schedulers": [],
        }
        torch.save(checkpoint, path)
    finally:
        for name, module in saved.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module
