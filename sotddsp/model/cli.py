"""The experiment's LightningCLI: the config schema every run, sweep and evaluation shares.

``build_cli(args)`` parses ``paper-experiments/base.yaml`` first, then the user's configs and
options, links the front end's sample rate and bin count to the encoder and the synth, and builds
the model, the data module and the trainer with this project's run layout (run_layout.py), its
checkpoint policy (best validation LSD + ``last.ckpt`` at every epoch's end, written atomically)
and its RNG-state callback. train.py trains with it; checkpoints.py rebuilds models with it.
"""

from __future__ import annotations

import os
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import yaml
from jsonargparse import ArgumentError
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI, SaveConfigCallback
from lightning.pytorch.loggers import WandbLogger

from sotddsp.core.atomic_files import atomic_write_text
from sotddsp.core.class_paths import upgrade_config
from sotddsp.core.command_line import UserError, condense_argument_error, describe_config_error
from sotddsp.core.run_fingerprint import check_run_binding, fingerprint_of
from sotddsp.core.run_layout import (
    BASE_CONFIG,
    BEST_CHECKPOINT_TEMPLATE,
    CHECKPOINT_DIR,
    CONFIG_FILE,
    CONFIG_KEY,
    CURVES_FILE,
    DEFAULT_CHECKPOINT_ROOT,
    FINGERPRINT_FILE,
    LOGS_DIR,
    run_directory,
)
from sotddsp.model.autoencoder import FRONT_END_LINKS, HarmonicAutoencoder
from sotddsp.model.callbacks import (
    AtomicCheckpointIO,
    EpochEndCheckpoint,
    MetricsHistory,
    RNGStateCallback,
)

__all__ = ["DEFAULT_WANDB_PROJECT", "SOTCLI", "RunConfigSaver", "build_cli", "check_compatible",
           "check_recorded_configurations", "config_parser", "resolve_command",
           "resolve_config_text"]

# The W&B project of a logger whose config names none, unless WANDB_PROJECT names one.
DEFAULT_WANDB_PROJECT = "sot-ddsp"


class RunConfigSaver(SaveConfigCallback):
    """Writes the fully resolved config to `<run>/train_config.yaml` (atomically) and embeds it
    in every checkpoint under ``CONFIG_KEY``, so a checkpoint rebuilds its model on its own."""

    def __init__(self, *args: Any, config_yaml: str, run_dir: Path, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.config_yaml = config_yaml
        self.run_dir = run_dir

    def save_config(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        atomic_write_text(self.run_dir / CONFIG_FILE, self.config_yaml)

    def on_save_checkpoint(
        self, trainer: Trainer, pl_module: LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        checkpoint[CONFIG_KEY] = self.config_yaml


class SOTCLI(LightningCLI):
    """LightningCLI with run-directory layout, resume and the paper's checkpoint policy."""

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_argument("--experiment", type=str, default="default",
                            help="Experiment name: runs go to <checkpoint_root>/<experiment>/<experiment>-<seed>")
        parser.add_argument("--checkpoint_root", type=str, default=DEFAULT_CHECKPOINT_ROOT,
                            help="Root directory of all runs (presets that change training set "
                                 "their own, e.g. checkpoints/debug; this option wins)")
        parser.add_argument("--resume", type=Literal["auto", "never"], default="auto",
                            help="auto: resume from last.ckpt if present, skip if the run is done, "
                                 "refuse a run directory of another configuration; never: start "
                                 "afresh in the run directory")
        parser.add_lightning_class_args(EpochEndCheckpoint, "checkpoint")
        parser.set_defaults({
            "checkpoint.monitor": "val/lsd",
            "checkpoint.mode": "min",
            "checkpoint.filename": BEST_CHECKPOINT_TEMPLATE,
            "checkpoint.auto_insert_metric_name": False,
            "checkpoint.save_top_k": 1,
            "checkpoint.save_last": True,
            "checkpoint.save_on_train_epoch_end": True,
            # a resumed run re-saves the epochs it replays under the same names
            "checkpoint.enable_version_counter": False,
        })
        for sources, (component, target), compute in FRONT_END_LINKS:
            keys = tuple(f"model.features.init_args.{key}" for key in sources)
            parser.link_arguments(keys if len(keys) > 1 else keys[0],
                                  f"model.{component}.init_args.{target}", compute_fn=compute)

    def before_instantiate_classes(self) -> None:
        config = self.config
        seed = config.seed_everything
        if seed is None or seed is True or seed is False:
            raise UserError("seed_everything must be an integer seed, e.g. --seed_everything 42")
        self.run_dir = run_directory(config.checkpoint_root, config.experiment, int(seed))
        loggers = config.trainer.logger
        loggers = [getattr(logger, "init_args", None)
                   for logger in (loggers if isinstance(loggers, list) else [loggers])]
        loggers = [init_args for init_args in loggers if init_args is not None]
        for init_args in loggers:  # a logger with a project (W&B) logs to ours unless told
            if "project" in init_args and init_args.project is None:
                init_args.project = os.environ.get("WANDB_PROJECT") or DEFAULT_WANDB_PROJECT
        # the config as the user gave it, before the derived paths below are filled in
        self.config_yaml = self.parser.dump(config, skip_unset=False)
        self.save_config_kwargs.update(config_yaml=self.config_yaml, run_dir=self.run_dir)
        config.trainer.default_root_dir = str(self.run_dir)
        config.checkpoint.dirpath = str(self.run_dir / CHECKPOINT_DIR)
        for init_args in loggers:
            if "save_dir" in init_args:
                init_args.save_dir = str(self.run_dir / LOGS_DIR)

    def resolve_config_text(self, text: str) -> dict[str, Any]:
        """``resolve_config_text(self.parser, text)``."""
        return resolve_config_text(self.parser, text)

    def instantiate_classes(self) -> None:
        """Build the classes; a constructor's complaint names its config key (one line)."""
        try:
            super().instantiate_classes()
        except (ValueError, TypeError) as error:
            raise UserError(describe_config_error(error, self.config.as_dict())) from None

    def instantiate_trainer(self, **kwargs: Any) -> Trainer:
        trainer = super().instantiate_trainer(**kwargs)
        trainer.strategy.checkpoint_io = AtomicCheckpointIO()
        trainer.callbacks.append(MetricsHistory(self.run_dir / CURVES_FILE))
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger) and logger._wandb_init.get("anonymous") is None:
                # Lightning always passes anonymous=None to wandb.init, which then warns that
                # "the anonymous setting has no effect": leave the setting out instead.
                logger._wandb_init.pop("anonymous")
        return trainer


class _ParserOnlyCLI(SOTCLI):
    """SOTCLI that parses and builds nothing, nor seeds (``config_parser``)."""

    def _set_seed(self) -> None:
        pass

    def before_instantiate_classes(self) -> None:
        pass

    def instantiate_classes(self) -> None:
        pass

    def parse_arguments(self, parser: LightningArgumentParser, args: Any) -> None:
        """Parse ``args`` (``[]``: the defaults) without LightningCLI's warning that the
        process's own command line is ignored: ignoring it is the point here (sweep.py and
        scripts/short_budget.py build this parser under their own command lines)."""
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="LightningCLI's args parameter")
            super().parse_arguments(parser, args)


def build_cli(args: list[str] | None, run: bool = False) -> SOTCLI:
    """Parse ``args`` (default: sys.argv) and instantiate model, data and trainer."""
    argv = sys.argv
    if args is not None:  # called as a library: the process's own arguments are not ours
        sys.argv = argv[:1]
    try:
        return _build_cli(args, run)
    finally:
        sys.argv = argv


def config_parser() -> LightningArgumentParser:
    """build_cli's parser (base config first, our options, the links), building nothing:
    ``config_parser().parse_args(args)`` resolves a command line's config (a jsonargparse
    Namespace; ``ArgumentError`` as build_cli), ``.dump(config, skip_unset=False)`` as
    train_config.yaml records it."""
    return _build_cli([], run=False, cli_class=_ParserOnlyCLI).parser


def resolve_config_text(parser: LightningArgumentParser, text: str) -> dict[str, Any]:
    """A recorded config (YAML text, e.g. a run's train_config.yaml) resolved again by
    ``parser``, as nested dicts: options added since it was written take their defaults.
    ``ValueError`` (one line) when the parser rejects it. Class paths of the flat layout
    (``losses.SpectralOTLoss``, ...) are upgraded first (``class_paths.upgrade_config``)."""
    try:
        recorded = yaml.safe_load(text)
    except yaml.YAMLError:  # the parser below says what is wrong
        recorded = None
    if upgrade_config(recorded) != recorded:
        text = yaml.safe_dump(upgrade_config(recorded), sort_keys=False)
    try:
        config = parser.parse_string(text)
    except ArgumentError as error:
        raise ValueError(condense_argument_error(str(error))) from None
    return yaml.safe_load(parser.dump(config, skip_unset=False))


def resolve_command(parser: LightningArgumentParser, args: list[str]) -> str:
    """The resolved config of a train.py command line (its arguments), as YAML: what the run's
    train_config.yaml would hold (but for the logger's project, which train.py fills in).
    ``ValueError`` (one line) when the parser rejects the arguments."""
    try:
        config = parser.parse_args(args)
    except ArgumentError as error:
        raise ValueError(condense_argument_error(str(error), args)) from None
    return parser.dump(config, skip_unset=False)


def check_recorded_configurations(
    runs: Sequence[tuple[str, Path, list[str]]], fix: str
) -> None:
    """For each ``(name, run directory, train.py arguments)`` whose directory records a
    configuration (config_fingerprint.json or train_config.yaml): a one-line ``UserError``
    ``"<name>: ..."`` when the arguments resolve to another one (as train.py would refuse them,
    run_fingerprint.check_run_binding, naming ``fix`` as the way out). For the tools that skip
    a done run without starting train.py (sweep.py, scripts/short_budget.py); the parser is
    built only when a directory records a configuration."""
    recorded = [(name, run_dir, args) for name, run_dir, args in runs
                if (run_dir / FINGERPRINT_FILE).exists() or (run_dir / CONFIG_FILE).exists()]
    if not recorded:
        return
    parser = config_parser()
    for name, run_dir, args in recorded:
        try:
            current = fingerprint_of(resolve_command(parser, list(args)))
            check_run_binding(run_dir, current, lambda text: resolve_config_text(parser, text),
                              fix=fix)
        except (UserError, ValueError) as error:
            raise UserError(f"{name}: {error}") from None


def _build_cli(args: list[str] | None, run: bool, cli_class: type[SOTCLI] = SOTCLI) -> SOTCLI:
    return cli_class(
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
