"""Bad input gets a clear answer: every entry point, run as a subprocess on a bad input, ends
with one line on stderr that names the problem and the fix, a non-zero exit status, no Python
traceback, and every file that existed before byte-identical afterwards.

The one-line rule is ``entrypoints.error_line_problems`` (harmless Lightning / hydra / logging
lines filtered by an explicit allow-list). Each case also lists regular expressions the error
line must match: the problem (the argument or file, the value) and the fix.

Each case runs in its own workspace holding a resumable run of the same experiment and seed
(last.ckpt, best checkpoint, train_config.yaml, no done marker) and a previous results file;
their sha256 digests are compared before and after. The cases run two or three at a time.

Unwritable places: the tests run as root, which ignores file modes, so chmod cannot make a
directory unwritable. /sys (EPERM for root: sysfs creates no files) and /proc (ENOENT) are used
instead. A full disk and a read-only file system are real tmpfs mounts when mounting is
permitted (root with CAP_SYS_ADMIN); otherwise those cases are skipped, and the full disk is
still covered by injecting ENOSPC into os.fsync in the real train.py (runpy).
"""

from __future__ import annotations

import math
import os
import re
import shutil
import subprocess
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from entrypoints import (
    REPO,
    error_line_problems,
    run_entry_point,
    run_python,
    stderr_lines,
    temporary_files,
    tree_digest,
)

SEED = 3
EXPERIMENT = "SOT-2048"
PAPER = REPO / "paper-experiments"


@dataclass(frozen=True)
class World:
    """Files shared (read only) by all cases; built once."""

    root: Path
    data: Path  # a good 96-example data set (64/16/16), 16 kHz, 4096 samples
    good_run_root: Path  # <root>/SOT-2048/SOT-2048-3: a finished debug run of that data
    mount_ok: bool

    def __getattr__(self, name: str) -> Path:
        """The prepared input files by name, extension last: world.tone_wav is inputs/tone.wav."""
        stem, _, extension = name.rpartition("_")
        path = self.root / "inputs" / f"{stem}.{extension}"
        if not stem or not path.exists():
            raise AttributeError(name)
        return path

    @property
    def good_run(self) -> Path:
        return self.good_run_root / EXPERIMENT / f"{EXPERIMENT}-{SEED}"


@dataclass(frozen=True)
class Case:
    """One bad input: the entry point, its arguments (built from the world and the case's
    workspace), what the error line must say, and how to prepare the workspace."""

    name: str
    prog: str
    args: Callable[[World, Path], Sequence[str]]
    says: tuple[str, ...]
    prepare: Callable[[World, Path], None] | None = None
    mount: str | None = None  # None, "full" (no free space) or "readonly": ws/run is a tmpfs
    exit_codes: tuple[int, ...] = (2,)
    wrapper: str | None = None  # runs python -c <wrapper> <repo>/<prog> <args> instead


@dataclass
class Outcome:
    returncode: int
    stdout: str
    stderr: str
    before: dict[str, str]
    after: dict[str, str]
    temporary: list[Path]
    seconds: float
    skipped: str | None = None


# ---------------------------------------------------------------------------------------------
# workspace and world
# ---------------------------------------------------------------------------------------------


def _train(w: World, ws: Path, *extra: str, root: Path | None = None) -> list[str]:
    """train.py arguments of the workspace's resumable run (same experiment, seed, data) + extra."""
    return [
        "--config",
        str(PAPER / f"{EXPERIMENT}.yaml"),
        "--config",
        str(PAPER / "presets" / "debug.yaml"),
        "--data.init_args.data_path",
        str(w.data),
        "--checkpoint_root",
        str(root or ws / "run"),
        "--seed_everything",
        str(SEED),
        "--trainer.enable_progress_bar",
        "false",
        "--model.n_plot_examples",
        "0",
        "--trainer.max_steps",
        "2",
        *extra,
    ]


def _resumable_run(w: World, destination: Path) -> None:
    """A copy of the good run without its done marker and test metrics: train.py resumes it."""
    shutil.copytree(w.good_run_root, destination, dirs_exist_ok=True)
    run = destination / EXPERIMENT / f"{EXPERIMENT}-{SEED}"
    (run / "done").unlink()
    (run / "test_metrics.json").unlink()


def _workspace(w: World, ws: Path) -> None:
    ws.mkdir(parents=True)
    _resumable_run(w, ws / "run")
    (ws / "results").mkdir()
    (ws / "results" / "table.md").write_text(
        "| experiment | LSD |\n|---|---:|\n| earlier | 1.0 |\n"
    )


def _last(ws: Path) -> Path:
    return ws / "run" / EXPERIMENT / f"{EXPERIMENT}-{SEED}" / "checkpoints" / "last.ckpt"


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])


def _can_mount(probe: Path) -> bool:
    if os.geteuid() != 0 or shutil.which("mount") is None:
        return False
    probe.mkdir(parents=True, exist_ok=True)
    mounted = (
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(probe)], capture_output=True
        ).returncode
        == 0
    )
    if mounted:
        subprocess.run(["umount", str(probe)], check=True)
    return mounted


def _build_world(root: Path, tiny_data_path: Path) -> World:
    from data_files import save_dataset
    from synthetic_data import SynthSettings, generate_dataset

    inputs = root / "inputs"
    inputs.mkdir(parents=True)
    data = inputs / "tiny.pth"
    shutil.copy(tiny_data_path, data)
    good = torch.load(data, map_location="cpu", weights_only=True)

    (inputs / "truncated_data.pth").write_bytes(data.read_bytes()[:100_000])
    (inputs / "text_data.pth").write_text("train_tensors = [0.1, 0.2]\n")
    torch.save([1, 2, 3], inputs / "list_data.pth")
    for name, split, value in (
        ("nan_data.pth", "train", math.nan),
        ("inf_data.pth", "val", math.inf),
    ):
        broken = {
            k: (dict(v) if isinstance(v, dict) else v.clone() if torch.is_tensor(v) else v)
            for k, v in good.items()
        }
        broken[f"{split}_tensors"][3, 100] = value
        torch.save(broken, inputs / name)
    save_dataset(
        generate_dataset(SynthSettings(n_examples=24, split_sizes=(16, 4, 4), sample_rate=8000, f0_max=1000.0)),
        inputs / "rate_8000_data.pth",
    )
    save_dataset(
        generate_dataset(SynthSettings(n_examples=24, split_sizes=(16, 4, 4), n_samples=1024)),
        inputs / "short_data.pth",
    )
    (inputs / "malformed.yaml").write_text("model:\n  temperature: [0.1, 0.2\ntrainer: {}\n")

    import soundfile

    t = np.arange(16000) / 16000
    soundfile.write(
        inputs / "tone.wav", (0.5 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), 16000
    )
    (inputs / "garbage.wav").write_bytes(b"RIFF this is not a wave file" * 10)

    good_root = root / "good"
    world = World(
        root=root, data=data, good_run_root=good_root, mount_ok=_can_mount(root / "probe")
    )
    trained = run_entry_point("train.py", _train(world, root, root=good_root), timeout=300)
    assert trained.returncode == 0, trained.stderr[-3000:]
    state = torch.load(
        world.good_run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True
    )
    state_dict = state["state_dict"]
    name = next(
        k
        for k, v in state_dict.items()
        if k.startswith("encoder.") and v.ndim >= 2 and v.shape[0] > 1
    )
    state_dict[name] = state_dict[name][:-1]  # another model: one output channel fewer
    torch.save(state, inputs / "other_model.ckpt")
    shutil.copy(world.good_run / "checkpoints" / "last.ckpt", inputs / "truncated.ckpt")
    _truncate(inputs / "truncated.ckpt")
    return world


# ---------------------------------------------------------------------------------------------
# the cases
# ---------------------------------------------------------------------------------------------


def _eval_root_with(checkpoint: str) -> Callable[[World, Path], None]:
    """Workspace preparation: ws/evalroot holds the good run with its tested checkpoint replaced."""

    def prepare(w: World, ws: Path) -> None:
        shutil.copytree(w.good_run_root, ws / "evalroot")
        run = ws / "evalroot" / EXPERIMENT / f"{EXPERIMENT}-{SEED}"
        for best in (run / "checkpoints").glob("best-lsd-*.ckpt"):
            shutil.copy(getattr(w, checkpoint), best)

    return prepare


FSYNC_ENOSPC = (
    "import errno, os, runpy, sys\n"
    "def full(fd):\n"
    "    raise OSError(errno.ENOSPC, 'No space left on device')\n"
    "os.fsync = full\n"
    "sys.argv = sys.argv[1:]\n"
    "runpy.run_path(sys.argv[0], run_name='__main__')\n"
)

T = "train.py"
CASES: list[Case] = [
    # ---- configuration
    Case(
        "yaml-malformed",
        T,
        lambda w, ws: _train(w, ws, "--config", str(w.malformed_yaml)),
        (r"malformed\.yaml", r"invalid YAML", r"line 3", r"fix the file"),
    ),
    Case(
        "config-file-missing",
        T,
        lambda w, ws: _train(w, ws, "--config", str(ws / "nope.yaml")),
        (r"nope\.yaml", r"does not exist", r"check the path"),
    ),
    Case(
        "class-path-unknown",
        T,
        lambda w, ws: _train(w, ws, "--model.loss.class_path", "losses.NoSuchLoss"),
        (r"model\.loss", r"losses\.NoSuchLoss", r"check its spelling"),
    ),
    Case(
        "option-unknown",
        T,
        lambda w, ws: _train(w, ws, "--trainer.max_step", "5"),
        (r"unrecognized arguments: --trainer\.max_step",),
    ),
    Case(
        "learning-rate-negative",
        T,
        lambda w, ws: _train(w, ws, "--model.optimizer.init_args.lr", "-0.001"),
        (r"model\.optimizer", r"learning rate: -0\.001", r"--model\.optimizer\.init_args\.lr"),
    ),
    Case(
        "sot-p-below-1",
        T,
        lambda w, ws: _train(w, ws, "--model.loss.init_args.terms.sot.init_args.p", "0.5"),
        (r"\bp must be", r">= 1", r"0\.5"),
    ),
    Case(
        "temperature-zero",
        T,
        lambda w, ws: _train(w, ws, "--model.temperature", "0"),
        (r"^train\.py: error: model\.temperature: temperature must be > 0", r"got 0\.0",
         r"paper uses 0\.1"),
    ),
    Case(
        "batch-size-zero",
        T,
        lambda w, ws: _train(w, ws, "--data.init_args.batch_size", "0"),
        (r"^train\.py: error: data\.init_args\.batch_size: batch_size must be a positive "
         r"integer, got 0$",),
    ),
    Case(
        "kernel-size-even",
        T,
        lambda w, ws: _train(w, ws, "--model.encoder.init_args.kernel_size", "4"),
        (r"model\.encoder\.init_args\.kernel_size: kernel_size must be an odd positive "
         r"integer, got 4",),
    ),
    *[
        Case(
            f"n-fft-{label}",
            T,
            lambda w, ws, value=value: _train(
                w, ws, "--model.loss.init_args.terms.sot.init_args.n_fft", value
            ),
            says,
        )
        for label, value, says in (
            ("zero", "0", (r"model\.loss\.init_args\.terms\.sot\.init_args\.n_fft: n_fft must "
                           r"be a positive integer", r"got 0")),
            ("negative", "-5", (r"n_fft must be a positive integer", r"got -5")),
            ("text", "abc", (r"model\.loss\.init_args\.terms\.sot\.init_args\.n_fft: expected "
                             r"int", r"got abc")),
            ("fraction", "2.5", (r"model\.loss\.init_args\.terms\.sot\.init_args\.n_fft: "
                                 r"expected int", r"got 2\.5")),
        )
    ],
    Case(
        "window-unknown",
        T,
        lambda w, ws: _train(w, ws, "--model.loss.init_args.terms.sot.init_args.window", "hamm"),
        (r"window must be one of", r"'hann'", r"got 'hamm'"),
    ),
    Case(
        "framing-unknown",
        T,
        lambda w, ws: _train(w, ws, "--model.loss.init_args.terms.sot.init_args.framing", "end"),
        (r"model\.loss\.init_args\.terms\.sot\.init_args\.framing: expected one of",
         r"'padded', 'full', 'centered'", r"got end"),
    ),
    Case(
        "seed-not-integer",
        T,
        lambda w, ws: _train(w, ws, "--seed_everything", "abc"),
        (r"seed_everything", r"expected bool or int", r"got abc"),
    ),
    # ---- data
    Case(
        "data-missing-unwritable-proc",
        T,
        lambda w, ws: _train(w, ws, "--data.init_args.data_path", "/proc/nope/x.pth"),
        (r"cannot create /proc/nope/x\.pth", r"synthetic_data\.py --out"),
    ),
    Case(
        "data-truncated",
        T,
        lambda w, ws: _train(w, ws, "--data.init_args.data_path", str(w.truncated_data_pth)),
        (r"truncated_data\.pth", r"not a readable torch file", r"delete it and regenerate"),
    ),
    Case(
        "data-not-torch",
        T,
        lambda w, ws: _train(w, ws, "--data.init_args.data_path", str(w.text_data_pth)),
        (r"text_data\.pth", r"not a readable torch file", r"regenerate"),
    ),
    Case(
        "data-wrong-format",
        T,
        lambda w, ws: _train(w, ws, "--data.init_args.data_path", str(w.list_data_pth)),
        (r"list_data\.pth", r"wrong format", r"holds a list", r"regenerate"),
    ),
    Case(
        "data-nan",
        T,
        lambda w, ws: _train(w, ws, "--data.init_args.data_path", str(w.nan_data_pth)),
        (r"nan_data\.pth", r"train_tensors holds NaN or inf", r"regenerate"),
    ),
    Case(
        "data-inf",
        T,
        lambda w, ws: _train(w, ws, "--data.init_args.data_path", str(w.inf_data_pth)),
        (r"inf_data\.pth", r"val_tensors holds NaN or inf", r"regenerate"),
    ),
    Case(
        "data-sample-rate-8000",
        T,
        lambda w, ws: _train(w, ws, "--data.init_args.data_path", str(w.rate_8000_data_pth)),
        (r"8000 Hz", r"16000", r"sample_rate"),
    ),
    Case(
        "data-shorter-than-fft",
        T,
        lambda w, ws: _train(w, ws, "--data.init_args.data_path", str(w.short_data_pth)),
        (r"at least 2048 samples", r"got 1024", r"shorter FFT sizes or longer signals"),
    ),
    # ---- resume
    Case(
        "resume-truncated-last-ckpt",
        T,
        lambda w, ws: _train(w, ws),
        (r"last\.ckpt: not a readable checkpoint", r"delete it or pass --resume never"),
        prepare=lambda w, ws: _truncate(_last(ws)),
    ),
    Case(
        "resume-last-ckpt-of-another-model",
        T,
        lambda w, ws: _train(w, ws),
        (
            r"last\.ckpt: trained with another model",
            r"shape",
            r"train_config\.yaml",
            r"--resume never",
        ),
        prepare=lambda w, ws: shutil.copy(w.other_model_ckpt, _last(ws)),
    ),
    Case(
        "resume-with-another-configuration",
        T,
        lambda w, ws: _train(w, ws, "--model.optimizer.init_args.lr", "0.001"),
        (
            r"SOT-2048-3 holds a run of another configuration",
            r"model\.optimizer\.init_args\.lr was 0\.0001, now 0\.001",
            r"another --checkpoint_root",
            r"--resume never",
        ),
    ),
    # ---- where results go
    Case(
        "checkpoint-root-unwritable",
        T,
        lambda w, ws: _train(w, ws, root=Path("/sys/nope")),
        (r"permission denied", r"/sys/nope", r"choose a directory you can write to"),
    ),
    Case(
        "disk-full-injected",
        T,
        lambda w, ws: _train(w, ws),
        (r"no space left on the device", r"train_config\.yaml", r"free some space"),
        wrapper=FSYNC_ENOSPC,
    ),
    Case(
        "disk-full-tmpfs",
        T,
        lambda w, ws: _train(w, ws),
        (r"no space left on the device", r"train_config\.yaml", r"free some space"),
        mount="full",
    ),
    Case(
        "read-only-tmpfs",
        T,
        lambda w, ws: _train(w, ws),
        (r"read-only", r"choose a writable output directory"),
        mount="readonly",
    ),
    # ---- synthetic_data.py
    Case(
        "generator-output-unwritable",
        "synthetic_data.py",
        lambda w, ws: ["--n-examples", "12", "--n-samples", "256", "--out", "/sys/nope/x.pth"],
        (r"cannot write /sys/nope/x\.pth",),
        exit_codes=(1, 2),
    ),
    # ---- estimate.py
    Case(
        "estimate-checkpoint-missing",
        "estimate.py",
        lambda w, ws: [str(ws / "none.ckpt"), str(w.tone_wav), "--out", str(ws / "results")],
        (r"none\.ckpt", r"checkpoint not found"),
    ),
    Case(
        "estimate-checkpoint-truncated",
        "estimate.py",
        lambda w, ws: [str(w.truncated_ckpt), str(w.tone_wav), "--out", str(ws / "results")],
        (r"truncated\.ckpt", r"not a usable train\.py checkpoint"),
    ),
    Case(
        "estimate-checkpoint-not-a-checkpoint",
        "estimate.py",
        lambda w, ws: [str(w.data), str(w.tone_wav), "--out", str(ws / "results")],
        (r"tiny\.pth", r"not a usable train\.py checkpoint"),
    ),
    Case(
        "estimate-checkpoint-of-another-model",
        "estimate.py",
        lambda w, ws: [str(w.other_model_ckpt), str(w.tone_wav), "--out", str(ws / "results")],
        (r"other_model\.ckpt", r"(do not fit|size mismatch|shape)"),
    ),
    Case(
        "estimate-audio-garbage",
        "estimate.py",
        lambda w, ws: [
            str(w.good_run / "checkpoints" / "last.ckpt"),
            str(w.garbage_wav),
            "--out",
            str(ws / "results"),
        ],
        (r"garbage\.wav", r"not a readable audio file"),
    ),
    # ---- eval_paper.py
    Case(
        "eval-root-without-runs",
        "eval_paper.py",
        lambda w, ws: ["--root", str(ws / "empty"), "--out", str(ws / "results"), "--no-baseline"],
        (r"no runs under", r"empty", r"train some with train\.py or pass --root"),
        prepare=lambda w, ws: (ws / "empty").mkdir(),
    ),
    Case(
        "eval-checkpoint-truncated",
        "eval_paper.py",
        lambda w, ws: [
            "--root",
            str(ws / "evalroot"),
            "--out",
            str(ws / "results"),
            "--no-baseline",
            "--device",
            "cpu",
        ],
        (r"no run could be evaluated", r"(truncated|corrupt)"),
        prepare=_eval_root_with("truncated_ckpt"),
    ),
    Case(
        "eval-checkpoint-of-another-model",
        "eval_paper.py",
        lambda w, ws: [
            "--root",
            str(ws / "evalroot"),
            "--out",
            str(ws / "results"),
            "--no-baseline",
            "--device",
            "cpu",
        ],
        (r"no run could be evaluated", r"(do not fit|size mismatch|shape)"),
        prepare=_eval_root_with("other_model_ckpt"),
    ),
    Case(
        "eval-output-unwritable",
        "eval_paper.py",
        lambda w, ws: ["--root", str(w.good_run_root), "--out", "/sys/nope", "--no-baseline"],
        (r"permission denied", r"/sys/nope"),
    ),
    # ---- sweep.py
    Case(
        "sweep-unknown-experiment",
        "sweep.py",
        lambda w, ws: ["experiment=NoSuchExperiment", f"checkpoint_root={ws / 'run'}", "--dry-run"],
        (r"unknown experiment 'NoSuchExperiment'", r"choose among .*SOT-2048"),
    ),
    Case(
        "sweep-seed-not-integer",
        "sweep.py",
        lambda w, ws: [
            "experiment=SOT-2048",
            "seed=abc",
            f"checkpoint_root={ws / 'run'}",
            "--dry-run",
        ],
        (r"seed must be an integer", r"abc"),
    ),
    # ---- real_data.py
    Case(
        "real-data-soundfont-missing",
        "real_data.py",
        lambda w, ws: ["--soundfont", str(ws / "none.sf2"), "--out", str(ws / "r.pth")],
        (r"none\.sf2", r"not found"),
    ),
]


# ---------------------------------------------------------------------------------------------
# running the cases
# ---------------------------------------------------------------------------------------------


def _mount_tmpfs(directory: Path, size: int) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(directory)],
        check=True,
        capture_output=True,
    )


def _pages(directory: Path) -> int:
    return sum(-(-p.stat().st_size // 4096) * 4096 for p in directory.rglob("*") if p.is_file())


def _run_case(case: Case, world: World, ws: Path) -> Outcome:
    if case.mount and not world.mount_ok:
        return Outcome(0, "", "", {}, {}, [], 0.0, skipped="mounting a tmpfs is not permitted here")
    if not (REPO / case.prog).is_file():
        return Outcome(0, "", "", {}, {}, [], 0.0, skipped=f"{case.prog} does not exist yet")
    _workspace(world, ws)
    mounted = False
    try:
        if case.mount:
            staging = ws / "staging"
            shutil.move(ws / "run", staging)
            # a full disk: exactly the pages the run occupies; read-only: mounted, filled, remounted
            _mount_tmpfs(ws / "run", _pages(staging) if case.mount == "full" else 8 << 20)
            mounted = True
            shutil.copytree(staging, ws / "run", dirs_exist_ok=True)
            shutil.rmtree(staging)
            if case.mount == "readonly":
                subprocess.run(["mount", "-o", "remount,ro", str(ws / "run")], check=True)
        if case.prepare is not None:
            case.prepare(world, ws)
        before = tree_digest(ws)
        args = case.args(world, ws)
        start = time.monotonic()
        if case.wrapper is None:
            result = run_entry_point(case.prog, args, cwd=ws, timeout=300)
        else:
            result = run_python(case.wrapper, [str(REPO / case.prog), *args], cwd=ws, timeout=300)
        seconds = time.monotonic() - start
        after = tree_digest(ws)
        return Outcome(
            result.returncode,
            result.stdout,
            result.stderr,
            before,
            after,
            temporary_files(ws),
            seconds,
        )
    finally:
        if mounted:
            subprocess.run(["umount", str(ws / "run")], check=False)


@pytest.fixture(scope="module")
def world(tiny_data_path: Path, tmp_path_factory: pytest.TempPathFactory) -> World:
    return _build_world(tmp_path_factory.mktemp("bad_input_world"), tiny_data_path)


def _run_sweep_with_rejected_training(world: World, ws: Path) -> Outcome | None:
    """sweep.py launching one train.py that rejects its arguments (temperature 0)."""
    if not (REPO / "sweep.py").is_file():
        return None
    ws.mkdir(parents=True)
    train_args = [
        "--config",
        str(PAPER / "presets" / "debug.yaml"),
        "--data.init_args.data_path",
        str(world.data),
        "--trainer.enable_progress_bar",
        "false",
        "--model.temperature",
        "0",
    ]
    start = time.monotonic()
    result = run_entry_point(
        "sweep.py",
        [
            f"experiment={EXPERIMENT}",
            f"seed={SEED}",
            f"checkpoint_root={ws / 'run'}",
            "--",
            *train_args,
        ],
        cwd=ws,
        timeout=300,
    )
    return Outcome(
        result.returncode, result.stdout, result.stderr, {}, {}, [], time.monotonic() - start
    )


@dataclass
class Outcomes:
    cases: dict[str, Outcome]
    shared_before: dict[str, str]  # digests of the world's files before any case ran
    shared_after: dict[str, str]
    sweep: Outcome | None  # _run_sweep_with_rejected_training


@pytest.fixture(scope="module")
def outcomes(world: World, tmp_path_factory: pytest.TempPathFactory) -> Outcomes:
    """Run every case, 2-3 at a time (they are mostly process start-up)."""
    base = tmp_path_factory.mktemp("bad_input_cases")
    shared = (world.root / "inputs", world.good_run_root)
    before = tree_digest(*shared)
    workers = min(3, (os.cpu_count() or 1) + 1)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        sweep = pool.submit(_run_sweep_with_rejected_training, world, base / "sweep-rejected")
        futures = {
            case.name: pool.submit(_run_case, case, world, base / case.name) for case in CASES
        }
        cases = {name: future.result() for name, future in futures.items()}
    return Outcomes(cases, before, tree_digest(*shared), sweep.result())


def test_at_least_25_distinct_bad_inputs() -> None:
    names = [case.name for case in CASES]
    assert len(set(names)) == len(names) >= 25
    assert len({case.prog for case in CASES}) >= 5


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_bad_input_gets_one_clear_line_and_damages_nothing(case: Case, outcomes: Outcomes) -> None:
    outcome = outcomes.cases[case.name]
    if outcome.skipped:
        pytest.skip(outcome.skipped)
    assert outcome.returncode in case.exit_codes, (outcome.returncode, outcome.stderr[-3000:])
    line, problems = error_line_problems(outcome.stderr, case.prog)
    assert problems == [], "\n".join(problems) + "\n--- stderr:\n" + outcome.stderr[-3000:]
    for pattern in case.says:
        assert re.search(pattern, line, flags=re.IGNORECASE), f"{pattern!r} not in {line!r}"
    changed = sorted(k for k in outcome.before if outcome.after.get(k) != outcome.before[k])
    assert changed == [], f"files changed or removed: {changed}"
    assert outcome.temporary == [], f"temporary files left: {outcome.temporary}"


def test_inputs_shared_by_the_cases_are_unchanged(world: World, outcomes: Outcomes) -> None:
    """The bad files, the data set and the finished run that the cases read stay byte-identical."""
    assert outcomes.shared_after == outcomes.shared_before
    assert {"done", "test_metrics.json", "train_config.yaml"} <= {
        p.name for p in world.good_run.iterdir()
    }


def test_sweep_reports_a_rejected_training_as_such(outcomes: Outcomes) -> None:
    """A sweep whose train.py rejects its arguments: train.py's own error line, then sweep.py's
    last line, which names the failed run and does not advise running the sweep again to resume
    it (a rerun fails the same way); exit non-zero, no traceback."""
    if outcomes.sweep is None:
        pytest.skip("sweep.py does not exist yet")
    assert outcomes.sweep.returncode != 0
    lines = stderr_lines(outcomes.sweep.stderr)
    assert not any("Traceback" in line for line in lines), outcomes.sweep.stderr[-3000:]
    child = [line for line in lines if line.startswith("train.py: error: ")]
    assert len(child) == 1 and "temperature must be > 0" in child[0]
    last = lines[-1]
    assert last.startswith("sweep.py: error: ") and f"{EXPERIMENT}-{SEED}" in last, last
    assert "run the same command again" not in last, last
