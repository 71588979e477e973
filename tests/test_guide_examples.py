"""Every example command of docs/GUIDE.md that trains runs here, at a tiny budget, and never
touches another run's directory.

The commands are read from the GUIDE's ```bash blocks (``python train.py ...`` and
``python sweep.py ...`` lines), so the GUIDE and this test cannot drift apart. They run from a
workspace that holds only ``paper-experiments/`` (a link), as a user runs them from a checkout,
so their relative roots (``checkpoints/...``) land inside it.

- Where runs land: no run directory may be claimed by two examples of different configurations
  (their fingerprints, run_fingerprint.py, resolved as the GUIDE writes them, before any budget
  is appended). train.py itself would refuse the second one.
- ``train.py`` examples run in this process (``train.main``) with ``entrypoints.tiny_budget``
  and batches of 8 appended; each may write only its own run directory: every other file of
  the workspace stays byte-identical, and a run already done stays untouched.
- ``sweep.py`` examples that train (``--yes``, or an ``experiment=``/``seed=`` of their own) run
  as dry runs in one child process, one after another (hydra in-process, cleared between them);
  the first train.py command each plans runs as above (the others differ only in experiment and
  seed). Those that start nothing (the bare command, ``--dry-run``, ``--help``) are
  tests/test_sweep.py's.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
from pathlib import Path

import pytest
from helpers.entrypoints import REPO, run_workspace, start_python, tiny_budget, tree_digest

from sotddsp.apps import sweep, train
from sotddsp.apps.sweep import SWEEP_OWNED_OPTIONS
from sotddsp.core.command_line import option_values
from sotddsp.core.run_fingerprint import fingerprint_of
from sotddsp.core.run_layout import DONE_MARKER, run_directory
from sotddsp.model.cli import config_parser, resolve_command

GUIDE = REPO / "docs" / "GUIDE.md"
SMALL_BATCHES = ["--data.init_args.batch_size", "8", "--data.init_args.batch_size_val", "8"]

SWEEPS_IN_ONE_PROCESS = """
import contextlib, io, json, sys
from hydra.core.global_hydra import GlobalHydra
from sotddsp.apps import sweep
outcomes = []
for argv in json.loads(sys.argv[1]):
    sys.argv, out, code = ["sweep.py", *argv], io.StringIO(), 0
    with contextlib.redirect_stdout(out):
        try:
            sweep.cli()
        except SystemExit as exited:
            code = exited.code
    GlobalHydra.instance().clear()
    outcomes.append({"code": code, "stdout": out.getvalue()})
print("OUTCOMES " + json.dumps(outcomes))
"""


def guide_commands(program: str) -> list[list[str]]:
    """The arguments of every ``python <program> ...`` line of the GUIDE's bash blocks, as the
    shell splits them (comments dropped)."""
    blocks = re.findall(r"```bash\n(.*?)```", GUIDE.read_text(), flags=re.DOTALL)
    return [shlex.split(line, comments=True)[2:]
            for block in blocks for line in block.splitlines()
            if line.startswith(f"python {program} ")]


def _sweep_head(argv: list[str]) -> list[str]:
    return argv[: argv.index("--")] if "--" in argv else argv


def sweep_trains(argv: list[str]) -> bool:
    """Whether a sweep.py command line starts runs (sweep.py's own rule: --yes, or a grid of its
    own, and no --dry-run or --help)."""
    head = _sweep_head(argv)
    if {"--dry-run", "--help", "-h"} & set(head):
        return False
    return "--yes" in head or any(re.match(r"\+*(experiment|seed)=", arg) for arg in head)


def _run_dir(parser, args: list[str], cwd: Path) -> Path:
    """Where a train.py command line's run lands (absolute): a sweep's commands end with the
    three options that say it, others are resolved by train.py's parser."""
    given = [option_values(args, option)[-1:] for option in SWEEP_OWNED_OPTIONS[:3]]
    if all(given):
        (experiment,), (seed,), (root,) = given
    else:
        config = parser.parse_args(args)
        experiment, seed, root = config.experiment, config.seed_everything, config.checkpoint_root
    return (cwd / run_directory(root, experiment, int(seed))).resolve()


def test_the_guide_has_training_examples() -> None:
    trains = guide_commands("train.py")
    sweeps = guide_commands("sweep.py")
    assert len(trains) >= 4 and any("presets/cpu-quick.yaml" in " ".join(a) for a in trains)
    assert any(sweep_trains(a) for a in sweeps) and [] in sweeps  # the bare command starts nothing
    assert not sweep_trains([]) and sweep_trains(["--yes"]) and sweep_trains(["seed=1"])
    assert not sweep_trains(["--dry-run", "experiment=SOT-2048"])


def _in_workspace(args: list[str], twin: Path, workspace: Path) -> list[str]:
    """A command planned from the twin workspace, with its --checkpoint_root in ``workspace``."""
    i = len(args) - 1 - args[::-1].index("--checkpoint_root")
    root = workspace / Path(args[i + 1]).relative_to(twin)
    return [*args[: i + 1], str(root), *args[i + 2 :]]


def _run_example(name: str, args: list[str], budget: list[str], parser, workspace: Path) -> None:
    """``train.main(args + budget)``; it may write only its own run directory (nothing at all
    when that run is already done)."""
    run_dir = _run_dir(parser, args, workspace)
    before = tree_digest(workspace / "checkpoints")
    was_done = (run_dir / DONE_MARKER).exists()
    train.main([*args, *budget])
    after = tree_digest(workspace / "checkpoints")
    touched = sorted(path for path in set(before) | set(after)
                     if before.get(path) != after.get(path)
                     and (was_done or not Path(path).resolve().is_relative_to(run_dir)))
    assert touched == [], f"{name} {shlex.join(args)} changed {touched[:5]}"
    assert (run_dir / DONE_MARKER).exists(), (name, args)


def test_guide_examples_run_and_keep_to_their_own_run_directories(
    tiny_data_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    workspace = run_workspace(tmp_path / "ws")
    monkeypatch.chdir(workspace)
    (workspace / "checkpoints").mkdir()
    sweeps = [argv for argv in guide_commands("sweep.py") if sweep_trains(argv)]
    dry_runs = [["--dry-run", *argv] for argv in sweeps]
    # the sweeps' dry runs (a child process) while the train.py examples run here, from a twin
    # workspace that stays empty (a dry run also checks the done runs it would skip)
    twin = run_workspace(tmp_path / "twin")
    planning = start_python(SWEEPS_IN_ONE_PROCESS, [json.dumps(dry_runs)], cwd=twin,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        parser = config_parser()
        budget = [*tiny_budget(tiny_data_path), *SMALL_BATCHES]
        trains = [("train.py", args) for args in guide_commands("train.py")]
        for name, args in trains:
            _run_example(name, args, budget, parser, workspace)
        stdout, stderr = planning.communicate(timeout=300)
    finally:
        if planning.poll() is None:
            planning.kill()
    assert planning.returncode == 0, stderr[-3000:]
    (marked,) = [line for line in stdout.splitlines() if line.startswith("OUTCOMES ")]
    outcomes = json.loads(marked.removeprefix("OUTCOMES "))

    firsts: list[tuple[str, list[str]]] = []
    planned: list[list[str]] = []  # every train.py command the training sweeps would run
    for argv, outcome in zip(sweeps, outcomes, strict=True):
        shown = f"sweep.py {shlex.join(argv)}"
        assert outcome["code"] in (0, None), (shown, outcome)
        commands = [_in_workspace(shlex.split(line)[3:], twin, workspace)
                    for line in outcome["stdout"].splitlines()
                    if line.split(" ", 3)[1:3] == ["-m", sweep.TRAIN_MODULE]]
        assert commands, (shown, outcome["stdout"])
        planned += commands
        firsts.append((shown, commands[0]))

    # no run directory is claimed by two configurations
    claims: dict[Path, set[str]] = {}
    for args in [*planned, *(args for _, args in trains)]:
        claims.setdefault(_run_dir(parser, args, workspace), set()).add(shlex.join(args))
    for run_dir, commands in claims.items():
        digests = {fingerprint_of(resolve_command(parser, shlex.split(c))).digest
                   for c in commands}
        assert len(digests) == 1, f"{run_dir} is claimed by configurations {sorted(commands)}"

    for name, args in firsts:
        _run_example(name, args, budget, parser, workspace)
