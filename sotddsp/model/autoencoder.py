"""The harmonic autoencoder: CQT frames -> encoder -> (f0, harmonic amplitudes) -> frozen synth.

Only the encoder is trained, by a spectral loss between the input and its resynthesis.
Every component is injected, typed, from the YAML config (LightningCLI).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import lightning as L
import torch
from lightning.pytorch.cli import OptimizerCallable
from torch import Tensor, nn

from sotddsp.dsp import metrics
from sotddsp.dsp.losses import LossMixture, as_mixture
from sotddsp.dsp.spectral import cqt_n_bins, hz_to_midi, midi_to_hz

log = logging.getLogger(__name__)


def encoder_input_bins(
    sample_rate: int, fmin: float, bins_per_semitone: int, n_bins: int | None
) -> int:
    """The encoder's input width ``n_bins_in``: the front end's CQT bin count (its ``n_bins``,
    else every bin from ``fmin`` up to Nyquist, ``cqt_n_bins``)."""
    return n_bins if n_bins is not None else cqt_n_bins(sample_rate, fmin, bins_per_semitone)


# The settings the front end (``features``) fixes in the other components, the one table that
# both the experiment CLI (``cli.SOTCLI``, as jsonargparse links) and the checkpoint loader
# (``checkpoints.build_model``) apply: (the features' init_args read, (component, init_arg)
# set, the function of the read values that gives it; None: the one value itself).
FRONT_END_LINKS: tuple[tuple[tuple[str, ...], tuple[str, str], Callable[..., Any] | None], ...] = (
    (("sample_rate", "fmin", "bins_per_semitone", "n_bins"), ("encoder", "n_bins_in"),
     encoder_input_bins),
    (("sample_rate",), ("synth", "sample_rate"), None),
)

class NonFiniteTrainingError(RuntimeError):
    """Raised when more than `max_nonfinite_steps` training steps had a non-finite loss or gradient."""


def soft_argmax_f0(
    logits: Tensor, temperature: float, f0_low_hz: float, f0_high_hz: float
) -> Tensor:
    """Temperature soft-argmax pitch head.

    Args:
        logits: (..., Q) pitch logits over Q log-spaced bins.
        temperature: softmax temperature (> 0).
        f0_low_hz, f0_high_hz: frequencies of the first and last bin, in Hz.

    Returns:
        f0 in Hz, shape (...): ``midi_to_hz(m_lo + u (m_hi - m_lo))`` with
        ``u = softmax(logits / temperature) . linspace(0, 1, Q)``.
    """
    grid = torch.linspace(0.0, 1.0, logits.shape[-1], device=logits.device, dtype=logits.dtype)
    u = torch.softmax(logits / temperature, dim=-1) @ grid
    m_lo = float(hz_to_midi(torch.tensor(f0_low_hz, dtype=torch.float64)))
    m_hi = float(hz_to_midi(torch.tensor(f0_high_hz, dtype=torch.float64)))
    return midi_to_hz(m_lo + u * (m_hi - m_lo))


class HarmonicAutoencoder(L.LightningModule):
    """Unsupervised harmonic parameter estimator (PAPER.md "The task").

    Args:
        encoder: maps CQT frames (N, Q) to (pitch logits (N, Q_out), amplitudes (N, K)).
        features: front end mapping audio (B, N) to frames (B, T, Q); exposes ``hop_length``
            and ``frequencies`` (Q,) in Hz. Not trained.
        synth: frozen synthesizer, ``synth(amplitudes (B, T, K), f0_hz (B, T, 1), n_samples)``.
        loss: any module with ``forward(input, target)`` on waveforms; a ``LossMixture``
            reports each term by name, any other loss is logged as one term.
        optimizer: optimizer factory, applied to the encoder's parameters only.
        temperature: soft-argmax temperature of the pitch head (> 0).
        cache_train_features: compute the CQT of each training example once per fit
            (the training data never changes), keyed by the batch's ``index``.
        cache_val_features: the same for the validation examples (validation runs every few
            epochs on the same examples); the test split is not cached.
        max_nonfinite_steps: skip steps with a non-finite loss or gradient, and stop with
            ``NonFiniteTrainingError`` once more than this many were skipped.
        n_plot_examples: examples drawn in the validation spectra figure (0 disables figures).
        encoder_dtype: "float32" (default, as the paper), or "bfloat16": the encoder alone runs
            under bf16 autocast on its device (the CPU's AMX units, a GPU's tensor cores); its
            outputs are cast back to float32, so the pitch head, synth, STFTs and losses stay
            in float32.
    """

    def __init__(
        self,
        encoder: nn.Module,
        features: nn.Module,
        synth: nn.Module,
        loss: nn.Module,
        optimizer: OptimizerCallable,
        temperature: float = 0.1,
        cache_train_features: bool = True,
        cache_val_features: bool = True,
        max_nonfinite_steps: int = 100,
        n_plot_examples: int = 2,
        encoder_dtype: Literal["float32", "bfloat16"] = "float32",
    ) -> None:
        super().__init__()
        if encoder_dtype not in ("float32", "bfloat16"):
            raise ValueError(
                f"encoder_dtype must be 'float32' or 'bfloat16', got {encoder_dtype!r}"
            )
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0, got {temperature}; the paper uses 0.1")
        if max_nonfinite_steps < 0:
            raise ValueError(f"max_nonfinite_steps must be >= 0, got {max_nonfinite_steps}")
        if n_plot_examples < 0:
            raise ValueError(f"n_plot_examples must be >= 0, got {n_plot_examples}")
        self.encoder = encoder
        self.features = features.requires_grad_(False)
        self.synth = synth.requires_grad_(False)
        self.loss: LossMixture = as_mixture(loss)
        self.optimizer_factory = optimizer
        self.temperature = float(temperature)
        self.cache_train_features = cache_train_features
        self.cache_val_features = cache_val_features
        self.max_nonfinite_steps = max_nonfinite_steps
        self.n_plot_examples = n_plot_examples
        self.encoder_dtype = encoder_dtype

        frequencies = torch.as_tensor(features.frequencies, dtype=torch.float64)
        self.f0_low_hz = float(frequencies[0])
        self.f0_high_hz = float(frequencies[-1])
        self.hop_length = int(features.hop_length)
        self.sample_rate = int(synth.sample_rate)
        if int(features.sample_rate) != self.sample_rate:
            raise ValueError(
                f"features.sample_rate ({features.sample_rate}) differs from synth.sample_rate "
                f"({synth.sample_rate}); set both to the data's sample rate"
            )

        self._feature_caches: dict[str, dict[int, Tensor]] = {"train": {}, "val": {}}
        self._epoch_sums: dict[str, float] = defaultdict(float)
        self._epoch_count = 0
        self._epoch_f0: list[tuple[Tensor, Tensor]] = []
        self.n_nonfinite_steps = 0

    # ------------------------------------------------------------------ inference
    def frames_for(self, n_samples: int) -> int:
        """Number of control frames T for a signal of ``n_samples`` (``n_samples // hop``)."""
        n_frames = n_samples // self.hop_length
        if n_frames < 1:
            raise ValueError(
                f"audio has {n_samples} samples, fewer than one hop ({self.hop_length}); "
                "give at least one hop of audio"
            )
        return n_frames

    def compute_features(self, audio: Tensor) -> Tensor:
        """CQT frames (B, T, Q) of audio (B, N), T = N // hop (PAPER.md: first T*hop - 1 samples)."""
        n_frames = self.frames_for(audio.shape[-1])
        frames = self.features(audio[..., : n_frames * self.hop_length - 1])
        return frames[:, :n_frames]

    def encode(self, frames: Tensor) -> tuple[Tensor, Tensor]:
        """Encode CQT frames (B, T, Q) into f0 (B, T) in Hz and amplitudes (B, T, K)."""
        f0_hz, amplitudes, _ = self._encode(frames)
        return f0_hz, amplitudes

    def encode_distribution(self, frames: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``encode`` plus the pitch distribution its f0 is the soft-argmax of: (f0 (B, T) in
        Hz, amplitudes (B, T, K), probabilities (B, T, Q_out)), the probabilities
        ``softmax(logits / temperature)`` over the bins at ``pitch_bin_frequencies()``."""
        f0_hz, amplitudes, logits = self._encode(frames)
        return f0_hz, amplitudes, torch.softmax(logits / self.temperature, dim=-1)

    def pitch_bin_frequencies(self, n_bins: int) -> Tensor:
        """The frequencies in Hz (float64 (n_bins,)) of the pitch head's ``n_bins`` bins, as
        ``soft_argmax_f0`` places them: log-spaced from ``f0_low_hz`` to ``f0_high_hz``."""
        grid = torch.linspace(0.0, 1.0, n_bins, dtype=torch.float64)
        m_lo = hz_to_midi(torch.tensor(self.f0_low_hz, dtype=torch.float64))
        m_hi = hz_to_midi(torch.tensor(self.f0_high_hz, dtype=torch.float64))
        return midi_to_hz(m_lo + grid * (m_hi - m_lo))

    def _encode(self, frames: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(f0 (B, T), amplitudes (B, T, K), pitch logits (B, T, Q_out)) of frames (B, T, Q)."""
        batch, n_frames, n_bins = frames.shape
        with torch.autocast(frames.device.type, dtype=torch.bfloat16,
                            enabled=self.encoder_dtype == "bfloat16"):
            logits, amplitudes = self.encoder(frames.reshape(batch * n_frames, n_bins))
        logits, amplitudes = logits.to(frames.dtype), amplitudes.to(frames.dtype)
        f0_hz = soft_argmax_f0(logits, self.temperature, self.f0_low_hz, self.f0_high_hz)
        return (f0_hz.reshape(batch, n_frames), amplitudes.reshape(batch, n_frames, -1),
                logits.reshape(batch, n_frames, -1))

    def decode(self, f0_hz: Tensor, amplitudes: Tensor, n_samples: int) -> Tensor:
        """Synthesize audio (B, n_samples) from f0 (B, T) in Hz and amplitudes (B, T, K)."""
        return self.synth(amplitudes, f0_hz.unsqueeze(-1), n_samples)

    def forward(self, audio: Tensor) -> dict[str, Tensor]:
        return self.estimate(audio)

    def estimate(self, audio: Tensor) -> dict[str, Tensor]:
        """Estimate harmonic parameters of audio (B, N) at ``self.sample_rate``.

        Returns a dict with ``f0_hz`` (B, T) in Hz, ``amplitudes`` (B, T, K) (linear) and the
        resynthesis ``audio`` (B, T * hop), T = N // hop.
        """
        if audio.ndim != 2:
            raise ValueError(f"audio must have shape (batch, samples), got {tuple(audio.shape)}")
        return self._estimate_from_frames(self.compute_features(audio))

    def _estimate_from_frames(self, frames: Tensor) -> dict[str, Tensor]:
        f0_hz, amplitudes = self.encode(frames)
        resynthesis = self.decode(f0_hz, amplitudes, frames.shape[1] * self.hop_length)
        return {"f0_hz": f0_hz, "amplitudes": amplitudes, "audio": resynthesis}

    # ------------------------------------------------------------------ training
    def on_fit_start(self) -> None:
        for cache in self._feature_caches.values():
            cache.clear()

    def _cached_frames(self, audio: Tensor, index: Tensor, split: str) -> Tensor:
        """CQT frames (B, T, Q) of a batch of ``split`` ("train" or "val"), each example's
        computed once per fit and kept by its index in the split."""
        enabled = self.cache_train_features if split == "train" else self.cache_val_features
        if not enabled:
            return self.compute_features(audio)
        cache = self._feature_caches[split]
        keys = index.tolist()
        missing = [i for i, key in enumerate(keys) if key not in cache]
        if missing:
            fresh = self.compute_features(audio[missing])
            for row, i in enumerate(missing):
                cache[keys[i]] = fresh[row]
        return torch.stack([cache[key] for key in keys])

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor | None:
        audio = batch["x"]
        f0_hz, amplitudes = self.encode(self._cached_frames(audio, batch["index"], "train"))
        resynthesis = self.decode(f0_hz, amplitudes, audio.shape[-1])
        total, terms = self.loss.compute_terms(resynthesis, audio)
        if not torch.isfinite(total):
            self._count_nonfinite("loss")
            return None
        self.log("train/loss", total, prog_bar=True)
        for name, value in terms.items():
            self.log(f"train/loss/{name}", value)
        return total

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        grads = [p.grad for p in self.encoder.parameters() if p.grad is not None]
        if grads and not all(torch.isfinite(g).all() for g in grads):
            optimizer.zero_grad(set_to_none=True)  # Adam skips parameters without gradient
            self._count_nonfinite("gradient")

    def _count_nonfinite(self, what: str) -> None:
        self.n_nonfinite_steps += 1
        log.warning(
            "non-finite %s at step %d: step skipped (%d skipped so far, limit %d)",
            what, self.global_step, self.n_nonfinite_steps, self.max_nonfinite_steps,
        )
        self.log("train/nonfinite_steps", float(self.n_nonfinite_steps))
        if self.n_nonfinite_steps > self.max_nonfinite_steps:
            raise NonFiniteTrainingError(
                f"{self.n_nonfinite_steps} training steps had a non-finite {what}: training stopped; "
                "the last good checkpoint is kept. Lower the learning rate or check the data for NaN/inf"
            )

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return self.optimizer_factory(self.encoder.parameters())

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["nonfinite_steps"] = self.n_nonfinite_steps

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self.n_nonfinite_steps = int(checkpoint.get("nonfinite_steps", 0))

    # ------------------------------------------------------------------ evaluation
    def _evaluation_step(self, batch: dict[str, Tensor], stage: str) -> dict[str, Tensor]:
        audio = batch["x"]
        if stage == "val" and self._trainer is not None and self.trainer.state.fn == "fit":
            estimate = self._estimate_from_frames(self._cached_frames(audio, batch["index"], "val"))
        else:
            estimate = self.estimate(audio)
        resynthesis = estimate["audio"]
        if resynthesis.shape[-1] != audio.shape[-1]:
            audio = audio[..., : resynthesis.shape[-1]]
        total, terms = self.loss.compute_terms(resynthesis, audio)
        batch_size = audio.shape[0]
        values = {
            "loss": float(total),
            "lsd": metrics.log_spectral_distance(resynthesis, audio),
            "mse": metrics.mse(resynthesis, audio),
            "mss": metrics.multiscale_spectral_distance(resynthesis, audio),
        }
        values.update({f"loss/{name}": float(value) for name, value in terms.items()})
        for key, value in values.items():
            self._epoch_sums[key] += value * batch_size
        self._epoch_count += batch_size
        true_f0 = batch["f0_hz"].expand_as(estimate["f0_hz"]) if batch["f0_hz"].shape[-1] == 1 \
            else batch["f0_hz"]
        self._epoch_f0.append((estimate["f0_hz"].detach().cpu(), true_f0.detach().cpu()))
        return estimate

    def _reset_epoch(self) -> None:
        self._epoch_sums = defaultdict(float)
        self._epoch_count = 0
        self._epoch_f0 = []

    def _epoch_metrics(self) -> dict[str, float]:
        """Metrics over the whole epoch: audio metrics as example-weighted means, pitch
        metrics over every frame of every example at once."""
        if self._epoch_count == 0:
            return {}
        results = {key: value / self._epoch_count for key, value in self._epoch_sums.items()}
        predicted, true = self._epoch_f0_frames()
        results.update(metrics.pitch_metrics(predicted.double(), true.double()))
        return results

    def on_validation_epoch_start(self) -> None:
        self._reset_epoch()

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        estimate = self._evaluation_step(batch, "val")
        if batch_idx == 0 and self.n_plot_examples > 0 and not self.trainer.sanity_checking:
            self._log_spectra_figure(batch["x"], estimate["audio"])

    def on_validation_epoch_end(self) -> None:
        results = self._epoch_metrics()
        for key, value in results.items():
            self.log(f"val/{key}", value, prog_bar=key in ("lsd", "rpa"))
        if self.n_plot_examples > 0 and not self.trainer.sanity_checking and self._epoch_f0:
            self._log_f0_figure()

    def on_test_epoch_start(self) -> None:
        self._reset_epoch()

    def test_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        self._evaluation_step(batch, "test")

    def on_test_epoch_end(self) -> None:
        self.log_dict({f"test/{k}": v for k, v in self._epoch_metrics().items()})

    def test_predictions(self) -> tuple[Tensor, Tensor]:
        """Per-frame (predicted, true) f0 in Hz of the last test epoch, each (N, T), in test order."""
        if not self._epoch_f0:
            raise RuntimeError("no test epoch has run; call trainer.test first")
        return self._epoch_f0_frames()

    def _epoch_f0_frames(self) -> tuple[Tensor, Tensor]:
        """The epoch's per-frame (predicted, true) f0 in Hz, each (N, T), concatenated."""
        return (torch.cat([p for p, _ in self._epoch_f0]), torch.cat([t for _, t in self._epoch_f0]))

    def test_results(self) -> dict[str, float]:
        """The metrics of the last test epoch (keys without the ``test/`` prefix): the loss and
        its terms, lsd, mse, mss (example-weighted means) and every key of
        ``metrics.pitch_metrics`` over all test frames (rpa, rca, od, median_cents_error,
        within_octave, log_f0_corr, median_signed_cents, within_50_cents, within_100_cents,
        median_pred_hz)."""
        return self._epoch_metrics()

    # ------------------------------------------------------------------ figures
    def _figure_dir(self) -> Path | None:
        root = self.trainer.default_root_dir if self._trainer is not None else None
        return Path(root) / "figures" if root else None

    def _save_figure(self, figure, name: str) -> None:
        import matplotlib.pyplot as plt

        from sotddsp.model.plotting import log_figure

        directory = self._figure_dir()
        if directory is not None:
            directory.mkdir(parents=True, exist_ok=True)
            figure.savefig(directory / f"{name}-epoch{self.current_epoch:04d}.png", dpi=100)
        for logger in self.loggers:
            log_figure(logger, name, figure, self.global_step)
        plt.close(figure)

    def _log_spectra_figure(self, target: Tensor, resynthesis: Tensor) -> None:
        from sotddsp.model.plotting import spectra_figure

        n = min(self.n_plot_examples, target.shape[0])
        figure = spectra_figure(
            target[:n].detach().cpu(), resynthesis[:n].detach().cpu(), self.sample_rate
        )
        self._save_figure(figure, "val-spectra")

    def _log_f0_figure(self) -> None:
        from sotddsp.model.plotting import f0_scatter_figure

        predicted, true = self._epoch_f0_frames()
        figure = f0_scatter_figure(
            predicted.numpy(), true.numpy(), title=f"validation, epoch {self.current_epoch}"
        )
        self._save_figure(figure, "val-f0")


def count_parameters(module: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)
