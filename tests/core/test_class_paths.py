"""The one table of old class paths (sotddsp/core/class_paths.py): every alias lands on what
exists, the configs written before the package (the fixture and reference-runs/) name only
classes it resolves, and upgrading touches nothing but class paths."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest
import yaml
from helpers.entrypoints import REPO

from sotddsp.core.class_paths import ALIASES, normalize_class_path, upgrade_config

# The fixture is frozen in the flat layout; a reference run's config is rewritten in the package's
# class paths when the run resumes, so it may be in either layout.
OLD_CONFIGS = sorted((REPO / "tests" / "fixtures" / "v0-run").glob("*/*/train_config.yaml"))
RUN_CONFIGS = sorted(REPO.glob("reference-runs/**/train_config.yaml"))


def resolve(dotted: str) -> object:
    """The module or attribute a dotted path names (ImportError / AttributeError if none)."""
    try:
        return importlib.import_module(dotted)
    except ImportError:
        module, _, name = dotted.rpartition(".")
        if not module:
            raise
        return getattr(importlib.import_module(module), name)


def class_paths(node: object) -> list[str]:
    if isinstance(node, dict):
        return [v for k, v in node.items() if k == "class_path" and isinstance(v, str)] + [
            p for v in node.values() for p in class_paths(v)]
    if isinstance(node, list):
        return [p for v in node for p in class_paths(v)]
    return []


@pytest.mark.parametrize("old", sorted(ALIASES))
def test_every_alias_lands_on_what_exists(old: str) -> None:
    assert ALIASES[old].startswith("sotddsp.")
    resolve(ALIASES[old])
    if not (REPO / f"{old.split('.')[0]}.py").is_file():  # not one of a checkout's thin scripts
        with pytest.raises((ImportError, AttributeError)):  # nothing of ours is top level
            resolve(old)


def test_normalize_rewrites_old_paths_and_keeps_others() -> None:
    assert normalize_class_path("losses.SpectralOTLoss") == "sotddsp.dsp.losses.SpectralOTLoss"
    assert normalize_class_path("models.encoder.PESTOEncoder") == \
        "sotddsp.model.encoder.PESTOEncoder"
    assert normalize_class_path("models.spectral.CQT") == "sotddsp.dsp.spectral.CQT"
    # the class entry wins over its module's
    assert normalize_class_path("synthetic_data.PreloadedSinusoidDataModule") == \
        "sotddsp.data.datamodule.PreloadedSinusoidDataModule"
    assert normalize_class_path("datamodule.PreloadedSinusoidDataModule") == \
        "sotddsp.data.datamodule.PreloadedSinusoidDataModule"
    for kept in ("torch.optim.Adam", "lightning.pytorch.loggers.WandbLogger",
                 "sotddsp.dsp.losses.LossMixture", "lossesX.Y", "models.encoderish.X"):
        assert normalize_class_path(kept) == kept
    for new in ALIASES.values():
        assert normalize_class_path(new) == new  # idempotent


def test_upgrade_touches_only_class_paths() -> None:
    config = {"model": {"loss": {"class_path": "losses.LossMixture", "init_args": {
        "terms": {"sot": {"class_path": "losses.SpectralOTLoss", "init_args": {"n_fft": 512}}},
        "weights": {"sot": 1.0}}}, "notes": ["losses.SpectralOTLoss"]},
        "class_path_note": "losses.X", "seed_everything": 3}
    upgraded = upgrade_config(config)
    assert upgraded["model"]["loss"]["class_path"] == "sotddsp.dsp.losses.LossMixture"
    sot = upgraded["model"]["loss"]["init_args"]["terms"]["sot"]
    assert sot == {"class_path": "sotddsp.dsp.losses.SpectralOTLoss", "init_args": {"n_fft": 512}}
    assert upgraded["model"]["notes"] == ["losses.SpectralOTLoss"]  # not a class_path key
    assert upgraded["class_path_note"] == "losses.X" and upgraded["seed_everything"] == 3
    assert config["model"]["loss"]["class_path"] == "losses.LossMixture"  # a copy


@pytest.mark.parametrize("path", OLD_CONFIGS, ids=lambda p: str(p.relative_to(REPO)))
def test_configs_of_the_flat_layout_name_only_classes_the_table_resolves(path: Path) -> None:
    paths = class_paths(yaml.safe_load(path.read_text()))
    assert any(p.startswith(("losses.", "models.")) for p in paths)  # written before the package
    for class_path in paths:
        resolve(normalize_class_path(class_path))


@pytest.mark.parametrize("path", RUN_CONFIGS, ids=lambda p: str(p.relative_to(REPO)))
def test_configs_of_reference_runs_name_only_classes_that_resolve(path: Path) -> None:
    paths = class_paths(yaml.safe_load(path.read_text()))
    assert paths, f"{path} names no class"
    for class_path in paths:
        resolve(normalize_class_path(class_path))
