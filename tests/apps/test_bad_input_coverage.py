"""The bad-input cases, over every command: at least 25 distinct bad inputs to at least five
programs (the cases live in tests/apps/test_*_bad_input.py)."""

from __future__ import annotations

import importlib
from pathlib import Path


def test_at_least_25_distinct_bad_inputs() -> None:
    modules = sorted(p.stem for p in Path(__file__).parent.glob("test_*_bad_input.py"))
    cases = [case for name in modules for case in importlib.import_module(name).CASES]
    names = [case.name for case in cases]
    assert len(set(names)) == len(names) >= 25
    assert len({case.prog for case in cases}) >= 5
