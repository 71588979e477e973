"""Crash safety and clear errors shared by the entry points.

- `atomic_write_bytes/text`: write to a temporary file beside the target, fsync, then
  `os.replace`, so a kill never leaves a truncated file where a good one was.
- `AtomicCheckpointIO`: Lightning checkpoints written the same way.
- `EpochEndCheckpoint`: a `ModelCheckpoint` whose `last.ckpt` is written at every epoch's end.
- `RNGStateCallback`: saves and restores the torch/numpy/python RNG states in checkpoints,
  so that a resumed CPU run continues with the random stream it would have had.
- `run_cli_main`: runs an entry point; user mistakes end with one line on stderr, exit 2,
  and no traceback.
"""

from __future__ import annotations

import errno
import logging
import os
import random
import re
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.callbacks import ModelCheckpoint

EXIT_USER_ERROR = 2


class UserError(Exception):
    """A mistake in the user's input: reported as one line, without a traceback."""


class RunFailed(RuntimeError):
    """A training run ended without its `done` marker (``returncode``: train.py's exit status).

    Defined here, not in sweep.py, so that the job (run as ``__main__``) and hydra's sweeper
    plugin (which imports ``sweep``) raise and catch one and the same class.
    """

    def __init__(self, message: str, returncode: int | None = None) -> None:
        super().__init__(message)
        self.returncode = returncode


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (temporary file in the same directory + rename).

    An OSError while writing (disk full, read-only file system, ...) names ``path``, not the
    temporary file, and leaves no temporary file behind."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)  # its errors name the directory
    tmp: str | None = None
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except OSError as error:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        raise OSError(error.errno, error.strerror, str(path)) from error
    except BaseException:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_torch_save(obj: Any, path: str | Path) -> None:
    """``torch.save`` to ``path`` atomically."""
    import io

    buffer = io.BytesIO()
    torch.save(obj, buffer)
    atomic_write_bytes(path, buffer.getvalue())


class AtomicCheckpointIO(TorchCheckpointIO):
    """Checkpoint IO that never leaves a truncated checkpoint where a good one was."""

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any | None = None
    ) -> None:
        if storage_options is not None:
            raise TypeError("AtomicCheckpointIO does not take storage_options")
        atomic_torch_save(checkpoint, path)


class EpochEndCheckpoint(ModelCheckpoint):
    """``ModelCheckpoint`` that writes ``last.ckpt`` at the end of every training epoch and
    resumes from such a checkpoint at the start of the next epoch, as an uninterrupted run.

    Two Lightning 2.6 behaviours are corrected:
    - ``last.ckpt`` is written at an epoch's end only when a top-k checkpoint was saved there
      too, so a run whose monitored metric stopped improving would resume from an older
      epoch. With ``save_last`` set, this class writes it after every training epoch.
    - With ``max_steps`` set (step-based training), a checkpoint written in
      ``on_train_epoch_end`` is resumed by replaying that epoch's end, which counts the epoch
      as processed twice: every later epoch then gives its sampler the next epoch's number
      (another shuffle). On loading such a checkpoint the fit loop's ``processed`` counter is
      set back by one, so that the replay counts it once; the replayed epoch end, already
      saved before the interruption, writes nothing.
    """

    _replaying_epoch_end = False

    def on_load_checkpoint(
        self, trainer: Trainer, pl_module: LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        progress = checkpoint.get("loops", {}).get("fit_loop", {}).get("epoch_progress")
        if trainer.max_steps == -1 or not isinstance(progress, dict):
            return
        parts = [progress.get("total"), progress.get("current")]
        if all(isinstance(part, dict) and part["ready"] == part["started"] == part["processed"]
               == part["completed"] + 1 for part in parts):  # saved in on_train_epoch_end
            for part in parts:
                part["processed"] -= 1
            self._replaying_epoch_end = True

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self._replaying_epoch_end:
            self._replaying_epoch_end = False
            return
        super().on_train_epoch_end(trainer, pl_module)
        # _should_skip_saving_checkpoint is true when this step was already saved (or in a
        # sanity check, a fast_dev_run or outside fit)
        if self.save_last and self._should_save_on_train_epoch_end(trainer) \
                and not self._should_skip_saving_checkpoint(trainer):
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))


class RNGStateCallback(Callback):
    """Stores the global RNG states in each checkpoint; on resume, restores them at the start
    of the next training epoch (checkpoints are written at epoch ends), after whatever Lightning
    draws while it restores the loops."""

    def __init__(self) -> None:
        self._pending: dict[str, Any] | None = None

    def state_dict(self) -> dict[str, Any]:
        # plain tensors and numbers only, so checkpoints load with torch.load(weights_only=True)
        name, keys, position, has_gauss, cached = np.random.get_state()
        version, internal, gauss_next = random.getstate()
        return {
            "torch": torch.get_rng_state(),
            "numpy": {"keys": torch.from_numpy(keys.astype(np.int64)), "position": int(position),
                      "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
            "python": {"version": version, "internal": torch.tensor(internal, dtype=torch.int64),
                       "gauss_next": gauss_next},
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._pending = state_dict

    def on_train_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self._pending is not None:
            self.restore(self._pending)
            self._pending = None

    @staticmethod
    def restore(state_dict: dict[str, Any]) -> None:
        """Set the torch, numpy and python RNG states from ``state_dict()``'s output."""
        torch.set_rng_state(state_dict["torch"])
        numpy_state = state_dict["numpy"]
        np.random.set_state((
            "MT19937", numpy_state["keys"].numpy().astype(np.uint32), numpy_state["position"],
            numpy_state["has_gauss"], numpy_state["cached_gaussian"],
        ))
        python_state = state_dict["python"]
        random.setstate((python_state["version"], tuple(python_state["internal"].tolist()),
                         python_state["gauss_next"]))


def one_line(message: object) -> str:
    """First non-empty line of a message, stripped."""
    for line in str(message).splitlines():
        if line.strip():
            return line.strip()
    return str(message).strip() or "unknown error"


def condense_argument_error(message: str) -> str:
    """One line from a nested jsonargparse error: the full dotted key, then the innermost problem.

    'Parser key "model.loss": ... Parser key "n_fft": Expected a <class 'int'>. Got value: abc'
    becomes 'model.loss.terms.n_fft: expected int, got abc'; a YAML syntax error becomes
    'cannot parse a config file: <problem> (line L, column C)'.
    """
    text = str(message)
    keys = re.findall(r'Parser key "([^"]+)":', text)
    class_paths = re.findall(r"Problem with given class_path '([^']+)':", text)
    lines = [raw.strip() for raw in text.splitlines() if raw.strip()]
    if lines and lines[0].startswith("Problems parsing config"):
        problems = [line for line in lines[1:] if not line.startswith("in ")]
        where = re.findall(r'line (\d+), column (\d+)', text)
        position = f" (line {where[-1][0]}, column {where[-1][1]})" if where else ""
        problem = problems[-1] if problems else one_line(lines[0].split(":", 1)[-1])
        return f"cannot parse a config file: {problem}{position}; fix its YAML syntax"
    union = re.search(r"Subtypes: \[(.*?)\]", text)
    given = re.search(r"Given value: (.*?)(?:\. Got value:|$)", text, flags=re.MULTILINE)
    if union and given:
        types = re.findall(r"<class '(?:[\w.]*\.)?(\w+)'>", union.group(1))
        detail = f"expected {' or '.join(types)}, got {given.group(1)}"
    else:
        details = []
        for line in lines:
            line = re.sub(r'^.*Parser key "[^"]+":\s*', "", line)
            if not line or re.fullmatch(r"Problem with given class_path '.+':", line):
                continue
            if not line.startswith("- ") or not details:
                details.append(line)
        detail = details[-1] if details else one_line(text)
        detail = re.sub(r"Expected a <class '(\w+)'>\.", r"expected \1,", detail)
        detail = detail.replace("Got value:", "got")
        if detail.startswith("File does not exist"):
            detail = f"{detail}; check the path"
    if re.search(r"has no attribute|No module named|does not exist|not a subclass|Import path", detail) \
            and class_paths:
        detail = f"cannot import class_path '{class_paths[-1]}' ({detail}); check its spelling"
    where = ".".join(keys)
    return f"{where}: {detail}" if where else detail


def describe_os_error(error: OSError) -> str | None:
    """A one-line explanation for disk errors a user can fix, else None."""
    where = f" ({error.filename})" if error.filename else ""
    if error.errno == errno.ENOSPC:
        return f"no space left on the device{where}: free some space or write elsewhere"
    if error.errno == errno.EROFS:
        return f"the file system is read-only{where}: choose a writable output directory"
    if error.errno in (errno.EACCES, errno.EPERM):
        return f"permission denied{where}: choose a directory you can write to"
    if error.errno == errno.ENOENT:
        return f"file not found{where}: check the path"
    return None


def run_cli_main(
    main: Callable[[], Any], known_errors: tuple[type[BaseException], ...] = ()
) -> None:
    """Run an entry point; user mistakes exit 2 with one line on stderr and no traceback.

    ``UserError``, ``ValueError`` (raised by our constructors for bad settings) and the given
    ``known_errors`` are user mistakes; disk-full, read-only and permission errors are too.
    Anything else is a bug and keeps its traceback.
    """
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    from jsonargparse import ArgumentError
    from lightning.pytorch.utilities.exceptions import SIGTERMException

    program = Path(sys.argv[0]).name
    try:
        main()
    except KeyboardInterrupt:
        print(f"{program}: interrupted", file=sys.stderr)
        sys.exit(130)
    except SIGTERMException:
        print(f"{program}: terminated (SIGTERM); run the same command again to resume", file=sys.stderr)
        sys.exit(143)
    except ArgumentError as error:
        print(f"{program}: error: {condense_argument_error(str(error))}", file=sys.stderr)
        sys.exit(EXIT_USER_ERROR)
    except (UserError, ValueError, *known_errors) as error:
        print(f"{program}: error: {one_line(error)}", file=sys.stderr)
        sys.exit(EXIT_USER_ERROR)
    except OSError as error:
        # an OSError without errno was raised by our own code with a one-line message
        described = describe_os_error(error) if error.errno is not None else one_line(error)
        if described is None:
            raise
        print(f"{program}: error: {described}", file=sys.stderr)
        sys.exit(EXIT_USER_ERROR)
