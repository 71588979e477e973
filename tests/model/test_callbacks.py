"""sotddsp/model/callbacks.py: MetricsHistory's validation rows hold that validation's
epoch-level metrics, not the previous one's, and survive a resume; EpochEndCheckpoint carries a
moved run's best checkpoint and score over, and takes none from another run's directory."""

from __future__ import annotations

import csv
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from sotddsp.model.callbacks import EpochEndCheckpoint, MetricsHistory, relocated_state


class StepLogger(pl.LightningModule):
    """Logs, at every validation, the global step it ran at: as an epoch-reduced metric from
    ``validation_step`` and as one logged in ``on_validation_epoch_end`` (how the training module
    logs RPA and the other pitch metrics)."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))

    def training_step(self, batch: list[torch.Tensor], batch_idx: int) -> torch.Tensor:
        loss = (self.weight - batch[0].mean()) ** 2
        self.log("train/loss", loss)
        return loss

    def validation_step(self, batch: list[torch.Tensor], batch_idx: int) -> None:
        self.log("val/step_from_steps", float(self.global_step), on_epoch=True)

    def on_validation_epoch_end(self) -> None:
        self.log("val/step_from_epoch_end", float(self.global_step))

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1)


def loader() -> DataLoader:
    return DataLoader(TensorDataset(torch.arange(8.0)), batch_size=2)


def test_each_validation_row_holds_its_own_validations_metrics(tmp_path: Path) -> None:
    history = MetricsHistory(tmp_path / "curves.csv")
    trainer = pl.Trainer(max_steps=12, val_check_interval=4, log_every_n_steps=1,
                         callbacks=[history], logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False,
                         num_sanity_val_steps=0, accelerator="cpu")
    trainer.fit(StepLogger(), loader(), loader())
    with (tmp_path / "curves.csv").open() as handle:
        rows = [row for row in csv.DictReader(handle) if row["split"] == "val"]
    assert [int(row["step"]) for row in rows] == [4, 8, 12]
    for row in rows:
        assert float(row["val/step_from_steps"]) == int(row["step"])
        assert float(row["val/step_from_epoch_end"]) == int(row["step"])
    train_rows = [row for row in history.rows if row["split"] == "train"]
    assert [row["step"] for row in train_rows] == list(range(1, 13))


def test_the_rows_round_trip_through_the_state_dict() -> None:
    history = MetricsHistory()
    history.rows = [{"step": 4, "epoch": 0, "split": "val", "val/x": 1.5}]
    restored = MetricsHistory()
    restored.load_state_dict(history.state_dict())
    assert restored.rows == history.rows
    restored.rows[0]["val/x"] = 0.0
    assert history.rows[0]["val/x"] == 1.5  # a copy


def _saved_state(directory: Path) -> dict:
    best = str(directory / "best-lsd-9-440.ckpt")
    return {"monitor": "val/lsd", "best_model_score": torch.tensor(3.5), "best_model_path": best,
            "current_score": torch.tensor(4.0), "dirpath": str(directory),
            "best_k_models": {best: torch.tensor(3.5)}, "kth_best_model_path": best,
            "kth_value": torch.tensor(3.5), "last_model_path": str(directory / "last.ckpt")}


def test_a_moved_runs_best_checkpoint_and_score_move_with_it(tmp_path: Path) -> None:
    """The run directory moved (<root> changed, <experiment>/<run>/checkpoints the same): the
    paths follow it and the best score is kept (Lightning alone drops the score and keeps the
    old path)."""
    here = tmp_path / "clone" / "SOT-2048" / "SOT-2048-42" / "checkpoints"
    callback = EpochEndCheckpoint(dirpath=here, monitor="val/lsd", mode="min")
    callback.load_state_dict(_saved_state(Path("/elsewhere/SOT-2048/SOT-2048-42/checkpoints")))
    assert Path(callback.dirpath) == here.resolve()
    assert callback.best_model_path == str(here.resolve() / "best-lsd-9-440.ckpt")
    assert callback.kth_best_model_path == callback.best_model_path
    assert callback.last_model_path == str(here.resolve() / "last.ckpt")
    assert list(callback.best_k_models) == [callback.best_model_path]
    assert float(callback.best_model_score) == 3.5


def test_another_runs_checkpoint_keeps_no_best_checkpoint(tmp_path: Path) -> None:
    here = tmp_path / "SOT-2048" / "SOT-2048-42" / "checkpoints"
    callback = EpochEndCheckpoint(dirpath=here, monitor="val/lsd", mode="min")
    with pytest.warns(UserWarning, match="dirpath has changed"):
        callback.load_state_dict(_saved_state(tmp_path / "MSS-Lin" / "MSS-Lin-7" / "checkpoints"))
    assert callback.best_model_path == "" and callback.best_model_score is None


def test_relocated_state_leaves_paths_outside_the_old_directory() -> None:
    old, new = Path("/a/E/E-1/checkpoints"), Path("/b/E/E-1/checkpoints")
    state = {"dirpath": str(old), "best_model_path": "/c/x.ckpt", "last_model_path": "",
             "best_k_models": {str(old / "y.ckpt"): 1.0}, "kth_value": 2.0}
    moved = relocated_state(state, old, new)
    assert moved == {"dirpath": str(new), "best_model_path": "/c/x.ckpt", "last_model_path": "",
                     "best_k_models": {str(new / "y.ckpt"): 1.0}, "kth_value": 2.0}
    assert state["dirpath"] == str(old)  # a copy
