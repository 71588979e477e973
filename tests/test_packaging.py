"""What ``pip install`` puts where: one top-level package (plus Hydra's plugin namespace), the
configs and the default model as package data, console scripts that exist, and a package that a
researcher's own ``losses.py`` or ``models/`` cannot shadow."""

from __future__ import annotations

import glob
import importlib
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import tomllib
from helpers.entrypoints import REPO, environment, run_python
from setuptools import find_namespace_packages

PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
SETUPTOOLS = PYPROJECT["tool"]["setuptools"]
SCRIPTS = PYPROJECT["project"]["scripts"]
DATA_FOLDERS = ("configs", "apps/sweep_conf", "weights")


def discovered_packages() -> list[str]:
    find = SETUPTOOLS["packages"]["find"]
    assert find.get("namespaces", True)
    return find_namespace_packages(str(REPO), include=find["include"], exclude=find["exclude"])


def test_only_sotddsp_and_the_hydra_plugin_install_at_top_level() -> None:
    packages = discovered_packages()
    assert {p.split(".")[0] for p in packages} == {"sotddsp", "hydra_plugins"}
    assert [p for p in packages if p.startswith("hydra_plugins.")] == ["hydra_plugins.sot_sweep"]
    assert {"sotddsp.core", "sotddsp.dsp", "sotddsp.data", "sotddsp.model",
            "sotddsp.apps"} <= set(packages)
    assert not [p for p in packages if p.startswith(tuple(
        f"sotddsp.{f.replace('/', '.')}" for f in DATA_FOLDERS))], "data folders are not packages"
    assert "py-modules" not in SETUPTOOLS


def test_package_data_covers_the_configs_the_sweep_config_and_the_weights() -> None:
    package = REPO / "sotddsp"
    patterns = SETUPTOOLS["package-data"]["sotddsp"]
    shipped = {Path(p) for pattern in patterns
               for p in glob.glob(str(package / pattern), recursive=True)}
    files = {p for folder in DATA_FOLDERS for p in (package / folder).rglob("*") if p.is_file()}
    assert files - shipped == set(), "files that a non-editable install would leave out"
    assert (package / "configs" / "base.yaml") in shipped
    assert (package / "weights" / "default.ckpt") in shipped
    assert (REPO / "paper-experiments").resolve() == (package / "configs").resolve()


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_console_scripts_name_callables(name: str) -> None:
    module, _, function = SCRIPTS[name].partition(":")
    assert callable(getattr(importlib.import_module(module), function))


def test_a_researchers_losses_py_and_models_do_not_shadow_the_package(tmp_path: Path) -> None:
    """The issue's reproduction: a working directory with its own ``losses.py`` and ``models/``
    (each failing loudly when imported) changes nothing; nor does it for a console script."""
    (tmp_path / "losses.py").write_text("raise ImportError('the researcher\\'s losses.py')\n")
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "__init__.py").write_text("raise ImportError('their models/')\n")
    done = run_python(
        "import sys; from sotddsp.dsp.losses import SpectralOTLoss; "
        "from sotddsp.model.checkpoints import load_checkpoint; "
        "from sotddsp.apps import estimate, train; "
        "print(sorted(m for m in ('losses', 'models') if m in sys.modules))",
        cwd=tmp_path, timeout=None, check=True)
    assert done.stdout.strip() == "[]"
    script = Path(sys.executable).parent / "sotddsp-pitch"
    if not script.is_file():
        pytest.skip("the console scripts are not installed in this environment")
    helped = subprocess.run([str(script), "--help"], cwd=tmp_path, env=environment(),
                            capture_output=True, text=True, timeout=300, check=False)
    assert helped.returncode == 0 and "usage:" in helped.stdout, helped.stderr[-2000:]


@pytest.mark.slow
def test_a_wheel_holds_one_package_with_its_data(tmp_path: Path) -> None:
    """Builds the wheel ``pip install .`` would install (non-editable) and reads its file list:
    sotddsp/ (with the C extension, the configs and the weights), hydra_plugins/sot_sweep/, and
    the dist-info with the console scripts; nothing else at top level."""
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(tmp_path), str(REPO)],
        capture_output=True, text=True, timeout=600, env=environment(), check=False)
    assert build.returncode == 0, build.stderr[-3000:]
    wheel = next(tmp_path.glob("sot_ddsp-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    top = {n.split("/")[0] for n in names}
    dist_info = {t for t in top if t.endswith(".dist-info")}
    assert top - dist_info == {"sotddsp", "hydra_plugins"}, top
    assert {n for n in names if n.startswith("hydra_plugins/")} == {
        "hydra_plugins/sot_sweep/__init__.py"}
    for needed in ("sotddsp/configs/base.yaml", "sotddsp/configs/SOT-2048.yaml",
                   "sotddsp/configs/presets/debug.yaml", "sotddsp/apps/sweep_conf/sweep.yaml",
                   "sotddsp/weights/default.ckpt", "sotddsp/weights/default.json"):
        assert needed in names, needed
    assert any(n.startswith("sotddsp/dsp/_native_kernels") and n.endswith(".so") for n in names)
    entry_points = zipfile.ZipFile(wheel).read(f"{dist_info.pop()}/entry_points.txt").decode()
    for name in SCRIPTS:
        assert f"{name} = {SCRIPTS[name]}" in entry_points
    assert (REPO / "LICENSE").is_file() and any(n.endswith("LICENSE") for n in names)
    shutil.rmtree(tmp_path / "build", ignore_errors=True)
