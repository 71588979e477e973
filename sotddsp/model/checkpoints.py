"""Checkpoints in, trained models out: the one reader of both our checkpoints and the paper
authors'. eval_paper.py, the pitch tool (``loader.load_model``) and the demo load models here.

    from sotddsp.model.checkpoints import load_checkpoint
    model = load_checkpoint()                 # the default model, shipped in sotddsp/weights/
    model = load_checkpoint("runs/SOT-2048/SOT-2048-123/checkpoints/last.ckpt")
    out = model.estimate(audio)               # f0 (B, T) Hz, amplitudes (B, T, K), resynthesis

Our checkpoints load with ``torch.load(weights_only=True)`` and embed their run's config (under
``run_layout.CONFIG_KEY``); the authors' pickle their own classes and are read through
original_format.py's restricted unpickler, their config translated and their weights renamed.
Either way ``load_checkpoint`` rebuilds the model from the config's ``model:`` section by class
path (``build_model``: no CLI, no Trainer, no banner, no seeding). Evaluation, which also needs
the config's data module and trainer, builds the whole experiment with the CLI
(``build_from_config``); the two build the same model (tests/model/test_checkpoints.py).
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import inspect
import io
import json
import logging
import pickle
import random
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from sotddsp.core.atomic_files import atomic_torch_save, atomic_write_text
from sotddsp.core.class_paths import upgrade_config
from sotddsp.core.command_line import one_line
from sotddsp.core.result_cache import file_sha256
from sotddsp.core.run_layout import (
    BEST_CHECKPOINT_GLOB,
    CHECKPOINT_DIR,
    CONFIG_FILE,
    CONFIG_KEY,
    REPO,
    TEST_METRICS_FILE,
    best_checkpoints,
    checkpoint_step,
    tested_checkpoint,
)
from sotddsp.model import original_format
from sotddsp.model.autoencoder import FRONT_END_LINKS, HarmonicAutoencoder
from sotddsp.model.shipped import (
    DEFAULT_PROVENANCE,
    DEFAULT_WEIGHTS,
    CheckpointError,
    ConfigError,
)

__all__ = [
    "BUILDABLE_PREFIXES",
    "DEFAULT_PROVENANCE",
    "DEFAULT_WEIGHTS",
    "REFERENCE_RUN",
    "CheckpointContents",
    "CheckpointError",
    "ConfigError",
    "build_from_config",
    "build_model",
    "checkpoint_config",
    "config_file_for",
    "default_checkpoint",
    "default_provenance",
    "export_weights",
    "load_checkpoint",
    "load_weights",
    "read_checkpoint",
    "reference_checkpoint",
]

log = logging.getLogger("checkpoints")

# The reference SOT-2048 run trained at the paper's budget, in the repository's reference-runs/
# (a checkout only): where scripts/export_default_model.py takes the default model from.
REFERENCE_RUN = REPO / "reference-runs" / "SOT-2048" / "SOT-2048-42"

@dataclass
class CheckpointContents:
    """What evaluation reads from a checkpoint (ours or the authors')."""

    state_dict: dict[str, torch.Tensor]
    epoch: int | None
    global_step: int | None
    config_yaml: str | None  # our embedded config (CONFIG_KEY), None for the authors'
    stubbed: tuple[str, ...] = ()  # globals the restricted unpickler replaced (authors' only)


def read_checkpoint(path: Path) -> CheckpointContents:
    """Read a checkpoint on CPU: ``weights_only=True`` for ours, the restricted unpickler
    (original_format.py) for the authors', whose pickles name their own classes.

    Raises CheckpointError (one line) for a missing, truncated or corrupt file.
    """
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} is missing")
    stubbed: tuple[str, ...] = ()
    try:
        try:
            checkpoint = torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError:
            checkpoint, stubbed = original_format.restricted_torch_load(path)
    except original_format.OriginalFormatError as error:
        raise CheckpointError(one_line(error)) from None
    except Exception as error:  # noqa: BLE001 (torch raises many types for corrupt files)
        raise CheckpointError(
            f"checkpoint {path.name} is truncated or corrupt ({type(error).__name__}: "
            f"{one_line(error)[:120]})"
        ) from None
    state_dict = checkpoint.get("state_dict") if isinstance(checkpoint, dict) else None
    if not isinstance(state_dict, dict) or not all(
        isinstance(v, torch.Tensor) for v in state_dict.values()
    ):
        raise CheckpointError(f"checkpoint {path.name} has no state_dict of tensors")
    config_yaml = checkpoint.get(CONFIG_KEY)
    epoch, step = checkpoint.get("epoch"), checkpoint.get("global_step")
    return CheckpointContents(
        state_dict=state_dict,
        epoch=epoch if isinstance(epoch, int) else None,
        global_step=step if isinstance(step, int) else None,
        config_yaml=config_yaml if isinstance(config_yaml, str) else None,
        stubbed=stubbed,
    )


def load_weights(model: HarmonicAutoencoder, contents: CheckpointContents, original: bool) -> None:
    """Load a checkpoint's weights into ``model`` (strict).

    original: the checkpoint comes from the authors' code (their config format); its
    ``encoder.*`` weights are renamed onto ours and its stored CQT kernels compared with ours
    (a mismatch is logged; ours are used). Raises CheckpointError (one line) when the weights
    do not fit the model.
    """
    try:
        if original:
            model.encoder.load_state_dict(original_format.original_encoder_state(contents.state_dict))
            matches = original_format.compare_feature_buffers(contents.state_dict, model.features)
            if matches and not all(matches.values()):
                bad = ", ".join(k for k, ok in matches.items() if not ok)
                log.warning("the checkpoint's CQT kernels differ from ours (%s); ours are used",
                            bad)
        else:
            model.load_state_dict(contents.state_dict)
    except (RuntimeError, ValueError) as error:
        raise CheckpointError(
            f"the weights do not fit the config's model: {one_line(error, 200)}"
        ) from None


def _cli_error(stderr_text: str) -> str:
    _, marker, message = stderr_text.partition("error:")
    return one_line(message if marker else stderr_text) if stderr_text.strip() \
        else "the config does not parse"


def build_from_config(config_path: Path, extra_args: Sequence[str], checkpoint_root: Path) -> Any:
    """``cli.build_cli`` for evaluation (no logger, a throwaway checkpoint_root).

    Raises ConfigError (one line) when the config does not parse or its classes do not build;
    jsonargparse's own usage message is swallowed.
    """
    from sotddsp.model.cli import build_cli

    args = ["--config", str(config_path), "--checkpoint_root", str(checkpoint_root),
            "--trainer.logger", "false", "--trainer.enable_progress_bar", "false",
            "--trainer.enable_model_summary", "false", *extra_args]
    captured = io.StringIO()
    try:
        with contextlib.redirect_stderr(captured):
            return build_cli(args)
    except SystemExit:
        raise ConfigError(
            f"the config does not build: {_cli_error(captured.getvalue())}") from None
    except Exception as error:  # noqa: BLE001 (any failure to build: the config no longer builds)
        raise ConfigError(
            f"the config does not build ({type(error).__name__}: {one_line(error)})"
        ) from None


def config_file_for(config: dict[str, Any], directory: Path, text: str | None = None) -> Path:
    """A config file ``build_cli`` accepts: the authors' format translated; ours as is (``text``
    when given), or with its old class paths upgraded (``class_paths.upgrade_config``)."""
    if original_format.is_original_config(config):
        return original_format.write_translated_config(config, directory)
    upgraded = upgrade_config(config)
    if upgraded != config or text is None:
        text = yaml.safe_dump(upgraded, sort_keys=False)
    path = directory / "config.yaml"
    path.write_text(text)
    return path


@contextlib.contextmanager
def _preserved_rng() -> Iterator[None]:
    """Restore torch/numpy/python RNG states afterwards (building a CLI seeds everything)."""
    states = torch.get_rng_state(), np.random.get_state(), random.getstate()
    try:
        yield
    finally:
        torch.set_rng_state(states[0])
        np.random.set_state(states[1])
        random.setstate(states[2])


def reference_checkpoint(run_dir: Path = REFERENCE_RUN) -> Path:
    """A run's model to ship: the checkpoint it tested (``test_metrics.json``), or, while it
    still trains, its best-validation checkpoint so far (with a warning naming its step).
    By default the reference SOT-2048 run of a checkout (``REFERENCE_RUN``).

    Raises CheckpointError (one line) when the run holds neither.
    """
    name = tested_checkpoint(run_dir)
    if name is not None:
        return run_dir / CHECKPOINT_DIR / name
    best = best_checkpoints(run_dir)
    if not best:
        raise CheckpointError(
            f"no model in {run_dir} ({run_dir / TEST_METRICS_FILE} is missing or unreadable, and "
            f"{run_dir / CHECKPOINT_DIR} holds no {BEST_CHECKPOINT_GLOB}); pass a checkpoint path"
        )
    warnings.warn(
        f"the run {run_dir.name} is still training: using its best checkpoint so far, "
        f"{best[-1].name} (step {checkpoint_step(best[-1]):,})",
        stacklevel=2,
    )
    return best[-1]


def default_checkpoint() -> Path:
    """The default model's file, shipped in the package (``DEFAULT_WEIGHTS``).

    Raises CheckpointError (one line) when the install lacks it."""
    if not DEFAULT_WEIGHTS.is_file():
        raise CheckpointError(
            f"the default model {DEFAULT_WEIGHTS} is missing from this install; reinstall the "
            "package or pass a checkpoint path"
        )
    return DEFAULT_WEIGHTS


def default_provenance() -> dict[str, Any]:
    """Where the default model comes from (``DEFAULT_PROVENANCE``): "run", "checkpoint",
    "global_step", "epoch", "val_rpa", "test_rpa", "sha256" (of ``DEFAULT_WEIGHTS``), ..."""
    return json.loads(DEFAULT_PROVENANCE.read_text())


def export_weights(checkpoint: Path, out: Path, provenance: dict[str, Any]) -> dict[str, Any]:
    """Write a weights-only copy of one of our checkpoints to ``out`` and its provenance beside it
    (``out`` with suffix .json), both atomically.

    The copy holds what ``load_checkpoint`` needs, nothing to resume training: the state dict,
    the epoch and global step, and the config (``CONFIG_KEY``, class paths upgraded; the run's
    ``train_config.yaml`` when the checkpoint embeds none). The provenance is ``provenance``
    plus "checkpoint", "epoch", "global_step" and "sha256" (of the written file). Returns it.
    Raises CheckpointError or ConfigError (one line).
    """
    contents = read_checkpoint(checkpoint)
    text = contents.config_yaml
    if text is None:
        config_path = checkpoint.parent.parent / CONFIG_FILE
        if not config_path.is_file():
            raise ConfigError(f"{checkpoint.name} embeds no config and {config_path} is missing")
        text = config_path.read_text()
    config = yaml.safe_load(text)
    if not isinstance(config, dict) or original_format.is_original_config(config):
        raise ConfigError(f"{checkpoint.name}: only our own checkpoints can be exported")
    upgraded = upgrade_config(config)
    if upgraded != config:
        text = yaml.safe_dump(upgraded, sort_keys=False)
    atomic_torch_save(
        {"state_dict": contents.state_dict, "epoch": contents.epoch,
         "global_step": contents.global_step, CONFIG_KEY: text},
        out,
    )
    record = {**provenance, "checkpoint": checkpoint.name, "epoch": contents.epoch,
              "global_step": contents.global_step, "sha256": file_sha256(out)}
    atomic_write_text(out.with_suffix(".json"), json.dumps(record, indent=2) + "\n")
    return record


# Where a config's class paths may point: the model's components are ours, its optimizer
# torch's. Anything else is refused rather than imported (a checkpoint is data).
BUILDABLE_PREFIXES = ("sotddsp.", "torch.optim.")


def _resolve_class(class_path: str, key: str) -> type:
    if not class_path.startswith(BUILDABLE_PREFIXES) or "." not in class_path:
        raise ConfigError(f"{key}: class path {class_path!r} is outside "
                          f"{' and '.join(BUILDABLE_PREFIXES)}; it is not loaded")
    module, _, name = class_path.rpartition(".")
    try:
        found = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError):
        raise ConfigError(f"{key}: class {class_path!r} no longer exists") from None
    if not isinstance(found, type):
        raise ConfigError(f"{key}: {class_path!r} is not a class")
    return found


def _init_args(spec: Mapping[str, Any], key: str) -> dict[str, Any]:
    init_args = spec.get("init_args") or {}
    if not isinstance(init_args, Mapping):
        raise ConfigError(f"{key}.init_args is not a mapping")
    return dict(init_args)


def _instantiate(node: Any, key: str) -> Any:
    """A config node with every ``{class_path, init_args}`` mapping built, innermost first."""
    if isinstance(node, Mapping):
        if "class_path" not in node:
            return {name: _instantiate(value, f"{key}.{name}") for name, value in node.items()}
        cls = _resolve_class(str(node["class_path"]), f"{key}.class_path")
        init_args = {name: _instantiate(value, f"{key}.init_args.{name}")
                     for name, value in _init_args(node, key).items()}
        try:
            return cls(**init_args)
        except (TypeError, ValueError) as error:
            raise ConfigError(f"{key}: {one_line(error, 200)}") from None
    if isinstance(node, list):
        return [_instantiate(value, f"{key}[{i}]") for i, value in enumerate(node)]
    return node


def _setting(spec: Mapping[str, Any], name: str, key: str) -> Any:
    """A component's init_arg ``name``: the config's value, else its class's default."""
    init_args = _init_args(spec, key)
    if name in init_args:
        return init_args[name]
    cls = _resolve_class(str(spec.get("class_path")), f"{key}.class_path")
    default = inspect.signature(cls).parameters.get(name)
    if default is None or default.default is inspect.Parameter.empty:
        raise ConfigError(f"{key}.init_args.{name} is missing")
    return default.default


def build_model(model_config: Mapping[str, Any]) -> HarmonicAutoencoder:
    """A ``HarmonicAutoencoder`` from the ``model:`` section of a config (nested mappings as
    YAML loads them, class paths current, ``class_paths.upgrade_config``), built by class path
    without a CLI: the front end's settings fill the other components' (``FRONT_END_LINKS``,
    as the experiment CLI links them), values a config omits take their class's default, and
    the optimizer stays a factory (``functools.partial``). Only classes under
    ``BUILDABLE_PREFIXES`` are imported. Constructing the encoder draws its initial weights from
    torch's global RNG (``load_checkpoint`` keeps the caller's states).

    Raises ConfigError (one line, naming the config key).
    """
    if not isinstance(model_config, Mapping) or not isinstance(
            model_config.get("features"), Mapping):
        raise ConfigError("the config has no model.features section")
    sections = {name: dict(value) if isinstance(value, Mapping) else value
                for name, value in model_config.items()}
    for name in ("encoder", "synth"):
        if not isinstance(sections.get(name), Mapping) or "class_path" not in sections[name]:
            raise ConfigError(f"the config has no model.{name}.class_path")
    features = sections["features"]
    for sources, (component, target), compute in FRONT_END_LINKS:
        values = [_setting(features, source, "model.features") for source in sources]
        linked = compute(*values) if compute is not None else values[0]
        sections[component]["init_args"] = {**_init_args(sections[component],
                                                          f"model.{component}"), target: linked}
    optimizer = sections.pop("optimizer", None)
    built = {name: _instantiate(value, f"model.{name}") for name, value in sections.items()}
    if isinstance(optimizer, Mapping) and "class_path" in optimizer:
        built["optimizer"] = functools.partial(
            _resolve_class(str(optimizer["class_path"]), "model.optimizer.class_path"),
            **_init_args(optimizer, "model.optimizer"))
    else:
        built["optimizer"] = torch.optim.Adam
    try:
        return HarmonicAutoencoder(**built)
    except (TypeError, ValueError) as error:
        raise ConfigError(f"model: {one_line(error, 200)}") from None


def checkpoint_config(path: Path, contents: CheckpointContents) -> tuple[dict[str, Any], bool]:
    """The config a checkpoint was trained with, as nested mappings in our format, and whether
    it is the authors' (their weights need renaming, ``load_weights``): the one it
    embeds (``CONFIG_KEY``), else its run's ``train_config.yaml`` two levels up
    (``<run>/checkpoints/x.ckpt``); the authors' translated (``original_format``), ours with
    old class paths upgraded (``class_paths.upgrade_config``). Raises ConfigError (one line)."""
    if contents.config_yaml is not None:
        text = contents.config_yaml
    else:
        config_path = path.parent.parent / CONFIG_FILE
        if not config_path.is_file():
            raise ConfigError(f"{path.name} embeds no config and {config_path} is missing")
        text = config_path.read_text()
    try:
        config = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise ConfigError(f"the checkpoint's config is not valid YAML: {one_line(error)}") from None
    if not isinstance(config, dict):
        raise ConfigError("the checkpoint's config is not a YAML mapping")
    if not original_format.is_original_config(config):
        return upgrade_config(config), False
    try:
        return original_format.translate_config(config), True
    except original_format.OriginalFormatError as error:
        raise ConfigError(one_line(error)) from None


def load_checkpoint(path: str | Path | None = None, device: str = "cpu") -> HarmonicAutoencoder:
    """Rebuild a trained model from a checkpoint, in eval mode on ``device``.

    ``path`` None: the default model shipped in the package (``default_checkpoint()``). The
    model is built from the checkpoint's config (``checkpoint_config``) by ``build_model``,
    without a CLI or a Trainer: nothing is printed, nothing seeded, and the caller's torch,
    NumPy and Python RNG states are kept. The authors' checkpoints are read through
    original_format.py (their weights renamed). ``model.estimate(audio (B, N))`` then gives f0
    (B, T) in Hz and amplitudes (B, T, K). Raises CheckpointError or ConfigError (one line).
    """
    path = default_checkpoint() if path is None else Path(path)
    contents = read_checkpoint(path)
    config, original = checkpoint_config(path, contents)
    with _preserved_rng():
        model = build_model(config.get("model") or {})
    load_weights(model, contents, original=original)
    return model.eval().to(device)
