"""Small deterministic models for the pitch tool's tests: a checkpoint file of a tiny encoder
(as ``checkpoints.load_checkpoint`` reads ours: weights and the embedded config), and a model
whose pitch logits are a one-hot at the CQT frame's strongest bin (its f0 follows the input)."""

from __future__ import annotations

from pathlib import Path

import torch
import yaml
from torch import Tensor, nn

from sotddsp.core.run_layout import CONFIG_KEY
from sotddsp.dsp.losses import MultiScaleSpectralLoss
from sotddsp.dsp.spectral import CQT
from sotddsp.dsp.synth import HarmonicSynth
from sotddsp.model.autoencoder import HarmonicAutoencoder
from sotddsp.model.checkpoints import build_model
from sotddsp.model.encoder import PESTOEncoder

N_HARMONICS = 4
# The model section of a config (class defaults fill the rest): a 4-harmonic encoder with
# 4-channel layers, the paper's CQT and synthesizer.
TINY_MODEL_CONFIG = {
    "encoder": {"class_path": "sotddsp.model.encoder.PESTOEncoder",
                "init_args": {"channels": [4, 4, 4, 2, 1], "n_harmonics": N_HARMONICS}},
    "features": {"class_path": "sotddsp.dsp.spectral.CQT", "init_args": {"hop_length": 256}},
    "synth": {"class_path": "sotddsp.dsp.synth.HarmonicSynth", "init_args": {}},
    "loss": {"class_path": "sotddsp.dsp.losses.MultiScaleSpectralLoss", "init_args": {}},
    "temperature": 0.1,
}


def write_tiny_checkpoint(path: Path, seed: int = 0) -> Path:
    """A checkpoint of the tiny model with weights drawn from ``seed`` (the caller's RNG states
    are kept): {"state_dict", CONFIG_KEY: {"model": TINY_MODEL_CONFIG} as YAML}."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = build_model(TINY_MODEL_CONFIG)
    torch.save({"state_dict": model.state_dict(), "epoch": 0, "global_step": 0,
                CONFIG_KEY: yaml.safe_dump({"model": TINY_MODEL_CONFIG}, sort_keys=False)}, path)
    return path


class OneHotEncoder(nn.Module):
    """Pitch logits 1000 at ``bin`` (with bin None: at the input CQT frame's strongest bin), 0
    elsewhere (softmax at temperature 0.1: probability 1 there). Amplitudes: harmonic 1 is 0.5,
    or with ``probe_bin`` the frame's CQT magnitude in that bin; the others 0.
    frames (N, Q) -> (logits (N, Q), amplitudes (N, n_harmonics))."""

    def __init__(
        self, bin: int | None = None, probe_bin: int | None = None, n_harmonics: int = 20
    ) -> None:
        super().__init__()
        self.bin = bin
        self.probe_bin = probe_bin
        self.n_harmonics = n_harmonics

    def forward(self, frames: Tensor) -> tuple[Tensor, Tensor]:
        index = (
            frames.argmax(dim=-1) if self.bin is None else torch.full(frames.shape[:1], self.bin)
        )
        logits = 1000.0 * nn.functional.one_hot(index, frames.shape[-1]).to(frames.dtype)
        amplitudes = torch.zeros(frames.shape[0], self.n_harmonics)
        amplitudes[:, 0] = 0.5 if self.probe_bin is None else frames[:, self.probe_bin]
        return logits, amplitudes


def paper_model(roll_off: bool = False) -> HarmonicAutoencoder:
    """The paper's model (untrained), in eval mode."""
    return HarmonicAutoencoder(
        encoder=PESTOEncoder(), features=CQT(), synth=HarmonicSynth(roll_off=roll_off),
        loss=MultiScaleSpectralLoss(), optimizer=torch.optim.Adam,
    ).eval()


def forced_model(bin: int | None = None, probe_bin: int | None = None) -> HarmonicAutoencoder:
    """The paper's model with ``OneHotEncoder(bin, probe_bin)`` in place of the encoder."""
    model = paper_model()
    model.encoder = OneHotEncoder(bin, probe_bin)
    return model


def cli_built_model(path: Path) -> HarmonicAutoencoder:
    """The model of a checkpoint as the experiment CLI builds it (``build_from_config``, the
    way load_checkpoint did before it built models by class path), its weights loaded."""
    import tempfile

    from sotddsp.model import checkpoints

    contents = checkpoints.read_checkpoint(path)
    text = contents.config_yaml or (path.parent.parent / "train_config.yaml").read_text()
    config = yaml.safe_load(text)
    with tempfile.TemporaryDirectory() as tmp, checkpoints._preserved_rng():
        config_file = checkpoints.config_file_for(config, Path(tmp), contents.config_yaml)
        model = checkpoints.build_from_config(
            config_file, ["--trainer.accelerator", "cpu"], Path(tmp)).model
    checkpoints.load_weights(
        model, contents, original=checkpoints.original_format.is_original_config(config))
    return model.eval()


def assert_same_model(ours: HarmonicAutoencoder, reference: HarmonicAutoencoder) -> None:
    """The same modules with the same settings (every public attribute but the optimizer
    factory, whose wrapper differs), the same weights and buffers, and the same estimate and
    loss on a random batch (bit for bit)."""
    assert repr(ours) == repr(reference)
    for (name, a), (_, b) in zip(ours.named_modules(), reference.named_modules(), strict=True):
        settings = [{k: v for k, v in vars(m).items() if not k.startswith("_")
                     and k != "optimizer_factory" and not isinstance(v, Tensor)} for m in (a, b)]
        assert str(settings[0]) == str(settings[1]), name
    mine, theirs = ours.state_dict(), reference.state_dict()
    assert mine.keys() == theirs.keys()
    for key in mine:
        assert torch.equal(mine[key], theirs[key]), key
    audio = torch.randn(2, 4096, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        a, b = ours.estimate(audio), reference.estimate(audio)
        assert all(torch.equal(a[key], b[key]) for key in a)
        assert torch.equal(ours.loss(a["audio"], audio), reference.loss(b["audio"], audio))
