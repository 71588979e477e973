"""Lightning callbacks and checkpoint IO of a training run: checkpoints are written atomically,
``last.ckpt`` is written at every epoch's end, and a resumed CPU run continues the random
streams an uninterrupted run would have had.

- ``AtomicCheckpointIO``: checkpoints through ``atomic_files.atomic_torch_save``;
- ``EpochEndCheckpoint``: a ``ModelCheckpoint`` whose ``last.ckpt`` is written at every epoch's
  end, and whose resume counts a replayed epoch end once;
- ``RNGStateCallback``: the torch/numpy/python RNG states travel in each checkpoint;
- ``MetricsHistory``: the training and validation curves, kept in each checkpoint (so a resumed
  run's curves equal an uninterrupted run's) and written to ``<run>/curves.csv``.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.callbacks import ModelCheckpoint

from sotddsp.core.atomic_files import atomic_torch_save, atomic_write_text
from sotddsp.core.result_tables import csv_text

__all__ = ["AtomicCheckpointIO", "EpochEndCheckpoint", "MetricsHistory", "RNGStateCallback"]


class AtomicCheckpointIO(TorchCheckpointIO):
    """Checkpoint IO that never leaves a truncated checkpoint where a good one was."""

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any | None = None
    ) -> None:
        if storage_options is not None:
            raise TypeError("AtomicCheckpointIO does not take storage_options")
        atomic_torch_save(checkpoint, path)


def relocated_state(state_dict: dict[str, Any], old: Path, new: Path) -> dict[str, Any]:
    """A ``ModelCheckpoint`` state with every checkpoint path under ``old`` moved to ``new``
    (the same file name) and ``dirpath`` set to ``new``."""

    def move(path: Any) -> Any:
        if isinstance(path, str) and path and Path(path).parent == old:
            return str(new / Path(path).name)
        return path

    moved = {key: move(value) for key, value in state_dict.items()}
    moved["dirpath"] = str(new)
    if isinstance(state_dict.get("best_k_models"), dict):
        moved["best_k_models"] = {move(k): v for k, v in state_dict["best_k_models"].items()}
    return moved


class EpochEndCheckpoint(ModelCheckpoint):
    """``ModelCheckpoint`` that writes ``last.ckpt`` at the end of every training epoch and
    resumes from such a checkpoint at the start of the next epoch, as an uninterrupted run.

    Two Lightning 2.6 behaviours are corrected:
    - ``last.ckpt`` is written at an epoch's end only when a top-k checkpoint was saved there
      too, so a run whose monitored metric stopped improving would resume from an older
      epoch. With ``save_last`` set, this class writes it after every training epoch.
    - With ``max_steps`` set (step-based training), a checkpoint written in
      ``on_train_epoch_end`` is resumed by replaying that epoch's end, which counts the epoch
      as processed twice: every later epoch then gives its sampler the next epoch's number
      (another shuffle). On loading such a checkpoint the fit loop's ``processed`` counter is
      set back by one, so that the replay counts it once; the replayed epoch end, already
      saved before the interruption, writes nothing.
    """

    _replaying_epoch_end = False

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Lightning's, for a run whose directory moved (a clone elsewhere, a copied
        ``reference-runs/``): a checkpoint saved under another ``dirpath`` ending in the same
        ``<experiment>/<run>/checkpoints`` has its paths moved here, so the best score and the
        best checkpoint carry over. Lightning alone would drop the best score (the next
        validation would count as the best, however bad) and keep ``best_model_path`` pointing
        into the old directory, whose file the final test would then load, or fail to find.
        A checkpoint from another run's directory keeps no best checkpoint of its own."""
        saved = state_dict.get("dirpath")
        if saved and self.dirpath and saved != self.dirpath:
            if Path(saved).parts[-3:] == Path(self.dirpath).parts[-3:]:
                state_dict = relocated_state(state_dict, Path(saved), Path(self.dirpath))
            else:
                state_dict = {**state_dict, "best_model_path": ""}
        super().load_state_dict(state_dict)

    def on_load_checkpoint(
        self, trainer: Trainer, pl_module: LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        progress = checkpoint.get("loops", {}).get("fit_loop", {}).get("epoch_progress")
        if trainer.max_steps == -1 or not isinstance(progress, dict):
            return
        parts = [progress.get("total"), progress.get("current")]
        if all(isinstance(part, dict) and part["ready"] == part["started"] == part["processed"]
               == part["completed"] + 1 for part in parts):  # saved in on_train_epoch_end
            for part in parts:
                part["processed"] -= 1
            self._replaying_epoch_end = True

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self._replaying_epoch_end:
            self._replaying_epoch_end = False
            return
        super().on_train_epoch_end(trainer, pl_module)
        # _should_skip_saving_checkpoint is true when this step was already saved (or in a
        # sanity check, a fast_dev_run or outside fit)
        if self.save_last and self._should_save_on_train_epoch_end(trainer) \
                and not self._should_skip_saving_checkpoint(trainer):
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))


class RNGStateCallback(Callback):
    """Stores the global RNG states in each checkpoint; on resume, restores them at the start
    of the next training epoch (checkpoints are written at epoch ends), after whatever Lightning
    draws while it restores the loops."""

    def __init__(self) -> None:
        self._pending: dict[str, Any] | None = None

    def state_dict(self) -> dict[str, Any]:
        # plain tensors and numbers only, so checkpoints load with torch.load(weights_only=True)
        _, keys, position, has_gauss, cached = np.random.get_state()
        version, internal, gauss_next = random.getstate()
        return {
            "torch": torch.get_rng_state(),
            "numpy": {"keys": torch.from_numpy(keys.astype(np.int64)), "position": int(position),
                      "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
            "python": {"version": version, "internal": torch.tensor(internal, dtype=torch.int64),
                       "gauss_next": gauss_next},
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._pending = state_dict

    def on_train_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self._pending is not None:
            self.restore(self._pending)
            self._pending = None

    @staticmethod
    def restore(state_dict: dict[str, Any]) -> None:
        """Set the torch, numpy and python RNG states from ``state_dict()``'s output."""
        torch.set_rng_state(state_dict["torch"])
        numpy_state = state_dict["numpy"]
        np.random.set_state((
            "MT19937", numpy_state["keys"].numpy().astype(np.uint32), numpy_state["position"],
            numpy_state["has_gauss"], numpy_state["cached_gaussian"],
        ))
        python_state = state_dict["python"]
        random.setstate((python_state["version"], tuple(python_state["internal"].tolist()),
                         python_state["gauss_next"]))


class MetricsHistory(Callback):
    """The curves of a fit: one row per logged training step (``train/*`` metrics, every
    ``log_every_n_steps``) and per validation pass (``val/*``), each with ``step``, ``epoch`` and
    ``split``. The rows travel in the checkpoints (``state_dict``), so a run resumed from
    ``last.ckpt`` continues the rows it had when that checkpoint was written; ``<path>`` is
    rewritten, atomically, at every epoch's end and when the fit ends.

    path: the CSV file (``<run>/curves.csv`` in train.py); None keeps the rows in memory only.
    """

    def __init__(self, path: str | Path | None = None) -> None:
        self.path = None if path is None else Path(path)
        self.rows: list[dict[str, Any]] = []

    def _record(self, trainer: Trainer, split: str) -> None:
        prefix = f"{split}/"
        values = {key: float(value) for key, value in trainer.callback_metrics.items()
                  if key.startswith(prefix)}
        if values:
            self.rows.append({"step": trainer.global_step, "epoch": trainer.current_epoch,
                              "split": split, **values})

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs: Any,
                           batch: Any, batch_idx: int) -> None:
        if trainer.global_step % trainer.log_every_n_steps == 0:
            self._record(trainer, "train")

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        # Not on_validation_epoch_end: callbacks' epoch-end hooks run before the module's, and
        # before Lightning reduces the epoch's metrics, so they would see the previous pass's.
        if not trainer.sanity_checking:
            self._record(trainer, "val")

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.write()

    def on_fit_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.write()

    def write(self) -> None:
        """Write every row so far to ``path`` (columns: step, epoch, split, then the metrics)."""
        if self.path is None or not self.rows:
            return
        metrics = sorted({key for row in self.rows for key in row} - {"step", "epoch", "split"})
        atomic_write_text(self.path, csv_text(["step", "epoch", "split", *metrics], self.rows))

    def state_dict(self) -> dict[str, Any]:
        return {"rows": [dict(row) for row in self.rows]}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.rows = [dict(row) for row in state_dict.get("rows", [])]
