"""Hydra instantiates sweepers only from the `hydra_plugins` namespace: this registers sweep.py's
sweeper there (conf/sweep/hydra/sweeper/skip_done.yaml names it)."""

from sweep import SkipDoneSweeper as _SkipDoneSweeper


class SkipDoneSweeper(_SkipDoneSweeper):
    """`sweep.SkipDoneSweeper` under the name hydra accepts."""
