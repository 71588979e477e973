"""The spectral losses (sotddsp/dsp/losses.py) against independent oracles: a NumPy STFT with
POT (SOT), a NumPy MSS, exact identities.

Units: losses are W_p^p in positions^p (SOT) or STFT magnitude units (MSS).
"""

from __future__ import annotations

import functools
import math

import numpy as np
import pytest
import torch
from helpers.oracles import (
    CUTOFFS,
    SR,
    assert_one_line_value_error,
    cutoff_kwargs,
    harmonic,
    pot_rows,
    truncate_for_cutoff,
)
from references.paper_reference import merged_sort_w1d, numpy_mss, numpy_power_frames
from torch import nn

from sotddsp.dsp.losses import (
    MASS_EPS,
    LossMixture,
    MultiScaleSpectralLoss,
    SpectralOTLoss,
    as_mixture,
)
from sotddsp.dsp.ot import wasserstein_1d
from sotddsp.dsp.spectral import cqt_frequencies

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
    from sotddsp.dsp import losses

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
    from sotddsp.dsp import losses

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
