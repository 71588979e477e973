"""One training process per run directory.

train.py holds an exclusive advisory lock (``flock``) on ``<run>/train.lock`` from just before
its first write into the run until it exits. A second train.py of the same run (another
terminal, a sweep job, a SLURM requeue that overlaps the old job) then stops with one line that
names the process holding the run, instead of interleaving its checkpoints, curves and markers
with the first one's. The lock belongs to the open file, so the kernel releases it when its
process ends, however it ends: a killed run leaves no stale lock, only the file, which the next
holder rewrites. ``flock`` works on local file systems and on Linux NFS clients (as a POSIX
lock). Where locking is not available (no ``fcntl`` module, or a file system that refuses
locks) training goes on without the guard, with a warning; where the file cannot be created
at all, nothing else could be written to the run either, and train.py's first real write says
why.

    with hold_run_lock(run_dir):
        ...  # fit, test, write the run's files
"""

from __future__ import annotations

import contextlib
import datetime
import errno
import logging
import os
import socket
from collections.abc import Iterator
from pathlib import Path

from sotddsp.core.command_line import UserError
from sotddsp.core.run_layout import RUN_LOCK_FILE

try:
    import fcntl
except ImportError:  # not POSIX: no advisory locks
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger(__name__)

__all__ = ["RunLockedError", "hold_run_lock"]


class RunLockedError(UserError):
    """Another process holds the run's lock."""


def _holder(fd: int) -> str:
    """What the holder wrote into the lock file ('pid N on HOST since TIME'), or a fallback."""
    with contextlib.suppress(OSError, UnicodeDecodeError):
        text = os.pread(fd, 400, 0).decode("utf-8").strip()
        if text:
            return " ".join(text.split())
    return "a process that did not say which"


def _describe_self() -> str:
    since = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    return f"pid {os.getpid()} on {socket.gethostname()} since {since}"


@contextlib.contextmanager
def hold_run_lock(run_dir: str | Path) -> Iterator[None]:
    """Hold the exclusive lock of the run in ``run_dir`` (created if missing) for the ``with``
    block. Raises ``RunLockedError`` (one line: the run, the holder's pid, host and start time,
    the lock file, the fix) when another process holds it; nothing is written then."""
    run_dir = Path(run_dir)
    path = run_dir / RUN_LOCK_FILE
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)  # unbuffered: no write at close
    except OSError as error:
        log.debug("no run lock: %s cannot be created (%s)", path, error)
        fd = None
    if fd is None:  # yielded outside the handler: the block's own errors carry no OSError context
        yield
        return
    try:
        if fcntl is None:
            log.warning("no run lock on this platform: make sure no other process trains %s",
                        run_dir)
        else:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as error:
                if error.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    log.warning("no run lock (%s refuses locks: %s): make sure no other process "
                                "trains %s", path, os.strerror(error.errno or 0), run_dir)
                else:
                    raise RunLockedError(
                        f"{run_dir}: another process is training this run ({_holder(fd)}; "
                        f"it holds {path}): wait for it to finish, or stop it (it resumes from "
                        "its last.ckpt), then run the same command again"
                    ) from None
            else:
                with contextlib.suppress(OSError):  # the description is a courtesy (full disk)
                    os.ftruncate(fd, 0)
                    os.pwrite(fd, (_describe_self() + "\n").encode("utf-8"), 0)
        yield
    finally:
        os.close(fd)  # closing the file releases the lock
