"""MetricsHistory (sotddsp/model/callbacks.py): each validation row holds that validation's
epoch-level metrics, not the previous one's, and the rows survive a resume."""

from __future__ import annotations

import csv
from pathlib import Path

import lightning.pytorch as pl
import torch
from torch.utils.data import DataLoader, TensorDataset

from sotddsp.model.callbacks import MetricsHistory


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
