"""Shared fixtures: small datasets made by the project's own generator (nothing is downloaded),
and the FluidSynth renderer where it is installed or installable."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("WANDB_SILENT", "true")


@pytest.fixture(scope="session")
def tiny_data_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 96-example set (64/16/16) of the paper's harmonic signals, 16 kHz, 4096 samples."""
    from sotddsp.data.files import save_dataset
    from sotddsp.data.synthetic import SynthSettings, generate_dataset

    path = tmp_path_factory.mktemp("data") / "tiny_harmonic.pth"
    save_dataset(generate_dataset(SynthSettings(n_examples=96, split_sizes=(64, 16, 16), seed=7)), path)
    return path


@pytest.fixture(scope="session")
def fluidsynth() -> str:
    """The ``fluidsynth`` program with the FluidR3 GM SoundFont (installed with apt-get where it
    can be); the test is skipped where neither is available."""
    from sotddsp.apps.real_data import ensure_renderer
    from sotddsp.core.command_line import UserError

    try:
        return ensure_renderer()
    except UserError as err:
        pytest.skip(f"FluidSynth and the FluidR3 GM SoundFont are not available here: {err}")
