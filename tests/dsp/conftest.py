"""Fixtures of the DSP tests."""

from __future__ import annotations

import pytest


@pytest.fixture(params=["torch", "native"])
def backend(request: pytest.FixtureRequest) -> str:
    """Both implementations of wasserstein_1d face every oracle; "auto" picks one of them.

    "native" is not skipped when the C kernel is missing: ``make install`` builds it, so a
    missing kernel is a broken install and its tests fail with the reason.
    """
    return request.param
