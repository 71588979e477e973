"""Atomic file writes: a kill, a full disk or a failing fsync never leaves a truncated file where
a good one was, and never leaves a temporary file behind.

One writer for the whole project (checkpoints, configs, result tables, data sets): the data go
to a temporary file beside the target, are flushed and fsynced, the file gets the mode a plain
``open()`` would give it (0666 minus the umask, so colleagues on shared storage can read
results), and it is renamed over the target with ``os.replace``; the directory is fsynced too.
"""

from __future__ import annotations

import contextlib
import io
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

__all__ = ["atomic_torch_save", "atomic_write", "atomic_write_bytes", "atomic_write_text"]


def _plain_open_mode() -> int:
    """The mode ``open(path, "w")`` gives a new file: 0o666 minus the process's umask."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def atomic_write(path: str | Path, write: Callable[[IO[bytes]], Any]) -> Path:
    """Create or replace ``path`` atomically with what ``write(handle)`` writes to a binary handle.

    Parent directories are created. An OSError while writing (disk full, read-only file
    system, ...) names ``path``, not the temporary file, and leaves no temporary file behind.
    Returns ``path``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)  # its errors name the directory
    tmp: str | None = None
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.fchmod(fd, _plain_open_mode())  # mkstemp creates 0600
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except OSError as error:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        if error.errno is None:  # raised by ``write`` itself, with its own message
            raise
        raise OSError(error.errno, error.strerror, str(path)) from error
    except BaseException:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        raise
    with contextlib.suppress(OSError):  # the rename itself is durable once the directory is
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    return path


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (see ``atomic_write``)."""
    return atomic_write(path, lambda handle: handle.write(data))


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_torch_save(obj: Any, path: str | Path) -> Path:
    """``torch.save(obj)`` to ``path`` atomically (serialized in memory first)."""
    import torch

    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return atomic_write_bytes(path, buffer.getvalue())
