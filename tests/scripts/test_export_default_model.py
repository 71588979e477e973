"""scripts/export_default_model.py: the default model is chosen on the validation split among
finished full-budget runs, never on test; its provenance's validation metrics agree with the
run's own validation at that checkpoint; bad input ends in one line. Tiny runs (2 steps)."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import export_default_model
import pytest
import torch

from sotddsp.apps import train
from sotddsp.core import run_layout
from sotddsp.core.command_line import UserError
from sotddsp.model.checkpoints import load_checkpoint

SEEDS = (1, 2)


@pytest.fixture(scope="module")
def runs_root(tmp_path_factory: pytest.TempPathFactory, tiny_data_path: Path) -> Path:
    """Two finished 2-step SOT-2048 runs and one 2-step MSS-Lin run left unfinished."""
    root = tmp_path_factory.mktemp("export") / "runs"
    for experiment, seed in [*(("SOT-2048", s) for s in SEEDS), ("MSS-Lin", 1)]:
        train.main([
            "--config", str(run_layout.EXPERIMENTS_DIR / f"{experiment}.yaml"),
            "--config", str(run_layout.EXPERIMENTS_DIR / "presets" / "debug.yaml"),
            "--data.init_args.data_path", str(tiny_data_path), "--checkpoint_root", str(root),
            "--seed_everything", str(seed), "--data.init_args.batch_size", "32",
            "--data.init_args.batch_size_val", "16", "--trainer.max_steps", "2",
            "--trainer.enable_progress_bar", "false", "--model.n_plot_examples", "0",
        ])
    (run_layout.run_directory(root, "MSS-Lin", 1) / run_layout.DONE_MARKER).unlink()
    return root


@pytest.fixture(scope="module")
def candidates(runs_root: Path) -> list[export_default_model.Candidate]:
    return export_default_model.select_by_validation(runs_root, budget_steps=2)


def test_selection_ranks_finished_full_budget_runs_by_validation_only(
        candidates: list[export_default_model.Candidate]) -> None:
    assert sorted(c.run_dir.name for c in candidates) == [f"SOT-2048-{s}" for s in SEEDS]
    keys = [c.rank_key for c in candidates]
    assert keys == sorted(keys)
    for c in candidates:
        assert set(c.validation) == {f"val_{k}" for k in export_default_model.REPORTED}
        assert c.checkpoint.name == json.loads(
            (c.run_dir / run_layout.TEST_METRICS_FILE).read_text())["checkpoint"]
        # the independent record: the run's own validation pass at the checkpoint's step
        step = torch.load(c.checkpoint, map_location="cpu", weights_only=False)["global_step"]
        with open(c.run_dir / run_layout.CURVES_FILE, newline="") as handle:
            rows = [r for r in csv.DictReader(handle)
                    if r["split"] == "val" and int(r["step"]) == step]
        assert rows, f"{c.run_dir.name}: no validation row at step {step}"
        assert c.validation["val_rpa"] == pytest.approx(float(rows[-1]["val/rpa"]), abs=1e-6)
        assert c.validation["val_lsd"] == pytest.approx(float(rows[-1]["val/lsd"]), rel=1e-5)
    table = export_default_model.candidates_table(candidates)
    assert table.count("| SOT-2048-") == len(SEEDS)


def test_a_test_split_change_does_not_change_the_choice(
        runs_root: Path, candidates: list[export_default_model.Candidate], tmp_path: Path) -> None:
    """Rewriting every run's test metrics (what a test-split choice would read) leaves the
    ranking as it was."""
    before = [c.run_dir.name for c in candidates]
    copy = tmp_path / "runs"
    shutil.copytree(runs_root, copy)
    for i, metrics_path in enumerate(sorted(copy.glob(f"*/*/{run_layout.TEST_METRICS_FILE}"))):
        recorded = json.loads(metrics_path.read_text())
        recorded["rpa"] = 1.0 - 0.1 * i
        metrics_path.write_text(json.dumps(recorded))
    assert [c.run_dir.name for c in export_default_model.select_by_validation(copy, 2)] == before


def test_main_exports_the_selected_model_with_its_provenance(
        runs_root: Path, candidates: list[export_default_model.Candidate], tmp_path: Path) -> None:
    out = tmp_path / "default.ckpt"
    provenance = export_default_model.main(
        ["--root", str(runs_root), "--budget-steps", "2", "--out", str(out)])
    best = candidates[0]
    assert provenance["run"].endswith(f"SOT-2048/{best.run_dir.name}")
    assert provenance["chosen_by"].startswith(
        f"best validation RPA of {len(SEEDS)} finished 2-step runs")
    assert provenance["val_rpa"] == best.validation["val_rpa"]
    recorded = json.loads((best.run_dir / run_layout.TEST_METRICS_FILE).read_text())
    assert provenance["test_rpa"] == recorded["rpa"]
    assert json.loads(out.with_suffix(".json").read_text()) == provenance
    assert not load_checkpoint(out).training


def test_no_candidate_and_a_missing_run_end_in_one_line(runs_root: Path, tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"no finished run of 25,000 steps yet"):
        export_default_model.main(["--root", str(runs_root), "--out", str(tmp_path / "x.ckpt")])
    with pytest.raises(UserError, match=r"--run .*no such run directory"):
        export_default_model.main(["--run", str(tmp_path / "nowhere"),
                                   "--out", str(tmp_path / "x.ckpt")])
    assert not (tmp_path / "x.ckpt").exists()


def test_a_finished_run_without_its_checkpoint_ends_in_one_line(
        runs_root: Path, tmp_path: Path) -> None:
    """A finished candidate whose tested checkpoint is gone is an error naming the run, never
    a silent drop from the choice."""
    copy = tmp_path / "runs"
    shutil.copytree(runs_root, copy)
    broken = run_layout.run_directory(copy, "SOT-2048", SEEDS[0])
    for checkpoint in (broken / run_layout.CHECKPOINT_DIR).glob("best-*.ckpt"):
        checkpoint.unlink()
    with pytest.raises(UserError, match=rf"SOT-2048-{SEEDS[0]}: no checkpoint"):
        export_default_model.select_by_validation(copy, 2)
