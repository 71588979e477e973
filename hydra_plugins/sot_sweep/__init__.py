"""The sweep's sweeper, under the hydra_plugins namespace, where hydra looks for plugins.

Hydra imports every ``hydra_plugins.*`` module whenever any Hydra app starts, in any project of
this environment: this one imports only hydra itself, and ``sotddsp.apps.sweep`` (with the rest
of the package) only when its sweeper runs (sotddsp/apps/sweep_conf/hydra/sweeper/skip_done.yaml
names it).
"""

from __future__ import annotations

from collections.abc import Sequence

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.utils import JobReturn


class SkipDoneSweeper(BasicSweeper):
    """Hydra's basic sweeper minus the runs already done (``sotddsp.apps.sweep``)."""

    def sweep(self, arguments: list[str]) -> list[Sequence[JobReturn]]:
        from sotddsp.apps.sweep import sweep_skipping_done

        return sweep_skipping_done(self, arguments)
