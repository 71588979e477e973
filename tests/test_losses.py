"""Losses (losses.py) against independent oracles: POT, SciPy, a NumPy STFT, exact identities.

Units: positions are unitless (normalized frequency); weights are masses; losses are W_p^p in
positions^p (SOT) or STFT magnitude units (MSS).
"""

from __future__ import annotations

import ast
import functools
import math
import warnings
from pathlib import Path

import numpy as np
import ot
import pytest
import scipy.signal
import scipy.stats
import torch
from entrypoints import run_python
from paper_reference import merged_sort_w1d, numpy_mss, numpy_power_frames
from torch import Tensor, nn

from losses import (
    MASS_EPS,
    LossMixture,
    MultiScaleSpectralLoss,
    SpectralOTLoss,
    as_mixture,
    native_kernel_available,
    wasserstein_1d,
)
from models.spectral import cqt_frequencies

SR = 16000
# The cutoffs of wasserstein_1d: None (plain), "drop" (the paper's, the default), "clip".
CUTOFFS = (None, "drop", "clip")


@pytest.fixture(params=["torch", "native"])
def backend(request: pytest.FixtureRequest) -> str:
    """Both implementations of wasserstein_1d face every oracle; "auto" picks one of them.

    "native" is not skipped when the C kernel is missing: ``make install`` builds it, so a
    missing kernel is a broken install and its tests fail with the reason.
    """
    return request.param


# ---------------------------------------------------------------------------- helpers


def random_histograms(
    shape: tuple[int, ...], n: int, seed: int, zero_fraction: float = 0.3, dtype=torch.float64
) -> tuple[Tensor, Tensor, Tensor]:
    """(u, v, positions): weights (*shape, n) in [0, 1) with exact zeros; sorted positions (n,)."""
    gen = torch.Generator().manual_seed(seed)
    u = torch.rand(*shape, n, generator=gen, dtype=torch.float64)
    v = torch.rand(*shape, n, generator=gen, dtype=torch.float64)
    u = u * (torch.rand(u.shape, generator=gen, dtype=torch.float64) > zero_fraction)
    v = v * (torch.rand(v.shape, generator=gen, dtype=torch.float64) > zero_fraction)
    positions = torch.sort(torch.rand(n, generator=gen, dtype=torch.float64) * 3.0 - 1.0).values
    return u.to(dtype), v.to(dtype), positions.to(dtype)


def generic_histograms(shape: tuple[int, ...], n: int, seed: int) -> tuple[Tensor, Tensor, Tensor]:
    """Weights bounded away from 0 (no tied cumulative levels, checked), float64."""
    gen = torch.Generator().manual_seed(seed)
    u = 0.1 + torch.rand(*shape, n, generator=gen, dtype=torch.float64)
    v = 0.1 + torch.rand(*shape, n, generator=gen, dtype=torch.float64)
    positions = torch.sort(torch.rand(n, generator=gen, dtype=torch.float64)).values
    levels = torch.sort(torch.cat([u.cumsum(-1), v.cumsum(-1)], -1), -1).values
    assert levels.diff(dim=-1).min() > 1e-4, "pick another seed: levels nearly tie"
    return u, v, positions


def pot_rows(u: Tensor, v: Tensor, positions: Tensor, p: float) -> Tensor:
    """POT's ot.wasserstein_1d for each row of (M, n) weights (POT batches along axis 0)."""
    n = u.shape[-1]
    values = positions[:, None].expand(n, u.reshape(-1, n).shape[0])
    out = ot.wasserstein_1d(values, values, u.reshape(-1, n).T, v.reshape(-1, n).T, p=p)
    return out.reshape(u.shape[:-1])


def cutoff_kwargs(cutoff: str | None) -> dict:
    """wasserstein_1d's keyword arguments for one of CUTOFFS."""
    return {"cutoff": False} if cutoff is None else {"cutoff": True, "cutoff_rule": cutoff}


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


# ---------------------------------------------------------------------------- wasserstein_1d


@pytest.mark.parametrize("p", [1.0, 1.5, 2.0, 3.0])
def test_matches_pot_float64(p: float, backend: str) -> None:
    """Unnormalized (unequal masses) random histograms with zeros: (5, 4, 60) -> (5, 4)."""
    u, v, x = random_histograms((5, 4), 60, seed=int(10 * p))
    got = wasserstein_1d(u, v, x, p=p, backend=backend)
    assert got.shape == (5, 4) and got.dtype == torch.float64
    torch.testing.assert_close(got, pot_rows(u, v, x, p), rtol=1e-9, atol=0)


def test_matches_scipy_for_p1(backend: str) -> None:
    u, v, x = random_histograms((8,), 40, seed=3)
    got = wasserstein_1d(
        u / u.sum(-1, keepdim=True), v / v.sum(-1, keepdim=True), x, p=1, backend=backend
    )
    for row in range(8):
        expected = scipy.stats.wasserstein_distance(
            x.numpy(), x.numpy(), u[row].numpy(), v[row].numpy()
        )
        assert float(got[row]) == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize("p", [1.0, 2.0, 2.5])
def test_clip_cutoff_matches_pot_on_truncated_measures(p: float, backend: str) -> None:
    """Masses above and below 1 (u scaled to 0.6..1.6 of v's unit mass)."""
    u, v, x = random_histograms((12,), 50, seed=int(7 * p))
    scale = torch.linspace(0.6, 1.6, 12, dtype=torch.float64)[:, None]
    u = scale * u / u.sum(-1, keepdim=True)
    v = v / v.sum(-1, keepdim=True)
    got = wasserstein_1d(u, v, x, p=p, cutoff=True, cutoff_rule="clip", backend=backend)
    u_cut, v_cut = truncate_for_cutoff(u, v)
    torch.testing.assert_close(got, pot_rows(u_cut, v_cut, x, p), rtol=1e-9, atol=1e-15)
    # The cutoff matters: with mass above 1 the uncut value differs.
    plain = wasserstein_1d(u, v, x, p=p, backend=backend)
    assert not torch.allclose(got[-3:], plain[-3:], rtol=1e-3)


def test_cutoff_hand_worked(backend: str) -> None:
    """Positions x = (0, 1, 2).

    u = (1, 0.5, 0), v = (0, 0, 1): U = (1, 1.5, 1.5), V = (0, 0, 1). On (0, 1] u's quantile is
    x0 and v's is x2 (cost 2^p); on (1, 1.5] u's is x1, v's past its end is the last bin x2
    (cost 1). Plain: 1 * 2^p + 0.5 * 1; either cutoff: 1 * 2^p.
    u = (0.8, 0.4, 0), v = (0, 0, 0.9): levels 0, 0, .8, .9, 1.2, 1.2. (0, .8]: x0 vs x2;
    (.8, .9]: x1 vs x2; (.9, 1.2]: x1 vs v past its end, x2. Plain: .8 * 2^p + .1 + .3;
    drop (the interval ending at 1.2 > 1 costs nothing): .8 * 2^p + .1; clip: .8 * 2^p + .2.
    u = (0.25, 0.25, 0), v = (0, 1, 0): U = (.25, .5, .5), V = (0, 1, 1). On (0, .25] x0 vs x1,
    on (.25, .5] x1 vs x1, on (.5, 1] u past its end lands on x2 vs x1: 0.25 + 0.5 = 0.75.
    """
    x = torch.tensor([0.0, 1.0, 2.0], dtype=torch.float64)
    u = torch.tensor([1.0, 0.5, 0.0], dtype=torch.float64)
    v = torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64)
    for p in (1.0, 2.0, 3.0):
        assert float(wasserstein_1d(u, v, x, p=p, backend=backend)) == pytest.approx(
            2**p + 0.5, abs=1e-15
        )
        for rule in ("drop", "clip"):
            for a, b in ((u, v), (v, u)):
                got = wasserstein_1d(a, b, x, p=p, cutoff=True, cutoff_rule=rule, backend=backend)
                assert float(got) == pytest.approx(2**p, abs=1e-15)
    over = torch.tensor([0.8, 0.4, 0.0], dtype=torch.float64)
    under = torch.tensor([0.0, 0.0, 0.9], dtype=torch.float64)
    for p in (1.0, 2.0, 3.0):
        expected = {None: 0.8 * 2**p + 0.4, "drop": 0.8 * 2**p + 0.1, "clip": 0.8 * 2**p + 0.2}
        for cutoff, value in expected.items():
            for a, b in ((over, under), (under, over)):
                got = wasserstein_1d(a, b, x, p=p, backend=backend, **cutoff_kwargs(cutoff))
                assert float(got) == pytest.approx(value, abs=1e-15), (p, cutoff)
    short = torch.tensor([0.25, 0.25, 0.0], dtype=torch.float64)
    unit = torch.tensor([0.0, 1.0, 0.0], dtype=torch.float64)
    for cutoff in CUTOFFS:
        assert float(
            wasserstein_1d(short, unit, x, p=2, backend=backend, **cutoff_kwargs(cutoff))
        ) == pytest.approx(0.75)


@pytest.mark.parametrize("cutoff", CUTOFFS)
@pytest.mark.parametrize("p", [1.0, 2.0, 1.5])
def test_matches_reference_values(p: float, cutoff: str | None, backend: str) -> None:
    """float64 to 1e-12 and float32 to 1e-6 relative, on histograms with many zeros."""
    u, v, x = random_histograms((6, 16), 257, seed=11, zero_fraction=0.6)
    u = 1.3 * u / v.sum(-1, keepdim=True)
    v = v / v.sum(-1, keepdim=True)
    kwargs = cutoff_kwargs(cutoff)
    torch.testing.assert_close(
        wasserstein_1d(u, v, x, p, backend=backend, **kwargs),
        merged_sort_w1d(u, v, x, p, cutoff),
        rtol=1e-12,
        atol=0,
    )
    u32, v32, x32 = u.float(), v.float(), x.float()
    torch.testing.assert_close(
        wasserstein_1d(u32, v32, x32, p, backend=backend, **kwargs),
        merged_sort_w1d(u32, v32, x32, p, cutoff),
        rtol=1e-6,
        atol=0,
    )


@pytest.mark.parametrize("cutoff", CUTOFFS)
@pytest.mark.parametrize("p", [1.0, 2.0, 1.5])
def test_gradients_match_reference_on_generic_inputs(
    p: float, cutoff: str | None, backend: str
) -> None:
    u, v, x = generic_histograms((3, 5), 40, seed=5)
    u = (1.2 * u / v.sum(-1, keepdim=True)).requires_grad_()
    v = (v / v.sum(-1, keepdim=True)).requires_grad_()
    upstream = torch.randn(3, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    ours = torch.autograd.grad(
        (wasserstein_1d(u, v, x, p, backend=backend, **cutoff_kwargs(cutoff)) * upstream).sum(),
        (u, v),
    )
    ref = torch.autograd.grad((merged_sort_w1d(u, v, x, p, cutoff) * upstream).sum(), (u, v))
    for got, expected in zip(ours, ref, strict=True):
        assert expected.abs().max() > 1e-3
        torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("cutoff", CUTOFFS)
@pytest.mark.parametrize("p", [1.0, 2.0])
def test_gradcheck(p: float, cutoff: str | None, backend: str) -> None:
    u, v, x = generic_histograms((2, 3), 9, seed=2)
    # v's mass 0.97, not 1: "drop" jumps where a level crosses 1, and no level is near 1 here.
    u = (1.1 * u / v.sum(-1, keepdim=True)).requires_grad_()
    v = (0.97 * v / v.sum(-1, keepdim=True)).requires_grad_()
    levels = torch.cat([u.cumsum(-1), v.cumsum(-1)], -1)
    assert float((levels.detach() - 1).abs().min()) > 1e-3
    assert torch.autograd.gradcheck(
        lambda a, b: wasserstein_1d(a, b, x, p, backend=backend, **cutoff_kwargs(cutoff)), (u, v)
    )


def float32_frames_ending_above_one(n_fft: int) -> tuple[Tensor, Tensor, Tensor]:
    """SOT-normalized float32 (prediction, target, positions) whose targets' cumulative sums
    end at 1 + 1 ulp or more, with prediction masses from 0.9 to 1.1 of the target's.

    Harmonic tones of random f0 and amplitudes plus a floor of 1e-3 of each frame's mean bin
    (so that no two levels of a frame tie and the gradient is unique); the frames kept are those
    of the paper's quirk.
    """
    loss = SpectralOTLoss(n_fft=n_fft)
    gen = torch.Generator().manual_seed(n_fft)
    f0 = 60 + 1500 * torch.rand(48, 1, 1, generator=gen, dtype=torch.float64)
    k = torch.arange(1, 6, dtype=torch.float64)
    t = torch.arange(4096, dtype=torch.float64) / SR
    amps = torch.rand(48, 5, 1, generator=gen, dtype=torch.float64)
    audio = (amps * torch.sin(2 * math.pi * f0 * k[:, None] * t)).sum(1).float()
    spectra = loss.spectrum(audio).reshape(-1, n_fft // 2 + 1)
    spectra = spectra + 1e-3 * spectra.mean(-1, keepdim=True)
    true = spectra[0::2] / (spectra[0::2].sum(-1, keepdim=True) + 1e-12)
    above = true.cumsum(-1)[:, -1] > 1.0
    assert int(above.sum()) >= 8, "too few frames ending above 1"
    true = true[above][:24]
    scale = torch.linspace(0.9, 1.1, true.shape[0])[:, None]
    pred = spectra[1::2][above][:24]
    pred = scale * pred / pred.sum(-1, keepdim=True)
    # Frames where a level of one tone ties one of the other by chance have no unique gradient.
    levels = torch.sort(torch.cat([pred.cumsum(-1), true.cumsum(-1)], -1), dim=-1).values
    untied = levels.diff(dim=-1).amin(-1) > 0
    assert int(untied.sum()) >= 8, "too few frames without tied levels"
    return pred[untied], true[untied], loss.positions.float()


@pytest.mark.parametrize("n_fft", [512, 2048])
def test_drop_cutoff_on_float32_targets_ending_above_one(n_fft: int, backend: str) -> None:
    """The paper's quirk, values and gradients: a target whose float32 cumulative sum ends
    above 1 has its whole last interval dropped; predictions with mass above and below 1."""
    pred, true, x = float32_frames_ending_above_one(n_fft)
    u, v = pred.clone().requires_grad_(), true.clone().requires_grad_()
    got = wasserstein_1d(u, v, x, cutoff=True, backend=backend)
    upstream = torch.linspace(0.5, 1.5, got.numel())
    grads = torch.autograd.grad((got * upstream).sum(), (u, v))
    u_ref, v_ref = pred.clone().requires_grad_(), true.clone().requires_grad_()
    expected = merged_sort_w1d(u_ref, v_ref, x, 2.0, "drop")
    expected_grads = torch.autograd.grad((expected * upstream).sum(), (u_ref, v_ref))
    torch.testing.assert_close(got.detach(), expected.detach(), rtol=1e-5, atol=0)
    for g, e in zip(grads, expected_grads, strict=True):
        torch.testing.assert_close(g, e, rtol=0, atol=1e-5 * float(e.abs().max()))
    # Clipping at 1 is another loss on these frames.
    clipped = wasserstein_1d(pred, true, x, cutoff=True, cutoff_rule="clip", backend=backend)
    assert float(((clipped - got.detach()).abs() / got.detach()).max()) > 1e-3


@pytest.mark.parametrize("p", [1.0, 2.0])
def test_one_sided_derivatives_at_ties(p: float, backend: str) -> None:
    """The documented choice: zero weights act as slightly increased; v's tied levels sit above u's.

    W_p^p is piecewise linear in the weights, so one-sided finite differences are exact.
    u = (.5, .25, .25), v = (.5, .375, .125): U_0 = V_0 = .5 and U_2 = V_2 = 1 tie.
    """
    x = torch.tensor([0.0, 0.3, 1.0], dtype=torch.float64)
    u = torch.tensor([0.5, 0.25, 0.25], dtype=torch.float64, requires_grad=True)
    v = torch.tensor([0.5, 0.375, 0.125], dtype=torch.float64, requires_grad=True)
    grad_u, grad_v = torch.autograd.grad(wasserstein_1d(u, v, x, p=p, backend=backend), (u, v))
    h = 1e-6

    def w(du: Tensor, dv: Tensor) -> float:
        return float(wasserstein_1d(u.detach() + du, v.detach() + dv, x, p=p, backend=backend))

    e = torch.eye(3, dtype=torch.float64)
    zero = torch.zeros(3, dtype=torch.float64)
    base = w(zero, zero)
    right_v0 = (w(zero, h * e[0]) - base) / h  # lifts v's levels above u's
    left_u0 = (base - w(-h * e[0], zero)) / h  # lowers u's levels below v's
    assert float(grad_v[0]) == pytest.approx(right_v0, abs=1e-6)
    assert float(grad_u[0]) == pytest.approx(left_u0, abs=1e-6)
    # It is a kink: the other one-sided derivative differs.
    left_v0 = (base - w(zero, -h * e[0])) / h
    assert abs(left_v0 - right_v0) > 1e-3

    # A zero weight in u (U_0 = U_1): the derivative of increasing it.
    u0 = torch.tensor([0.4, 0.0, 0.6], dtype=torch.float64, requires_grad=True)
    v0 = torch.tensor([0.3, 0.3, 0.4], dtype=torch.float64)
    (grad_zero,) = torch.autograd.grad(wasserstein_1d(u0, v0, x, p=p, backend=backend), (u0,))
    up = float(wasserstein_1d(u0.detach() + h * e[1], v0, x, p=p, backend=backend))
    assert float(grad_zero[1]) == pytest.approx(
        (up - float(wasserstein_1d(u0.detach(), v0, x, p=p, backend=backend))) / h, abs=1e-6
    )


def test_deterministic_mode_gives_identical_results() -> None:
    """Torch path: under use_deterministic_algorithms the second rank comes from a search."""
    u, v, x = random_histograms((4, 8), 129, seed=12, dtype=torch.float32)
    u = u.requires_grad_()
    default = wasserstein_1d(u, v, x, cutoff=True, backend="torch")
    (grad_default,) = torch.autograd.grad(default.sum(), u)
    previous = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        strict = wasserstein_1d(u, v, x, cutoff=True, backend="torch")
        (grad_strict,) = torch.autograd.grad(strict.sum(), u)
    finally:
        torch.use_deterministic_algorithms(previous)
    assert torch.equal(default, strict) and torch.equal(grad_default, grad_strict)


def test_batched_shapes_match_rowwise(backend: str) -> None:
    u, v, x = random_histograms((2, 3, 4), 30, seed=8)
    batched = wasserstein_1d(u, v, x, backend=backend)
    assert batched.shape == (2, 3, 4)
    rows = torch.stack(
        [
            wasserstein_1d(a, b, x, backend=backend)
            for a, b in zip(u.reshape(-1, 30), v.reshape(-1, 30), strict=True)
        ]
    )
    assert (
        rows.shape == (24,)
        and wasserstein_1d(u[0, 0, 0], v[0, 0, 0], x, backend=backend).shape == ()
    )
    torch.testing.assert_close(batched.reshape(-1), rows, rtol=1e-14, atol=0)


@pytest.mark.parametrize("p", [1.0, 2.0, 3.0])
@pytest.mark.parametrize("cutoff", CUTOFFS)
def test_point_mass_shift_gives_delta_to_the_p(p: float, cutoff: str | None, backend: str) -> None:
    x = torch.linspace(0, 1, 101, dtype=torch.float64)
    u = torch.zeros(101, dtype=torch.float64)
    v = torch.zeros(101, dtype=torch.float64)
    u[20] = 1.0
    v[57] = 1.0
    expected = abs(float(x[57] - x[20])) ** p
    got = wasserstein_1d(u, v, x, p=p, backend=backend, **cutoff_kwargs(cutoff))
    assert float(got) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("p", [1.0, 2.0, 2.5])
def test_support_scaling_multiplies_by_c_to_the_p(p: float, backend: str) -> None:
    u, v, x = random_histograms((7,), 33, seed=4)
    c = 3.7
    torch.testing.assert_close(
        wasserstein_1d(u, v, c * x, p=p, backend=backend),
        c**p * wasserstein_1d(u, v, x, p=p, backend=backend),
        rtol=1e-12,
        atol=0,
    )


def test_identical_weights_give_zero(backend: str) -> None:
    u, _, x = random_histograms((4,), 50, seed=9)
    for p in (1.0, 2.0):
        for cutoff in CUTOFFS:
            assert torch.equal(
                wasserstein_1d(u, u, x, p=p, backend=backend, **cutoff_kwargs(cutoff)),
                torch.zeros(4, dtype=torch.float64),
            )


def test_all_zero_weights_are_finite(backend: str) -> None:
    x = torch.linspace(0, 1, 16, dtype=torch.float64)
    u = torch.zeros(2, 16, dtype=torch.float64, requires_grad=True)
    v = torch.zeros(2, 16, dtype=torch.float64, requires_grad=True)
    for p in (1.0, 2.0):
        for cutoff in CUTOFFS:
            w = wasserstein_1d(u, v, x, p=p, backend=backend, **cutoff_kwargs(cutoff))
            grads = torch.autograd.grad(w.sum(), (u, v))
            assert torch.equal(w, torch.zeros(2, dtype=torch.float64))
            assert all(torch.isfinite(g).all() for g in grads)


def sot_frames(n_fft: int, dtype: torch.dtype) -> tuple[Tensor, Tensor, Tensor]:
    """(prediction, target, positions) as the SOT loss sees them: flattop power frames of
    harmonic tones (many near-zero bins, so many tied levels in float32), prediction divided by
    the target's mass; (3, 16, n_fft // 2 + 1) and (n_fft // 2 + 1,)."""
    loss = SpectralOTLoss(n_fft=n_fft)
    pred = torch.cat([harmonic(f0, 5) for f0 in (110.0, 440.0, 1500.0)]).to(dtype)
    true = torch.cat([harmonic(f0, 2) for f0 in (220.0, 470.0, 800.0)]).to(dtype)
    pred, true = loss.spectrum(pred), loss.spectrum(true)
    mass = true.sum(-1, keepdim=True) + 1e-12
    return pred / mass, true / mass, loss.positions.to(dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("n_fft", [512, 2048])
@pytest.mark.parametrize("cutoff", CUTOFFS)
@pytest.mark.parametrize("p", [2.0, 1.5])
def test_native_matches_torch_path_on_spectra(
    p: float, cutoff: str | None, n_fft: int, dtype: torch.dtype
) -> None:
    """Same values (to rounding) and, at p = 2, bit-identical gradients: the same tie order."""
    pred, true, x = sot_frames(n_fft, dtype)
    results = {}
    for backend in ("native", "torch"):
        u, v = pred.clone().requires_grad_(), true.clone().requires_grad_()
        w = wasserstein_1d(u, v, x, p=p, backend=backend, **cutoff_kwargs(cutoff))
        upstream = torch.linspace(0.5, 2.0, w.numel(), dtype=dtype).reshape(w.shape)
        results[backend] = (w.detach(), *torch.autograd.grad((w * upstream).sum(), (u, v)))
    rtol = 1e-6 if dtype == torch.float32 else 1e-12
    torch.testing.assert_close(results["native"][0], results["torch"][0], rtol=rtol, atol=0)
    for got, expected in zip(results["native"][1:], results["torch"][1:], strict=True):
        assert expected.abs().max() > 1e-3
        if p == 2.0:
            assert torch.equal(got, expected)
        else:  # |d|^p is rounded by libm here and by torch.pow there
            torch.testing.assert_close(got, expected, rtol=10 * rtol, atol=10 * rtol)


def test_native_without_graph_and_with_one_side() -> None:
    """No graph (no_grad, or no input needs grad) gives the same values; one-sided grads too."""
    pred, true, x = sot_frames(512, torch.float32)
    u, v = pred.clone().requires_grad_(), true.clone().requires_grad_()
    w = wasserstein_1d(u, v, x, cutoff=True, backend="native")
    both = torch.autograd.grad(w.sum(), (u, v))
    with torch.no_grad():
        assert torch.equal(wasserstein_1d(u, v, x, cutoff=True, backend="native"), w.detach())
    assert torch.equal(wasserstein_1d(pred, true, x, cutoff=True, backend="native"), w.detach())
    only_u = wasserstein_1d(u, true, x, cutoff=True, backend="native")
    only_v = wasserstein_1d(pred, v, x, cutoff=True, backend="native")
    assert torch.equal(torch.autograd.grad(only_u.sum(), u)[0], both[0])
    assert torch.equal(torch.autograd.grad(only_v.sum(), v)[0], both[1])


def test_native_rows_do_not_depend_on_threads_or_layout() -> None:
    """Rows split over threads and non-contiguous inputs give bit-identical results."""
    u, v, x = random_histograms((64, 16), 257, seed=21, dtype=torch.float32)
    previous = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        single = wasserstein_1d(u, v, x, cutoff=True, backend="native")
        torch.set_num_threads(2)
        split = wasserstein_1d(u, v, x, cutoff=True, backend="native")
    finally:
        torch.set_num_threads(previous)
    assert torch.equal(single, split)
    strided = wasserstein_1d(u.transpose(0, 1), v.transpose(0, 1), x, backend="native")
    assert torch.equal(strided, wasserstein_1d(u, v, x, backend="native").transpose(0, 1))
    empty = wasserstein_1d(u[:0], v[:0], x, backend="native")
    assert empty.shape == (0, 16)


def test_auto_backend_uses_the_kernel_on_cpu() -> None:
    assert native_kernel_available(), "the C kernel is not built: run `make install`"
    pred, true, x = sot_frames(512, torch.float32)
    auto = wasserstein_1d(pred, true, x, cutoff=True)
    assert torch.equal(auto, wasserstein_1d(pred, true, x, cutoff=True, backend="native"))


def test_without_the_kernel_auto_falls_back_with_one_warning(monkeypatch) -> None:
    import losses

    pred, true, x = sot_frames(512, torch.float32)
    expected = wasserstein_1d(pred, true, x, cutoff=True, backend="torch")
    monkeypatch.setattr(losses, "_native_kernels", None)
    monkeypatch.setattr(losses, "_warned_no_native", False)
    with pytest.warns(UserWarning, match="C merge kernel is not built"):
        first = wasserstein_1d(pred, true, x, cutoff=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        second = wasserstein_1d(pred, true, x, cutoff=True)
    assert torch.equal(first, expected) and torch.equal(second, expected)
    with pytest.raises(RuntimeError, match="backend='torch'"):
        wasserstein_1d(pred, true, x, backend="native")


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="reads /proc/self/maps (Linux)")
def test_native_kernel_shares_torchs_openmp_runtime() -> None:
    """The kernel loads no OpenMP runtime of its own: a second pool would spin against torch's.

    Checked in a fresh process that imports only torch and losses (POT and scikit-learn, loaded
    by other tests, bring their own vendored copies).
    """
    script = (
        "import pathlib, torch, losses; assert losses.native_kernel_available();"
        "maps = pathlib.Path('/proc/self/maps').read_text().splitlines();"
        "print(sorted({l.split()[-1] for l in maps if l.rsplit('/', 1)[-1].startswith("
        "('libgomp', 'libomp', 'libiomp'))}))"
    )
    done = run_python(script, timeout=None, check=True)  # in the repository
    runtimes = ast.literal_eval(done.stdout.strip())
    torch_lib = Path(torch.__file__).resolve().parent
    assert len(runtimes) == 1, runtimes
    assert Path(runtimes[0]).resolve().is_relative_to(torch_lib) or "torch" not in str(torch_lib), (
        runtimes
    )


@pytest.mark.parametrize(
    ("call", "argument"),
    [
        (
            lambda: wasserstein_1d(torch.ones(3, 5), torch.ones(3, 4), torch.arange(5.0)),
            "v_weights",
        ),
        (
            lambda: wasserstein_1d(torch.ones(3, 5), torch.ones(3, 5), torch.arange(4.0)),
            "positions",
        ),
        (lambda: wasserstein_1d(torch.ones(5), torch.ones(5), torch.arange(5.0), p=0.5), "p"),
        (
            lambda: wasserstein_1d(torch.ones(5), torch.ones(5), torch.arange(5.0).flip(0)),
            "ascending",
        ),
        (
            lambda: wasserstein_1d(torch.ones(5), torch.ones(5), torch.arange(5.0), backend="C"),
            "backend",
        ),
        (
            lambda: wasserstein_1d(
                torch.ones(5).half(), torch.ones(5).half(), torch.arange(5.0), backend="native"
            ),
            "backend",
        ),
    ],
)
def test_wasserstein_errors(call, argument: str) -> None:
    assert_one_line_value_error(call, argument)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu() -> None:
    u, v, x = random_histograms((4, 16), 257, seed=1, dtype=torch.float32)
    u = u.requires_grad_()
    cpu = wasserstein_1d(u, v, x, cutoff=True)
    (grad_cpu,) = torch.autograd.grad(cpu.sum(), u)
    u_gpu = u.detach().cuda().requires_grad_()
    gpu = wasserstein_1d(u_gpu, v.cuda(), x.cuda(), cutoff=True)
    (grad_gpu,) = torch.autograd.grad(gpu.sum(), u_gpu)
    torch.testing.assert_close(gpu.cpu(), cpu, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(grad_gpu.cpu(), grad_cpu, rtol=1e-4, atol=1e-6)


# ---------------------------------------------------------------------------- SpectralOTLoss


@pytest.mark.parametrize(("n_fft", "cutoff"), [(2048, True), (2048, False), (512, True)])
def test_sot_matches_numpy_stft_and_pot(n_fft: int, cutoff: bool) -> None:
    """End to end in float64: NumPy flattop power frames, per-frame POT, mean over frames.

    POT has no cutoff: the clipped cutoff is POT on truncated measures ("drop" is checked
    against the merged-sort reference below)."""
    pred = torch.cat([harmonic(300.0), harmonic(610.0, 2)]).double()
    target = torch.cat([harmonic(330.0), harmonic(500.0, 4)]).double()
    loss = SpectralOTLoss(n_fft=n_fft, cutoff=cutoff, cutoff_rule="clip", reduction="none")
    got = loss(pred, target)
    assert got.shape == (2,)
    positions = torch.arange(n_fft // 2 + 1, dtype=torch.float64) / (n_fft / 2)
    for b in range(2):
        p_frames = torch.from_numpy(numpy_power_frames(pred[b].numpy(), n_fft, 256, "flattop"))
        t_frames = torch.from_numpy(numpy_power_frames(target[b].numpy(), n_fft, 256, "flattop"))
        assert p_frames.shape[0] == 16
        t_mass = t_frames.sum(-1, keepdim=True)
        u = p_frames / (t_mass if cutoff else p_frames.sum(-1, keepdim=True))
        v = t_frames / t_mass
        if cutoff:
            u, v = truncate_for_cutoff(u, v)
        expected = pot_rows(u, v, positions, 2.0).mean()
        # torch's and NumPy's FFTs differ by ~1e-14 per bin; W moves by up to n times that.
        assert float(got[b]) == pytest.approx(float(expected), rel=1e-7)


@pytest.mark.parametrize("n_fft", [512, 2048])
@pytest.mark.parametrize("log_frequency", [False, True])
def test_sot_default_is_the_papers_drop_cutoff(n_fft: int, log_frequency: bool) -> None:
    """SpectralOTLoss's default: the target divided by its mass, the prediction by the
    target's, merged-sort W_2^2 with the paper's drop rule, mean over frames and batch, in
    float32."""
    gen = torch.Generator().manual_seed(7)
    f0 = 80 + 1200 * torch.rand(8, 1, generator=gen, dtype=torch.float64)
    t = torch.arange(4096, dtype=torch.float64) / SR
    pred = torch.sin(2 * math.pi * f0 * t).float() + 0.3 * torch.sin(4 * math.pi * f0 * t).float()
    target = torch.sin(2 * math.pi * 1.1 * f0 * t).float()
    loss = SpectralOTLoss(n_fft=n_fft, log_frequency=log_frequency)
    assert loss.cutoff and loss.cutoff_rule == "drop"
    p_frames, t_frames = loss.spectrum(pred), loss.spectrum(target)
    mass = t_frames.sum(-1, keepdim=True) + 1e-12
    expected = merged_sort_w1d(p_frames / mass, t_frames / mass, loss.positions.float(), 2.0,
                               "drop").mean()
    assert float(loss(pred, target)) == pytest.approx(float(expected), rel=1e-5)


def test_sot_log_frequency_positions() -> None:
    loss = SpectralOTLoss(n_fft=2048, log_frequency=True, cutoff_rule="clip")
    m = lambda f: 69 + 12 * np.log2(f / 440.0)
    m_low, m_top = m(32.7), m(32.7 * 2 ** (284 / 36))
    freqs = np.arange(1025) * SR / 2048
    with np.errstate(divide="ignore"):
        midi = np.where(freqs > 0, m(np.maximum(freqs, 1e-300)), 0.0)
    expected = (midi - m_low) / (m_top - m_low)
    order = np.argsort(expected, kind="stable")
    np.testing.assert_array_equal(loss.order.numpy(), order)
    np.testing.assert_allclose(loss.positions.numpy(), expected[order], rtol=1e-12)
    assert loss.order[0] == 1 and loss.order[1] == 0  # DC lands just above bin 1
    assert float(cqt_frequencies()[-1]) == pytest.approx(32.7 * 2 ** (284 / 36))
    assert torch.all(loss.positions.diff() >= 0)
    # The loss is W_2^2 on the re-sorted bins: compare with a direct computation.
    pred, target = harmonic(300.0).double(), harmonic(420.0).double()
    p_frames = loss.spectrum(pred)
    t_frames = loss.spectrum(target)
    t_mass = t_frames.sum(-1, keepdim=True)
    u, v = truncate_for_cutoff(p_frames / t_mass, t_frames / t_mass)
    expected_loss = pot_rows(u[0], v[0], loss.positions, 2.0).mean()
    assert float(loss(pred, target)) == pytest.approx(float(expected_loss), rel=1e-9)


# The framings of SpectralOTLoss and their frame counts at 4096 samples, n_fft 2048, hop 256.
FRAMINGS = (("padded", 16), ("full", 9), ("centered", 17))


@pytest.fixture
def sot_backend(backend: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """SpectralOTLoss's solver pinned to one backend of wasserstein_1d (the loss asks for "auto")."""
    import losses

    monkeypatch.setattr(losses, "wasserstein_1d", functools.partial(wasserstein_1d, backend=backend))
    return backend


@pytest.mark.parametrize("cutoff", CUTOFFS)
@pytest.mark.parametrize(("framing", "n_frames"), FRAMINGS)
def test_sot_framings_match_numpy_frames_and_pot(
    framing: str, n_frames: int, cutoff: str | None, sot_backend: str
) -> None:
    """Every frame's W_2^2 in float64 against frames cut by NumPy from the waveform (zeros
    appended / none / reflect padding), flattop, rfft / sqrt(n_fft), squared: POT per frame
    without cutoff (each spectrum over its own mass + MASS_EPS) and with the clipped cutoff
    (on truncated measures); the paper's drop rule against the merged-sort reference."""
    pred = torch.cat([harmonic(300.0), harmonic(610.0, 2)]).double()
    target = torch.cat([harmonic(330.0), harmonic(500.0, 4)]).double()
    loss = SpectralOTLoss(framing=framing, reduction="none", **cutoff_kwargs(cutoff))
    frames = loss.frame_losses(pred, target)
    assert frames.shape == (2, n_frames)
    torch.testing.assert_close(loss(pred, target), frames.mean(-1), rtol=1e-15, atol=0)
    positions = torch.arange(1025, dtype=torch.float64) / 1024
    for b in range(2):
        p_frames, t_frames = (
            torch.from_numpy(numpy_power_frames(x[b].numpy(), 2048, 256, "flattop", framing))
            for x in (pred, target))
        assert p_frames.shape == (n_frames, 1025)
        t_mass = t_frames.sum(-1, keepdim=True) + MASS_EPS
        if cutoff is None:
            expected = pot_rows(p_frames / (p_frames.sum(-1, keepdim=True) + MASS_EPS),
                                t_frames / t_mass, positions, 2.0)
        elif cutoff == "clip":
            expected = pot_rows(*truncate_for_cutoff(p_frames / t_mass, t_frames / t_mass),
                                positions, 2.0)
        else:
            expected = merged_sort_w1d(p_frames / t_mass, t_frames / t_mass, positions, 2.0,
                                       "drop")
        # torch's and NumPy's FFTs differ by ~1e-14 per bin; W moves by up to n times that.
        torch.testing.assert_close(frames[b], expected, rtol=1e-7, atol=1e-15)


@pytest.mark.parametrize(("framing", "n_frames"), FRAMINGS)
def test_sot_framings_give_the_same_gradients_on_both_backends(
    framing: str, n_frames: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The paper's loss (cutoff, drop) in float32 through the native and the torch solver: the
    same values to rounding and bit-identical waveform gradients (the solver's p = 2 gradients
    are bit-identical, and the STFT is shared)."""
    import losses

    pred = torch.cat([harmonic(f0, 5) for f0 in (110.0, 440.0, 1500.0)])
    target = torch.cat([harmonic(f0, 2) for f0 in (220.0, 470.0, 800.0)])
    loss = SpectralOTLoss(framing=framing)
    results = {}
    for backend in ("native", "torch"):
        monkeypatch.setattr(losses, "wasserstein_1d",
                            functools.partial(wasserstein_1d, backend=backend))
        audio = pred.clone().requires_grad_()
        assert loss.frame_losses(audio, target).shape == (3, n_frames)
        value = loss(audio, target)
        results[backend] = (value.detach(), *torch.autograd.grad(value, audio))
    torch.testing.assert_close(results["native"][0], results["torch"][0], rtol=1e-6, atol=0)
    assert results["torch"][1].abs().max() > 0
    assert torch.equal(results["native"][1], results["torch"][1])


@pytest.mark.parametrize("framing", ["padded", "full", "centered"])
def test_sot_framings_gradcheck(framing: str, sot_backend: str) -> None:
    """The whole loss (STFT, normalization, W_2^2) against finite differences in float64, on a
    small size: n_fft 16, hop 4, 40 samples (10, 7 and 11 frames); no cutoff, so W is smooth
    away from tied levels (generic noise has none)."""
    loss = SpectralOTLoss(n_fft=16, hop_length=4, cutoff=False, framing=framing,
                          reduction="none")
    gen = torch.Generator().manual_seed(5)
    pred = torch.randn(2, 40, generator=gen, dtype=torch.float64).requires_grad_()
    target = torch.randn(2, 40, generator=gen, dtype=torch.float64)
    assert loss.frame_losses(pred, target).shape[-1] == {"padded": 10, "full": 7,
                                                         "centered": 11}[framing]
    assert torch.autograd.gradcheck(lambda a: loss(a, target), (pred,))


def test_sot_default_framing_is_the_papers() -> None:
    """The default is "padded", and an explicit "padded" gives the same values and gradients,
    bit for bit (the end-padded NumPy reference is checked above and in
    test_sot_matches_numpy_stft_and_pot)."""
    assert SpectralOTLoss().framing == SpectralOTLoss().stft.framing == "padded"
    pred = torch.cat([harmonic(200.0, 4), harmonic(900.0)])
    target = torch.cat([harmonic(230.0, 2), harmonic(700.0, 3)])
    results = []
    for loss in (SpectralOTLoss(), SpectralOTLoss(framing="padded")):
        audio = pred.clone().requires_grad_()
        value = loss(audio, target)
        results.append((value.detach(), *torch.autograd.grad(value, audio)))
    assert all(torch.equal(a, b) for a, b in zip(*results, strict=True))


@pytest.mark.parametrize(
    "kwargs", [{}, {"log_frequency": True}, {"n_fft": 512}, {"n_fft": 512, "log_frequency": True}]
)
def test_sot_grows_with_frequency_offset(kwargs: dict) -> None:
    """A 1 kHz sine: SOT against 1.1 kHz exceeds SOT against 1.05 kHz, which exceeds 0."""
    loss = SpectralOTLoss(**kwargs)
    target = harmonic(1000.0, 1)
    same, near, far = (float(loss(harmonic(f, 1), target)) for f in (1000.0, 1050.0, 1100.0))
    assert same == 0.0
    assert 0.0 < near < far


@pytest.mark.parametrize("cutoff", [True, False])
def test_sot_silence_is_finite(cutoff: bool) -> None:
    loss = SpectralOTLoss(n_fft=512, cutoff=cutoff)
    silence = torch.zeros(2, 4096)
    sound = torch.cat([harmonic(440.0), harmonic(90.0)])
    for pred, target in [(silence, silence), (silence, sound), (sound, silence)]:
        pred = pred.clone().requires_grad_()
        value = loss(pred, target)
        (grad,) = torch.autograd.grad(value, pred)
        assert torch.isfinite(value) and torch.isfinite(grad).all()
    assert float(loss(silence, silence)) == 0.0


def test_sot_reduction_and_state_dict() -> None:
    pred = torch.cat([harmonic(200.0), harmonic(800.0), harmonic(1500.0)])
    target = torch.cat([harmonic(220.0), harmonic(700.0), harmonic(1500.0)])
    per_example = SpectralOTLoss(n_fft=512, reduction="none")(pred, target)
    mean = SpectralOTLoss(n_fft=512)(pred, target)
    assert per_example.shape == (3,) and mean.shape == ()
    torch.testing.assert_close(mean, per_example.mean())
    assert float(per_example[2]) == 0.0 and float(per_example[0]) > 0.0
    assert SpectralOTLoss().state_dict() == {}
    moved = SpectralOTLoss().to("meta")
    assert moved.positions.device == torch.device(
        "meta"
    ) and moved.stft.window.device == torch.device("meta")


@pytest.mark.parametrize(
    ("make", "argument"),
    [
        (lambda: SpectralOTLoss(p=0.9), "p"),
        (lambda: SpectralOTLoss(n_fft=0), "n_fft"),
        (lambda: SpectralOTLoss(hop_length=-4), "hop_length"),
        (lambda: SpectralOTLoss(window="gauss"), "window"),
        (lambda: SpectralOTLoss(framing="center"), "framing"),
        (lambda: SpectralOTLoss(reduction="sum"), "reduction"),
        (lambda: MultiScaleSpectralLoss(fft_sizes=(512, 0)), "fft_sizes"),
        (lambda: MultiScaleSpectralLoss(reduction="max"), "reduction"),
        (lambda: MultiScaleSpectralLoss(mag_weight=-1.0), "mag_weight"),
        (lambda: LossMixture({"a": MultiScaleSpectralLoss()}, {"b": 1.0}), "weights"),
        (lambda: LossMixture({}), "terms"),
    ],
)
def test_constructor_errors(make, argument: str) -> None:
    assert_one_line_value_error(make, argument)


@pytest.mark.parametrize("loss", [SpectralOTLoss(n_fft=512), MultiScaleSpectralLoss()])
def test_forward_errors(loss: nn.Module) -> None:
    assert_one_line_value_error(lambda: loss(torch.zeros(2, 4096), torch.zeros(2, 4095)), "shape")
    assert_one_line_value_error(lambda: loss(torch.zeros(4096), torch.zeros(4096)), "shape")
    assert_one_line_value_error(lambda: loss(torch.zeros(2, 300), torch.zeros(2, 300)), "samples")


# ---------------------------------------------------------------------------- MSS


@pytest.mark.parametrize(("mag_weight", "logmag_weight"), [(1.0, 0.0), (1.0, 1.0), (0.0, 2.0)])
def test_mss_matches_numpy(mag_weight: float, logmag_weight: float) -> None:
    sizes = (512, 128, 64)
    pred = torch.cat([harmonic(300.0), harmonic(1200.0, 2)]).double()
    target = torch.cat([harmonic(310.0), 0.5 * harmonic(900.0, 5)]).double()
    loss = MultiScaleSpectralLoss(sizes, mag_weight, logmag_weight, reduction="none")
    got = loss(pred, target)
    assert got.shape == (2,)
    for b in range(2):
        expected = numpy_mss(pred[b].numpy(), target[b].numpy(), sizes, mag_weight, logmag_weight)
        assert float(got[b]) == pytest.approx(expected, rel=1e-9)
    mean = MultiScaleSpectralLoss(sizes, mag_weight, logmag_weight)(pred, target)
    assert mean.shape == ()
    torch.testing.assert_close(mean, got.mean())


def test_mss_identical_zero_and_silence_finite() -> None:
    loss = MultiScaleSpectralLoss(logmag_weight=1.0)
    sound = torch.cat([harmonic(440.0), harmonic(90.0)])
    assert float(loss(sound, sound)) == 0.0
    silence = torch.zeros(2, 4096)
    for pred, target in [(silence, silence), (silence, sound), (sound, silence)]:
        pred = pred.clone().requires_grad_()
        value = loss(pred, target)
        (grad,) = torch.autograd.grad(value, pred)
        assert torch.isfinite(value) and torch.isfinite(grad).all()
    assert loss.state_dict() == {}


# ---------------------------------------------------------------------------- mixtures


def test_mixture_terms_and_weighted_total() -> None:
    sot = SpectralOTLoss(n_fft=512)
    mss = MultiScaleSpectralLoss(fft_sizes=(512,))
    mixture = LossMixture({"sot": sot, "mss": mss}, {"sot": 1.0, "mss": 0.1})
    pred, target = harmonic(300.0), harmonic(360.0)
    total, terms = mixture.compute_terms(pred, target)
    assert list(terms) == ["sot", "mss"]
    torch.testing.assert_close(terms["sot"], sot(pred, target))
    torch.testing.assert_close(terms["mss"], mss(pred, target))
    torch.testing.assert_close(total, terms["sot"] + 0.1 * terms["mss"])
    torch.testing.assert_close(mixture(pred, target), total)
    assert dict(mixture.terms.items()) == {"sot": sot, "mss": mss}
    assert set(dict(mixture.named_modules())) >= {"terms.sot", "terms.mss"}
    assert mixture.state_dict() == {}


def test_as_mixture_wraps_single_loss_and_keeps_mixtures() -> None:
    mss = MultiScaleSpectralLoss(fft_sizes=(256,))
    wrapped = as_mixture(mss, name="mss")
    pred, target = harmonic(300.0), harmonic(330.0)
    total, terms = wrapped.compute_terms(pred, target)
    assert list(terms) == ["mss"]
    torch.testing.assert_close(total, mss(pred, target))
    assert as_mixture(wrapped) is wrapped
    assert list(as_mixture(mss).compute_terms(pred, target)[1]) == ["loss"]
