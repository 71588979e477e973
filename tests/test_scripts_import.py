"""Every script of scripts/ and benchmarks/ imports: a script that names a function its package
no longer has fails here, not when a user first runs it."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = sorted(path for folder in ("scripts", "benchmarks")
                 for path in (REPO / folder).glob("*.py"))


def test_there_are_scripts_to_check() -> None:
    assert len(SCRIPTS) >= 20


@pytest.mark.parametrize("path", SCRIPTS, ids=lambda path: f"{path.parent.name}/{path.name}")
def test_the_script_imports(path: Path) -> None:
    """pytest's pythonpath holds scripts/ and benchmarks/, so each imports by its module name."""
    module = importlib.import_module(path.stem)
    assert Path(module.__file__).resolve() == path
