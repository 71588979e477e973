"""Train a harmonic autoencoder from YAML, then test it with its best-validation-LSD checkpoint.

    python train.py --config paper-experiments/SOT-2048.yaml --seed_everything 123

`paper-experiments/base.yaml` is always read first; an experiment file holds only what differs.
Any key can be overridden on the command line (`--model.temperature 0.2`). Each run writes
`<checkpoint_root>/<experiment>/<experiment>-<seed>/` with `train_config.yaml` (replayable with
`--config`), `checkpoints/best-lsd-*.ckpt`, `checkpoints/last.ckpt`, `test_metrics.json` and a
`done` marker. Running the same command again resumes from `last.ckpt`, or does nothing if done.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path
from typing import Any, Literal

import torch
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI, SaveConfigCallback

from models.autoencoder import HarmonicAutoencoder, NonFiniteTrainingError
from models.spectral import cqt_n_bins
from reliability import (
    AtomicCheckpointIO,
    EpochEndCheckpoint,
    RNGStateCallback,
    UserError,
    atomic_write_text,
    one_line,
    run_cli_main,
)

REPO = Path(__file__).resolve().parent
BASE_CONFIG = REPO / "paper-experiments" / "base.yaml"
CONFIG_KEY = "sot_train_config"
DONE_MARKER = "done"
TEST_METRICS_FILE = "test_metrics.json"

log = logging.getLogger("train")


def run_directory(checkpoint_root: str | Path, experiment: str, seed: int) -> Path:
    """`<checkpoint_root>/<experiment>/<experiment>-<seed>`, the original README's tree."""
    return Path(checkpoint_root) / experiment / f"{experiment}-{seed}"


class RunConfigSaver(SaveConfigCallback):
    """Writes the fully resolved config to `<run>/train_config.yaml` (atomically) and embeds it
    in every checkpoint under ``CONFIG_KEY``, so a checkpoint rebuilds its model on its own."""

    def __init__(self, *args: Any, config_yaml: str, run_dir: Path, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.config_yaml = config_yaml
        self.run_dir = run_dir

    def save_config(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        atomic_write_text(self.run_dir / "train_config.yaml", self.config_yaml)

    def on_save_checkpoint(
        self, trainer: Trainer, pl_module: LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        checkpoint[CONFIG_KEY] = self.config_yaml


def _n_bins_of(sample_rate: int, fmin: float, bins_per_semitone: int, n_bins: int | None) -> int:
    return n_bins if n_bins is not None else cqt_n_bins(sample_rate, fmin, bins_per_semitone)


class SOTCLI(LightningCLI):
    """LightningCLI with run-directory layout, resume and the paper's checkpoint policy."""

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_argument("--experiment", type=str, default="default",
                            help="Experiment name: runs go to <checkpoint_root>/<experiment>/<experiment>-<seed>")
        parser.add_argument("--checkpoint_root", type=str, default="checkpoints",
                            help="Root directory of all runs")
        parser.add_argument("--resume", type=Literal["auto", "never"], default="auto",
                            help="auto: resume from last.ckpt if present, skip if the run is done; never: start afresh")
        parser.add_lightning_class_args(EpochEndCheckpoint, "checkpoint")
        parser.set_defaults({
            "checkpoint.monitor": "val/lsd",
            "checkpoint.mode": "min",
            "checkpoint.filename": "best-lsd-{epoch}-{step}",
            "checkpoint.auto_insert_metric_name": False,
            "checkpoint.save_top_k": 1,
            "checkpoint.save_last": True,
            "checkpoint.save_on_train_epoch_end": True,
            # a resumed run re-saves the epochs it replays under the same names
            "checkpoint.enable_version_counter": False,
        })
        parser.link_arguments(
            (
                "model.features.init_args.sample_rate",
                "model.features.init_args.fmin",
                "model.features.init_args.bins_per_semitone",
                "model.features.init_args.n_bins",
            ),
            "model.encoder.init_args.n_bins_in",
            compute_fn=_n_bins_of,
        )
        parser.link_arguments("model.features.init_args.sample_rate", "model.synth.init_args.sample_rate")

    def before_instantiate_classes(self) -> None:
        config = self.config
        seed = config.seed_everything
        if seed is None or seed is True or seed is False:
            raise UserError("seed_everything must be an integer seed, e.g. --seed_everything 42")
        self.run_dir = run_directory(config.checkpoint_root, config.experiment, int(seed))
        # the config as the user gave it, before the derived paths below are filled in
        self.save_config_kwargs.update(
            config_yaml=self.parser.dump(config, skip_unset=False), run_dir=self.run_dir
        )
        config.trainer.default_root_dir = str(self.run_dir)
        config.checkpoint.dirpath = str(self.run_dir / "checkpoints")
        loggers = config.trainer.logger
        for logger in loggers if isinstance(loggers, list) else [loggers]:
            init_args = getattr(logger, "init_args", None)
            if init_args is not None and "save_dir" in init_args:
                init_args.save_dir = str(self.run_dir / "logs")


    def instantiate_trainer(self, **kwargs: Any) -> Trainer:
        trainer = super().instantiate_trainer(**kwargs)
        trainer.strategy.checkpoint_io = AtomicCheckpointIO()
        return trainer


def _configure_wandb_environment(run_dir: Path, experiment: str, seed: int) -> None:
    """W&B: offline unless the user chose a mode; name, group and a run id stable across resumes."""
    os.environ.setdefault("WANDB_MODE", "offline")
    os.environ.setdefault("WANDB_NAME", f"{experiment}-{seed}")
    os.environ.setdefault("WANDB_RUN_GROUP", experiment)
    os.environ.setdefault("WANDB_PROJECT", "sot-ddsp")
    os.environ.setdefault("WANDB_RESUME", "allow")
    id_file = run_dir / "wandb_run_id"
    if id_file.exists():
        run_id = id_file.read_text().strip()
    else:
        import uuid

        run_id = f"{experiment}-{seed}-{uuid.uuid4().hex[:8]}".replace("/", "_")
        atomic_write_text(id_file, run_id + "\n")
    os.environ.setdefault("WANDB_RUN_ID", run_id)


def build_cli(args: list[str] | None, run: bool = False) -> SOTCLI:
    """Parse ``args`` (default: sys.argv) and instantiate model, data and trainer."""
    return SOTCLI(
        model_class=HarmonicAutoencoder,
        datamodule_class=None,
        subclass_mode_data=True,
        save_config_callback=RunConfigSaver,
        save_config_kwargs={"overwrite": True, "save_to_log_dir": False},
        trainer_defaults={"callbacks": [RNGStateCallback()]},
        parser_kwargs={
            "default_config_files": [str(BASE_CONFIG)],
            "parser_mode": "omegaconf",
            "exit_on_error": False,
            "allow_abbrev": False,  # a misspelt option is an error, not a prefix of another
        },
        seed_everything_default=42,
        args=args,
        run=run,
        auto_configure_optimizers=False,
    )


def check_compatible(model: HarmonicAutoencoder, datamodule: Any) -> None:
    """Data and model must agree on the sample rate."""
    data_rate = int(datamodule.sample_rate)
    if data_rate != model.sample_rate:
        raise UserError(
            f"the data is at {data_rate} Hz but the model at {model.sample_rate} Hz: "
            f"set --model.features.init_args.sample_rate {data_rate} (the synth follows)"
        )


def check_optimizer(model: HarmonicAutoencoder) -> None:
    """Build the optimizer once, so that a bad setting fails before anything is written."""
    try:
        model.configure_optimizers()
    except (ValueError, TypeError) as error:
        raise UserError(
            f"model.optimizer: {one_line(error)}; give a valid value with "
            "--model.optimizer.init_args.<name>, e.g. --model.optimizer.init_args.lr 1e-4"
        ) from None


def check_forward(model: HarmonicAutoencoder, datamodule: Any) -> None:
    """One training example through the model and its loss (eval mode, no gradient, no random
    numbers drawn), so that data the model cannot process fails before anything is written."""
    dataset = datamodule.train_dataset
    if dataset is None or len(dataset) == 0:
        return
    audio = dataset[0]["x"].reshape(1, -1)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            resynthesis = model.decode(*model.encode(model.compute_features(audio)), audio.shape[-1])
            model.loss(resynthesis, audio)
    except ValueError as error:
        raise UserError(f"the model cannot process this data: {one_line(error)}") from None
    finally:
        model.train(was_training)


def check_resumable(last: Path, model: HarmonicAutoencoder) -> None:
    """``last`` must be a readable checkpoint of this model: same parameter names and shapes."""
    fix = "to restart this run from scratch, delete it or pass --resume never"
    try:
        state = torch.load(last, map_location="cpu", weights_only=False)
    except Exception as error:  # truncated or foreign files fail in many ways
        raise UserError(
            f"{last}: not a readable checkpoint ({type(error).__name__}: {one_line(error)[:80]}); {fix}"
        ) from None
    saved = state.get("state_dict") if isinstance(state, dict) else None
    if not isinstance(saved, dict):
        raise UserError(f"{last}: not a train.py checkpoint (no state_dict); {fix}")
    expected = model.state_dict()
    for name, tensor in expected.items():
        if name not in saved:
            problem = f"it has no {name}"
        elif tuple(saved[name].shape) != tuple(tensor.shape):
            problem = f"{name} has shape {tuple(saved[name].shape)}, here {tuple(tensor.shape)}"
        else:
            continue
        raise UserError(
            f"{last}: trained with another model ({problem}); resume it with the run's own "
            f"train_config.yaml (--config), or {fix}"
        )


def recorded_metrics(run_dir: Path) -> dict[str, float]:
    """The test metrics of a run marked done."""
    path = run_dir / TEST_METRICS_FILE
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise UserError(
            f"{run_dir} is marked done but {path.name} is unreadable ({one_line(error)}); "
            f"delete {run_dir / DONE_MARKER} to test the run again"
        ) from None


def train_and_test(cli: SOTCLI) -> dict[str, float]:
    """Fit (resuming from last.ckpt when allowed), test with the best-LSD checkpoint, mark done.

    Every check of the user's input runs before the first write to the run directory."""
    run_dir: Path = cli.run_dir
    trainer, model, datamodule = cli.trainer, cli.model, cli.datamodule
    done = run_dir / DONE_MARKER
    last = run_dir / "checkpoints" / "last.ckpt"
    if cli.config.resume == "auto" and done.exists():
        log.info("run %s is already done (delete %s to train it again)", run_dir, done)
        return recorded_metrics(run_dir)
    check_optimizer(model)
    ckpt_path = None
    if cli.config.resume == "auto" and last.exists():
        check_resumable(last, model)
        log.info("resuming from %s", last)
        ckpt_path = str(last)
    datamodule.prepare_data()
    datamodule.setup("fit")
    check_compatible(model, datamodule)
    check_forward(model, datamodule)
    _configure_wandb_environment(run_dir, cli.config.experiment, int(cli.config.seed_everything))
    trainer.fit(model, datamodule=datamodule, ckpt_path=ckpt_path)
    if trainer.interrupted:
        raise UserError(f"training was interrupted; run the same command again to resume from {last}")
    best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
    if best:
        log.info("testing with the best-validation-LSD checkpoint %s", best)
    else:
        log.info("no best checkpoint (no validation ran): testing with the final weights")
    trainer.test(model, datamodule=datamodule, ckpt_path=best or None, verbose=True)
    results = model.test_results()
    results_record = {"checkpoint": Path(best).name if best else None, **results}
    if trainer.fast_dev_run:
        return results
    atomic_write_text(run_dir / TEST_METRICS_FILE, json.dumps(results_record, indent=2) + "\n")
    atomic_write_text(done, "")
    return results


def check_config_files(args: list[str]) -> None:
    """Each existing ``--config`` file must be valid YAML (jsonargparse's message names no file).

    A missing one is left to the parser, as ``--config`` also takes inline YAML."""
    import yaml

    values = [value for flag, value in zip(args, args[1:]) if flag == "--config"]
    values += [arg.split("=", 1)[1] for arg in args if arg.startswith("--config=")]
    for value in values:
        path = Path(value)
        if not path.is_file():
            continue
        try:
            yaml.safe_load(path.read_text())
        except yaml.YAMLError as error:
            mark = getattr(error, "problem_mark", None)
            where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
            problem = getattr(error, "problem", None) or one_line(error)
            raise UserError(f"{path}: invalid YAML: {problem}{where}; fix the file") from None


def main(args: list[str] | None = None) -> dict[str, float]:
    """Entry point: parse, build, train, test. Returns the test metrics."""
    torch.set_float32_matmul_precision("high")
    check_config_files(sys.argv[1:] if args is None else args)
    cli = build_cli(args)
    return train_and_test(cli)


if __name__ == "__main__":
    run_cli_main(main, known_errors=(NonFiniteTrainingError,))
