"""Fixtures of the commands' tests."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers.bad_input import World, build_world


@pytest.fixture(scope="session")
def bad_input_world(tiny_data_path: Path, tmp_path_factory: pytest.TempPathFactory) -> World:
    """The files the bad-input cases of every command read (built once: a short training run)."""
    return build_world(tmp_path_factory.mktemp("bad_input_world"), tiny_data_path)
