"""A trained model by name or path, in one call (PESTO's loader.py): the pitch tool's loader.

    from sotddsp.model.loader import load_model
    model = load_model()                                  # "default": shipped in the package
    model = load_model("runs/SOT-2048/SOT-2048-1/checkpoints/last.ckpt", device="cuda")
    track = model.predict(audio, sample_rate)             # pitch.PitchTrack

A name is one of the models shipped in ``sotddsp/weights/`` (``<name>.ckpt`` with its
provenance in ``<name>.json``; ``shipped_models()``, from shipped.py, which names and describes
them without torch); anything else is a checkpoint path: one
train.py wrote (its config embedded, or the run's train_config.yaml two levels up) or one of
the paper authors' (``original_format``). A shipped name wins over a file of the same name in
the working directory (write ``./default`` for that file). Loading goes through
``checkpoints.load_checkpoint``: the model is rebuilt from its config by class path, without a
CLI or a Trainer, so nothing is printed, nothing is seeded and the caller's RNG states are kept.
"""

from __future__ import annotations

from pathlib import Path

import torch

from sotddsp.model.checkpoints import load_checkpoint
from sotddsp.model.pitch import PitchModel
from sotddsp.model.shipped import (
    DEFAULT_MODEL,
    WEIGHTS_DIR,
    ModelNotFoundError,
    describe_model,
    model_provenance,
    resolve_model,
    shipped_models,
)

__all__ = [
    "DEFAULT_MODEL",
    "WEIGHTS_DIR",
    "ModelNotFoundError",
    "describe_model",
    "load_model",
    "model_provenance",
    "resolve_device",
    "resolve_model",
    "shipped_models",
]


def resolve_device(device: str | torch.device) -> torch.device:
    """``device`` as a torch.device that this machine has: "cpu", "cuda", "cuda:1", "mps", ...,
    or "auto" (the first CUDA device when there is one, else the CPU). Raises ValueError (one
    line) for a name torch does not know or a device this machine lacks."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        found = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"device {device!r} is not a torch device name (cpu, cuda, cuda:1, mps, "
                         "auto)") from None
    if found.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise ValueError(f"device {device!r}: CUDA is not available on this machine (torch "
                             f"{torch.__version__}); use cpu")
        if found.index is not None and found.index >= count:
            raise ValueError(f"device {device!r}: this machine has {count} CUDA device(s), "
                             f"cuda:0 to cuda:{count - 1}")
        return found
    if found.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"device {device!r}: MPS (Apple GPU) is not available here; use cpu")
    try:
        torch.empty(0, device=found)
    except Exception as error:  # noqa: BLE001  (each backend fails in its own way)
        raise ValueError(f"device {device!r} is not available here ({type(error).__name__}); "
                         "use cpu") from None
    return found


def load_model(name_or_path: str | Path = DEFAULT_MODEL, device: str | torch.device = "cpu"
               ) -> PitchModel:
    """A trained model as a ``PitchModel`` in eval mode on ``device`` (``resolve_device``):
    a shipped model's name (``shipped_models()``; default "default") or a checkpoint path.
    Prints nothing and leaves the torch, NumPy and Python RNG states as they were.

    Raises ModelNotFoundError, CheckpointError or ConfigError (one line) for a model that is
    missing or does not load, ValueError (one line) for a device this machine lacks.
    """
    target = resolve_device(device)
    path, provenance = resolve_model(name_or_path)
    return PitchModel(load_checkpoint(path, device=str(target)), str(name_or_path), provenance)
