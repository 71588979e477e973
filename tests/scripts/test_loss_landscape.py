"""The loss landscape of scripts/loss_landscape.py: SOT localizes a sine's frequency, MSS does not.

Target: a unit 1 kHz sine, 16 kHz, 4096 samples; predictions: sines at 1 kHz + offset (Hz),
offsets -960..+2000 Hz every 5 Hz (predicted sines 40 Hz .. 3 kHz). Curves are (M,) loss values.

What holds, measured on this grid (see the figure):
- SOT over the 9 STFT frames whose 2048-sample window lies inside the signal is strictly
  monotone on both sides of the target, down to 0.5 Hz steps, with no exclusion zone.
- SOT as trained (all 16 end-padded frames) adds a ripple from the 7 frames that run past the
  signal's end (their truncated window leaks power across the band; POT gives the same values):
  it is ordered only at a coarser scale, any two offsets on one side whose distances to the
  target differ by >= 350 Hz are ordered (the worst pair on this grid needs 315 Hz).
- MSS lin has a basin of about +-800 Hz (its smallest FFT sizes have 125-250 Hz bins) and is
  flat beyond it; the single-scale L2 STFT-2048 distance is flat beyond +-300 Hz.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from loss_landscape import (
    CURVES,
    DEFAULT_OFFSETS_HZ,
    N_FULL_FRAMES,
    SOT_FULL,
    loss_landscape,
    plot,
    sines,
    sot_per_frame,
)

from sotddsp.dsp.losses import SpectralOTLoss


@pytest.fixture(scope="module")
def curves() -> dict[str, np.ndarray]:
    return loss_landscape(DEFAULT_OFFSETS_HZ)


def _sides(offsets: np.ndarray, values: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """(distance to target, values) on each side, ordered from the target outwards."""
    left, right = offsets <= 0, offsets >= 0
    return [(-offsets[left][::-1], values[left][::-1]), (offsets[right], values[right])]


def test_curves_shapes_and_minimum(curves: dict[str, np.ndarray]) -> None:
    assert set(curves) == set(CURVES)
    assert DEFAULT_OFFSETS_HZ[0] == -960.0 and DEFAULT_OFFSETS_HZ[-1] == 2000.0
    zero = int(np.flatnonzero(DEFAULT_OFFSETS_HZ == 0.0)[0])
    for name, values in curves.items():
        assert values.shape == DEFAULT_OFFSETS_HZ.shape, name
        assert np.all(np.isfinite(values)), name
        assert values[zero] == pytest.approx(0.0, abs=1e-9), name  # identical signals
        assert np.all(np.delete(values, zero) > values[zero]), name


def test_sot_full_frames_strictly_monotone(curves: dict[str, np.ndarray]) -> None:
    """Strictly decreasing toward the target on both sides, over the whole grid."""
    for distance, values in _sides(DEFAULT_OFFSETS_HZ, curves[SOT_FULL]):
        assert distance[0] == 0.0 and np.all(np.diff(values) > 0)


def test_sot_full_frames_monotone_near_target() -> None:
    """0.5 Hz steps within +-40 Hz (the flattop main lobe is +-5 bins = +-39 Hz): no exclusion."""
    offsets = np.arange(-40.0, 40.0 + 1e-9, 0.5)
    values = sot_per_frame(offsets)[:, :N_FULL_FRAMES].mean(-1)
    for _, side in _sides(offsets, values):
        assert np.all(np.diff(side) > 0)


def test_sot_per_frame_decomposes_the_loss(curves: dict[str, np.ndarray]) -> None:
    """The mean of the per-frame values over all 16 frames is SpectralOTLoss itself."""
    subset = slice(None, None, 7)
    frames = sot_per_frame(DEFAULT_OFFSETS_HZ[subset])
    assert frames.shape == (DEFAULT_OFFSETS_HZ[subset].size, 16)
    np.testing.assert_allclose(frames.mean(-1), curves["SOT-2048"][subset], rtol=1e-6, atol=1e-12)
    with torch.no_grad():
        direct = SpectralOTLoss(reduction="none")(
            sines(np.array([1500.0])), sines(np.array([1000.0]))
        )
    index = int(np.flatnonzero(DEFAULT_OFFSETS_HZ == 500.0)[0])
    assert float(direct[0]) == pytest.approx(curves["SOT-2048"][index], rel=1e-6)


def test_sot_as_trained_is_ordered_at_350_hz(curves: dict[str, np.ndarray]) -> None:
    """Any two offsets on one side whose distances differ by >= 350 Hz: the farther costs more."""
    for distance, values in _sides(DEFAULT_OFFSETS_HZ, curves["SOT-2048"]):
        far_apart = distance[None, :] - distance[:, None] >= 350.0  # [i, j]: j farther than i
        assert np.all(values[None, :] > values[:, None], where=far_apart)


def test_sot_range_dwarfs_mss_lin_far_from_target(curves: dict[str, np.ndarray]) -> None:
    """Beyond +-800 Hz MSS lin varies by < 5% of its max; SOT by > 75% of its max."""
    far = np.abs(DEFAULT_OFFSETS_HZ) >= 800.0
    spread = {name: np.ptp(v[far]) / v.max() for name, v in curves.items()}
    assert spread["MSS lin"] < 0.05
    assert spread["SOT-2048"] > 0.75
    assert spread[SOT_FULL] > 0.75


def test_single_scale_l2_flat_beyond_narrow_dip(curves: dict[str, np.ndarray]) -> None:
    """Beyond +-300 Hz the L2 STFT-2048 distance varies by < 3% of its max."""
    values = curves["L2 STFT-2048"]
    far = np.abs(DEFAULT_OFFSETS_HZ) >= 300.0
    assert np.ptp(values[far]) / values.max() < 0.03
    # ... and it already reaches 90% of its max within 50 Hz of the target.
    near = np.abs(DEFAULT_OFFSETS_HZ) == 50.0
    assert np.all(values[near] > 0.9 * values.max())


def test_rejects_offsets_outside_the_band() -> None:
    with pytest.raises(ValueError, match="offsets_hz"):
        loss_landscape(np.array([-1000.0, 0.0]))
    with pytest.raises(ValueError, match="offsets_hz"):
        loss_landscape(np.array([7000.0]))


def test_plot_writes_png(tmp_path: Path) -> None:
    offsets = np.arange(-200.0, 200.0 + 1e-9, 20.0)
    out = tmp_path / "landscape.png"
    plot(offsets, loss_landscape(offsets), 1000.0, out)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
