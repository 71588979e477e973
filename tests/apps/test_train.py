"""train.py end to end on CPU: every experiment config builds and runs, checkpoints reload
to the same test metrics, and a seed fixes the result."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml

from sotddsp.apps import train
from sotddsp.core import run_layout
from sotddsp.model import cli as experiment_cli
from sotddsp.model.autoencoder import HarmonicAutoencoder, count_parameters

EXPERIMENTS = run_layout.known_experiments()
PAPER_EXPERIMENTS = ["MSS-Lin", "MSS-LogLin", "SOT-2048", "SOT-2048-SS", "SOT-512", "SOT-512-LogF", "SOT-NoCut"]
DEBUG = str(run_layout.REPO / "paper-experiments" / "presets" / "debug.yaml")


def _args(experiment: str, data: Path, root: Path, *extra: str) -> list[str]:
    return [
        "--config", str(run_layout.REPO / "paper-experiments" / f"{experiment}.yaml"),
        "--config", DEBUG,
        "--data.init_args.data_path", str(data),
        "--checkpoint_root", str(root),
        *extra,
    ]


def test_the_seven_paper_experiments_have_configs() -> None:
    assert EXPERIMENTS == PAPER_EXPERIMENTS


@pytest.mark.parametrize("experiment", PAPER_EXPERIMENTS)
def test_every_experiment_runs_fast_dev_run(experiment: str, tiny_data_path: Path, tmp_path: Path) -> None:
    results = train.main(_args(experiment, tiny_data_path, tmp_path, "--trainer.fast_dev_run", "2"))
    for key in ("lsd", "rpa", "rca", "od", "mse", "mss", "loss"):
        assert key in results and torch.isfinite(torch.tensor(results[key])), key
    assert 0.0 <= results["rpa"] <= 1.0


BEYOND = sorted(run_layout.BEYOND_EXPERIMENTS_DIR.glob("*.yaml"))


@pytest.mark.parametrize("config", BEYOND, ids=[path.stem for path in BEYOND])
def test_every_beyond_experiment_runs_fast_dev_run(
    config: Path, tiny_data_path: Path, tmp_path: Path
) -> None:
    """Experiments outside the paper's seven (paper-experiments/beyond/, e.g. the one
    scripts/f0_basin_grid.py chooses): labelled so, named after their file (their runs get
    their own folders), and they train."""
    text = config.read_text()
    assert text.startswith("# BEYOND THE PAPER"), config
    assert yaml.safe_load(text)["experiment"] == config.stem
    assert config.stem not in PAPER_EXPERIMENTS
    results = train.main(["--config", str(config), "--config", DEBUG, "--data.init_args.data_path",
                          str(tiny_data_path), "--checkpoint_root", str(tmp_path),
                          "--trainer.fast_dev_run", "2"])
    assert torch.isfinite(torch.tensor(results["loss"]))
    assert (tmp_path / config.stem).is_dir()


def test_the_paper_recipe_is_25000_steps_unshuffled(tiny_data_path: Path, tmp_path: Path) -> None:
    """PAPER.md: the step budget binds (the epoch limit never does) and the loader does not
    shuffle; the SOT cutoff is the authors' rule and the decoder keeps the roll-off's delay."""
    cli = experiment_cli.build_cli(["--data.init_args.data_path", str(tiny_data_path),
                                    "--checkpoint_root", str(tmp_path), "--trainer.logger", "false"])
    assert cli.trainer.max_steps == 25_000
    assert cli.trainer.max_epochs * -(-2800 // 64) > 25_000
    assert cli.datamodule.shuffle is False and cli.datamodule.batch_size == 64
    assert cli.model.loss.terms["sot"].cutoff_rule == "drop"
    roll = experiment_cli.build_cli(_args("MSS-LogLin", tiny_data_path, tmp_path))
    assert roll.model.synth.roll_off and not roll.model.synth.roll_off_zero_delay


def test_wandb_offline_run_prints_no_needless_warnings(
    tiny_data_path: Path, tmp_path: Path, monkeypatch, capfd
) -> None:
    """The default logger: neither "The anonymous setting has no effect" nor "git root ... does
    not exist"."""
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.delenv("WANDB_SILENT", raising=False)
    for name in ("WANDB_RUN_ID", "WANDB_NAME", "WANDB_RUN_GROUP", "WANDB_PROJECT", "WANDB_RESUME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    train.main(_args("MSS-Lin", tiny_data_path, tmp_path, "--trainer.max_steps", "2",
                     "--trainer.logger", "lightning.pytorch.loggers.WandbLogger",
                     "--trainer.logger.save_dir", "logs", "--seed_everything", "5"))
    printed = capfd.readouterr()
    text = printed.out + printed.err
    assert "wandb" in text.lower()  # W&B did run
    assert "anonymous setting" not in text and "git root" not in text


def test_experiment_configs_resolve_to_the_paper_settings(tiny_data_path: Path, tmp_path: Path) -> None:
    cli = experiment_cli.build_cli(_args("SOT-512-LogF", tiny_data_path, tmp_path))
    model: HarmonicAutoencoder = cli.model
    assert count_parameters(model) == 46_012  # only the encoder trains
    sot = model.loss.terms["sot"]
    assert (sot.stft.n_fft, sot.log_frequency, sot.cutoff, sot.p) == (512, True, True, 2.0)
    assert model.loss.weights == {"sot": 1.0, "mss_lin": 0.05}
    assert model.temperature == 0.1
    assert cli.config.model.optimizer.init_args.lr == 1e-4
    roll = experiment_cli.build_cli(_args("MSS-LogLin", tiny_data_path, tmp_path))
    assert roll.model.synth.roll_off and roll.model.loss.terms["loss"].logmag_weight == 1.0


def test_train_checkpoint_reload_test_reproduces_logged_metrics(tiny_data_path: Path, tmp_path: Path) -> None:
    results = train.main(_args("SOT-2048", tiny_data_path, tmp_path, "--seed_everything", "3"))
    run_dir = tmp_path / "SOT-2048" / "SOT-2048-3"
    assert (run_dir / "done").exists() and (run_dir / "train_config.yaml").exists()
    for figure in ("curves.png", "test_f0.png"):  # drawn from curves.csv and the test
        assert (run_dir / figure).read_bytes()[:4] == b"\x89PNG", figure
    ckpts = sorted((run_dir / "checkpoints").glob("best-lsd-*.ckpt"))
    assert len(ckpts) == 1 and (run_dir / "checkpoints" / "last.ckpt").exists()
    recorded = json.loads((run_dir / "test_metrics.json").read_text())
    assert recorded["checkpoint"] == ckpts[0].name
    assert {k: recorded[k] for k in results} == results
    assert recorded["machine"] == {"torch": torch.__version__,
                                   "cpu_capability": torch.backends.cpu.get_cpu_capability(),
                                   "threads": torch.get_num_threads(),
                                   "cuda_device": torch.cuda.get_device_name()
                                   if torch.cuda.is_available() else ""}

    # replaying the saved config resolves to the same run and finds it done
    replay = experiment_cli.build_cli(["--config", str(run_dir / "train_config.yaml")])
    assert replay.run_dir == run_dir
    assert yaml.safe_load((run_dir / "train_config.yaml").read_text())["seed_everything"] == 3

    # a fresh model, rebuilt from the saved config, tested on the best checkpoint's weights
    fresh = experiment_cli.build_cli(["--config", str(run_dir / "train_config.yaml"), "--resume", "never",
                             "--checkpoint_root", str(tmp_path / "elsewhere")])
    state = torch.load(ckpts[0], map_location="cpu", weights_only=False)
    fresh.model.load_state_dict(state["state_dict"])
    fresh.trainer.test(fresh.model, datamodule=fresh.datamodule, verbose=False)
    assert fresh.model.test_results() == results


def test_same_seed_gives_identical_metrics(tiny_data_path: Path, tmp_path: Path) -> None:
    first = train.main(_args("MSS-Lin", tiny_data_path, tmp_path / "a", "--seed_everything", "5"))
    second = train.main(_args("MSS-Lin", tiny_data_path, tmp_path / "b", "--seed_everything", "5"))
    other = train.main(_args("MSS-Lin", tiny_data_path, tmp_path / "c", "--seed_everything", "6"))
    assert first == second
    assert first != other


def test_estimate_shapes(tiny_data_path: Path, tmp_path: Path) -> None:
    model: HarmonicAutoencoder = experiment_cli.build_cli(_args("SOT-2048", tiny_data_path, tmp_path)).model
    model.eval()
    with torch.no_grad():
        out = model.estimate(torch.randn(3, 4096) * 0.1)
        longer = model.estimate(torch.randn(2, 16000) * 0.1)
    assert out["f0_hz"].shape == (3, 16)
    assert out["amplitudes"].shape == (3, 16, 20)
    assert out["audio"].shape == (3, 4096)
    assert longer["f0_hz"].shape == (2, 62) and longer["audio"].shape == (2, 62 * 256)
    lo, hi = model.f0_low_hz, model.f0_high_hz
    assert ((out["f0_hz"] >= lo * 0.999) & (out["f0_hz"] <= hi * 1.001)).all()


def test_wandb_logs_to_our_project_unless_told_otherwise(
    tiny_data_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On the logger's own init arguments, offline (nothing is sent): sot-ddsp by default,
    WANDB_PROJECT when set, and the YAML's ``trainer.logger.init_args.project`` above both."""
    yaml_project = tmp_path / "project.yaml"
    yaml_project.write_text("trainer:\n  logger:\n    init_args:\n      project: from-yaml\n")

    def project(*extra: str) -> str:
        cli = experiment_cli.build_cli(["--data.init_args.data_path", str(tiny_data_path),
                                        "--checkpoint_root", str(tmp_path), *extra])
        (logger,) = cli.trainer.loggers
        return logger._wandb_init["project"]

    monkeypatch.delenv("WANDB_PROJECT", raising=False)
    assert project() == "sot-ddsp" == experiment_cli.DEFAULT_WANDB_PROJECT
    assert project("--config", str(yaml_project)) == "from-yaml"
    monkeypatch.setenv("WANDB_PROJECT", "from-env")
    assert project() == "from-env"
    assert project("--trainer.logger.init_args.project", "from-command-line") == "from-command-line"
