"""Runs written before the package (tests/fixtures/v0-run: a tiny run of the flat layout, its
train_config.yaml and last.ckpt naming ``models.encoder.PESTOEncoder``, ``losses.…``,
``datamodule.…``) load, estimate what they estimated then, resume and replay, through the one
alias table (sotddsp/core/class_paths.py)."""

from __future__ import annotations

import io
import json
import math
import pickletools
import shutil
import zipfile
from pathlib import Path

import pytest
import torch
import yaml
from helpers.entrypoints import REPO

from sotddsp.apps import train
from sotddsp.core.command_line import UserError
from sotddsp.core.run_layout import CONFIG_KEY, PRESETS_DIR, config_file, experiment_config
from sotddsp.model.checkpoints import load_checkpoint

FIXTURE = REPO / "tests" / "fixtures" / "v0-run"
RUN = FIXTURE / "SOT-2048" / "SOT-2048-42"
EXPECTED = json.loads((FIXTURE / "expected_estimate.json").read_text())
# The fixture's model: the debug preset's SOT-2048 with a tiny encoder (tests/fixtures/v0-run).
TINY_ENCODER = ["--model.encoder.init_args.channels", "[4, 4, 4, 2, 1]",
                "--model.encoder.init_args.n_harmonics", "4", "--model.n_plot_examples", "0"]
CHECKPOINTS = sorted([*(REPO / "reference-runs").glob("*/*/checkpoints/*.ckpt"),
                      RUN / "checkpoints" / "last.ckpt"])


def pickled_globals(path: Path) -> set[str]:
    """The ``module.name`` of every global a torch checkpoint's pickle refers to."""
    with zipfile.ZipFile(path) as archive:
        data = archive.read(next(n for n in archive.namelist() if n.endswith("data.pkl")))
    found, strings = set(), []
    for opcode, arg, _ in pickletools.genops(io.BytesIO(data)):
        if opcode.name in ("SHORT_BINUNICODE", "BINUNICODE", "UNICODE"):
            strings.append(arg)
        elif opcode.name == "GLOBAL":
            found.add(arg.replace(" ", "."))
        elif opcode.name == "STACK_GLOBAL":
            found.add(f"{strings[-2]}.{strings[-1]}")
    return found


def test_the_fixture_is_of_the_flat_layout() -> None:
    text = (RUN / "train_config.yaml").read_text()
    embedded = torch.load(RUN / "checkpoints" / "last.ckpt", weights_only=True)[CONFIG_KEY]
    for old in ("models.encoder.PESTOEncoder", "losses.SpectralOTLoss",
                "datamodule.PreloadedSinusoidDataModule"):
        assert f"class_path: {old}" in text and f"class_path: {old}" in embedded


@pytest.mark.parametrize("path", CHECKPOINTS, ids=lambda p: str(p.relative_to(REPO)))
def test_checkpoints_pickle_no_class_of_ours(path: Path) -> None:
    """Only torch storages and OrderedDict: unpickling needs no alias, only the embedded config
    (YAML text) names our classes."""
    if not path.exists():  # a run training beside the tests replaced its best checkpoint
        pytest.skip(f"{path} was removed after collection (a run training beside the tests)")
    modules = {name.rsplit(".", 1)[0] for name in pickled_globals(path)}
    assert modules <= {"torch", "torch._utils", "collections"}, modules


def test_an_old_checkpoint_loads_and_estimates_what_it_did() -> None:
    model = load_checkpoint(RUN / "checkpoints" / "last.ckpt")
    t = torch.arange(4096, dtype=torch.float32) / 16000
    audio = (0.5 * torch.sin(2 * math.pi * 220.0 * t) + 0.3 * torch.sin(2 * math.pi * 440.0 * t))
    with torch.no_grad():
        out = model.estimate(audio[None])
    torch.testing.assert_close(out["f0_hz"][0], torch.tensor(EXPECTED["f0_hz"]),
                               rtol=1e-5, atol=1e-3)
    torch.testing.assert_close(out["amplitudes"][0], torch.tensor(EXPECTED["amplitudes"]),
                               rtol=1e-5, atol=1e-6)
    assert type(model.loss.terms["sot"]).__module__ == "sotddsp.dsp.losses"


def _copy_run(root: Path) -> Path:
    shutil.copytree(FIXTURE / "SOT-2048", root / "SOT-2048")
    return root / "SOT-2048" / "SOT-2048-42"


def _common(data: Path, root: Path) -> list[str]:
    """The fixture's own settings (its budget of 2 steps, its data file's name: a run directory is
    bound to its configuration, core/run_fingerprint.py), on a copy of the tiny data set."""
    shutil.copy(data, root / "tiny.pth")
    return ["--config", str(PRESETS_DIR / "debug.yaml"),
            "--data.init_args.data_path", str(root / "tiny.pth"),
            "--data.init_args.batch_size", "4", "--checkpoint_root", str(root),
            "--trainer.max_steps", "2", "--trainer.enable_progress_bar", "false", *TINY_ENCODER]


def test_an_old_run_resumes_under_todays_config(
    tiny_data_path: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """``python train.py --config paper-experiments/SOT-2048.yaml --checkpoint_root <root>``
    (the command of the runs trained before the package): the run directory, recorded with the
    flat layout's class paths and no fingerprint, is the same configuration (its
    train_config.yaml upgraded and resolved again); the old last.ckpt (step 2, its budget)
    resumes, the run is tested and marked done, and its config and fingerprint then name
    today's classes."""
    run = _copy_run(tmp_path)
    caplog.set_level("INFO", logger="train")
    results = train.main(["--config", str(experiment_config("SOT-2048")),
                          *_common(tiny_data_path, tmp_path)])
    assert "resuming from" in caplog.text and math.isfinite(results["lsd"])
    last = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    assert last["global_step"] == 2 and (run / "done").exists()
    config = yaml.safe_load((run / "train_config.yaml").read_text())
    assert config["model"]["encoder"]["class_path"] == "sotddsp.model.encoder.PESTOEncoder"
    fingerprint = json.loads((run / "config_fingerprint.json").read_text())
    assert fingerprint["config"]["model"]["loss"]["class_path"] == "sotddsp.dsp.losses.LossMixture"


def test_a_moved_run_is_tested_with_its_own_best_checkpoint_or_stops(
    tiny_data_path: Path, tmp_path: Path
) -> None:
    """The fixture's last.ckpt names its best checkpoint under the directory it was trained in
    (/tmp/fx/runs/...). Resumed here, the run is tested with the copy in its own directory,
    never the original's; without that copy it stops with one line and is not marked done."""
    run = _copy_run(tmp_path)
    saved = torch.load(run / "checkpoints" / "last.ckpt", weights_only=False)
    (state,) = [v for k, v in saved["callbacks"].items() if k.startswith("EpochEndCheckpoint")]
    assert not state["best_model_path"].startswith(str(tmp_path))
    results = train.main(["--config", str(experiment_config("SOT-2048")),
                          *_common(tiny_data_path, tmp_path)])
    recorded = json.loads((run / "test_metrics.json").read_text())
    assert recorded["checkpoint"] == "best-lsd-0-2.ckpt" and math.isfinite(results["lsd"])

    other = tmp_path / "other"
    other.mkdir()
    run = _copy_run(other)
    (run / "checkpoints" / "best-lsd-0-2.ckpt").unlink()
    with pytest.raises(UserError, match=r"best-lsd-0-2\.ckpt: the run's best-validation "
                                        r"checkpoint is missing"):
        train.main(["--config", str(experiment_config("SOT-2048")),
                    *_common(tiny_data_path, other)])
    assert not (run / "done").exists()


def test_an_old_train_config_replays(tiny_data_path: Path, tmp_path: Path) -> None:
    """``--config <run>/train_config.yaml`` of the flat layout (and the older
    ``synthetic_data.PreloadedSinusoidDataModule``) still parses: its class paths are upgraded
    before jsonargparse reads it; the replay resumes the run's own last.ckpt."""
    run = _copy_run(tmp_path)
    old = (RUN / "train_config.yaml").read_text().replace(
        "class_path: datamodule.PreloadedSinusoidDataModule",
        "class_path: synthetic_data.PreloadedSinusoidDataModule")
    (tmp_path / "old.yaml").write_text(old)
    results = train.main(["--config", str(tmp_path / "old.yaml"),
                          *_common(tiny_data_path, tmp_path)[2:]])
    assert math.isfinite(results["lsd"]) and (run / "done").exists()
    assert torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 2


def test_config_values_name_files_experiments_or_the_packages_configs(tmp_path: Path,
                                                                      monkeypatch) -> None:
    """An install has no paper-experiments/ folder: ``--config SOT-2048``, ``presets/debug``
    and ``paper-experiments/...`` resolve to the package's configs from any directory; an
    existing file wins; inline YAML is left alone."""
    monkeypatch.chdir(tmp_path)
    assert config_file("SOT-2048") == experiment_config("SOT-2048")
    assert config_file("presets/debug") == PRESETS_DIR / "debug.yaml"
    assert config_file("paper-experiments/presets/debug.yaml") == PRESETS_DIR / "debug.yaml"
    assert config_file("paper-experiments/SOT-512.yaml") == experiment_config("SOT-512")
    assert config_file("{trainer: {max_steps: 3}}") is None
    assert config_file("paper-experiments/../../pyproject.toml") is None
    (tmp_path / "SOT-2048").write_text("trainer: {max_steps: 3}\n")
    assert config_file("SOT-2048") == Path("SOT-2048")
