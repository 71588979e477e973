"""core/run_lock.py: one process per run directory. The holder is a real second process; the
kernel's release of the lock when that process dies (however it dies) is the property that
keeps a killed run from blocking its own resume."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
from pathlib import Path

import pytest
from helpers.entrypoints import start_python

from sotddsp.core.command_line import UserError
from sotddsp.core.run_layout import RUN_LOCK_FILE
from sotddsp.core.run_lock import RunLockedError, hold_run_lock

HOLD = (
    "import sys, time\n"
    "from sotddsp.core.run_lock import hold_run_lock\n"
    "with hold_run_lock(sys.argv[1]):\n"
    "    print('held', flush=True)\n"
    "    time.sleep(600)\n"
)


def start_holder(run_dir: Path) -> subprocess.Popen:
    holder = start_python(HOLD, [str(run_dir)], stdout=subprocess.PIPE, text=True)
    assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
    return holder


def test_a_second_process_is_refused_with_the_holders_pid_and_host(tmp_path: Path) -> None:
    run_dir = tmp_path / "SOT-2048" / "SOT-2048-42"  # created by the holder
    holder = start_holder(run_dir)
    try:
        (run_dir / "curves.csv").write_text("step\n1\n")
        before = {p.name: p.read_bytes() for p in run_dir.iterdir()}
        with pytest.raises(RunLockedError) as refused, hold_run_lock(run_dir):
            pytest.fail("entered a run another process holds")
        message = str(refused.value)
        assert isinstance(refused.value, UserError) and "\n" not in message
        assert message.startswith(f"{run_dir}: another process is training this run")
        assert f"pid {holder.pid} on {socket.gethostname()} since " in message
        assert str(run_dir / RUN_LOCK_FILE) in message and "run the same command again" in message
        # refused: nothing in the run was written, the holder's description included
        assert {p.name: p.read_bytes() for p in run_dir.iterdir()} == before
    finally:
        holder.kill()
        holder.wait()


def test_the_lock_dies_with_its_process(tmp_path: Path) -> None:
    """SIGKILL: no clean-up runs, and yet the next process gets the run (and says it holds it)."""
    holder = start_holder(tmp_path)
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait()
    with hold_run_lock(tmp_path):
        assert (tmp_path / RUN_LOCK_FILE).read_text().startswith(f"pid {os.getpid()} on ")
        # held now by this process: its second open file is refused all the same
        with pytest.raises(RunLockedError), hold_run_lock(tmp_path):
            pass
    with hold_run_lock(tmp_path):  # released at the end of the block
        pass


def test_released_when_the_block_raises(tmp_path: Path) -> None:
    with pytest.raises(ZeroDivisionError), hold_run_lock(tmp_path):
        1 / 0  # noqa: B018
    with hold_run_lock(tmp_path):
        pass


def test_an_unwritable_place_is_left_to_the_first_real_write(tmp_path: Path) -> None:
    """Where the lock file cannot be created, nothing else can be written either: the block runs
    and train.py's first write reports the real problem (its bad-input cases)."""
    entered = []
    with hold_run_lock(Path("/proc/no-such-run")):  # ENOENT for everyone, root included
        entered.append(True)
    assert entered == [True]
    # an error of the block itself comes out as it is, not chained to the lock file's OSError
    with pytest.raises(ZeroDivisionError) as raised, hold_run_lock(Path("/proc/no-such-run")):
        1 / 0  # noqa: B018
    assert raised.value.__context__ is None
