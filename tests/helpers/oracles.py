"""Oracles and signals shared by the tests of the OT solver (tests/dsp/test_ot.py) and of the
losses (tests/dsp/test_losses.py): POT row by row, the clipped cutoff as a balanced problem, a
harmonic test tone, and the one-line ValueError check."""

from __future__ import annotations

import math

import ot
import pytest
import torch
from torch import Tensor

SR = 16000
# The cutoffs of wasserstein_1d: None (plain), "drop" (the paper's, the default), "clip".
CUTOFFS = (None, "drop", "clip")


def pot_rows(u: Tensor, v: Tensor, positions: Tensor, p: float) -> Tensor:
    """POT's ot.wasserstein_1d for each row of (M, n) weights (POT batches along axis 0)."""
    n = u.shape[-1]
    values = positions[:, None].expand(n, u.reshape(-1, n).shape[0])
    out = ot.wasserstein_1d(values, values, u.reshape(-1, n).T, v.reshape(-1, n).T, p=p)
    return out.reshape(u.shape[:-1])


def truncate_for_cutoff(u: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
    """Balanced measures whose plain W_p^p equals the clipped-cutoff W_p^p of (u, v).

    Cumulative levels are clamped at 1 (mass above 1 removed); a measure whose mass ends below
    the common top level min(max(masses), 1) gets the deficit on its last bin, where the
    quantile lookups past its end land.
    """
    top = torch.minimum(torch.maximum(u.sum(-1), v.sum(-1)), torch.ones(()))[..., None]
    out = []
    for w in (u, v):
        cum = w.cumsum(-1).clamp(max=1.0)
        trimmed = torch.diff(cum, dim=-1, prepend=torch.zeros_like(cum[..., :1]))
        trimmed[..., -1] += (top - cum[..., -1:]).squeeze(-1)
        out.append(trimmed)
    return out[0], out[1]


def harmonic(f0: float, n_harmonics: int = 3, n: int = 4096, dtype=torch.float32) -> Tensor:
    """A (1, n) harmonic waveform at 16 kHz with partials k * f0, amplitudes 1 / k."""
    t = torch.arange(n, dtype=torch.float64) / SR
    k = torch.arange(1, n_harmonics + 1, dtype=torch.float64)[:, None]
    return ((1.0 / k) * torch.sin(2 * math.pi * f0 * k * t)).sum(0, keepdim=True).to(dtype)


def assert_one_line_value_error(fn, argument: str) -> None:
    with pytest.raises(ValueError) as info:
        fn()
    message = str(info.value)
    assert argument in message, message
    assert "\n" not in message


def cutoff_kwargs(cutoff: str | None) -> dict:
    """wasserstein_1d's keyword arguments for one of CUTOFFS."""
    return {"cutoff": False} if cutoff is None else {"cutoff": True, "cutoff_rule": cutoff}
