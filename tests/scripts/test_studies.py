"""The studies of scripts/: f0_descent.py, sot_frame_shares.py and reference_figures.py, on
sizes that run in seconds, checked on properties that hold whatever the losses' landscapes are."""

from __future__ import annotations

import csv
from pathlib import Path

import f0_descent
import pytest
import reference_figures
import sot_frame_shares

from sotddsp.core.command_line import UserError


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
