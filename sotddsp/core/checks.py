"""Argument checks shared by the constructors: one-line ValueErrors that name the argument, in
the form ``describe_config_error`` (command_line.py) turns into the config key.
Imports nothing of the project (every layer may use it)."""

from __future__ import annotations

import math

__all__ = ["check_finite", "check_int", "check_positive"]


def check_int(value: object, name: str, minimum: int = 1) -> int:
    """``value`` as an int; ValueError unless it is an integer (not a bool) >= ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        kind = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
        raise ValueError(f"{name} must be {kind}, got {value!r}")
    return value


def check_finite(value: object, name: str) -> float:
    """``value`` as a float; ValueError unless it is a finite real number (not a bool)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    return float(value)


def check_positive(value: object, name: str) -> float:
    """``value`` as a float; ValueError unless it is a real number > 0 (not a bool)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ValueError(f"{name} must be positive, got {value!r}")
    return float(value)
