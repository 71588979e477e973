"""Train a harmonic autoencoder from YAML, then test it with its best-validation-LSD checkpoint.

    python train.py --config paper-experiments/SOT-2048.yaml --seed_everything 123
    sotddsp-train --config SOT-2048 --config presets/debug     # installed, from any directory

`paper-experiments/base.yaml` is always read first; an experiment file holds only what differs.
Any key can be overridden on the command line (`--model.temperature 0.2`). Each run writes
`<checkpoint_root>/<experiment>/<experiment>-<seed>/` (run_layout.py) with `train_config.yaml`
(replayable with `--config`), `config_fingerprint.json`, `checkpoints/best-lsd-*.ckpt`,
`checkpoints/last.ckpt`, `test_metrics.json` and a `done` marker. Running the same command again
resumes from `last.ckpt`, or does nothing if done; a run directory of another configuration is
refused (core/run_fingerprint.py). The config schema is sotddsp/model/cli.py's.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch
import yaml

from sotddsp.core.atomic_files import atomic_write_bytes, atomic_write_text
from sotddsp.core.class_paths import upgrade_config
from sotddsp.core.command_line import UserError, console_script, one_line
from sotddsp.core.run_fingerprint import check_run_binding, fingerprint_of, write_fingerprint
from sotddsp.core.run_layout import (
    CHECKPOINT_DIR,
    CURVES_FIGURE,
    DONE_MARKER,
    LAST_CHECKPOINT,
    LOGS_DIR,
    TEST_F0_FIGURE,
    TEST_METRICS_FILE,
    WANDB_ID_FILE,
    config_file,
    read_curves,
)
from sotddsp.core.run_lock import hold_run_lock
from sotddsp.model.autoencoder import HarmonicAutoencoder, NonFiniteTrainingError
from sotddsp.model.checkpoints import CheckpointError, read_checkpoint
from sotddsp.model.cli import SOTCLI, build_cli, check_compatible

log = logging.getLogger("train")


def _configure_wandb_environment(run_dir: Path, experiment: str, seed: int) -> None:
    """W&B: offline unless the user chose a mode; name, group and a run id stable across resumes.
    (The project is the logger's own argument: experiment_cli fills it in.)"""
    os.environ.setdefault("WANDB_MODE", "offline")
    os.environ.setdefault("WANDB_NAME", f"{experiment}-{seed}")
    os.environ.setdefault("WANDB_RUN_GROUP", experiment)
    os.environ.setdefault("WANDB_RESUME", "allow")
    id_file = run_dir / WANDB_ID_FILE
    if id_file.exists():
        run_id = id_file.read_text().strip()
    else:
        import uuid

        run_id = f"{experiment}-{seed}-{uuid.uuid4().hex[:8]}".replace("/", "_")
        atomic_write_text(id_file, run_id + "\n")
    os.environ.setdefault("WANDB_RUN_ID", run_id)


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
        saved = read_checkpoint(last).state_dict
    except CheckpointError as error:
        raise UserError(f"{last}: not a readable checkpoint ({one_line(error, 80)}); {fix}") \
            from None
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


def machine_record() -> dict[str, str | int]:
    """What a run's numbers depend on beyond its config: torch's version, the CPU kernels it
    dispatches to (``torch.backends.cpu.get_cpu_capability()``: "AVX512", "AVX2", ...), the
    thread count and the CUDA device if any. A chaotic short run follows them: the same seed on
    an AVX2 and an AVX-512 CPU ends in different places."""
    return {"torch": torch.__version__, "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "threads": torch.get_num_threads(),
            "cuda_device": torch.cuda.get_device_name() if torch.cuda.is_available() else ""}


def train_and_test(cli: SOTCLI) -> dict[str, float]:
    """Fit (resuming from last.ckpt when allowed), test with the best-LSD checkpoint, mark done.

    Every check of the user's input runs before the first write to the run directory, the last
    ones being that no other process is training the run (its lock, held until the end) and that
    the directory holds no run of another configuration (its fingerprint)."""
    run_dir: Path = cli.run_dir
    trainer, model, datamodule = cli.trainer, cli.model, cli.datamodule
    done = run_dir / DONE_MARKER
    last = run_dir / CHECKPOINT_DIR / LAST_CHECKPOINT
    fingerprint = fingerprint_of(cli.config_yaml)
    afresh = cli.config.resume == "never"
    if not afresh and done.exists():
        check_run_binding(run_dir, fingerprint, cli.resolve_config_text)
        log.info("run %s is already done (delete %s to train it again)", run_dir, done)
        return recorded_metrics(run_dir)
    check_optimizer(model)
    datamodule.prepare_data()
    datamodule.setup("fit")
    check_compatible(model, datamodule)
    check_forward(model, datamodule)
    # From here on the run's directory is written: one process at a time (core/run_lock.py).
    with hold_run_lock(run_dir):
        rewrite = afresh or check_run_binding(run_dir, fingerprint, cli.resolve_config_text)
        ckpt_path = None
        if not afresh and last.exists():
            check_resumable(last, model)
            log.info("resuming from %s", last)
            ckpt_path = str(last)
        if afresh:  # the markers of the run this one replaces
            for stale in (done, run_dir / TEST_METRICS_FILE):
                stale.unlink(missing_ok=True)
        if rewrite:
            write_fingerprint(run_dir, fingerprint)
        seed = int(cli.config.seed_everything)
        _configure_wandb_environment(run_dir, cli.config.experiment, seed)
        # The loggers' directory exists before W&B looks for a git repository from it (else it
        # warns "git root ... does not exist").
        (run_dir / LOGS_DIR).mkdir(parents=True, exist_ok=True)
        trainer.fit(model, datamodule=datamodule, ckpt_path=ckpt_path)
        if trainer.interrupted:
            raise UserError("training was interrupted; run the same command again to resume "
                            f"from {last}")
        best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
        if best and not Path(best).is_file():
            raise UserError(f"{best}: the run's best-validation checkpoint is missing, so the run "
                            f"cannot be tested; restore that file into {run_dir / CHECKPOINT_DIR}")
        if best:
            log.info("testing with the best-validation-LSD checkpoint %s", best)
        else:
            log.info("no best checkpoint (no validation ran): testing with the final weights")
        trainer.test(model, datamodule=datamodule, ckpt_path=best or None, verbose=True)
        results = model.test_results()
        tested = torch.load(best, map_location="cpu", weights_only=True)["global_step"] if best \
            else trainer.global_step
        results_record = {"checkpoint": Path(best).name if best else None, "global_step": tested,
                          **results, "machine": machine_record()}
        if trainer.fast_dev_run:
            return results
        write_run_figures(run_dir, cli.config.experiment, seed, model)
        atomic_write_text(run_dir / TEST_METRICS_FILE, json.dumps(results_record, indent=2) + "\n")
        atomic_write_text(done, "")
        return results


def write_run_figures(run_dir: Path, experiment: str, seed: int,
                      model: HarmonicAutoencoder) -> None:
    """``curves.png`` (from curves.csv) and ``test_f0.png`` (the last test's predicted against
    true f0), written atomically beside the run's test metrics."""
    from sotddsp.model.plotting import curves_figure, f0_scatter_figure, figure_png

    name = f"{experiment}-{seed}"
    rows = read_curves(run_dir)  # [] when missing or unreadable: no curves figure, still done
    if rows:
        atomic_write_bytes(run_dir / CURVES_FIGURE, figure_png(curves_figure({name: rows}, name)))
    predicted, true = model.test_predictions()
    figure = f0_scatter_figure(predicted.numpy(), true.numpy(), title=f"{name}: test split")
    atomic_write_bytes(run_dir / TEST_F0_FIGURE, figure_png(figure))


def resolve_config_files(args: list[str], directory: Path) -> list[str]:
    """``args`` with each ``--config`` value resolved (``config_file``), checked and, if it names
    classes by their old paths (``class_paths.upgrade_config``: a run's train_config.yaml written
    before the package), replaced by an upgraded copy in ``directory``.

    Each file must be valid YAML (jsonargparse's message names no file). A value that names no
    file must be inline YAML that reads as a mapping (``--config '{trainer: {max_steps: 10}}'``),
    left to the parser; anything else is a missing file (UserError)."""
    out = list(args)
    for i, arg in enumerate(args):
        if arg == "--config" and i + 1 < len(args):
            index, value, prefix = i + 1, args[i + 1], ""
        elif arg.startswith("--config="):
            index, value, prefix = i, arg.split("=", 1)[1], "--config="
        else:
            continue
        path = config_file(value)
        if path is None:
            try:
                inline = yaml.safe_load(value)
            except yaml.YAMLError:  # malformed inline YAML: the parser says where
                continue
            if not isinstance(inline, dict):
                raise UserError(f"--config {value}: the file does not exist; check the path")
            continue
        out[index] = prefix + str(path)
        try:
            config = yaml.safe_load(path.read_text())
        except yaml.YAMLError as error:
            mark = getattr(error, "problem_mark", None)
            where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
            problem = getattr(error, "problem", None) or one_line(error)
            raise UserError(f"{path}: invalid YAML: {problem}{where}; fix the file") from None
        upgraded = upgrade_config(config)
        if upgraded != config:
            copy = directory / f"{len(list(directory.iterdir()))}-{path.name}"
            copy.write_text(yaml.safe_dump(upgraded, sort_keys=False))
            out[index] = prefix + str(copy)
    return out


def main(args: list[str] | None = None) -> dict[str, float]:
    """Entry point: parse, build, train, test. Returns the test metrics."""
    torch.set_float32_matmul_precision("high")
    with tempfile.TemporaryDirectory(prefix="train-configs-") as tmp:
        argv = resolve_config_files(sys.argv[1:] if args is None else list(args), Path(tmp))
        cli = build_cli(argv)
    return train_and_test(cli)


# The console script (and the thin script of a checkout).
cli = console_script(main, known_errors=(NonFiniteTrainingError,))


if __name__ == "__main__":
    cli()
