"""The one table of old class paths: configs and checkpoints written before the code moved into
the ``sotddsp`` package name our classes by their old top-level modules
(``models.encoder.PESTOEncoder``, ``losses.SpectralOTLoss``, ``datamodule.…``); they load and
resume through ``normalize_class_path`` and ``upgrade_config``. Imports nothing (the sweep's
Hydra plugin and run fingerprints may use it without torch).

Only configs carry class paths: our checkpoints pickle no class of ours (tensors, dicts and
``collections.OrderedDict`` only; tests/model/test_compat.py checks the reference runs), and
they embed their config as YAML text (``run_layout.CONFIG_KEY``), upgraded when read.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["ALIASES", "normalize_class_path", "upgrade_config"]

# Old dotted prefix (a module, or one class) -> where it lives now. The longest matching prefix
# wins, so a class entry overrides its module's.
ALIASES: dict[str, str] = {
    # the top-level modules of the flat layout
    "run_layout": "sotddsp.core.run_layout",
    "command_line": "sotddsp.core.command_line",
    "atomic_files": "sotddsp.core.atomic_files",
    "checks": "sotddsp.core.checks",
    "result_tables": "sotddsp.core.result_tables",
    "models.native": "sotddsp.dsp.native",
    "models.spectral": "sotddsp.dsp.spectral",
    "models.synth": "sotddsp.dsp.synth",
    "losses": "sotddsp.dsp.losses",
    "metrics": "sotddsp.dsp.metrics",
    "data_files": "sotddsp.data.files",
    "synthetic_data": "sotddsp.data.synthetic",
    "real_data": "sotddsp.data.real",
    "datamodule": "sotddsp.data.datamodule",
    "models.encoder": "sotddsp.model.encoder",
    "models.autoencoder": "sotddsp.model.autoencoder",
    "plotting": "sotddsp.model.plotting",
    "original_format": "sotddsp.model.original_format",
    "checkpoints": "sotddsp.model.checkpoints",
    "training_callbacks": "sotddsp.model.callbacks",
    "experiment_cli": "sotddsp.model.cli",
    # classes that moved between modules before the package
    "synthetic_data.PreloadedSinusoidDataModule":
        "sotddsp.data.datamodule.PreloadedSinusoidDataModule",
    "losses.wasserstein_1d": "sotddsp.dsp.ot.wasserstein_1d",
}
_BY_LENGTH = sorted(ALIASES, key=len, reverse=True)


def normalize_class_path(class_path: str) -> str:
    """The current class path of ``class_path``: an old one (``ALIASES``) rewritten, any other
    returned as is. E.g. ``"losses.SpectralOTLoss"`` -> ``"sotddsp.dsp.losses.SpectralOTLoss"``."""
    for old in _BY_LENGTH:
        if class_path == old or class_path.startswith(old + "."):
            return ALIASES[old] + class_path[len(old):]
    return class_path


def upgrade_config(config: Any) -> Any:
    """A copy of a config (nested mappings and lists, as YAML loads it) with every
    ``class_path`` value normalized (``normalize_class_path``); anything else is kept."""
    if isinstance(config, Mapping):
        return {
            key: normalize_class_path(value) if key == "class_path" and isinstance(value, str)
            else upgrade_config(value)
            for key, value in config.items()
        }
    if isinstance(config, list):
        return [upgrade_config(value) for value in config]
    return config
