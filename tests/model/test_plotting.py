"""plotting.seed_strip_figure: one dot per seed, and with ``seeds`` a line per seed shared by
neighbouring strips, from one dot to the other."""

from __future__ import annotations

import numpy as np
from matplotlib.collections import PathCollection

from sotddsp.model.plotting import seed_strip_figure

VALUES = {"A": [4000.0, 50.0, 900.0], "B": [300.0, 2000.0], "C": [10.0, 20.0]}
SEEDS = {"A": [0, 1, 2], "B": [2, 0], "C": [5, 6]}  # A-B share seeds 0 and 2; B-C none


def _dots(figure) -> np.ndarray:
    axis = figure.axes[0]
    return np.concatenate([c.get_offsets() for c in axis.collections
                           if isinstance(c, PathCollection) and len(c.get_offsets())])


def test_pair_lines_join_a_seeds_dots_in_neighbouring_strips() -> None:
    figure = seed_strip_figure(VALUES, 100.0, {}, seeds=SEEDS)
    lines = {line.get_gid(): line for line in figure.axes[0].lines if line.get_gid()}
    assert set(lines) == {"pair-A-B-0", "pair-A-B-2"}
    dots = {(round(x, 9), round(y, 9)) for x, y in _dots(figure)}
    assert len(dots) == 7
    for gid, (value_a, value_b) in (("pair-A-B-0", (4000.0, 2000.0)),
                                    ("pair-A-B-2", (900.0, 300.0))):
        x, y = lines[gid].get_data()
        assert list(y) == [value_a, value_b]
        assert {(round(x[0], 9), value_a), (round(x[1], 9), value_b)} <= dots
        assert abs(x[0] - 0) < 0.2 and abs(x[1] - 1) < 0.2  # strips A (x = 0) and B (x = 1)


def test_without_seeds_no_pair_line_is_drawn() -> None:
    figure = seed_strip_figure(VALUES, 100.0, {})
    assert not [line for line in figure.axes[0].lines if (line.get_gid() or "").startswith("pair")]
    assert len(_dots(figure)) == 7
