"""The outcome distribution at a short budget: many seeds of each experiment, how many localize f0.

    python scripts/short_budget.py --experiments SOT-2048 MSS-Lin --seeds 10
    python scripts/short_budget.py --experiments paper-experiments/beyond/X.yaml --seed-list 0 5 7
    python scripts/short_budget.py --collect-only            # rebuild the tables and the figure
    python scripts/short_budget.py --experiments SOT-2048 --seeds 2 --root checkpoints/smoke \
        -- --trainer.max_steps 4                             # another budget: another root

A short run of the paper's system localizes f0 in some seeds and collapses in others (which one
follows the dropout random stream): the answer is a distribution over seeds. Each (experiment,
seed) is one run of

    python train.py --config <experiment yaml> --config paper-experiments/presets/cpu-quick.yaml
                    --seed_everything <seed> --checkpoint_root <root> [<arguments after -->]

(cpu-quick: lr 1e-3, batch 16, 640 steps, validation every 2 epochs of 64 batches), with
OMP_NUM_THREADS=1 and MKL_NUM_THREADS=1, ``--jobs`` runs at a time (2). Experiments are names of
paper-experiments/ (``SOT-2048``) or YAML files (the run's name is the file's ``experiment:``).
Seeds: ``--seeds N`` (0 .. N-1, default 10) or ``--seed-list``. Arguments after ``--`` go to
every train.py run as they are (not --seed_everything, --checkpoint_root or --experiment).

A run marked done is skipped without starting train.py, once its recorded configuration is
checked to be this command's (else one line and exit 2: run_fingerprint.py); any other resumes
from its last.ckpt (train.py's own rule). A run that fails is reported and the others go on;
the command then exits 1. Each run's output goes to ``<run>/logs/short_budget.log`` (appended
per attempt).

Under ``--root`` (default reference-runs/short-budget), from every finished run found there:
- ``seeds.csv``: one row per experiment and seed (result_tables.SEED_COLUMNS): ``steps`` is the
  global step of the tested checkpoint (the best validation LSD; the test of train.py on the
  400 test examples); rpa, rca, within_50, within_100 in % of all frames (within_50 counts
  |error| < 50 cents per frame, strictly, so it is RPA itself; within_100 the same at 100);
  median_abs_cents and median_signed_cents (prediction minus truth, > 0 too high) over all
  frames; log_f0_corr; median_pred_hz, the median predicted f0 over all frames;
- ``summary.md``: the rule, then per experiment n, the seeds that localize (k/n, 95 % Wilson
  interval) and the median [IQR] and min - max of the median |error|; then the seeds;
- ``seeds.png``: each seed's median |error| per experiment, the 100-cent rule, k/n per strip.
A seed localizes when its test median |error| is <= 100 cents
(result_tables.LOCALIZE_MAX_MEDIAN_CENTS), a rule fixed before any result was looked at.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from tqdm import tqdm

from sotddsp.core.atomic_files import atomic_write_bytes, atomic_write_text
from sotddsp.core.command_line import (
    OneLineArgumentParser,
    UserError,
    describe_os_error,
    non_negative_int,
    one_line,
    positive_int,
    run_cli_main,
)
from sotddsp.core.result_tables import (
    DASH,
    LOCALIZE_MAX_MEDIAN_CENTS,
    SEED_COLUMNS,
    csv_text,
    paired_comparisons,
    rank_comparisons,
    render_paired_comparisons_markdown,
    render_rank_comparisons_markdown,
    render_seed_outcomes_markdown,
    seed_outcomes,
    seed_row,
)
from sotddsp.core.run_layout import (
    CONFIG_FILE,
    DONE_MARKER,
    EXIT_FAILED,
    EXIT_TERMINATED,
    EXPERIMENTS_DIR,
    LOGS_DIR,
    REPO,
    TEST_METRICS_FILE,
    experiment_config,
    known_experiments,
    run_directory,
)

DEFAULT_ROOT = REPO / "reference-runs" / "short-budget"
PRESET = EXPERIMENTS_DIR / "presets" / "cpu-quick.yaml"
RUN_LOG = "short_budget.log"  # in <run>/logs/
SEEDS_CSV, SUMMARY_MD, SEEDS_FIGURE = "seeds.csv", "summary.md", "seeds.png"
# Set by this command for every run; not accepted after "--".
RESERVED = ("--seed_everything", "--checkpoint_root", "--experiment")
# Each run: one thread, no progress bar in its log.
RUN_ENVIRONMENT = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "TQDM_DISABLE": "1",
                   "PYTHONUNBUFFERED": "1"}
RUN_ARGUMENTS = ("--trainer.enable_progress_bar", "false")
METHOD = ("Each run: `python train.py --config <experiment> --config "
          "paper-experiments/presets/cpu-quick.yaml --seed_everything <seed>` "
          "(`scripts/short_budget.py`); the budget column is read from each run's "
          "train_config.yaml. Per seed: the test of its best-validation-LSD checkpoint (steps: "
          "that checkpoint's global step); RPA, RCA and the shares within 50 and 100 cents are "
          "per frame (within 50 is RPA itself); signed error is prediction minus truth.")
RULE = (f"a seed localizes when its test median |error| is <= {LOCALIZE_MAX_MEDIAN_CENTS:g} "
        "cents (over every frame of the test split, with the run's best-validation-LSD "
        "checkpoint); the rule was fixed before any result was looked at")


@dataclass(frozen=True)
class Run:
    """One (experiment, seed): the experiment's name (its run directories'), its YAML file."""

    experiment: str
    config: Path
    seed: int

    def directory(self, root: Path) -> Path:
        return run_directory(root, self.experiment, self.seed)

    @property
    def label(self) -> str:
        return f"{self.experiment} seed {self.seed}"


def resolve_experiment(spec: str) -> tuple[str, Path]:
    """(name, YAML file) of a name of paper-experiments/ or of a path to a YAML file (named by
    its ``experiment:``)."""
    if not spec.endswith((".yaml", ".yml")) and "/" not in spec:
        if spec not in known_experiments():
            raise UserError(f"--experiments: unknown experiment {spec!r}; give one of "
                            f"{', '.join(known_experiments())} or a path to a YAML file")
        return spec, experiment_config(spec)
    path = Path(spec).resolve()
    if not path.is_file():
        raise UserError(f"--experiments: {spec}: no such file; check the path")
    try:
        config = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as error:
        raise UserError(f"--experiments: {spec}: cannot read it as YAML ({one_line(error, 120)});"
                        " fix the file") from None
    name = config.get("experiment") if isinstance(config, dict) else None
    if not isinstance(name, str) or not name or "/" in name or name.startswith("."):
        raise UserError(f"--experiments: {spec} names no experiment (its runs would go under "
                        "the base config's name); add a line 'experiment: <name>' to it")
    return name, path


def check_pass_through(arguments: Sequence[str]) -> list[str]:
    """The train.py arguments after ``--``: any but those this command sets (``RESERVED``)."""
    for argument in arguments:
        flag = argument.split("=", 1)[0]
        if flag in RESERVED:
            raise UserError(f"after --: {flag} is set by this command for every run "
                            "(use --seeds / --seed-list and --root); remove it")
    return list(arguments)


def check_writable(root: Path) -> None:
    """Create ``root`` and write (then remove) a file in it; a one-line UserError if not."""
    probe = root / f".write-test-{os.getpid()}"
    try:
        root.mkdir(parents=True, exist_ok=True)
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as error:
        reason = describe_os_error(error) or one_line(error, 120)
        raise UserError(f"--root {root}: cannot write there ({reason}); choose another "
                        "directory with --root") from None


def train_command(run: Run, root: Path, extra: Sequence[str]) -> list[str]:
    """The train.py command line of one run."""
    return [sys.executable, str(REPO / "train.py"), "--config", str(run.config),
            "--config", str(PRESET), "--seed_everything", str(run.seed),
            "--checkpoint_root", str(root), *RUN_ARGUMENTS, *extra]


class Runner:
    """Runs train.py processes, each with its log file; SIGTERM is passed on to every one."""

    def __init__(self, root: Path, extra: Sequence[str]) -> None:
        self.root, self.extra = root, list(extra)
        self.processes: set[subprocess.Popen] = set()
        self.lock = threading.Lock()
        self.stopping = False

    def run(self, run: Run) -> tuple[int, float, Path]:
        """(exit status, seconds, log file) of one run, to its end."""
        directory = run.directory(self.root)
        log_path = directory / LOGS_DIR / RUN_LOG
        log_path.parent.mkdir(parents=True, exist_ok=True)
        command = train_command(run, self.root, self.extra)
        started = time.perf_counter()
        with open(log_path, "a") as log:
            log.write(f"# {time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(command)}\n")
            log.flush()
            with self.lock:
                if self.stopping:
                    return EXIT_TERMINATED, 0.0, log_path
                process = subprocess.Popen(command, cwd=REPO, stdout=log,
                                           stderr=subprocess.STDOUT,
                                           env={**os.environ, **RUN_ENVIRONMENT})
                self.processes.add(process)
            status = process.wait()
            with self.lock:
                self.processes.discard(process)
        return status, time.perf_counter() - started, log_path

    def terminate(self) -> None:
        """Send SIGTERM to every running train.py (each saves nothing more and exits; the next
        invocation resumes them from their last.ckpt) and start no other."""
        with self.lock:
            self.stopping = True
            processes = list(self.processes)
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait()


def last_line(path: Path) -> str:
    """The last non-empty line of a log file ("" if none)."""
    try:
        lines = [line for line in path.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return ""
    return one_line(lines[-1], 200) if lines else ""


def read_metrics(directory: Path) -> dict[str, Any] | None:
    """A run's test_metrics.json, or None when it is missing or unreadable."""
    try:
        return json.loads((directory / TEST_METRICS_FILE).read_text())
    except (OSError, ValueError):
        return None


def train_runs(runs: Sequence[Run], root: Path, extra: Sequence[str], jobs: int) -> list[str]:
    """Run every run not marked done, ``jobs`` at a time; returns one line per failed run."""
    pending = [run for run in runs if not (run.directory(root) / DONE_MARKER).exists()]
    from sotddsp.model.cli import check_recorded_configurations

    check_recorded_configurations(  # a done run of another configuration is no result of this one
        [(run.label, run.directory(root), train_command(run, root, extra)[2:])
         for run in runs if run not in pending],
        fix="give this study another --root")
    for run in runs:
        if run not in pending:
            print(f"{run.label}: done already, skipped", flush=True)
    runner = Runner(root, extra)
    failures: list[str] = []
    previous = signal.getsignal(signal.SIGTERM)

    def on_sigterm(signum: int, frame: Any) -> None:
        runner.terminate()
        print("short_budget.py: terminated (SIGTERM); run the same command again to resume",
              file=sys.stderr)
        raise SystemExit(EXIT_TERMINATED)

    signal.signal(signal.SIGTERM, on_sigterm)
    executor = ThreadPoolExecutor(max_workers=jobs)
    try:
        futures = {executor.submit(runner.run, run): run for run in pending}
        with tqdm(total=len(pending), desc="runs", unit="run") as bar:
            for future in as_completed(futures):
                run = futures[future]
                status, seconds, log_path = future.result()
                metrics = read_metrics(run.directory(root)) if status == 0 else None
                if metrics is not None:
                    bar.write(f"{run.label}: {seconds / 60:.1f} min, median |error| "
                              f"{metrics.get('median_cents_error', float('nan')):.0f} cents")
                elif status == 0:
                    failures.append(f"{run.label} (train.py wrote no {TEST_METRICS_FILE}; "
                                    f"log {log_path})")
                    bar.write(f"{run.label}: FAILED, no {TEST_METRICS_FILE}; see {log_path}")
                else:
                    failures.append(f"{run.label} (exit {status}: {last_line(log_path)}; "
                                    f"log {log_path})")
                    bar.write(f"{run.label}: FAILED after {seconds / 60:.1f} min, exit {status}; "
                              f"see {log_path}")
                bar.update()
    except KeyboardInterrupt:
        runner.terminate()
        raise
    finally:
        executor.shutdown(wait=True, cancel_futures=True)
        signal.signal(signal.SIGTERM, previous)
    return failures


def budget(config: dict[str, Any]) -> str:
    """A run's recipe in words, from its train_config.yaml: steps, batch size, learning rate."""
    trainer = config.get("trainer") or {}
    data = (config.get("data") or {}).get("init_args") or {}
    optimizer = ((config.get("model") or {}).get("optimizer") or {}).get("init_args") or {}
    return (f"{trainer.get('max_steps')} steps, batch {data.get('batch_size')}, "
            f"lr {optimizer.get('lr')}")


def collect(root: Path) -> tuple[list[dict[str, Any]], dict[str, str], list[str]]:
    """From every run directory under ``root`` (``<experiment>/<run>/``): the seeds.csv rows of
    the finished ones (done marker and test_metrics.json; experiment and seed from their
    train_config.yaml), sorted by experiment and seed; each experiment's budget(s) in words;
    and one line per run directory that has not finished."""
    rows, budgets, unfinished = [], {}, []
    for directory in sorted(p for p in root.glob("*/*") if p.is_dir()):
        metrics_path = directory / TEST_METRICS_FILE
        if not (directory / DONE_MARKER).exists() or not metrics_path.is_file():
            unfinished.append(f"{directory.relative_to(root)}: not finished")
            continue
        try:
            config = yaml.safe_load((directory / CONFIG_FILE).read_text())
            experiment, seed = str(config["experiment"]), int(config["seed_everything"])
            row = seed_row(experiment, seed, json.loads(metrics_path.read_text()))
            float(row["median_abs_cents"])
        except (OSError, ValueError, TypeError, KeyError, yaml.YAMLError) as error:
            unfinished.append(f"{directory.relative_to(root)}: unreadable ({one_line(error, 120)})")
            continue
        rows.append(row)
        budgets.setdefault(experiment, []).append(budget(config))
    rows.sort(key=lambda r: (r["experiment"], r["seed"]))
    described = {}
    for experiment, recipes in budgets.items():
        distinct = sorted(set(recipes))
        described[experiment] = distinct[0] if len(distinct) == 1 else "MIXED: " + "; ".join(
            f"{recipes.count(d)} x {d}" for d in distinct)
    return rows, described, unfinished


def write_outputs(root: Path, rows: list[dict[str, Any]], budgets: dict[str, str],
                  unfinished: list[str]) -> str:
    """seeds.csv, summary.md and seeds.png under ``root``; returns the summary's text."""
    from sotddsp.model.plotting import figure_png, seed_strip_figure

    outcomes = seed_outcomes(rows)
    atomic_write_text(root / SEEDS_CSV, csv_text(SEED_COLUMNS, rows))
    intro = (f"Rule: {RULE}. The share that localizes is given with its 95 % Wilson score "
             "interval.")
    lines = ["# Short-budget outcome distribution", "", intro, "", METHOD, "",
             render_seed_outcomes_markdown(outcomes, rows, budgets)]
    comparisons = render_rank_comparisons_markdown(rank_comparisons(rows))
    if comparisons:
        lines += [("Exploratory, not the rule fixed in advance: each pair of experiments "
                   "compared by their seeds' median |error| (Mann-Whitney U, two-sided; no "
                   "correction for the number of pairs)."), "", comparisons]
    paired = render_paired_comparisons_markdown(paired_comparisons(rows))
    if paired:
        lines += [("Exploratory as well: runs of one seed in two experiments start from the same "
                   "encoder weights and draw the same batches and dropout stream "
                   "(tests/apps/test_paired_seeds.py), so each seed both ran is a pair; the "
                   "pairs compared by their median |error| (Wilcoxon signed-rank, two-sided; no "
                   "correction for the number of pairs)."), "", paired]
    missing = sorted({c for r in rows for c in SEED_COLUMNS if r.get(c) is None})
    if missing:
        lines += [(f"Some runs were tested before {', '.join(missing)} existed: shown as "
                  f"{DASH} (empty in seeds.csv)."), ""]
    if unfinished:
        lines += ["## Not finished (not counted)", "", *(f"- {u}" for u in unfinished), ""]
    summary = "\n".join(lines)
    atomic_write_text(root / SUMMARY_MD, summary)
    values = {o.experiment: [r["median_abs_cents"] for r in rows
                             if r["experiment"] == o.experiment] for o in outcomes}
    notes = {o.experiment: f"{o.localized}/{o.n} localize\n95 % CI {100 * o.low:.0f}–"
             f"{100 * o.high:.0f} %" for o in outcomes}
    seeds = {o.experiment: [int(r["seed"]) for r in rows if r["experiment"] == o.experiment]
             for o in outcomes}
    figure = seed_strip_figure(values, LOCALIZE_MAX_MEDIAN_CENTS, notes,
                               title="Short budget: each seed's test median |error| "
                                     "(grey: one seed's runs, paired)",
                               threshold_label=f"≤ {LOCALIZE_MAX_MEDIAN_CENTS:g} cents: localizes",
                               seeds=seeds)
    atomic_write_bytes(root / SEEDS_FIGURE, figure_png(figure))
    return summary


def parse(argv: Sequence[str]) -> tuple[argparse.Namespace, list[str]]:
    """The options, and the train.py arguments after the first ``--``."""
    argv = list(argv)
    split = argv.index("--") if "--" in argv else len(argv)
    parser = OneLineArgumentParser(prog="short_budget.py", description=__doc__.splitlines()[0])
    parser.add_argument("--experiments", nargs="+", metavar="NAME_OR_YAML",
                        help="paper-experiments/ names or YAML files (required unless "
                             "--collect-only)")
    seeds = parser.add_mutually_exclusive_group()
    seeds.add_argument("--seeds", type=positive_int, default=10, metavar="N",
                       help="seeds 0 .. N-1 (default 10)")
    seeds.add_argument("--seed-list", type=non_negative_int, nargs="+", metavar="SEED",
                       help="these seeds instead")
    parser.add_argument("--jobs", type=positive_int, default=2, help="runs at a time (2)")
    parser.add_argument("--root", type=Path, default=DEFAULT_ROOT,
                        help="where the runs and the results go (reference-runs/short-budget)")
    parser.add_argument("--collect-only", action="store_true",
                        help="train nothing: rebuild seeds.csv, summary.md and seeds.png from "
                             "the finished runs under --root")
    args = parser.parse_args(argv[:split])
    return args, check_pass_through(argv[split + 1:])


def main(argv: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """Run the study (or only collect it); returns the seeds.csv rows."""
    args, extra = parse(sys.argv[1:] if argv is None else argv)
    root = args.root.resolve()
    failures: list[str] = []
    if args.collect_only:
        if extra or args.experiments:
            raise UserError("--collect-only trains nothing: it takes no --experiments and no "
                            "train.py arguments after --; remove them")
        if not root.is_dir():
            raise UserError(f"--root {root}: no such directory; run the study first or give "
                            "the right --root")
    else:
        if not args.experiments:
            raise UserError("--experiments: give at least one experiment (e.g. --experiments "
                            "SOT-2048 MSS-Lin), or --collect-only")
        experiments = [resolve_experiment(spec) for spec in args.experiments]
        names = [name for name, _ in experiments]
        duplicated = sorted({n for n in names if names.count(n) > 1})
        if duplicated:
            raise UserError(f"--experiments: {', '.join(duplicated)} given twice; give each "
                            "experiment once")
        seeds = args.seed_list if args.seed_list else list(range(args.seeds))
        if len(set(seeds)) != len(seeds):
            raise UserError(f"--seed-list: {sorted(seeds)} repeats a seed; give each seed once")
        check_writable(root)
        # seed-major: stopped early, every experiment has about as many seeds as the others
        runs = [Run(name, config, seed) for seed in seeds for name, config in experiments]
        failures = train_runs(runs, root, extra, args.jobs)
    rows, budgets, unfinished = collect(root)
    if rows:
        print(write_outputs(root, rows, budgets, unfinished), flush=True)
        print(f"wrote {root / SEEDS_CSV}, {root / SUMMARY_MD}, {root / SEEDS_FIGURE}")
    if failures:
        print(f"short_budget.py: {len(failures)} run(s) failed: " + "; ".join(failures),
              file=sys.stderr)
        sys.exit(EXIT_FAILED)
    if not rows:
        raise UserError(f"--root {root}: no finished run there; run the study first")
    return rows


if __name__ == "__main__":
    run_cli_main(main)
