"""sweep.py: the grid it expands, the train.py command lines it builds, done-skipping, the dry
run's sbatch script, bad input, and one tiny run end to end with the local launcher.

The oracles are the paper's grid written out here, train.py's own run layout, hydra's override
parser, and the files a finished run leaves (done marker, test_metrics.json)."""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from helpers.entrypoints import REPO, environment, run_entry_point
from helpers.runs import write_curves
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import OmegaConf

from sotddsp.apps import sweep
from sotddsp.core import run_layout

PAPER_EXPERIMENTS = [
    "MSS-Lin",
    "MSS-LogLin",
    "SOT-512",
    "SOT-512-LogF",
    "SOT-2048",
    "SOT-NoCut",
    "SOT-2048-SS",
]
PAPER_SEEDS = [42, 123, 456, 789, 101112]
DEBUG = str(REPO / "paper-experiments" / "presets" / "debug.yaml")


def _sweep(cwd: Path, *argv: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return run_entry_point("sweep.py", argv, cwd=cwd, timeout=timeout)


def _planned(result: subprocess.CompletedProcess[str]) -> list[list[str]]:
    """The train.py command lines a dry run printed, split as the shell would."""
    assert result.returncode == 0, result.stderr
    return [shlex.split(line) for line in result.stdout.splitlines()
            if sweep.TRAIN_MODULE in line]


def _expected_command(experiment: str, seed: int, root: Path, *args: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "sotddsp.apps.train",
        "--config",
        str(run_layout.experiment_config(experiment)),
        *args,
        "--experiment",
        experiment,
        "--seed_everything",
        str(seed),
        "--checkpoint_root",
        str(root),
    ]


def test_run_layout_is_train_pys() -> None:

    assert sweep.DONE_MARKER == run_layout.DONE_MARKER
    assert sweep.run_directory("/x/ck", "SOT-512", 456) == run_layout.run_directory(
        "/x/ck", "SOT-512", 456
    )
    assert sweep.known_experiments() == sorted(PAPER_EXPERIMENTS)


def test_default_grid_is_the_papers_7_experiments_by_5_seeds(tmp_path: Path) -> None:
    root = tmp_path / "ck"
    commands = _planned(_sweep(tmp_path, "--dry-run", f"checkpoint_root={root}"))
    expected = [
        _expected_command(e, s, root) for e, s in itertools.product(PAPER_EXPERIMENTS, PAPER_SEEDS)
    ]
    assert commands == expected  # 35 runs, experiment-major
    assert not (tmp_path / "multirun").exists()  # a dry run launches nothing


def test_subset_and_extra_train_arguments(tmp_path: Path) -> None:
    # arguments after -- reach every train.py verbatim (quotes, commas, backslashes, ${...})
    odd = [
        "--trainer.max_steps=100",
        "--model.temperature",
        "0.2",
        "it's, [a=b] c",
        "C:\\dir\\",
        "${oc.env:HOME}",
        "\\${x}",
    ]
    result = _sweep(
        tmp_path,
        "experiment=SOT-2048,MSS-Lin",
        "seed=42,123",
        "dry_run=true",
        "checkpoint_root=relative/ck",
        "--",
        *odd,
    )
    root = tmp_path / "relative" / "ck"  # relative to where sweep.py was started
    assert _planned(result) == [
        _expected_command(e, s, root, *odd)
        for e, s in itertools.product(["SOT-2048", "MSS-Lin"], [42, 123])
    ]

    # the same arguments as a hydra list, and a single experiment instead of a sweep
    listed = _sweep(
        tmp_path,
        "--dry-run",
        "experiment=SOT-NoCut",
        "seed=7",
        f"checkpoint_root={root}",
        "args=['--trainer.max_steps=100',--model.temperature,'0.2']",
    )
    assert _planned(listed) == [_expected_command("SOT-NoCut", 7, root, *odd[:3])]


def test_an_experiment_beyond_the_paper_sweeps_by_name_or_by_its_folder(tmp_path: Path) -> None:
    """paper-experiments/beyond/<name>.yaml: not in the default grid, but sweepable, named as
    train.py names its runs (``<root>/<name>/<name>-<seed>``), with or without ``beyond/``."""
    beyond = run_layout.beyond_experiments()
    assert beyond and not set(beyond) & set(PAPER_EXPERIMENTS)
    name = beyond[0]
    assert run_layout.experiment_config(name) == run_layout.BEYOND_EXPERIMENTS_DIR / f"{name}.yaml"
    root = tmp_path / "ck"
    for spelling in (name, f"beyond/{name}"):
        result = _sweep(tmp_path, "--dry-run", f"experiment=SOT-2048,{spelling}", "seed=42",
                        f"checkpoint_root={root}")
        assert _planned(result) == [_expected_command("SOT-2048", 42, root),
                                    _expected_command(name, 42, root)]
    unknown = _sweep(tmp_path, "--dry-run", "experiment=beyond/SOT-9")
    assert unknown.returncode == 2 and f"beyond the paper, {name}" in unknown.stderr


def test_a_bare_sweep_prints_the_grid_and_starts_nothing(tmp_path: Path) -> None:
    """`python sweep.py` (no --yes, no experiment= or seed=): the paper's grid, its 35 runs and
    a time estimate from the measured step time; exit 0; no run, no multirun directory."""
    result = _sweep(tmp_path)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == (
        f"the default grid: experiment = {', '.join(PAPER_EXPERIMENTS)} x seed = "
        f"{', '.join(map(str, PAPER_SEEDS))}"
    )
    root = tmp_path / "checkpoints"
    assert lines[1] == f"35 runs under {root}: 35 to launch, 0 done; launcher: basic"
    hours = 35 * 25_000 * sweep.MEASURED_SECONDS_PER_STEP / 3600
    assert lines[2].startswith(f"estimated time: about {hours:.0f} h one after another "
                               "(875,000 steps")
    assert "nothing was started" in lines[3] and "--yes" in lines[3]
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # nothing written, nothing started
    # launcher settings alone do not start it either; a grid of hydra's params does not count
    other = _sweep(tmp_path, "hydra/launcher=local_parallel", "hydra.sweeper.params.seed=1")
    assert other.returncode == 0 and "nothing was started" in other.stdout
    assert "7 runs under" in other.stdout and "launcher: local_parallel" in other.stdout


def test_yes_or_an_explicit_grid_starts_the_sweep(tmp_path: Path) -> None:
    """With --yes (or experiment=/seed=) the sweep proceeds: here to its done-skipping, as every
    run of the grid is done."""
    root = tmp_path / "ck"
    for seed in (1, 2):
        done = sweep.run_directory(root, "SOT-NoCut", seed)
        done.mkdir(parents=True)
        (done / "done").write_text("")
    grid = ["hydra.sweeper.params.experiment=SOT-NoCut", "hydra.sweeper.params.seed='1,2'",
            f"checkpoint_root={root}"]
    assert "nothing was started" in _sweep(tmp_path, *grid).stdout
    assert "nothing to launch: the 2 runs are done" in _sweep(tmp_path, "--yes", *grid).stdout
    explicit = _sweep(tmp_path, "experiment=SOT-NoCut", "seed=1,2", f"checkpoint_root={root}")
    assert "nothing to launch: the 2 runs are done" in explicit.stdout


def test_help_lists_the_launchers_and_the_grid_syntax() -> None:
    """--help: every hydra/launcher choice that exists (ours in conf/, hydra's basic, the
    installed plugins'), the grid syntax and the options; exit 0, hydra starts nothing."""
    result = run_entry_point("sweep.py", ["--help"], timeout=120)
    assert result.returncode == 0, result.stderr
    text = result.stdout
    ours = sorted(p.stem for p in (REPO / "conf" / "sweep" / "hydra" / "launcher").glob("*.yaml"))
    listed = re.findall(r"^  (\w+) +\S", text.split("Launchers (hydra/launcher=NAME):")[1],
                        flags=re.MULTILINE)
    assert set(ours) | {"basic"} <= set(listed), listed
    for name in ours:  # with the first line of its config file
        first = (REPO / "conf" / "sweep" / "hydra" / "launcher" / f"{name}.yaml").read_text()
        assert first.splitlines()[0].lstrip("# ").strip() in text, name
    for phrase in ("experiment=SOT-2048,MSS-Lin", "seed=42,123", "--yes", "--dry-run",
                   "args=[", "checkpoint_root=", "-- ARGS"):
        assert phrase in text, phrase
    for name in run_layout.beyond_experiments():  # the experiments beyond the paper, by name
        assert name in text.split("beyond the paper, paper-experiments/beyond/:")[1], name
    assert "powered by Hydra" not in text


def test_a_presets_runs_go_under_its_own_root(tmp_path: Path) -> None:
    """Without checkpoint_root=, the sweep takes the root train.py's YAML files set (a preset's
    own) and passes it to train.py explicitly."""
    preset = REPO / "paper-experiments" / "presets" / "cpu-quick.yaml"
    commands = _planned(_sweep(tmp_path, "--dry-run", "experiment=SOT-512", "seed=4", "--",
                               "--config", str(preset)))
    assert commands == [_expected_command("SOT-512", 4, tmp_path / "checkpoints" / "cpu-quick",
                                          "--config", str(preset))]
    plain = _planned(_sweep(tmp_path, "--dry-run", "experiment=SOT-512", "seed=4"))
    assert plain == [_expected_command("SOT-512", 4, tmp_path / "checkpoints")]


@pytest.mark.parametrize(
    "value",
    [
        "plain",
        "it's",
        "a\\b",
        "end\\",
        "\\'",
        "${oc.env:HOME}",
        "\\${x}",
        "\\\\${y}",
        "'quoted'",
        "a,b",
        "[1, 2]",
        "",
    ],
)
def test_arguments_after_double_dash_survive_hydra_and_omegaconf(value: str) -> None:
    (override,) = sweep.hydra_arguments(["--", value])
    parsed = OverridesParser.create().parse_override(override).value()
    assert list(OmegaConf.create({"args": parsed}).args) == [value]  # as run_from_config reads it


def test_hydra_arguments_rewrites_dry_run_and_double_dash() -> None:
    assert sweep.hydra_arguments(["--dry-run", "seed=1"]) == ["dry_run=true", "seed=1"]
    assert sweep.hydra_arguments(["seed=1"]) == ["seed=1"]
    assert sweep.hydra_arguments(["seed=1", "--"]) == ["seed=1", "args=[]"]
    with pytest.raises(sweep.SweepError, match="not both"):
        sweep.hydra_arguments(["args=[a]", "--", "b"])


def test_done_runs_are_not_launched(tmp_path: Path) -> None:
    root = tmp_path / "ck"
    done = sweep.run_directory(root, "SOT-2048", 123)
    done.mkdir(parents=True)
    (done / "done").write_text("")
    sweep.run_directory(root, "SOT-2048", 42).mkdir(parents=True)  # started, not done: resumes
    result = _sweep(
        tmp_path, "--dry-run", "experiment=SOT-2048", "seed=42,123", f"checkpoint_root={root}"
    )
    assert _planned(result) == [_expected_command("SOT-2048", 42, root)]
    assert "done, skipped: 1 (SOT-2048-123)" in result.stdout

    (sweep.run_directory(root, "SOT-2048", 42) / "done").write_text("")
    again = _sweep(tmp_path, "experiment=SOT-2048", "seed=42,123", f"checkpoint_root={root}")
    assert again.returncode == 0, again.stderr
    assert "nothing to launch" in again.stdout
    assert not (tmp_path / "multirun").exists()


def test_order_seed_launches_every_experiments_seed_before_the_next_seed(tmp_path: Path) -> None:
    """order=seed: seed-major over the grid's seeds in the grid's order, the experiments of a
    seed in the grid's order; done runs leave the order of the others as it was (the issue's
    queue: the variant's seed 42 before any seed 123, though the paper's seed-42 runs are done)."""
    root = tmp_path / "ck"
    experiments = ["SOT-2048", "MSS-Lin", "SOT-2048-full-hann-nomss-logf"]
    seeds = [42, 123, 456]
    grid = ("experiment=SOT-2048,MSS-Lin,beyond/SOT-2048-full-hann-nomss-logf",
            "seed=42,123,456", f"checkpoint_root={root}")
    seed_major = [_expected_command(e, s, root) for s, e in itertools.product(seeds, experiments)]
    assert _planned(_sweep(tmp_path, "--dry-run", "order=seed", *grid)) == seed_major
    experiment_major = [
        _expected_command(e, s, root) for e, s in itertools.product(experiments, seeds)
    ]
    assert _planned(_sweep(tmp_path, "--dry-run", *grid)) == experiment_major  # the default
    assert experiment_major != seed_major
    for experiment in experiments[:2]:
        done = sweep.run_directory(root, experiment, 42)
        done.mkdir(parents=True)
        (done / "done").write_text("")
    assert _planned(_sweep(tmp_path, "--dry-run", "order=seed", *grid)) == seed_major[2:]
    # the grid's seed order, not a sorted one
    reversed_grid = (*grid[:1], "seed=456,42", *grid[2:])
    assert _planned(_sweep(tmp_path, "--dry-run", "order=seed", *reversed_grid)) == [
        _expected_command(e, 456, root) for e in experiments
    ] + [_expected_command(experiments[2], 42, root)]


def test_dry_run_prints_the_sbatch_script(tmp_path: Path) -> None:
    result = _sweep(
        tmp_path,
        "--dry-run",
        "hydra/launcher=slurm_gpu",
        "hydra.launcher.partition=a100",
        "hydra.launcher.timeout_min=90",
        "experiment=SOT-512",
        "seed=1,2,3",
        f"checkpoint_root={tmp_path / 'ck'}",
    )
    assert len(_planned(result)) == 3
    lines = result.stdout.splitlines()
    for flag in (
        "--partition=a100",
        "--gpus-per-node=1",
        "--cpus-per-task=4",
        "--mem=16GB",
        "--time=90",
        "--array=0-2%3",
        "--requeue",
        "--signal=USR2@120",
        "--ntasks-per-node=1",
    ):
        assert f"#SBATCH {flag}" in lines, flag
    srun = [line for line in lines if line.startswith("srun ")]
    assert (
        len(srun) == 1
        and srun[0].endswith(".submitit/%j")
        and "-m submitit.core._submit" in srun[0]
    )
    # the estimate heads the plan; the sbatch script is the last thing printed, as submitted
    assert lines[1].startswith("# estimated time: about ")
    assert [line for line in lines if line.strip()][-1] == srun[0]

    single = _sweep(
        tmp_path,
        "--dry-run",
        "hydra/launcher=slurm",
        "hydra.launcher.array_parallelism=2",
        "experiment=SOT-512",
        "seed=1",
        f"checkpoint_root={tmp_path / 'ck'}",
    )
    assert single.returncode == 0, single.stderr
    assert "#SBATCH --gpus-per-node" not in single.stdout and "#SBATCH --array" not in single.stdout
    assert "#SBATCH --cpus-per-task=2" in single.stdout.splitlines()


def test_local_parallel_launcher_config_composes(tmp_path: Path) -> None:
    pytest.importorskip(
        "hydra_plugins.hydra_joblib_launcher", reason="hydra-joblib-launcher not installed"
    )
    root = tmp_path / "ck"
    result = _sweep(
        tmp_path,
        "--dry-run",
        "hydra/launcher=local_parallel",
        "hydra.launcher.n_jobs=3",
        "experiment=MSS-Lin",
        "seed=1,2",
        f"checkpoint_root={root}",
    )
    assert _planned(result) == [_expected_command("MSS-Lin", s, root) for s in (1, 2)]
    assert "#SBATCH" not in result.stdout  # local launchers submit nothing


@pytest.mark.parametrize(
    "argv, message",
    [
        (
            ["experiment=SOT-2048,SOT-9"],
            "unknown experiment 'SOT-9': choose among the paper's MSS-Lin, MSS-LogLin, SOT-2048",
        ),
        (["seed=abc"], "seed must be an integer"),
        (["--", "--seed_everything", "3"], "args may not contain --seed_everything (set seed=..."),
        (
            ["--", "--checkpoint_root=x"],
            "args may not contain --checkpoint_root (set checkpoint_root=...",
        ),
        (["args=[a]", "--", "b"], "not both"),
        (["order=seeds"], "order must be 'experiment' or 'seed', got 'seeds'"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path: Path, argv: list[str], message: str) -> None:
    result = _sweep(tmp_path, *argv)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert result.stderr.startswith("sweep.py: error: ") and message in result.stderr
    assert not (tmp_path / "multirun").exists()


def test_local_sweep_runs_and_then_skips(tmp_path: Path, tiny_data_path: Path) -> None:
    root = tmp_path / "ck"
    args = [
        "experiment=MSS-Lin",
        "seed=3",
        f"checkpoint_root={root}",
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
    result = _sweep(tmp_path, *args, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    run_dir = sweep.run_directory(root, "MSS-Lin", 3)
    assert f"ok      MSS-Lin-3  {run_dir}" in result.stdout
    assert (run_dir / "done").exists() and (run_dir / "checkpoints" / "last.ckpt").exists()
    metrics = json.loads((run_dir / "test_metrics.json").read_text())
    assert {"lsd", "rpa", "rca", "od"} <= metrics.keys()
    # the run's replayable config says what the sweep asked for
    saved = OmegaConf.load(run_dir / "train_config.yaml")
    assert (saved.seed_everything, saved.experiment, saved.trainer.max_steps) == (3, "MSS-Lin", 2)

    before = sorted((p.name, p.stat().st_mtime_ns) for p in run_dir.rglob("*"))
    again = _sweep(tmp_path, *args)
    assert again.returncode == 0 and "nothing to launch: the 1 runs are done" in again.stdout
    assert sorted((p.name, p.stat().st_mtime_ns) for p in run_dir.rglob("*")) == before

    # the same run with another configuration is not skipped as done: one line, exit 2
    other = _sweep(tmp_path, *args[:-4], "--trainer.max_steps", "3", *args[-2:])
    assert other.returncode == 2, other.stderr[-3000:]
    last = other.stderr.strip().splitlines()[-1]
    assert last.startswith("sweep.py: error: MSS-Lin-3: ")
    assert "trainer.max_steps was 2, now 3" in last
    assert "checkpoint_root=" in last and "Traceback" not in other.stderr
    assert sorted((p.name, p.stat().st_mtime_ns) for p in run_dir.rglob("*")) == before


FAKE_TRAIN = """
import json, os, signal, sys, time
from pathlib import Path
args = sys.argv[1:]
value = lambda option: args[len(args) - args[::-1].index(option)]  # the last one given
exp = value("--experiment")
run_dir = Path(value("--checkpoint_root")) / exp / f"{exp}-{value('--seed_everything')}"
run_dir.mkdir(parents=True, exist_ok=True)
ignored = [s.name for s in (signal.SIGUSR1, signal.SIGUSR2)
           if signal.getsignal(s) is signal.SIG_IGN]
(run_dir / "seen.json").write_text(json.dumps({"argv": sys.argv, "cwd": os.getcwd(),
    "wandb_run_id": os.environ.get("WANDB_RUN_ID"), "ignored": ignored}))
mode = os.environ["FAKE_TRAIN_MODE"]
if mode == "done":
    (run_dir / "done").write_text("")
elif mode == "sleep":
    time.sleep(60)
sys.exit(0 if mode in ("done", "undone") else 3)
"""


@pytest.fixture
def fake_train(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """train.py's module replaced by one that records how it was started (seen.json in its run
    directory) and ends as FAKE_TRAIN_MODE says."""
    script = tmp_path / "fake_train.py"
    script.write_text(FAKE_TRAIN)
    monkeypatch.setattr(sweep, "TRAIN_MODULE", "fake_train")
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))  # where the child finds it
    monkeypatch.setenv("WANDB_RUN_ID", "shared-by-accident")
    return script


def test_run_training_runs_the_command_from_cwd_and_checks_done(
    fake_train: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = sweep.Run("SOT-512", 9, tmp_path / "ck", ("--trainer.max_steps", "5"))
    monkeypatch.setenv("FAKE_TRAIN_MODE", "done")
    sweep.run_training(run, cwd=tmp_path)
    seen = json.loads((run.run_dir / "seen.json").read_text())
    assert seen["argv"] == [str(fake_train), *run.command(sys.executable)[3:]]
    assert seen["cwd"] == str(tmp_path)
    assert seen["wandb_run_id"] is None  # each run keeps its own W&B id, never a shared one
    assert sorted(seen["ignored"]) == ["SIGUSR1", "SIGUSR2"]  # requeue signals are the parent's

    # exit status 0 without a done marker is a failure too
    for mode, status in (("undone", 0), ("fail", 3)):
        monkeypatch.setenv("FAKE_TRAIN_MODE", mode)
        other = sweep.Run("SOT-512", 10 + status, tmp_path / "ck")
        with pytest.raises(
            sweep.RunFailed, match=f"SOT-512-{10 + status}: train.py exited with status {status}"
        ):
            sweep.run_training(other, cwd=tmp_path)


def test_sigterm_reaches_the_child_and_the_job_leaves_without_result(
    fake_train: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import signal
    import threading
    import time

    monkeypatch.setenv("FAKE_TRAIN_MODE", "sleep")
    run = sweep.Run("MSS-Lin", 1, tmp_path / "ck")
    seen = run.run_dir / "seen.json"

    def terminate_when_started() -> None:
        deadline = time.monotonic() + 30
        while not seen.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.2)
        os.kill(os.getpid(), signal.SIGTERM)  # as SLURM does on requeue, preemption or scancel

    previous = signal.getsignal(signal.SIGTERM)
    threading.Thread(target=terminate_when_started, daemon=True).start()
    started = time.monotonic()
    with pytest.raises(SystemExit) as exited:
        sweep.run_training(run, cwd=tmp_path)
    assert exited.value.code == 128 + signal.SIGTERM
    assert time.monotonic() - started < 30  # the child (sleeping 60 s) was terminated
    assert signal.getsignal(signal.SIGTERM) is previous


def test_sigterm_stops_a_local_parallel_sweep_and_starts_no_queued_run(
    tmp_path: Path, tiny_data_path: Path
) -> None:
    """hydra/launcher=local_parallel runs the jobs in joblib's worker processes. A SIGTERM to
    the sweep (kill PID) ends it as Ctrl-C does: its two trainings stop, no process of it is
    left, and neither queued run (seed 2) starts. Python's default would end the sweep's process
    alone, and its workers would go on starting the runs already handed to them."""
    import signal
    import time

    root = tmp_path / "ck"
    process = subprocess.Popen(
        [sys.executable, str(REPO / "sweep.py"), "order=seed", "experiment=SOT-2048,MSS-Lin",
         "seed=1,2", f"checkpoint_root={root}", "hydra/launcher=local_parallel",
         "hydra.launcher.n_jobs=2", "--", "--config", DEBUG, "--data.init_args.data_path",
         str(tiny_data_path), "--trainer.max_steps", "1000000", "--trainer.enable_progress_bar",
         "false"],
        cwd=tmp_path, env=environment(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, start_new_session=True,  # its own process group: what is left of it is seen
    )
    first = [sweep.run_directory(root, experiment, 1) for experiment in ("SOT-2048", "MSS-Lin")]
    try:
        deadline = time.monotonic() + 240
        while not all((run / "checkpoints" / "last.ckpt").exists() for run in first):
            assert process.poll() is None and time.monotonic() < deadline, process.communicate()
            time.sleep(0.5)
        os.kill(process.pid, signal.SIGTERM)
        _, stderr = process.communicate(timeout=120)
        assert process.returncode == 130, stderr[-3000:]
        assert stderr.strip().splitlines()[-1].startswith("sweep.py: error: interrupted")
        deadline = time.monotonic() + 60
        while True:  # the workers and their trainings end too
            try:
                os.killpg(process.pid, 0)
            except ProcessLookupError:
                break
            assert time.monotonic() < deadline, "processes of the sweep are still running"
            time.sleep(0.5)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
    assert not any(sweep.run_directory(root, e, 2).exists() for e in ("SOT-2048", "MSS-Lin"))
    assert not any((run / "done").exists() for run in first)  # stopped, to resume


def test_failed_runs_are_listed_and_the_sweep_exits_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from hydra.core.utils import JobReturn, JobStatus

    runs = [sweep.Run("SOT-2048", seed, tmp_path) for seed in (1, 2)]
    results = [
        JobReturn(status=JobStatus.COMPLETED, _return_value=str(runs[0].run_dir)),
        JobReturn(
            status=JobStatus.FAILED, _return_value=sweep.RunFailed("SOT-2048-2: train.py exited")
        ),
    ]
    with pytest.raises(SystemExit) as exited:
        sweep.report_results(results, runs)
    assert exited.value.code == 1
    out, err = capsys.readouterr()
    assert out.splitlines() == [
        f"ok      SOT-2048-1  {runs[0].run_dir}",
        "FAILED  SOT-2048-2  SOT-2048-2: train.py exited",
    ]
    assert err.startswith("sweep.py: error: 1 of 2 runs failed")


def test_the_time_estimate_counts_only_the_steps_a_resumed_run_has_left(tmp_path: Path) -> None:
    """Two paper runs, one of which recorded step 10,000 in its curves.csv (MetricsHistory's
    file): 25,000 + 15,000 steps are left; a run past its budget adds nothing."""
    fresh, resumed, over = (sweep.Run("SOT-2048", seed, tmp_path) for seed in (1, 2, 3))
    for run, step in ((resumed, 10_000), (over, 30_000)):
        run.run_dir.mkdir(parents=True)
        write_curves(run.run_dir, [{"step": 20, "epoch": 0, "split": "train", "train/loss": 1.0},
                                   {"step": step, "epoch": 9, "split": "train", "train/loss": 0.5}])
    assert run_layout.recorded_step(resumed.run_dir) == 10_000
    assert run_layout.recorded_step(fresh.run_dir) == 0
    estimate = sweep.time_estimate([fresh, resumed, over])
    hours = 40_000 * sweep.MEASURED_SECONDS_PER_STEP / 3600  # under 10 h: one decimal
    assert estimate.startswith(f"estimated time: about {hours:.1f} h one after another "
                               "(40,000 steps left; 2 run(s) resume, 40,000 steps already "
                               "trained, at ")
    assert "resume" not in sweep.time_estimate([fresh])
