"""eval_paper.py on tiny trained runs: the table, exact agreement with training's test metrics,
the cache (also across an interruption), skipped runs, CLI errors, load_checkpoint and the
pYIN baseline. Runs are trained once per module (2 experiments, 3 runs, 2 steps each)."""

from __future__ import annotations

import csv
import errno
import functools
import json
import math
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from helpers.entrypoints import run_entry_point, tree_digest

from sotddsp.apps import evaluate as eval_paper
from sotddsp.apps import train
from sotddsp.core import result_tables, run_layout
from sotddsp.core.command_line import UserError, run_cli_main
from sotddsp.data.datamodule import PreloadedSinusoidDataModule
from sotddsp.dsp import metrics
from sotddsp.model import checkpoints

RUNS = [("SOT-2048", 1), ("SOT-2048", 2), ("MSS-Lin", 1)]


def _train(experiment: str, seed: int, data: Path, root: Path) -> None:
    # batch 32 -> 2 training steps = 1 epoch, then validation saves best-lsd-0-2.ckpt;
    # val/test batches of 16 hold the whole 16-example split.
    train.main([
        "--config", str(run_layout.REPO / "paper-experiments" / f"{experiment}.yaml"),
        "--config", str(run_layout.REPO / "paper-experiments" / "presets" / "debug.yaml"),
        "--data.init_args.data_path", str(data), "--checkpoint_root", str(root),
        "--seed_everything", str(seed), "--data.init_args.batch_size", "32",
        "--data.init_args.batch_size_val", "16", "--trainer.max_steps", "2",
        "--trainer.enable_progress_bar", "false", "--model.n_plot_examples", "0",
    ])


@pytest.fixture(scope="module")
def trained_root(tmp_path_factory: pytest.TempPathFactory, tiny_data_path: Path) -> Path:
    root = tmp_path_factory.mktemp("runs") / "checkpoints"
    for experiment, seed in RUNS:
        _train(experiment, seed, tiny_data_path, root)
    return root


@pytest.fixture(scope="module")
def evaluated(trained_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """results/ of one eval_paper run over the trained runs (with the pYIN baseline)."""
    out = tmp_path_factory.mktemp("eval") / "results"
    evaluation = eval_paper.main(
        ["--root", str(trained_root), "--out", str(out), "--device", "cpu"])
    assert evaluation.evaluated == len(RUNS) and not evaluation.skipped
    return out


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def run_dir(root: Path, experiment: str, seed: int) -> Path:
    return run_layout.run_directory(root, experiment, seed)


# ----------------------------------------------------------------------------------------------
# Outputs
# ----------------------------------------------------------------------------------------------

def test_table_has_one_row_per_experiment_with_its_seed_count(evaluated: Path) -> None:
    for name in ("runs.csv", "table.csv", "table.md", "table.tex", "skipped.csv",
                 "rpa_per_seed.png"):
        assert (evaluated / name).is_file(), name
    table = read_csv(evaluated / "table.csv")
    assert [(r["label"], r["source"], r["n"]) for r in table] == [
        ("MSS-Lin", "ours", "1"), ("SOT-2048", "ours", "2"), ("pYIN (baseline)", "baseline", "1")]
    for column in ("lsd", "rpa_pct", "rca_pct", "neg_od"):
        for stat in ("mean", "std", "median"):
            assert f"{column}_{stat}" in table[0]
    runs = read_csv(evaluated / "runs.csv")
    sot = [float(r["rpa"]) * 100 for r in runs if r["experiment"] == "SOT-2048"]
    assert float(table[1]["rpa_pct_mean"]) == pytest.approx(sum(sot) / 2, abs=1e-12)
    assert float(table[1]["neg_od_median"]) == pytest.approx(
        -sum(float(r["od"]) for r in runs if r["experiment"] == "SOT-2048") / 2, abs=1e-12)

    markdown = (evaluated / "table.md").read_text()
    header = markdown.splitlines()[0]
    for title in ("LSD mean (std)", "RPA (%) median", "RCA (%) mean (std)", "−OD median",
                  "| n |"):
        assert title in header
    assert sum(line.startswith("| ") for line in markdown.splitlines()) == 4  # header + 3 rows
    steps_note = next(line for line in markdown.splitlines() if "Checkpoints evaluated:" in line)
    for row in runs:
        if row["source"] == "ours":
            assert f"{row['run']} at step {int(row['global_step']):,}" in steps_note
    assert "\\textbf{" in (evaluated / "table.tex").read_text()
    assert read_csv(evaluated / "skipped.csv") == []


def test_runs_csv_equals_each_runs_test_metrics_exactly(
    evaluated: Path, trained_root: Path
) -> None:
    runs = read_csv(evaluated / "runs.csv")
    ours = [r for r in runs if r["source"] == "ours"]
    assert sorted((r["experiment"], int(r["seed"])) for r in ours) == sorted(RUNS)
    for row in ours:
        directory = run_dir(trained_root, row["experiment"], int(row["seed"]))
        recorded = json.loads((directory / "test_metrics.json").read_text())
        assert row["checkpoint"] == recorded["checkpoint"]
        assert row["checkpoint"].startswith("best-lsd-")
        assert row["finished"] == "True"
        for key, value in recorded.items():
            if key not in ("checkpoint", "machine"):  # machine: where it ran, not a metric
                assert float(row[key]) == value, key  # exact, not approximate


def test_evaluating_a_checkpoint_again_gives_identical_numbers(
    evaluated: Path, trained_root: Path, tiny_data_path: Path
) -> None:
    run = eval_paper.read_run(run_dir(trained_root, "SOT-2048", 2), "best")
    again = eval_paper.evaluate_checkpoint(run, tiny_data_path, "cpu", None)["metrics"]
    (row,) = [r for r in read_csv(evaluated / "runs.csv") if r["run"] == "SOT-2048-2"]
    assert {k: float(row[k]) for k in again} == again


def test_rerun_reads_everything_from_the_cache(
    evaluated: Path, trained_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = (evaluated / "runs.csv").read_text()

    def must_not_run(*args: Any) -> None:
        raise AssertionError("evaluated again despite an unchanged checkpoint, data and code")

    monkeypatch.setattr(eval_paper, "evaluate_checkpoint", must_not_run)
    monkeypatch.setattr(eval_paper, "pitch_baseline", must_not_run)
    evaluation = eval_paper.main(
        ["--root", str(trained_root), "--out", str(evaluated), "--device", "cpu"])
    assert (evaluation.evaluated, evaluation.from_cache) == (0, len(RUNS))
    assert (evaluated / "runs.csv").read_text() == before


def test_finished_only_leaves_out_the_runs_still_training(
    evaluated: Path, trained_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--finished-only: a run without its ``done`` marker is not evaluated and not in the
    table (n drops by one), a note names it; the finished runs' rows are the default's, read
    from the cache. Without the flag the same run is in the table, marked unfinished."""
    root = tmp_path / "runs"
    shutil.copytree(trained_root, root)
    (run_dir(root, "SOT-2048", 2) / run_layout.DONE_MARKER).unlink()
    out = tmp_path / "results"
    shutil.copytree(evaluated / "cache", out / "cache")
    monkeypatch.setattr(eval_paper, "evaluate_checkpoint", lambda *a, **k: pytest.fail(
        "evaluated again: the copied runs' checkpoints, data and configs are unchanged"))
    evaluation = eval_paper.main(["--root", str(root), "--out", str(out), "--device", "cpu",
                                  "--finished-only", "--no-baseline"])
    assert evaluation.left_out == ["SOT-2048/SOT-2048-2"]
    assert sorted(r["run"] for r in evaluation.rows) == ["MSS-Lin-1", "SOT-2048-1"]
    table = read_csv(out / "table.csv")
    assert [(r["label"], r["n"]) for r in table] == [("MSS-Lin", "1"), ("SOT-2048", "1")]
    default_rows = {r["run"]: r for r in read_csv(evaluated / "runs.csv")}
    for row in read_csv(out / "runs.csv"):
        assert row["rpa"] == default_rows[row["run"]]["rpa"]
        assert row["lsd"] == default_rows[row["run"]]["lsd"]
    markdown = (out / "table.md").read_text()
    assert ("Left out, training not finished (--finished-only): SOT-2048/SOT-2048-2."
            in markdown)

    everything = eval_paper.main(["--root", str(root), "--out", str(out), "--device", "cpu",
                                  "--no-baseline"])
    assert everything.left_out == []
    assert [(r["label"], r["n"]) for r in read_csv(out / "table.csv")] == [
        ("MSS-Lin", "1"), ("SOT-2048", "2")]
    assert ("Training not finished (no `done` marker) for: SOT-2048/SOT-2048-2."
            in (out / "table.md").read_text())

    for marker in root.glob(f"*/*/{run_layout.DONE_MARKER}"):
        marker.unlink()  # nothing finished: one line that says so, and nothing rewritten
    before = tree_digest(out)
    with pytest.raises(UserError, match=r"no run under .* has finished training \(3 still "
                       r"training: .*\); drop --finished-only"):
        eval_paper.main(["--root", str(root), "--out", str(out), "--device", "cpu",
                         "--finished-only", "--no-baseline"])
    assert tree_digest(out) == before


def _run_records(cache: Path) -> list[Path]:
    return sorted(p for p in cache.glob("*.json") if "checkpoint_sha256" in p.read_text())


def test_an_interrupted_evaluation_resumes_without_losing_results(
    evaluated: Path, trained_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "results"
    shutil.copytree(evaluated / "cache", out / "cache")
    for record in _run_records(out / "cache")[1:]:
        record.unlink()  # as if the last run had only evaluated one checkpoint
    (out / "cache" / ".abandoned.json.tmp").write_text('{"key": ')  # a write cut by kill -9
    real = eval_paper.evaluate_checkpoint
    calls: list[str] = []

    def interrupted_on_second(run: eval_paper.Run, *args: Any) -> dict[str, Any]:
        calls.append(run.name)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(run, *args)

    monkeypatch.setattr(eval_paper, "evaluate_checkpoint", interrupted_on_second)
    args = ["--root", str(trained_root), "--out", str(out), "--device", "cpu"]
    with pytest.raises(KeyboardInterrupt):
        eval_paper.main(args)
    assert len(_run_records(out / "cache")) == 2  # the finished evaluation was kept

    calls.clear()
    monkeypatch.setattr(eval_paper, "evaluate_checkpoint",
                        lambda run, *a: calls.append(run.name) or real(run, *a))
    evaluation = eval_paper.main(args)
    assert len(calls) == 1 and evaluation.from_cache == len(RUNS) - 1
    assert (out / "runs.csv").read_text() == (evaluated / "runs.csv").read_text()


# ----------------------------------------------------------------------------------------------
# Bad input
# ----------------------------------------------------------------------------------------------

def _edit_config(run: Path, edit: Any) -> None:
    config = yaml.safe_load((run / "train_config.yaml").read_text())
    edit(config)
    (run / "train_config.yaml").write_text(yaml.safe_dump(config))


def test_bad_runs_are_skipped_with_one_line_reasons(
    evaluated: Path, trained_root: Path, tmp_path: Path
) -> None:
    root = tmp_path / "checkpoints"
    good = run_dir(trained_root, "MSS-Lin", 1)
    shutil.copytree(good, root / "MSS-Lin" / good.name)
    source = run_dir(trained_root, "SOT-2048", 1)
    bad = {name: root / "SOT-2048" / name for name in
           ("no-checkpoint", "truncated", "no-config", "unknown-class", "stale-key")}
    for path in bad.values():
        shutil.copytree(source, path)
    for ckpt in (bad["no-checkpoint"] / "checkpoints").glob("*.ckpt"):
        ckpt.unlink()
    (best,) = (bad["truncated"] / "checkpoints").glob("best-lsd-*.ckpt")
    best.write_bytes(best.read_bytes()[: best.stat().st_size // 2])
    (bad["no-config"] / "train_config.yaml").unlink()
    _edit_config(bad["unknown-class"],
                 lambda c: c["model"]["loss"].update({"class_path": "losses.NoSuchLoss"}))
    _edit_config(bad["stale-key"], lambda c: c["model"].update({"no_such_option": 3}))

    out = tmp_path / "results"
    shutil.copytree(evaluated / "cache", out / "cache")  # the good run comes from the cache
    evaluation = eval_paper.main(["--root", str(root), "--out", str(out), "--device", "cpu"])

    assert [r["run"] for r in read_csv(out / "runs.csv") if r["source"] == "ours"] == [good.name]
    reasons = {Path(s["path"]).name: s["reason"] for s in read_csv(out / "skipped.csv")}
    assert set(reasons) == set(bad)
    assert "no checkpoint" in reasons["no-checkpoint"]
    assert "truncated or corrupt" in reasons["truncated"]
    assert "no train_config.yaml" in reasons["no-config"]
    assert "does not build" in reasons["unknown-class"] and "NoSuchLoss" in reasons["unknown-class"]
    assert "does not build" in reasons["stale-key"] and "no_such_option" in reasons["stale-key"]
    assert all("\n" not in r and len(r) < 400 for r in reasons.values())
    skipped_section = (out / "table.md").read_text().split("## Skipped")[1]
    assert all(str(path) in skipped_section for path in bad.values())
    assert len(evaluation.skipped) == len(bad)


def test_a_root_without_runs_exits_2_with_one_line(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    result = run_entry_point(
        "eval_paper.py", ["--root", str(tmp_path / "empty"), "--out", str(tmp_path / "results")],
        cwd=tmp_path, timeout=120,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "no runs under" in lines[0] and "Traceback" not in result.stderr


def test_a_full_disk_for_out_is_one_line(
    evaluated: Path, trained_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "results"
    shutil.copytree(evaluated / "cache", out / "cache")

    def full(path: Any, text: str) -> None:
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(eval_paper, "atomic_write_text", full)
    with pytest.raises(SystemExit) as exit_info:
        run_cli_main(lambda: eval_paper.main(["--root", str(trained_root), "--out", str(out),
                                              "--device", "cpu"]))
    assert exit_info.value.code == 2
    error_lines = [line for line in capsys.readouterr().err.splitlines() if "error:" in line]
    assert len(error_lines) == 1 and "no space left" in error_lines[0]


# ----------------------------------------------------------------------------------------------
# load_checkpoint
# ----------------------------------------------------------------------------------------------

def test_load_checkpoint_gives_an_eval_model_that_reproduces_the_pitch_metrics(
    evaluated: Path, trained_root: Path, tiny_data_path: Path
) -> None:
    run = run_dir(trained_root, "SOT-2048", 1)
    (path,) = (run / "checkpoints").glob("best-lsd-*.ckpt")
    rng = torch.get_rng_state()
    model = checkpoints.load_checkpoint(path)
    assert torch.equal(torch.get_rng_state(), rng)  # building did not reseed the caller
    assert not any(m.training for m in model.modules())
    saved = torch.load(path, map_location="cpu", weights_only=True)["state_dict"]
    assert all(torch.equal(model.state_dict()[k], v) for k, v in saved.items())

    data = PreloadedSinusoidDataModule(str(tiny_data_path), batch_size=16,
                                       generate_if_missing=False)
    data.setup("test")
    (batch,) = list(data.test_dataloader())  # the 16 test examples (16, 4096)
    with torch.no_grad():
        estimate = model.estimate(batch["x"])
    assert estimate["f0_hz"].shape == (16, 16) and estimate["amplitudes"].shape == (16, 16, 20)
    assert estimate["audio"].shape == (16, 4096)
    recorded = json.loads((run / "test_metrics.json").read_text())
    pitch = metrics.pitch_metrics(estimate["f0_hz"].double(), batch["f0_hz"].double())
    for key in ("rpa", "rca", "od", "within_octave"):
        assert pitch[key] == recorded[key], key
    assert pitch["median_cents_error"] == pytest.approx(recorded["median_cents_error"], rel=1e-9)


# ----------------------------------------------------------------------------------------------
# The table's marks, on a hand-made example
# ----------------------------------------------------------------------------------------------

def _row(experiment: str, seed: int | None, lsd: float | None, rpa: float, od: float,
         source: str = "ours") -> dict[str, Any]:
    return {"experiment": experiment, "run": f"{experiment}-{seed}", "seed": seed, "source": source,
            "lsd": lsd, "rpa": rpa, "rca": rpa, "od": od}


def test_best_is_bold_and_second_best_italic_per_column() -> None:
    rows = [
        _row("A", 1, 10.0, 0.90, 0.10), _row("A", 2, 12.0, 0.80, 0.10),  # LSD 11, RPA 85, -OD -0.1
        _row("B", 1, 5.0, 0.50, -0.02), _row("B", 2, 7.0, 0.50, -0.02),  # LSD 6, RPA 50, -OD 0.02
        _row("C", 1, 8.0, 0.95, 0.50),                                    # LSD 8, RPA 95, -OD -0.5
        _row("pYIN (baseline)", None, None, 0.99, 0.0, source="baseline"),
    ]
    table = result_tables.summarize(rows)
    assert [r.label for r in table] == ["A", "B", "C", "pYIN (baseline)"]
    cells = result_tables.table_cells(table)
    # columns: n, then mean and median of LSD, RPA, RCA and -OD
    marks = [[c.mark for c in row] for row in cells]
    assert marks[0] == ["", "", "", "second", "second", "second", "second", "second", "second"]
    assert marks[1] == ["", "best", "best", "", "", "", "", "best", "best"]
    assert marks[2] == ["", "second", "second", "best", "best", "best", "best", "", ""]
    assert all(m == "" for m in marks[3])  # the baseline is shown, not ranked
    assert [c.text for c in cells[1][:4]] == ["2", "6.00 (1.41)", "6.00", "50.0 (0.0)"]
    assert cells[2][1].text == "8.00 (–)"
    assert cells[3][1].text == "–" and cells[3][3].text == "99.0"
    markdown = result_tables.render_markdown(table, ["a note"], [result_tables.Skipped("x/y", "why")])
    assert "| B | 2 | **6.00 (1.41)** | **6.00** | 50.0 (0.0) |" in markdown
    assert "| C | 1 | *8.00 (–)* | *8.00* | **95.0 (–)** |" in markdown
    assert "- a note" in markdown and "## Skipped" in markdown and "- `x/y`: why" in markdown
    latex = result_tables.render_latex(table)
    assert r"B & 2 & \textbf{6.00 (1.41)} & \textbf{6.00}" in latex
    assert r"C & 1 & \textit{8.00 (--)}" in latex


def test_mark_best_handles_ties_and_closest_to_zero() -> None:
    assert result_tables.mark_best([1.0, 1.0, 2.0, 3.0], "lower") == ["best", "best", "second", ""]
    assert result_tables.mark_best([0.2, 0.9, 0.5], "higher") == ["", "best", "second"]
    assert result_tables.mark_best([-0.1, 0.1, 0.05, math.nan], "zero") == [
        "second", "second", "best", ""]
    assert result_tables.mark_best([3.0], "lower") == ["best"]


def _run_record(experiment: str, seed: int, cents: float, source: str = "ours"
                ) -> dict[str, Any]:
    """A run record as eval_paper's rows hold it, with only what the localization tables read."""
    return {"experiment": experiment, "run": f"{experiment}-{seed}", "seed": seed,
            "source": source, "median_cents_error": cents}


def test_the_localization_table_applies_the_rule_per_seed_beside_the_short_budget() -> None:
    """Per experiment: k / n seeds with a median |error| <= 100 cents (100.0 counts, 100.01 does
    not), the 95 % Wilson interval of that share (1 / 2: 9.5-90.5 %, 0 / 10: 0.0-27.8 %,
    0 / 1: 0.0-79.3 %), each seed's error; the baseline is left out; the short budget beside
    it, a dash where the study has no such experiment. Seeds are listed in numeric order."""
    rows = [_run_record("SOT-2048", 123, 0.42), _run_record("SOT-2048", 42, 3195.2),
            _run_record("MSS-Lin", 42, 4440.3), _run_record("Edge", 1, 100.0),
            _run_record("Edge", 2, 100.01),
            {"experiment": "pYIN (baseline)", "run": "pyin", "seed": None, "source": "baseline",
             "median_cents_error": 12.0}]
    alone = result_tables.render_localization_markdown(rows)
    assert "short budget" not in alone and "pYIN" not in alone
    assert "| SOT-2048 | 2 | 1/2 | 9.5 – 90.5 | 42: 3195, 123: 0.4 |" in alone
    assert "| MSS-Lin | 1 | 0/1 | 0.0 – 79.3 | 42: 4440 |" in alone
    assert "| Edge | 2 | 1/2 | 9.5 – 90.5 | 1: 100, 2: 100 |" in alone
    short = [{"experiment": "SOT-2048", "median_abs_cents": 400.0 + i} for i in range(10)]
    beside = result_tables.render_localization_markdown(rows, short)
    assert "| SOT-2048 | 2 | 1/2 | 9.5 – 90.5 | 42: 3195, 123: 0.4 | 0/10 | 0.0 – 27.8 |" in beside
    assert "| MSS-Lin | 1 | 0/1 | 0.0 – 79.3 | 42: 4440 | – | – |" in beside
    assert result_tables.render_localization_markdown(rows[-1:]) == ""


def test_the_seed_pairs_table_lines_up_each_seeds_runs() -> None:
    """A row per seed two or more experiments ran (numeric order), a column per experiment; a
    cell is the median |error| with a tick when it localizes (100.0 does, 100.01 not), a dash
    where the experiment lacks the seed; the baseline and the authors' runs are left out."""
    rows = [_run_record("SOT-2048", 123, 0.42), _run_record("SOT-2048", 42, 3195.2),
            _run_record("MSS-Lin", 42, 4440.3), _run_record("MSS-Lin", 123, 100.0),
            _run_record("MSS-Lin", 456, 100.01), _run_record("SOT-2048", 7, 5.0),
            _run_record("SOT-2048", 456, 2.0, "original"),
            {"experiment": "pYIN (baseline)", "run": "pyin", "seed": None, "source": "baseline",
             "median_cents_error": 12.0}]
    lines = result_tables.render_seed_pairs_markdown(rows).splitlines()
    assert lines == ["| seed | SOT-2048 | MSS-Lin |", "|--:|--:|--:|",
                     "| 42 | 3195 | 4440 |", "| 123 | 0.4 ✓ | 100 ✓ |"]
    assert result_tables.render_seed_pairs_markdown(rows[:2] + rows[-1:]) == ""
    three = rows + [_run_record("Variant", 456, 700.0)]
    assert "| 456 | – | 100 | 700 |" in result_tables.render_seed_pairs_markdown(three)


def test_eval_paper_prints_the_localization_beside_a_short_budget_study(
    evaluated: Path, trained_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str]
) -> None:
    """localization.md is written with the table; ``--short-budget`` puts a seeds.csv's share
    beside it; a missing or malformed seeds.csv is one line naming the file, exit 2, before
    anything is evaluated or written."""
    runs = read_csv(evaluated / "runs.csv")
    localization = (evaluated / "localization.md").read_text()
    for experiment in ("SOT-2048", "MSS-Lin"):
        n = sum(r["experiment"] == experiment for r in runs)
        k = sum(float(r["median_cents_error"]) <= 100.0 for r in runs
                if r["experiment"] == experiment)
        assert f"| {experiment} | {n} | {k}/{n} |" in localization

    seeds = tmp_path / "seeds.csv"
    seeds.write_text("experiment,seed,median_abs_cents\nSOT-2048,0,50\nSOT-2048,1,2000\n")
    out = tmp_path / "results"
    shutil.copytree(evaluated / "cache", out / "cache")
    capsys.readouterr()
    eval_paper.main(["--root", str(trained_root), "--out", str(out), "--device", "cpu",
                     "--short-budget", str(seeds)])
    printed = capsys.readouterr().out
    assert "### Seeds that localize f0" in printed and f"`{seeds}`" in printed
    table = (out / "localization.md").read_text().split("\n\n")[0]  # then the seed pairs
    lines = {line.split("|")[1].strip(): line for line in table.splitlines()[2:]}
    assert lines["SOT-2048"].endswith("| 1/2 | 9.5 – 90.5 |")  # 50 cents localizes, 2000 not
    assert lines["MSS-Lin"].endswith("| – | – |")  # the study has no MSS-Lin seed
    # the module's runs: SOT-2048 seeds 1 and 2, MSS-Lin seed 1: seed 1 is a pair
    assert "By seed" in printed and "| seed | " in printed
    assert [line.split(" |")[0] for line in printed.splitlines()
            if line.startswith(("| 1 |", "| 2 |"))] == ["| 1"]

    def must_not_run(*args: Any) -> None:
        raise AssertionError("evaluated despite a bad --short-budget")

    monkeypatch.setattr(eval_paper, "evaluate_checkpoint", must_not_run)
    bad_out = tmp_path / "bad"
    for content, expected in ((None, "cannot be read"), ("experiment,seed\nA,1\n", "column"),
                              ("experiment,median_abs_cents\nA,x\n", "line 2")):
        bad = tmp_path / "bad.csv"
        bad.unlink(missing_ok=True)
        if content is not None:
            bad.write_text(content)
        argv = ["--root", str(trained_root), "--out", str(bad_out), "--device", "cpu",
                "--short-budget", str(bad)]
        with pytest.raises(SystemExit) as exit_info:
            run_cli_main(functools.partial(eval_paper.main, argv))
        assert exit_info.value.code == 2
        errors = [line for line in capsys.readouterr().err.splitlines() if "error:" in line]
        assert len(errors) == 1 and str(bad) in errors[0] and expected in errors[0], errors
        assert not bad_out.exists()


def test_family_tables_average_over_seeds_and_list_each_run() -> None:
    """families.md averages each experiment's seeds per family (a bimodal pair averages to the
    middle); the per-run table keeps each run's own numbers, labels runs by name and the
    baseline by its experiment, and marks the authors' runs "(original)"."""
    def run(experiment: str, seed: int, rpa: float, source: str = "ours") -> dict[str, Any]:
        families = [{"family": "strings", "n_examples": 3, "rpa": rpa, "rca": rpa,
                     "median_cents_error": 1000 * (1 - rpa)},
                    {"family": "all", "n_examples": 5, "rpa": rpa / 2, "rca": rpa,
                     "median_cents_error": 10.0}]
        return {"experiment": experiment, "run": f"{experiment}-{seed}", "seed": seed,
                "source": source, "families": families}

    rows = [run("SOT-2048", 42, 0.0), run("SOT-2048", 123, 0.8),
            run("SOT-2048", 7, 0.5, "original"),
            {**run("pYIN (baseline)", 0, 1.0, "baseline"), "run": "pyin", "seed": None}]
    mean = {(r["experiment"], r["family"]): r for r in result_tables.family_rows_table(rows)}
    assert mean["SOT-2048", "strings"]["n"] == 2
    assert mean["SOT-2048", "strings"]["rpa_percent"] == pytest.approx(40.0)
    assert mean["SOT-2048", "all"]["rpa_percent"] == pytest.approx(20.0)
    assert mean["SOT-2048 (original)", "strings"]["rpa_percent"] == pytest.approx(50.0)
    per_run = {(r["experiment"], r["family"]): r
               for r in result_tables.family_rows_table(rows, per_run=True)}
    assert set(per_run) == {(name, family) for name in ("SOT-2048-42", "SOT-2048-123",
                                                        "SOT-2048-7 (original)", "pYIN (baseline)")
                            for family in ("strings", "all")}
    assert all(r["n"] == 1 for r in per_run.values())
    assert per_run["SOT-2048-123", "strings"]["rpa_percent"] == pytest.approx(80.0)
    assert per_run["SOT-2048-42", "strings"]["median_cents_error"] == pytest.approx(1000.0)
    markdown = result_tables.render_family_markdown(list(per_run.values()), first_column="run")
    assert markdown.splitlines()[0].startswith("| run | strings RPA / RCA (%) | all RPA / RCA")
    assert "| SOT-2048-123 | 80.0 / 80.0 | 40.0 / 80.0 |" in markdown


def test_eval_paper_on_a_real_instrument_file_writes_the_family_tables_per_run(
    evaluated: Path, trained_root: Path, tiny_data_path: Path, tmp_path: Path,
    capsys: pytest.CaptureFixture[str]
) -> None:
    """A data file with per-example family records (the real-instrument format): families.md
    holds each experiment's mean over its seeds, families_per_run.md each run; the means are
    exactly the means of the runs' rows, and both are printed when an experiment has 2 seeds."""
    from sotddsp.data.real import GENERATOR

    data = torch.load(tiny_data_path, map_location="cpu", weights_only=True)
    f0 = data["test_thetas"]["frequency"][:, 0].tolist()
    data["meta"] = {**data["meta"], "generator": GENERATOR,
                    "records": [{"family": ("strings", "flutes")[i % 2], "f0_hz": hz}
                                for i, hz in enumerate(f0)]}
    real = tmp_path / "tiny_real.pth"
    torch.save(data, real)
    out = tmp_path / "results"
    capsys.readouterr()
    eval_paper.main(["--root", str(trained_root), "--out", str(out), "--device", "cpu",
                     "--no-baseline", "--data", str(real)])
    printed = capsys.readouterr().out
    assert "### Per instrument family" in printed and "The same per run" in printed
    mean = {(r["experiment"], r["family"]): r for r in read_csv(out / "families.csv")}
    per_run = read_csv(out / "families_per_run.csv")
    assert {r["experiment"] for r in per_run} == {f"{e}-{s}" for e, s in RUNS}
    assert {r["family"] for r in per_run} == {"strings", "flutes", "all"}
    for (experiment, family), row in mean.items():
        runs = [r for r in per_run if r["family"] == family
                and r["experiment"].rsplit("-", 1)[0] == experiment]
        assert int(row["n"]) == len(runs) == sum(e == experiment for e, _ in RUNS)
        assert float(row["rpa_percent"]) == pytest.approx(
            sum(float(r["rpa_percent"]) for r in runs) / len(runs), rel=1e-12)
    runs_csv = {r["run"]: r for r in read_csv(out / "runs.csv")}
    for r in per_run:
        if r["family"] == "all":  # the "all" family is the run's whole test split
            assert float(r["rpa_percent"]) == pytest.approx(
                100 * float(runs_csv[r["experiment"]]["rpa"]), abs=1e-9)
    assert (out / "families_per_run.md").read_text().startswith("| run |")


# ----------------------------------------------------------------------------------------------
# The pYIN baseline
# ----------------------------------------------------------------------------------------------

def test_pyin_baseline_row_tracks_the_clean_tones(evaluated: Path) -> None:
    (row,) = [r for r in read_csv(evaluated / "runs.csv") if r["source"] == "baseline"]
    assert row["experiment"] == "pYIN (baseline)" and row["lsd"] == "" and row["mss"] == ""
    # on clean harmonic tones pYIN is right within 50 cents on most frames; its misses are
    # octave-down errors on high notes (YIN's integer lags at 16 kHz)
    assert float(row["rpa"]) > 0.6 and float(row["rca"]) >= float(row["rpa"])
    assert float(row["median_cents_error"]) < 20.0
    line = next(l for l in (evaluated / "table.md").read_text().splitlines()
                if l.startswith("| pYIN (baseline)"))
    assert line.startswith("| pYIN (baseline) | – | – | – |")
    png = (evaluated / "rpa_per_seed.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
