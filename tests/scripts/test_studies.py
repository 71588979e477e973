"""The studies of scripts/: f0_descent.py, f0_basin_grid.py, f0_loss_curves.py,
sot_frame_shares.py and reference_figures.py, on sizes that run in seconds, checked on properties
that hold whatever the losses' landscapes are."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import f0_basin_grid
import f0_descent
import f0_loss_curves
import numpy as np
import pytest
import reference_figures
import sot_frame_shares
import torch
import yaml
from helpers.entrypoints import error_line_problems, run_entry_point

from sotddsp.core.command_line import EXIT_USER_ERROR, UserError


def test_f0_descent_rows_cover_every_loss_mode_and_offset(tmp_path: Path) -> None:
    """Two Adam steps of lr 0.1 semitone move f0 by at most about 20 cents: every start at the
    true f0 ends within 50 cents and every start a quarter octave (300 cents) or more away
    does not, for every loss and both modes."""
    rows = f0_descent.main(["--steps", "2", "--targets", "2", "--out", str(tmp_path)])
    assert len(rows) == len(f0_descent.LOSSES) * len(f0_descent.MODES) * len(
        f0_descent.OFFSETS_OCTAVES)
    for row in rows:
        if row["offset_octaves"] == 0.0:
            assert row["within_50_cents"] == 1.0, row
            assert row["median_error_cents"] < 25.0, row
        else:
            assert row["within_50_cents"] == 0.0, row
            assert row["median_error_cents"] > 1200 * abs(row["offset_octaves"]) - 25.0, row
    with open(tmp_path / "f0_descent.csv", newline="") as handle:
        assert len(list(csv.DictReader(handle))) == len(rows)
    table = (tmp_path / "f0_descent.md").read_text()
    assert table.count("| SOT-2048 |") == 2 and "+0.25 oct" in table
    assert (tmp_path / "f0_descent.png").read_bytes()[:4] == b"\x89PNG"


GRID_PAIR = "padded-flattop-mss0.05-linear,full-hann-mss0-log"


def test_f0_basin_grid_shards_resume_and_collect(tmp_path: Path, monkeypatch, capsys) -> None:
    """Two configurations as two shards (2 targets, offsets 0 and +1/2 octave, 2 steps): the
    first shard leaves the collect waiting, the second collects; a re-run fits nothing; other
    settings into the same --out are refused. Two steps of 0.1 semitone cannot cross half an
    octave, so every configuration finds all targets from 0 and none from +1/2: all tie, and
    the rule picks the paper's own SOT-2048 (fewest changes), which writes no experiment."""
    out, beyond = tmp_path / "grid", tmp_path / "beyond"
    args = ["--targets", "2", "--offsets", "0.5,0", "--steps", "2", "--configs", GRID_PAIR,
            "--out", str(out), "--experiment-dir", str(beyond)]
    assert f0_basin_grid.main([*args, "--shard", "1/2"]) is None
    assert sorted(p.name for p in (out / "parts").iterdir()) == [
        "padded-flattop-mss0.05-linear__learned.csv", "padded-flattop-mss0.05-linear__true.csv"]
    with pytest.raises(UserError, match="2 of 4 fits are missing"):
        f0_basin_grid.main(["--collect", "--out", str(out)])
    result = f0_basin_grid.main([*args, "--shard", "2/2"])
    rows = result["rows"]
    assert len(rows) == 2 * 2 * 2
    for row in rows:
        assert row["within_50_cents"] == (1.0 if row["offset_octaves"] == 0.0 else 0.0), row
    assert [s["basin_learned"] for s in result["ranking"]] == [0.0, 0.0]
    assert result["chosen"] == f0_basin_grid.PAPER and result["experiment_file"] is None
    assert not beyond.exists()
    with open(out / "grid.csv", newline="") as handle:
        assert len(list(csv.DictReader(handle))) == len(rows)
    table = (out / "grid.md").read_text()
    assert "| full-hann-mss0-log | learned | 100 | 0 | 50 | 0 |" in table
    assert "| 0 | +0.5 |" in table and "| 2 | full-hann-mss0-log | 4 |" in table
    assert (out / "grid.png").read_bytes()[:4] == b"\x89PNG"
    assert "chosen configuration: padded-flattop-mss0.05-linear" in capsys.readouterr().out
    parts = {p.name: p.read_bytes() for p in (out / "parts").iterdir()}

    def no_fit(*_args, **_kwargs):
        raise AssertionError("a finished fit ran again")

    monkeypatch.setattr(f0_descent, "fit", no_fit)
    for shard in ("1/2", "2/2"):
        f0_basin_grid.main([*args, "--shard", shard])
    assert {p.name: p.read_bytes() for p in (out / "parts").iterdir()} == parts
    with pytest.raises(UserError, match=r"other settings \(steps\)"):
        f0_basin_grid.main([*args, "--steps", "3"])
    for bad, says in (("--shard=3/2", "1 <= K <= N"), ("--configs=padded-hann", "unknown"),
                      ("--offsets=0.5,1", "must include 0")):
        with pytest.raises(UserError, match=says):
            f0_basin_grid.main([*args, bad])


def test_f0_basin_grid_basin_width() -> None:
    """The contiguous run around offset 0 with >= 80 % found; 0 when offset 0 is below."""
    width = f0_basin_grid.basin_width
    assert width({-0.5: 0.9, -0.25: 0.8, 0.0: 1.0, 0.25: 0.5, 0.5: 1.0}) == 0.5
    assert width({-0.5: 1.0, 0.0: 10 / 12, 0.5: 0.75}) == 0.5
    assert width({-0.25: 1.0, 0.0: 0.75, 0.25: 1.0}) == 0.0
    assert width({-0.25: 0.5, 0.0: 1.0, 0.25: 0.0}) == 0.0
    assert width({-2.0: 1.0, 0.0: 1.0, 2.0: 1.0}) == 4.0


def _fake_grid(out: Path, shares: dict[str, tuple[list[float], list[float]]],
               offsets: list[float]) -> None:
    """settings.json and part files of a grid whose configuration c found shares[c] =
    (true, learned) per offset."""
    settings = {"steps": 300, "targets": 12, "lr": 0.1, "amplitude_lr": 0.05, "seed": 0,
                "offsets": offsets, "configs": list(shares)}
    (out / "parts").mkdir(parents=True)
    (out / "settings.json").write_text(json.dumps(settings))
    for name, per_mode in shares.items():
        config = f0_basin_grid.BY_NAME[name]
        for mode, found in zip(f0_descent.MODES, per_mode, strict=True):
            rows = [{"configuration": name, "framing": config.framing, "window": config.window,
                     "mss_weight": config.mss_weight, "positions": config.positions,
                     "mode": mode, "offset_octaves": o, "within_50_cents": share,
                     "median_error_cents": 10.0, "fit_seconds": 1.0}
                    for o, share in zip(offsets, found, strict=True)]
            f0_basin_grid.part_path(out, config, mode).write_text(
                f0_basin_grid.csv_text(f0_basin_grid.PART_COLUMNS, rows))


def test_f0_basin_grid_ranks_by_the_rule_and_writes_a_runnable_experiment(
    tmp_path: Path, tiny_data_path: Path
) -> None:
    """A synthetic grid result: the rule's order (learned basin first, then true basin, then
    shares, then fewest changes), and the chosen configuration's experiment file: labelled,
    named after its changes, and built by train.py's own CLI into the very loss the grid fits."""
    offsets = [-0.5, 0.0, 0.5]
    out = tmp_path / "grid"
    _fake_grid(out, {
        "padded-flattop-mss0.05-linear": ([0.0, 1.0, 0.0], [0.0, 1.0, 0.0]),
        "full-flattop-mss0.05-linear": ([0.9, 0.9, 0.9], [0.9, 0.9, 0.0]),   # learned 0.5
        "centered-hann-mss0-log": ([0.9, 0.9, 0.9], [0.9, 0.9, 0.0]),        # its tie, 4 changes
        "full-hann-mss0-linear": ([0.0, 0.9, 0.0], [0.9, 0.9, 0.9]),         # learned 1.0: first
        "centered-flattop-mss0.05-linear": ([0.9, 0.9, 0.0], [0.9, 0.9, 0.1]),  # learned 0.5, less
    }, offsets)
    result = f0_basin_grid.main(["--collect", "--out", str(out), "--experiment-dir",
                                 str(tmp_path / "beyond")])
    assert [s["config"].name for s in result["ranking"]] == [
        "full-hann-mss0-linear", "full-flattop-mss0.05-linear", "centered-hann-mss0-log",
        "centered-flattop-mss0.05-linear", "padded-flattop-mss0.05-linear"]
    chosen = result["chosen"]
    path = result["experiment_file"]
    assert path == tmp_path / "beyond" / "SOT-2048-full-hann-nomss.yaml"
    assert f0_basin_grid.Config("centered", "hann", 0.0, "log").experiment_name() == \
        "SOT-2048-centered-hann-nomss-logf"
    text = path.read_text()
    assert text.startswith("# BEYOND THE PAPER: not one of its seven experiments.")
    config = yaml.safe_load(text)
    assert config["experiment"] == "SOT-2048-full-hann-nomss"
    assert config["model"]["loss"] == f0_basin_grid.loss_config(chosen)
    assert config["model"]["loss"]["init_args"]["weights"] == {"sot": 1.0}
    sot = config["model"]["loss"]["init_args"]["terms"]["sot"]["init_args"]
    assert (sot["framing"], sot["window"], sot["log_frequency"], sot["n_fft"]) == \
        ("full", "hann", False, 2048)
    from sotddsp.model import cli as experiment_cli

    cli = experiment_cli.build_cli(["--config", str(path), "--data.init_args.data_path",
                                    str(tiny_data_path), "--checkpoint_root", str(tmp_path),
                                    "--trainer.logger", "false"])
    assert cli.run_dir == tmp_path / "SOT-2048-full-hann-nomss" / "SOT-2048-full-hann-nomss-42"
    gen = torch.Generator().manual_seed(0)
    audio = torch.randn(2, 2, 4096, generator=gen)
    assert torch.equal(cli.model.loss(*audio), f0_basin_grid.build_loss(chosen)(*audio))


def test_f0_basin_grid_paper_configuration_is_sot_2048s_loss() -> None:
    """The grid's paper point is base.yaml's loss, with the three settings it names written out
    at their defaults."""
    paper = f0_basin_grid.loss_config(f0_basin_grid.PAPER)
    base = yaml.safe_load(f0_basin_grid.BASE_CONFIG.read_text())["model"]["loss"]
    base["init_args"]["terms"]["sot"]["init_args"]["framing"] = "padded"
    assert paper == base
    assert [c.name for c in f0_basin_grid.CONFIGS][:2] == [
        "padded-flattop-mss0.05-linear", "padded-flattop-mss0.05-log"]
    assert len(f0_basin_grid.CONFIGS) == 24


def test_f0_loss_curves_are_zero_at_the_true_f0() -> None:
    offsets = np.array([-0.5, 0.0, 0.5])
    curves = f0_loss_curves.loss_curves(440.0, offsets)
    assert len(curves) == 2 * 7
    for name, values in curves.items():
        assert values[1] == pytest.approx(0.0, abs=1e-7) and np.all(values[[0, 2]] > 1e-6), name
    summary = f0_loss_curves.shape_summary(np.arange(-3, 4) / 4,
                                           np.array([3.0, 1.0, 2.0, 0.0, 1.0, 2.0, 3.0]))
    assert summary == {"local_minima": [-0.5], "monotone_from": -0.25, "monotone_to": 0.75}


def test_sot_frame_shares_match_pot_and_name_the_partial_frames(capsys) -> None:
    pytest.importorskip("ot")
    sot_frame_shares.main([])
    lines = capsys.readouterr().out.splitlines()
    assert "7 of 16 frames reach past the signal's end" in lines[0]
    rows = [line.split("|")[1:-1] for line in lines if line.startswith(("| +", "| -"))]
    assert len(rows) == len(sot_frame_shares.SHIFTS_SEMITONES)
    for cells in rows:
        assert float(cells[-1]) < 1e-10  # the no-cutoff frame values against POT, float64
        for share in (cells[2], cells[5]):
            assert 0.0 <= float(share.strip(" %")) <= 100.0


def test_reference_figures_draw_every_run_of_a_root(tmp_path: Path) -> None:
    root = tmp_path / "runs"
    columns = ["step", "epoch", "split", "train/loss", "val/lsd", "val/rpa",
               "val/median_cents_error"]
    for name, lsd in (("A-42", 100.0), ("B-42", 80.0)):
        directory = root / name.split("-")[0] / name
        directory.mkdir(parents=True)
        with open(directory / "curves.csv", "w", newline="") as handle:
            writer = csv.DictWriter(handle, columns)
            writer.writeheader()
            for step in range(20, 220, 20):
                writer.writerow({"step": step, "epoch": step // 44, "split": "train",
                                 "train/loss": 1.0 / step})
                if step % 100 == 0:
                    writer.writerow({"step": step, "epoch": step // 44, "split": "val",
                                     "val/lsd": lsd - step / 100, "val/rpa": 0.1,
                                     "val/median_cents_error": 300.0})
    out = reference_figures.main(["--root", str(root), "--out", str(tmp_path / "curves.png")])
    assert out.read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(UserError, match="no best-lsd-"):  # these runs wrote no checkpoint
        reference_figures.main(["--root", str(root), "--out", str(tmp_path / "curves.png"),
                                "--f0-out", str(tmp_path / "f0.png")])
    assert not (tmp_path / "f0.png").exists()
    # an empty (or unreadable) curves.csv: one line naming it, and the figure is not rewritten
    before = out.read_bytes()
    (root / "B" / "B-42" / "curves.csv").write_bytes(b"")
    with pytest.raises(UserError, match=r"B-42/curves\.csv: no rows, or not a readable CSV"):
        reference_figures.main(["--root", str(root), "--out", str(out)])
    assert out.read_bytes() == before


def test_harmonic_profile_finds_a_subharmonic_comb() -> None:
    """Exact cases: every example predicted at f0 / 4 with all its energy on harmonic 4 gives
    ratio 4, a one-hot profile and similarity 1; half of them at f0 with harmonic 1 gives a
    two-bin histogram and a profile of 0.5 on each."""
    import harmonic_profile
    import torch

    f0 = torch.tensor([100.0, 220.0, 440.0, 880.0])
    one_hot = torch.zeros(4, 16, 20)
    one_hot[..., 3] = torch.rand(4, 1) + 0.5
    comb = harmonic_profile.profile(f0, (f0 / 4)[:, None].expand(4, 16), one_hot)
    assert comb["histogram"] == {4: 4}
    assert torch.equal(comb["mean_profile"], torch.eye(20)[3])
    assert comb["similarity"] == pytest.approx(1.0)
    mixed = one_hot.clone()
    mixed[2:, :, 3], mixed[2:, :, 0] = 0.0, 1.0
    pred = torch.cat([f0[:2] / 4, f0[2:]])[:, None].expand(4, 16)
    summary = harmonic_profile.profile(f0, pred, mixed)
    assert summary["histogram"] == {4: 2, 1: 2}
    assert summary["mean_profile"][[0, 3]].tolist() == [0.5, 0.5]
    assert summary["similarity"] == pytest.approx(2 ** -0.5)
    assert "| examples (%) | 50.0 | 50.0 |" in harmonic_profile.markdown(summary, "t")


def test_harmonic_profile_breaks_the_ratios_down_by_the_targets_harmonics() -> None:
    """Exact cases, K = 20 output harmonics: a sine (1 harmonic) at f0 / 2 and a 8-harmonic note
    at f0 / 2 are exact aliases (2·1, 2·8 ≤ 20); a 8-harmonic note at f0 / 3 is not (24 > 20),
    nor a sine 60 cents from f0 / 2 (RPA's 50-cent tolerance); an example on f0 never is."""
    import harmonic_profile
    import torch

    f0 = torch.tensor([100.0, 200.0, 300.0, 400.0, 500.0, 600.0])
    # ratio 2 · 2^(60/1200): rounds to 2, but 60 cents off it: not on the alias as RPA would say
    ratio = torch.tensor([2.0, 2.0, 3.0, 1.0, 1.0, 2.0 * 2 ** (60 / 1200)])
    amplitudes = torch.rand(6, 16, 20)
    summary = harmonic_profile.profile(f0, (f0 / ratio)[:, None].expand(6, 16), amplitudes,
                                       torch.tensor([1, 8, 8, 1, 8, 1]))
    assert summary["by_target_harmonics"] == {1: {2: 2, 1: 1}, 8: {2: 1, 3: 1, 1: 1}}
    assert summary["exact_aliases"] == 2
    table = harmonic_profile.markdown(summary, "t")
    assert "| 1 | 1 | 2 | 0 |" in table and "| 8 | 1 | 1 | 1 |" in table
    assert "Examples off f0 (rounded ratio ≠ 1): 4; of them on an exact alias" in table
    assert table.endswith("≤ 20): 2.")
    assert "by_target_harmonics" not in harmonic_profile.profile(f0, f0[:, None], amplitudes)


@pytest.mark.parametrize("problem", ["missing", "corrupt"])
def test_harmonic_profile_bad_checkpoint_is_one_line(tmp_path: Path, problem: str) -> None:
    """A missing or corrupt checkpoint (CheckpointError, a user error) ends the script with one
    line naming the file, exit status 2 and no traceback."""
    checkpoint = tmp_path / "model.ckpt"
    if problem == "corrupt":
        checkpoint.write_bytes(b"PK\x03\x04 not a whole zip archive")
    done = run_entry_point("scripts/harmonic_profile.py", [str(checkpoint)], timeout=120)
    line, problems = error_line_problems(done.stderr, "harmonic_profile.py")
    assert done.returncode == EXIT_USER_ERROR and not problems, (done.returncode, problems)
    assert "model.ckpt" in line and ("missing" if problem == "missing" else "corrupt") in line
