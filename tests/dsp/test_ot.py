"""The 1-D OT solver (sotddsp/dsp/ot.py) against independent oracles: POT, SciPy, a full merged
sort, gradcheck in float64, exact identities; both backends (torch ops and the C kernel).

Units: positions are unitless (normalized frequency); weights are masses; W_p^p in positions^p.
"""

from __future__ import annotations

import ast
import math
import warnings
from pathlib import Path

import pytest
import scipy.signal
import scipy.stats
import torch
from helpers.entrypoints import run_python
from helpers.oracles import (
    CUTOFFS,
    SR,
    assert_one_line_value_error,
    cutoff_kwargs,
    harmonic,
    pot_rows,
    truncate_for_cutoff,
)
from references.paper_reference import merged_sort_w1d
from torch import Tensor

from sotddsp.dsp.losses import SpectralOTLoss  # realistic spectra as test data
from sotddsp.dsp.ot import native_kernel_available, wasserstein_1d

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
    from sotddsp.dsp import ot as solver

    pred, true, x = sot_frames(512, torch.float32)
    expected = wasserstein_1d(pred, true, x, cutoff=True, backend="torch")
    monkeypatch.setattr(solver, "_native_kernels", None)
    monkeypatch.setattr(solver, "_warned_no_native", False)
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

    Checked in a fresh process that imports only torch and the solver (POT and scikit-learn,
    loaded by other tests, bring their own vendored copies).
    """
    script = (
        "import pathlib, torch; from sotddsp.dsp import ot; assert ot.native_kernel_available();"
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
