"""Run directories' files as training writes them, for tests that read them back."""

from __future__ import annotations

from pathlib import Path

from sotddsp.core.run_layout import CURVES_FILE
from sotddsp.model.callbacks import MetricsHistory


def write_curves(run_dir: Path, rows: list[dict]) -> Path:
    """``<run_dir>/curves.csv`` written by MetricsHistory itself from ``rows`` (step, epoch,
    split and ``train/*`` or ``val/*`` metrics); returns its path."""
    history = MetricsHistory(run_dir / CURVES_FILE)
    history.rows = rows
    history.write()
    return history.path
