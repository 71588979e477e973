"""The house: every module in one layer, imports that point only down, nothing heavy where it
must stay light, and result files readable by colleagues (docs/DESIGN.md draws the layers)."""

from __future__ import annotations

import ast
import os
import stat
from pathlib import Path

import pytest
from entrypoints import REPO, run_python

# Lowest first. A module may import its own layer and the layers below, never one above.
LAYERS: dict[str, tuple[str, ...]] = {
    "foundation": ("run_layout", "command_line", "atomic_files", "checks", "result_tables",
                   "run_fingerprint"),
    "dsp_and_losses": ("models.native", "models.spectral", "models.synth", "losses", "metrics"),
    "data": ("data_files", "synthetic_data", "datamodule", "real_data"),
    "model": ("models.encoder", "models.autoencoder", "plotting", "training_callbacks",
              "original_format", "experiment_cli", "checkpoints"),
    "entry_points": ("train", "eval_paper", "sweep", "estimate", "hydra_plugins.sot_sweep"),
}
LAYER_OF = {module: rank for rank, modules in enumerate(LAYERS.values()) for module in modules}
# The DSP library and the losses never import the training code (magenta/ddsp's rule), nor do
# the modules a data set or a results table needs.
NO_LIGHTNING = ("models.native", "models.spectral", "models.synth", "losses", "models.encoder",
                "checks",
                "atomic_files", "result_tables", "data_files")


def module_file(module: str) -> Path:
    path = REPO / Path(*module.split("."))
    return path / "__init__.py" if path.is_dir() else path.with_suffix(".py")


def imported_modules(module: str) -> set[str]:
    """Every module an import statement of ``module`` names, at any depth (lazy ones too)."""
    tree = ast.parse(module_file(module).read_text())
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def test_every_project_module_has_a_layer() -> None:
    found = {p.stem for p in REPO.glob("*.py") if p.stem != "setup"}
    found |= {f"models.{p.stem}" for p in (REPO / "models").glob("*.py") if p.stem != "__init__"}
    assert found <= set(LAYER_OF), f"modules without a layer: {sorted(found - set(LAYER_OF))}"


@pytest.mark.parametrize("module", sorted(LAYER_OF))
def test_imports_point_down(module: str) -> None:
    upward = sorted(name for name in imported_modules(module)
                    if name in LAYER_OF and LAYER_OF[name] > LAYER_OF[module])
    assert not upward, f"{module} imports the higher layer(s) of {upward}"


@pytest.mark.parametrize("module", NO_LIGHTNING)
def test_low_layers_never_import_lightning(module: str) -> None:
    assert not any(name.split(".")[0] in ("lightning", "pytorch_lightning")
                   for name in imported_modules(module))


def test_no_library_module_edits_sys_path() -> None:
    """The editable install makes every module importable from anywhere."""
    for module in LAYER_OF:
        source = module_file(module).read_text()
        assert "sys.path" not in source, module


@pytest.mark.parametrize("module", ["hydra_plugins.sot_sweep", "sweep", "run_layout",
                                    "command_line", "run_fingerprint"])
def test_light_modules_import_neither_torch_nor_lightning(module: str, tmp_path: Path) -> None:
    """Hydra imports every hydra_plugins.* module whenever any Hydra app starts."""
    script = (f"import sys, {module}; "
              "print(sorted(m for m in ('torch', 'lightning') if m in sys.modules))")
    done = run_python(script, cwd=tmp_path, timeout=None, check=True)
    assert done.stdout.strip() == "[]", done.stdout


def test_written_files_get_the_mode_of_a_plain_open(tmp_path: Path) -> None:
    """Checkpoints, configs, tables and data sets: readable by colleagues on shared storage."""
    import torch

    from atomic_files import atomic_torch_save, atomic_write_text
    from data_files import save_dataset
    from synthetic_data import SynthSettings, generate_dataset

    previous = os.umask(0o022)
    try:
        plain = tmp_path / "plain.txt"
        plain.write_text("x")
        atomic_write_text(tmp_path / "table.md", "| a |\n")
        atomic_torch_save({"state_dict": {"w": torch.zeros(2)}}, tmp_path / "last.ckpt")
        save_dataset(generate_dataset(SynthSettings(n_examples=3, n_samples=256)),
                     tmp_path / "data.pth")
        os.umask(0o027)
        atomic_write_text(tmp_path / "group.md", "| b |\n")
    finally:
        os.umask(previous)
    mode = lambda p: stat.S_IMODE(p.stat().st_mode)  # noqa: E731
    assert mode(plain) == 0o644
    for name in ("table.md", "last.ckpt", "data.pth"):
        assert mode(tmp_path / name) == 0o644, name
    assert mode(tmp_path / "group.md") == 0o640
