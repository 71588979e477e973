"""Fixtures of the data tests: a small synthetic set (200 examples of 1024 samples, 120/50/30)."""

from __future__ import annotations

import pytest

from sotddsp.data.synthetic import SynthSettings, generate_dataset


@pytest.fixture(scope="session")
def small_settings() -> SynthSettings:
    return SynthSettings(n_examples=200, n_samples=1024, split_sizes=(120, 50, 30), seed=7)


@pytest.fixture(scope="session")
def small(small_settings: SynthSettings) -> dict:
    """The set of ``small_settings`` (seed 7), generated once."""
    return generate_dataset(small_settings)


