"""sweep.py on a real one-node SLURM cluster started by scripts/slurm_local.sh (as root):
a 2 x 2 sweep submitted through sbatch completes and eval_paper.py tabulates it, a re-run submits
nothing, and a running job that is requeued (`scontrol requeue`, then submitit's USR2 path as on
preemption or time-out) resumes from its last.ckpt, its global step and W&B run id continuing.

Job states without accounting: submitit asks `sacct`, which needs slurmdbd (a database) that this
cluster does not run, so submitit would never see a killed job's state. The cluster's env.sh puts
a `sacct` shim first on PATH that answers JobID|State|NodeList from `squeue --states=all` (jobs
stay in slurmctld's memory for a day there). We chose the shim over patching submitit's
SlurmInfoWatcher inside sweep.py: sweep.py stays exactly what runs on a real cluster, which has
accounting, and the shim gives submitit the one answer it needs.

Run with `pytest -m slurm tests/test_slurm.py` (about 4 minutes on 2 cores)."""

from __future__ import annotations

import csv
import json
import os
import re
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from helpers.entrypoints import REPO, run_entry_point, start_entry_point

from sotddsp.apps import sweep

pytestmark = pytest.mark.slurm

SLURM_LOCAL = REPO / "scripts" / "slurm_local.sh"
SLURM_DIR = Path(os.environ.get("SOT_SLURM_DIR", "/tmp/sot-slurm"))
DEBUG = str(REPO / "paper-experiments" / "presets" / "debug.yaml")
LAUNCHER = [
    "hydra/launcher=slurm",
    "hydra.launcher.partition=debug",
    "hydra.launcher.cpus_per_task=1",
    "hydra.launcher.mem_gb=2",
    "hydra.launcher.timeout_min=15",
]


@pytest.fixture(scope="module")
def cluster() -> Iterator[dict[str, str]]:
    """The environment of the cluster's clients (SLURM_CONF, the sacct shim on PATH)."""
    if os.geteuid() != 0:
        pytest.skip(
            "needs root: scripts/slurm_local.sh installs slurm-wlm and munge and starts daemons"
        )
    status = subprocess.run([str(SLURM_LOCAL), "status"], capture_output=True, check=False)
    was_running = status.returncode == 0
    start = subprocess.run(
        [str(SLURM_LOCAL), "start"], capture_output=True, text=True, timeout=900, check=False
    )
    if start.returncode != 0:
        if "apt-get" in start.stderr:
            pytest.skip(f"SLURM could not be installed: {start.stderr.strip()}")
        pytest.fail(f"scripts/slurm_local.sh start failed:\n{start.stdout}{start.stderr}")
    sourced = subprocess.run(
        ["bash", "-c", f"source {SLURM_DIR / 'env.sh'} && env -0"],
        capture_output=True,
        text=True,
        check=True,
    )
    env = dict(item.split("=", 1) for item in sourced.stdout.split("\0") if "=" in item)
    yield env
    if not was_running:
        subprocess.run([str(SLURM_LOCAL), "stop"], capture_output=True, timeout=120, check=False)


def _slurm(env: dict[str, str], *command: str) -> str:
    return subprocess.run(list(command), env=env, capture_output=True, text=True, check=True).stdout


def _jobs(env: dict[str, str]) -> dict[str, str]:
    """Every job slurmctld knows (finished ones too): id -> state."""
    out = _slurm(env, "squeue", "--noheader", "--states=all", "--format=%i %T")
    return dict(line.split() for line in out.splitlines() if line.strip())


def _wait(
    condition: Callable[[], bool], what: str, timeout_s: float, logs: Path | None = None
) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            tail = ""
            if logs is not None:
                tail = "\n".join(p.read_text()[-2000:] for p in sorted(logs.rglob("*_log.*")))
            pytest.fail(f"timed out after {timeout_s:.0f} s waiting for {what}\n{tail}")
        time.sleep(0.5)


@pytest.fixture
def cancel_leftovers(cluster: dict[str, str]) -> Iterator[None]:
    """Whatever a failing test leaves queued or running is cancelled."""
    before = set(_jobs(cluster))
    yield
    left = [
        job
        for job, state in _jobs(cluster).items()
        if job not in before and state in ("PENDING", "RUNNING", "REQUEUED", "COMPLETING")
    ]
    if left:
        subprocess.run(["scancel", *{job.split("_")[0] for job in left}], env=cluster, check=False)


def test_sweep_through_sbatch_completes_evaluates_and_is_not_resubmitted(
    cluster: dict[str, str], cancel_leftovers: None, tiny_data_path: Path, tmp_path: Path
) -> None:
    root = tmp_path / "ck"
    argv = [  # sweep.py's arguments
        "experiment=SOT-2048,MSS-Lin",
        "seed=1,2",
        f"checkpoint_root={root}",
        *LAUNCHER,
        f"hydra.sweep.dir={tmp_path / 'sweep'}",
        "--",
        "--config",
        DEBUG,
        "--data.init_args.data_path",
        str(tiny_data_path),
        "--trainer.max_steps",
        "2",
        "--trainer.enable_progress_bar",
        "false",
    ]
    env = {**cluster, "WANDB_MODE": "disabled"}
    planned = run_entry_point("sweep.py", ["--dry-run", *argv], cwd=tmp_path, env=env, timeout=120)
    assert planned.returncode == 0, planned.stderr
    before = _jobs(cluster)
    result = run_entry_point("sweep.py", argv, cwd=tmp_path, env=env, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]

    # the dry run printed the very script that went to sbatch
    (submitted,) = (tmp_path / "sweep").glob(".submitit/*/*_submission.sh")
    printed = planned.stdout.split("# sbatch script submitted for 4 runs (one job array):\n", 1)[1]
    assert printed.rstrip("\n") == submitted.read_text().rstrip("\n")

    # one job array of 4 tasks, all completed, each run done with its test metrics
    new = {job: state for job, state in _jobs(cluster).items() if job not in before}
    assert sorted(re.sub(r"^\d+_", "", job) for job in new) == ["0", "1", "2", "3"], new
    assert set(new.values()) == {"COMPLETED"}
    runs = [sweep.run_directory(root, e, s) for e in ("SOT-2048", "MSS-Lin") for s in (1, 2)]
    for run_dir in runs:
        assert f"ok      {run_dir.name}  {run_dir}" in result.stdout
        assert (run_dir / "done").exists()
        assert {"lsd", "rpa", "rca", "od"} <= json.loads(
            (run_dir / "test_metrics.json").read_text()
        ).keys()

    # eval_paper.py builds the table from these checkpoints, and its numbers are the runs' own
    out = tmp_path / "results"
    evaluation = run_entry_point(
        "eval_paper.py",
        ["--root", str(root), "--out", str(out), "--no-baseline", "--device", "cpu"],
        cwd=tmp_path,
        env=env,
        timeout=600,
    )
    assert evaluation.returncode == 0, evaluation.stderr[-3000:]
    with open(out / "table.csv", newline="") as handle:
        table = {row["experiment"]: row for row in csv.DictReader(handle)}
    assert {e: int(table[e]["n"]) for e in ("SOT-2048", "MSS-Lin")} == {"SOT-2048": 2, "MSS-Lin": 2}
    with open(out / "runs.csv", newline="") as handle:
        evaluated = {row["run"]: float(row["lsd"]) for row in csv.DictReader(handle)}
    for run_dir in runs:
        recorded = json.loads((run_dir / "test_metrics.json").read_text())["lsd"]
        assert evaluated[run_dir.name] == pytest.approx(recorded, rel=1e-5)

    # the same sweep again: every run is done, nothing reaches sbatch
    jobs = _jobs(cluster)
    again = run_entry_point("sweep.py", argv, cwd=tmp_path, env=env, timeout=120)
    assert again.returncode == 0, again.stderr
    assert "nothing to launch: the 4 runs are done" in again.stdout
    assert _jobs(cluster) == jobs


def _global_step(checkpoint: Path) -> int:
    import torch

    return int(torch.load(checkpoint, map_location="cpu", weights_only=False)["global_step"])


def _logged_epochs(run_dir: Path) -> dict[int, list[int]]:
    """The epoch of each training step logged by each attempt (CSVLogger's version_N)."""
    epochs = {}
    for metrics in sorted(run_dir.glob("logs/lightning_logs/version_*/metrics.csv")):
        with open(metrics, newline="") as handle:
            rows = [row for row in csv.DictReader(handle) if row.get("train/loss")]
        epochs[int(metrics.parent.name.split("_")[1])] = [int(row["epoch"]) for row in rows]
    return epochs


def test_requeued_job_resumes_its_steps_and_wandb_run(
    cluster: dict[str, str], cancel_leftovers: None, tiny_data_path: Path, tmp_path: Path
) -> None:
    loggers = tmp_path / "loggers.yaml"
    loggers.write_text(
        "trainer:\n  log_every_n_steps: 1\n  logger:\n"
        "    - class_path: lightning.pytorch.loggers.CSVLogger\n"
        "      init_args: {save_dir: logs, flush_logs_every_n_steps: 1}\n"
        "    - {class_path: lightning.pytorch.loggers.WandbLogger, init_args: {save_dir: logs}}\n"
    )
    root = tmp_path / "ck"
    max_steps, steps_per_epoch = (
        30,
        2,
    )  # debug.yaml: 2 batches an epoch; last.ckpt at each epoch's end
    argv = [  # sweep.py's arguments
        "experiment=SOT-2048",
        "seed=5",
        f"checkpoint_root={root}",
        *LAUNCHER,
        "--",
        "--config",
        DEBUG,
        "--config",
        str(loggers),
        "--data.init_args.data_path",
        str(tiny_data_path),
        "--trainer.max_steps",
        str(max_steps),
        "--trainer.enable_progress_bar",
        "false",
    ]
    run_dir = sweep.run_directory(root, "SOT-2048", 5)
    last = run_dir / "checkpoints" / "last.ckpt"
    logs = tmp_path / "multirun"
    before = set(_jobs(cluster))
    client = start_entry_point(
        "sweep.py",
        argv,
        cwd=tmp_path,
        env={**cluster, "WANDB_MODE": "offline"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        _wait(lambda: last.exists() and _global_step(last) >= 4, "a first last.ckpt", 300, logs)
        (job,) = set(_jobs(cluster)) - before
        first_step = _global_step(last)
        run_id = (run_dir / "wandb_run_id").read_text()
        _slurm(cluster, "scontrol", "requeue", job)  # SIGTERM now; the same job starts again later

        _wait(
            lambda: 1 in _logged_epochs(run_dir) and _global_step(last) >= first_step + 4,
            "the requeued job to train on",
            300,
            logs,
        )
        second_step = _global_step(last)
        # USR2: what SLURM sends before a time-out (submitit's signal); submitit checkpoints the
        # call and requeues the job itself, as it does on preemption
        _slurm(cluster, "scancel", "--signal=USR2", job)

        output, _ = client.communicate(timeout=600)
    finally:
        if client.poll() is None:
            client.kill()
    assert client.returncode == 0, output[-4000:]
    assert f"ok      SOT-2048-5  {run_dir}" in output
    assert (run_dir / "done").exists() and _global_step(last) == max_steps
    assert "Restarts=2" in _slurm(cluster, "scontrol", "show", "job", job)

    # three attempts, each resuming at the start of an epoch (global step = 2 x epoch): at or
    # after the last.ckpt seen before the interruption, not after the last epoch it reached,
    # and the last attempt trains exactly the steps that were left
    epochs = _logged_epochs(run_dir)
    assert sorted(epochs) == [0, 1, 2], epochs
    resumed_at = [steps_per_epoch * epochs[attempt][0] for attempt in (0, 1, 2)]
    assert resumed_at[0] == 0
    assert first_step <= resumed_at[1] <= steps_per_epoch * (epochs[0][-1] + 1)
    assert second_step <= resumed_at[2] <= steps_per_epoch * (epochs[1][-1] + 1)
    assert len(epochs[2]) == max_steps - resumed_at[2]

    # one W&B run, resumed twice: the same id in the run directory and in each attempt's files
    assert (run_dir / "wandb_run_id").read_text() == run_id
    offline = sorted(p.name for p in (run_dir / "logs" / "wandb").glob("offline-run-*"))
    assert len(offline) == 3 and all(name.endswith("-" + run_id.strip()) for name in offline), (
        offline
    )

    # what the job's log says happened
    (submitit_log,) = logs.rglob(f"{job}_0_log.out")
    (submitit_err,) = logs.rglob(f"{job}_0_log.err")
    assert submitit_log.read_text().count("Starting with JobEnvironment") == 3
    err = submitit_err.read_text()
    assert err.count(f"resuming from {last}") == 2
    assert "Caught signal SIGUSR2" in err and "DUE TO JOB REQUEUE" in err
    assert not list(run_dir.rglob("hpc_ckpt_*.ckpt"))  # Lightning's own SLURM requeue stayed out
