"""Run the paper's grid of trainings (experiments x seeds) here or on SLURM; hydra only launches.

    python sweep.py                                     # prints the paper's grid; starts nothing
    python sweep.py --yes                               # 7 experiments x 5 seeds, one after another
    python sweep.py experiment=SOT-2048,MSS-Lin seed=42,123   # an explicit grid starts at once
    python sweep.py experiment=SOT-2048 -- --trainer.max_steps 100   # train.py arguments after --
    python sweep.py --yes hydra/launcher=local_parallel hydra.launcher.n_jobs=2
    python sweep.py --yes hydra/launcher=slurm_gpu hydra.launcher.partition=a100
    python sweep.py --dry-run                           # print the commands and sbatch script only
    python sweep.py --help                              # the grid syntax and the launchers
    sotddsp-sweep ...                                   # installed: the same commands

Hydra's multirun expands the grid and hands each job to a launcher; the job then runs

    python -m sotddsp.apps.train --config <configs>/<experiment>.yaml <args...>
                    --experiment <experiment> --seed_everything <seed> --checkpoint_root <root>

(train.py's command) in a child process, so the model's configuration lives only in the
experiment YAML files (package data, ``paper-experiments/`` in a checkout): the hydra config
(``sweep_conf/`` beside this module) holds experiment, seed, checkpoint_root, args, dry_run,
confirm and the launcher.
Runs land in `<root>/<experiment>/<experiment>-<seed>/`; `<root>` is `checkpoint_root=` when
given, else the one train.py's YAML files set (`checkpoints`, or a preset's own root such as
`checkpoints/cpu-quick`), and it is always passed to train.py explicitly, so that the sweep and
train.py agree on it. Without `--yes` and without an explicit `experiment=` or `seed=`, the
default grid is only printed, with its number of runs and a time estimate (exit 0): a bare
`python sweep.py` never starts days of work. Runs with a `done` marker are left out
of the grid before anything is launched; any other run resumes from its `last.ckpt` (train.py
does that). On SLURM, a requeued, preempted or timed-out job runs the same command again and so
resumes too (see `run_training`).

A child process rather than `train.main` in this one: every run starts from a clean interpreter
(train.py sets process-wide state: W&B environment variables, RNG states, matmul precision,
logging, signal handlers), a crash ends one run and not the sweep, and the command --dry-run
prints is exactly what runs. It costs seconds per run, nothing next to a training.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shlex
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import hydra
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.utils import JobReturn, JobStatus
from hydra.utils import get_original_cwd
from omegaconf import DictConfig, OmegaConf

from sotddsp.core.command_line import option_values
from sotddsp.core.run_layout import (
    CONFIG_FILE,
    DONE_MARKER,
    EXIT_FAILED,
    EXIT_USER_ERROR,
    FINGERPRINT_FILE,
    beyond_experiments,
    configured_checkpoint_root,
    configured_value,
    experiment_config,
    known_experiments,
    recorded_step,
    run_directory,
)

# train.py's command, as a module of the installed package: the same in a checkout and elsewhere.
TRAIN_MODULE = "sotddsp.apps.train"
# sweep.py's hydra config (package data).
CONFIG_DIR = Path(__file__).resolve().parent / "sweep_conf"
# train.py options that the sweep sets itself, after the user's args, so they always win
SWEEP_OWNED_OPTIONS = ("--experiment", "--seed_everything", "--checkpoint_root", "--resume")
# per-run W&B identities: a sweep must let train.py choose them (<run>/wandb_run_id)
PER_RUN_ENVIRONMENT = ("WANDB_RUN_ID", "WANDB_NAME")
EXIT_RUN_FAILED = EXIT_FAILED
# The overrides that name a grid: with one of them the sweep starts without --yes.
GRID_KEYS = ("experiment", "seed")
# A training step at the paper's settings (batch 64, validation every 5 epochs included) on the
# 2-core CPU this project was developed on: one paper run of 25,000 steps took 2.85 h
# (docs/RESULTS.md, "500 real steps"). Only for the time estimate a sweep prints.
MEASURED_SECONDS_PER_STEP = 2.85 * 3600 / 25_000

log = logging.getLogger("sweep")
# The name errors start with: the command as started (``cli``): sweep.py, or sotddsp-sweep.
_program = "sweep.py"


class SweepError(ValueError):
    """A mistake in the sweep's settings: reported as one line, exit 2."""


class RunFailed(RuntimeError):
    """A training run ended without its `done` marker (``returncode``: train.py's exit status).

    The job raises it and the sweeper catches it (both import it from ``sotddsp.apps.sweep``).
    """

    def __init__(self, message: str, returncode: int | None = None) -> None:
        super().__init__(message)
        self.returncode = returncode




def _owned_option(arg: str) -> str | None:
    for option in SWEEP_OWNED_OPTIONS:
        if arg == option or arg.startswith(option + "="):
            return option
    return None


@dataclass(frozen=True)
class Run:
    """One training run of the grid: which experiment, which seed, where, with which extra args."""

    experiment: str
    seed: int
    checkpoint_root: Path  # absolute
    args: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        paper, beyond = known_experiments(), beyond_experiments()
        if self.experiment not in paper + beyond:
            raise SweepError(
                f"unknown experiment {self.experiment!r}: choose among the paper's "
                f"{', '.join(paper)} or, beyond the paper, {', '.join(beyond)}"
            )
        if not self.checkpoint_root.is_absolute():
            raise SweepError(f"checkpoint_root must be absolute here, got {self.checkpoint_root}")
        for arg in self.args:
            option = _owned_option(arg)
            if option is not None:
                key = {
                    "--experiment": "experiment",
                    "--seed_everything": "seed",
                    "--checkpoint_root": "checkpoint_root",
                }.get(option)
                fix = (
                    f"set {key}=... on the sweep's command line"
                    if key
                    else "the sweep always resumes"
                )
                raise SweepError(f"args may not contain {option} ({fix}): got {arg!r}")

    @property
    def name(self) -> str:
        return f"{self.experiment}-{self.seed}"

    @property
    def max_steps(self) -> int | None:
        """The step budget: the last --trainer.max_steps of args, else the YAML files' (None if
        not an integer)."""
        given = option_values(self.args, "--trainer.max_steps")
        configs = [experiment_config(self.experiment), *option_values(self.args, "--config")]
        value = given[-1] if given else configured_value(configs, "trainer.max_steps")
        try:
            return int(value)
        except (TypeError, ValueError):
            return None

    @property
    def run_dir(self) -> Path:
        return run_directory(self.checkpoint_root, self.experiment, self.seed)

    def is_done(self) -> bool:
        return (self.run_dir / DONE_MARKER).exists()

    def command(self, python: str) -> list[str]:
        """The train.py command line; the sweep-owned options come last, so they win."""
        return [
            python,
            "-m",
            TRAIN_MODULE,
            "--config",
            str(experiment_config(self.experiment)),
            *self.args,
            "--experiment",
            self.experiment,
            "--seed_everything",
            str(self.seed),
            "--checkpoint_root",
            str(self.checkpoint_root),
        ]


def run_from_config(cfg: DictConfig, cwd: Path) -> Run:
    """The run a job's config describes; relative paths are taken from ``cwd``. Without a
    ``checkpoint_root``, the one train.py's YAML files set (base.yaml, the experiment's file,
    then every ``--config`` of ``args``: a preset's own root)."""
    seed = cfg.seed
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise SweepError(f"seed must be an integer, got {seed!r}")
    args = cfg.args
    if isinstance(args, str) or not OmegaConf.is_list(args):
        raise SweepError(
            f"args must be a list, e.g. args=[--trainer.max_steps,100] (or put train.py's "
            f"arguments after --), got {args!r}"
        )
    args = tuple(str(a) for a in args)
    experiment = str(cfg.experiment).removeprefix("beyond/")
    if cfg.checkpoint_root is None:
        configs = [experiment_config(experiment),
                   *(cwd / c for c in option_values(args, "--config"))]
        root = Path(configured_checkpoint_root(configs)).expanduser()
    else:
        root = Path(str(cfg.checkpoint_root)).expanduser()
    return Run(
        experiment=experiment,
        seed=seed,
        checkpoint_root=root if root.is_absolute() else cwd / root,
        args=args,
    )


def _child_environment() -> dict[str, str]:
    env = dict(os.environ)
    for name in PER_RUN_ENVIRONMENT:
        if env.pop(name, None) is not None:
            log.warning(
                "ignoring %s from the environment: each run keeps its own (see <run>/wandb_run_id)",
                name,
            )
    return env


def _signals_for_the_parent() -> tuple[signal.Signals, ...]:
    """submitit's requeue signal (USR2 unless SUBMITIT_PREEMPT_SIGNAL says otherwise) and
    Lightning's (USR1): in a SLURM job, requeueing is submitit's business, in this process."""
    import submitit

    return tuple({getattr(signal, "SIG" + submitit.JobEnvironment.USR_SIG), signal.SIGUSR1})


def run_training(run: Run, cwd: Path) -> None:
    """Run train.py for ``run`` in a child process, from ``cwd``; raise RunFailed unless it is done.

    The child ignores submitit's requeue signal (USR2) and Lightning's (USR1): in a SLURM job
    this process handles USR2 (submitit's Checkpointable protocol: hydra-submitit-launcher's
    `checkpoint()` resubmits the same call, submitit `scontrol requeue`s the job and exits; the
    requeued job runs the same command, which resumes from last.ckpt), and Lightning never
    writes its own hpc_ckpt_*.ckpt nor requeues a second time. A SIGTERM (`scontrol requeue`,
    preemption, scancel) is passed to the child and then this process exits without a result,
    so the job is not reported finished while SLURM runs it again.
    """
    command = run.command(sys.executable)
    log.info("%s: %s", run.name, shlex.join(command))
    terminated: list[int] = []
    ignored = _signals_for_the_parent()

    def ignore_requeue_signals() -> None:  # in the child, before exec: SIG_IGN survives exec
        for signum in ignored:
            signal.signal(signum, signal.SIG_IGN)

    # preexec_fn only sets signal dispositions: no lock a forked child could wait for
    process = subprocess.Popen(
        command, cwd=cwd, env=_child_environment(), preexec_fn=ignore_requeue_signals  # noqa: PLW1509
    )

    def on_sigterm(signum: int, frame: Any) -> None:
        terminated.append(signum)
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)

    in_main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, on_sigterm) if in_main_thread else None
    try:
        returncode = process.wait()
    finally:
        if in_main_thread:
            signal.signal(signal.SIGTERM, previous)
        if process.poll() is None:  # leaving early: KeyboardInterrupt, or submitit's requeue exit
            process.terminate()
            try:
                process.wait(timeout=120)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
    if run.is_done():
        return
    if terminated:
        log.warning("%s: terminated (SIGTERM); it resumes from last.ckpt when run again", run.name)
        raise SystemExit(128 + signal.SIGTERM)
    raise RunFailed(
        f"{run.name}: train.py exited with status {returncode} and the run is not done "
        f"({run.run_dir})",
        returncode,
    )


@hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="sweep")
def main(cfg: DictConfig) -> str:
    """One job of the sweep (hydra's task function). Returns the run directory."""
    cwd = Path(get_original_cwd())
    run = run_from_config(cfg, cwd)
    run_training(run, cwd)
    return str(run.run_dir)


def _fail(message: str, status: int = EXIT_USER_ERROR) -> NoReturn:
    print(f"{_program}: error: {message}", file=sys.stderr)
    sys.exit(status)


def sbatch_script(launcher_config: DictConfig, n_jobs: int) -> str:
    """The sbatch script that hydra-submitit-launcher's SLURM launcher submits for ``n_jobs``
    jobs (one job array when n_jobs > 1), built by submitit's own script builder, unsubmitted."""
    from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf
    from submitit.slurm.slurm import SlurmExecutor

    class _UnsubmittingSlurmExecutor(SlurmExecutor):
        @classmethod
        def affinity(cls) -> int:  # builds scripts where no srun is installed
            return 1

    params = OmegaConf.to_container(launcher_config, resolve=True)
    assert isinstance(params, dict)
    params.pop("_target_", None)
    executor = _UnsubmittingSlurmExecutor(
        params.pop("submitit_folder"), max_num_timeout=params.pop("max_num_timeout")
    )
    generic = set(OmegaConf.structured(BaseQueueConf).keys())
    # as submitit.AutoExecutor: generic names translated, None means unset
    executor.update_parameters(
        **executor._convert_parameters(
            {k: v for k, v in params.items() if k in generic and v is not None}
        )
    )
    executor.update_parameters(
        **{k: v for k, v in params.items() if k not in generic and v is not None}
    )
    if n_jobs > 1:
        executor.parameters["map_count"] = n_jobs
    return executor._make_submission_file_text(executor._submitit_command_str, uid="dry-run")


def _is_slurm(launcher: Any) -> bool:
    from hydra_plugins.hydra_submitit_launcher.submitit_launcher import SlurmLauncher

    return isinstance(launcher, SlurmLauncher)


def _runs_in_local_workers(launcher: Any) -> bool:
    """Whether the launcher runs the jobs in worker processes on this machine (joblib's)."""
    from hydra_plugins.hydra_joblib_launcher.joblib_launcher import JoblibLauncher

    return isinstance(launcher, JoblibLauncher)


@contextlib.contextmanager
def sigterm_stops_the_workers(enabled: bool) -> Iterator[None]:
    """With jobs in local worker processes (``enabled``), a SIGTERM to this process stops the
    sweep as Ctrl-C does: it raises KeyboardInterrupt here, joblib stops its workers and their
    trainings, and no queued run starts (each resumes from its last.ckpt when the same command
    runs again). Python's default would end this process alone, and the orphaned workers would
    go on starting the runs already handed to them."""
    if not enabled or threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def sweep_skipping_done(self: BasicSweeper, arguments: list[str]) -> list[Sequence[JobReturn]]:
    """The sweep of ``hydra_plugins.sot_sweep.SkipDoneSweeper`` (``self``): hydra's basic sweep
    (the cartesian product of the values given), which first drops the runs that are done,
    checks the grid (experiment names, args, distinct run directories), and prints the plan
    instead of launching when ``dry_run`` is set."""
    assert self.config is not None and self.launcher is not None
    assert self.hydra_context is not None
    parser = OverridesParser.create(config_loader=self.hydra_context.config_loader)
    overrides = parser.parse_overrides([*self._parse_config(), *arguments])
    grid = [job for batch in self.split_arguments(overrides, None) for job in batch]
    cwd = Path.cwd()
    todo: list[tuple[list[str], Run]] = []
    done: list[Run] = []
    seen: set[Path] = set()
    grid_seeds: list[int] = []
    for job_overrides in grid:
        job_config = self.hydra_context.config_loader.load_sweep_config(
            self.config, job_overrides
        )
        try:
            run = run_from_config(job_config, cwd)
        except SweepError as error:
            _fail(str(error))
        if run.run_dir in seen:
            _fail(
                f"two jobs would write {run.run_dir} (args differ but experiment, seed and "
                "checkpoint_root do not): give them different checkpoint_root values"
            )
        seen.add(run.run_dir)
        grid_seeds.append(run.seed)
        if run.is_done():
            done.append(run)
        else:
            todo.append((job_overrides, run))
    check_done_runs(done)
    if done:
        log.info("done, skipped: %s", " ".join(run.name for run in done))
    try:
        todo = launch_order(todo, self.config.order, grid_seeds)
    except SweepError as error:
        _fail(str(error))
    if self.config.dry_run:
        _print_plan(self, [run for _, run in todo], done)
        return []
    if not (self.config.confirm or names_a_grid(parser.parse_overrides(arguments))):
        print_grid_only(self, overrides, [run for _, run in todo], done)
        return []
    if not todo:
        print(f"nothing to launch: the {len(grid)} runs are done")
        return []
    sweep_dir = Path(self.config.hydra.sweep.dir)
    sweep_dir.mkdir(parents=True, exist_ok=True)
    OmegaConf.save(self.config, sweep_dir / "multirun.yaml")
    from submitit.core.utils import FailedJobError, UncompletedJobError

    size = _batch_size(self, len(todo))
    returns: list[Sequence[JobReturn]] = []
    for start in range(0, len(todo), size):
        batch = [job_overrides for job_overrides, _ in todo[start : start + size]]
        try:
            with sigterm_stops_the_workers(_runs_in_local_workers(self.launcher)):
                returns.append(self.launcher.launch(batch, initial_job_idx=start))
        except (FailedJobError, UncompletedJobError) as error:  # a job died without a result
            print(error, file=sys.stderr)
            _fail(
                f"a job ended without a result (logs in {sweep_dir / '.submitit'}); the "
                "sweep's other jobs may still run (squeue): when they are over, run the same "
                "command again: finished runs are skipped, the others resume",
                EXIT_RUN_FAILED,
            )
    report_results([r for batch in returns for r in batch], [run for _, run in todo])
    return returns


def launch_order(
    todo: list[tuple[list[str], Run]], order: str, grid_seeds: Sequence[int]
) -> list[tuple[list[str], Run]]:
    """The jobs in the order they are launched. ``order=experiment`` keeps hydra's (each
    experiment's seeds in turn, experiments in the grid's order); ``order=seed`` takes each seed
    in turn, in the order of ``grid_seeds`` (the grid's, done runs included), and within a seed
    the experiments in the grid's order: every experiment's seed 42 before any seed 123. With a
    launcher that runs n at a time, the first n of this order start first. A stable reordering:
    the same runs, nothing else."""
    if order == "experiment":
        return todo
    if order != "seed":
        raise SweepError(f"order must be 'experiment' or 'seed', got {order!r}")
    rank = {seed: index for index, seed in enumerate(dict.fromkeys(grid_seeds))}
    return sorted(todo, key=lambda job: rank[job[1].seed])


def check_done_runs(done: list[Run]) -> None:
    """A done run is skipped only if it is a run of the configuration its command gives now (as
    train.py would check it, run_fingerprint.py); else one line and exit 2, before anything is
    launched. Loads train.py's parser only when a done run records a configuration."""
    if not any((run.run_dir / name).exists()
               for run in done for name in (FINGERPRINT_FILE, CONFIG_FILE)):
        return  # train.py's parser (lightning) is loaded only when there is something to check
    from sotddsp.core.command_line import UserError
    from sotddsp.model.cli import check_recorded_configurations

    try:
        check_recorded_configurations(
            [(run.name, run.run_dir, run.command(sys.executable)[3:]) for run in done],
            fix="give the sweep another checkpoint_root=, or restart that run alone with "
                "train.py --resume never",
        )
    except UserError as error:
        _fail(str(error))


def names_a_grid(overrides: Sequence[Any]) -> bool:
    """Whether the command line's hydra overrides set one of ``GRID_KEYS`` (``experiment=...``)."""
    return any(override.key_or_group in GRID_KEYS for override in overrides)


def time_estimate(runs: Sequence[Run]) -> str:
    """The time of ``runs`` one after another, from the steps each has left (its step budget
    less the steps its curves.csv records: a run that resumes has come that far) at the step
    time measured at the paper's settings on the development CPU (``MEASURED_SECONDS_PER_STEP``)."""
    budgets = [run.max_steps for run in runs]
    done = [recorded_step(run.run_dir) if budget is not None else 0
            for run, budget in zip(runs, budgets, strict=True)]
    left = [max(budget - steps, 0) for budget, steps in zip(budgets, done, strict=True)
            if budget is not None]
    hours = sum(left) * MEASURED_SECONDS_PER_STEP / 3600
    amount = f"{hours:.0f} h" if hours >= 10 else f"{hours:.1f} h" if hours >= 1 else \
        f"{hours * 60:.0f} min"
    unknown = sum(s is None for s in budgets)
    resumed = sum(1 for steps in done if steps > 0)
    return (
        f"estimated time: about {amount} one after another"
        + (f" plus {unknown} runs of unknown budget" if unknown else "")
        + f" ({sum(left):,} steps"
        + (f" left; {resumed} run(s) resume, {sum(done):,} steps already trained"
           if resumed else "")
        + f", at {MEASURED_SECONDS_PER_STEP:.2f} s a step, "
        "measured at the paper's settings on the 2-core development CPU, docs/RESULTS.md; an "
        "estimate: other batch sizes, machines and parallel launchers differ)"
    )


def print_grid_only(
    self: BasicSweeper, overrides: Sequence[Any], todo: list[Run], done: list[Run]
) -> None:
    """The default grid, its number of runs and a time estimate, and how to start it."""
    axes = [
        f"{o.key_or_group} = {', '.join(o.sweep_string_iterator())}"
        for o in overrides
        if o.is_sweep_override()
    ]
    roots = sorted({str(run.checkpoint_root) for run in (*todo, *done)})
    launcher = self.config.hydra.runtime.choices.get("hydra/launcher", "basic")
    print(f"the default grid: {' x '.join(axes) or 'one run'}")
    print(
        f"{len(todo) + len(done)} runs under {', '.join(roots)}: {len(todo)} to launch, "
        f"{len(done)} done; launcher: {launcher}"
    )
    print(time_estimate(todo))
    print(
        "nothing was started: add --yes to start this grid, or name one "
        "(experiment=SOT-2048 seed=42,123); --dry-run prints the commands; --help lists the "
        "launchers"
    )


def _batch_size(self: BasicSweeper, n_runs: int) -> int:
    return self.max_batch_size or n_runs


def _print_plan(self: BasicSweeper, todo: list[Run], done: list[Run]) -> None:
    print(
        f"# runs to launch: {len(todo)}; done, skipped: {len(done)}"
        + (f" ({' '.join(run.name for run in done)})" if done else "")
    )
    print(f"# {time_estimate(todo)}")
    for run in todo:
        print(shlex.join(run.command(sys.executable)))
    if todo and _is_slurm(self.launcher):
        n_jobs = min(len(todo), _batch_size(self, len(todo)))
        first = "the first batch of " if n_jobs < len(todo) else ""
        print(
            f"# sbatch script submitted for {first}"
            f"{n_jobs} run{'s (one job array)' if n_jobs > 1 else ''}:"
        )
        print(sbatch_script(self.config.hydra.launcher, n_jobs))


def report_results(results: list[JobReturn], runs: list[Run]) -> None:
    """Print one line per run; exit 1 (one line) if any failed, naming those that train.py
    rejected."""
    failed = 0
    rejected: list[str] = []
    for result, run in zip(results, runs):
        if result.status == JobStatus.COMPLETED:
            print(f"ok      {run.name}  {run.run_dir}")
        else:
            failed += 1
            error = result._return_value
            if isinstance(error, RunFailed) and error.returncode == EXIT_USER_ERROR:
                rejected.append(run.name)
            print(f"FAILED  {run.name}  {error}")
    if rejected:
        _fail(
            f"{', '.join(rejected)}: train.py rejected its arguments (its error is above): "
            "fix them, then run the sweep again",
            EXIT_RUN_FAILED,
        )
    if failed:
        _fail(
            f"{failed} of {len(runs)} runs failed (see above); run the same command again: "
            "finished runs are skipped, the others resume",
            EXIT_RUN_FAILED,
        )


def _hydra_quoted(value: str) -> str:
    """``value`` as a quoted string of hydra's override grammar, kept verbatim through OmegaConf:
    backslashes are escaped only before a quote or the closing quote, `${` is not interpolated."""
    value = re.sub(r"(\\*)\$\{", lambda m: m.group(1) * 2 + "\\${", value)
    value = re.sub(r"(\\*)'", lambda m: m.group(1) * 2 + "\\'", value)
    value = re.sub(r"(\\+)$", lambda m: m.group(1) * 2, value)
    return f"'{value}'"


FLAGS = {"--dry-run": "dry_run=true", "--yes": "confirm=true"}


def hydra_arguments(argv: list[str]) -> list[str]:
    """sweep.py's command line as hydra overrides: `--dry-run` becomes `dry_run=true`, `--yes`
    `confirm=true`, and the arguments after `--` become `args=[...]`, passed verbatim to every
    train.py."""
    head, tail = (argv, None)
    if "--" in argv:
        head, tail = argv[: argv.index("--")], argv[argv.index("--") + 1 :]
    overrides = [FLAGS.get(arg, arg) for arg in head]
    if tail is not None:
        if any(arg.startswith(("args=", "+args=", "++args=")) for arg in head):
            raise SweepError("give train.py's arguments either after -- or as args=[...], not both")
        overrides.append(f"args=[{','.join(_hydra_quoted(arg) for arg in tail)}]")
    return overrides


HELP = """\
usage: {program} [--yes] [--dry-run] [experiment=A,B,...] [seed=S,T,...]
       {indent} [checkpoint_root=DIR] [hydra/launcher=NAME] [hydra.launcher.KEY=VALUE ...]
       {indent} [-- train.py arguments ...]

Runs train.py over a grid of experiments x seeds, one run per combination; each run lands in
<checkpoint_root>/<experiment>/<experiment>-<seed>/. Runs already done are skipped, the others
resume from their last.ckpt: after a failure, run the same command again.

The grid (hydra's override syntax):
  experiment=SOT-2048,MSS-Lin   comma-separated values (the paper's experiments: {experiments};
                                beyond the paper, paper-experiments/beyond/: {beyond})
  seed=42,123  seed=range(1,6)  every combination of the values given runs
  (default: the paper's grid, {default_grid})
  order=experiment              launch order: each experiment's seeds in turn (default), or
  order=seed                    each seed's experiments in turn (every seed 42 before any 123)
  Without --yes and without experiment= or seed=, the default grid is printed with its number
  of runs and a time estimate, and nothing starts.

Options:
  --yes                    start the default grid
  --dry-run                print the train.py commands (and the sbatch script); start nothing
  -- ARGS...               train.py arguments for every run, verbatim, e.g.
                           -- --config paper-experiments/presets/cpu-quick.yaml
  args=[ARG,ARG]           the same in hydra's list syntax
  checkpoint_root=DIR      where runs go (default: train.py's: checkpoints/, or a preset's root)
  -h, --help               this help;  --hydra-help: hydra's own options

Launchers (hydra/launcher=NAME):
{launchers}
Any launcher setting on the command line: hydra.launcher.partition=a100 (see docs/GUIDE.md)."""


def help_text() -> str:
    """sweep.py's --help: the grid syntax, the default grid and the launchers that exist (hydra's
    own and its plugins', and sweep_conf/hydra/launcher/*.yaml with their first comment line)."""
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    config_dir = CONFIG_DIR
    with initialize_config_dir(config_dir=str(config_dir), version_base="1.3"):
        names = GlobalHydra.instance().config_loader().get_group_options("hydra/launcher")
    default = OmegaConf.load(config_dir / "sweep.yaml")
    chosen = next(
        (str(d).split(":", 1)[1].strip() for d in default.defaults
         if str(d).startswith("override hydra/launcher")),
        "basic",
    )
    lines = []
    for name in names:
        own = config_dir / "hydra" / "launcher" / f"{name}.yaml"
        about = "an installed hydra launcher plugin"
        if own.is_file():
            comment = own.read_text().splitlines()[0]
            about = comment.lstrip("# ").strip() if comment.startswith("#") else about
        elif name == "basic":
            about = "hydra's own: one run at a time, here"
        lines.append(f"  {name:<16} {about}{'  (default)' if name == chosen else ''}")
    grid = default.hydra.sweeper.params
    program = "python sweep.py" if _program == "sweep.py" else _program
    return HELP.format(
        program=program,
        indent=" " * len(program),
        experiments=", ".join(known_experiments()),
        beyond=", ".join(beyond_experiments()),
        default_grid=f"experiment={grid.experiment} seed={grid.seed}",
        launchers="\n".join(lines),
    )


def cli() -> None:
    """Entry point: `python sweep.py [--yes] [--dry-run] [hydra overrides] [-- train.py
    arguments]`; `--help` prints ``help_text()``."""
    global _program
    _program = Path(sys.argv[0]).name
    head = sys.argv[1:sys.argv.index("--")] if "--" in sys.argv else sys.argv[1:]
    if "--help" in head or "-h" in head:
        print(help_text())
        return
    try:
        sys.argv = [sys.argv[0], *hydra_arguments(sys.argv[1:])]
    except SweepError as error:
        _fail(str(error))
    try:
        main()
    except KeyboardInterrupt:
        _fail("interrupted (Ctrl-C or SIGTERM); run the same command again: finished runs are "
              "skipped, the others resume from their last.ckpt", 130)


if __name__ == "__main__":
    cli()
