"""The atomic writer (sotddsp/core/atomic_files.py): files readable by colleagues on shared
storage (the mode of a plain open), whoever writes them."""

from __future__ import annotations

import os
import stat
from pathlib import Path


def test_written_files_get_the_mode_of_a_plain_open(tmp_path: Path) -> None:
    """Checkpoints, configs, tables and data sets: readable by colleagues on shared storage."""
    import torch

    from sotddsp.core.atomic_files import atomic_torch_save, atomic_write_text
    from sotddsp.data.files import save_dataset
    from sotddsp.data.synthetic import SynthSettings, generate_dataset

    previous = os.umask(0o022)
    try:
        plain = tmp_path / "plain.txt"
        plain.write_text("x")
        atomic_write_text(tmp_path / "table.md", "| a |\n")
        atomic_torch_save({"state_dict": {"w": torch.zeros(2)}}, tmp_path / "last.ckpt")
        save_dataset(generate_dataset(SynthSettings(n_examples=3, n_samples=256)),
                     tmp_path / "data.pth")
        os.umask(0o027)
        atomic_write_text(tmp_path / "group.md", "| b |\n")
    finally:
        os.umask(previous)
    mode = lambda p: stat.S_IMODE(p.stat().st_mode)
    assert mode(plain) == 0o644
    for name in ("table.md", "last.ckpt", "data.pth"):
        assert mode(tmp_path / name) == 0o644, name
    assert mode(tmp_path / "group.md") == 0o640
