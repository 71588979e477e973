"""The synthetic data set's command (sotddsp/apps/synthetic_data.py): one option per setting,
the file it writes, one-line errors, and the regeneration command other errors print."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest
import torch
from helpers.entrypoints import run_entry_point

from sotddsp.apps.synthetic_data import build_parser, main
from sotddsp.data.datamodule import PreloadedSinusoidDataModule
from sotddsp.data.files import DataFormatError, load_dataset
from sotddsp.data.synthetic import SynthSettings, generate_dataset


def test_one_settings_class_serves_signature_meta_name_and_command_line() -> None:
    """Every SynthSettings field is an option of the command line, a key of the file's meta, and
    the command a settings object prints builds the same settings back."""
    import dataclasses

    fields = [f.name for f in dataclasses.fields(SynthSettings)]
    options = {a.dest for a in build_parser()._actions} - {"help", "out"}
    assert options == set(fields)
    settings = SynthSettings(n_examples=30, split_sizes=(10, 10, 10), snr_db=-5.0,
                             vibrato_cents=50.0, vibrato_hz=6.0, amp_min=0.25, seed=2)
    assert set(fields) <= set(settings.meta())
    args = vars(build_parser().parse_args(shlex.split(settings.command())[2:]))
    args.pop("out")
    args["split_sizes"] = tuple(args["split_sizes"])
    assert SynthSettings(**args) == settings


def test_cli_writes_file(tmp_path: Path) -> None:
    out = tmp_path / "cli.pth"
    proc = run_entry_point(
        "synthetic_data.py",
        ["--n-examples", "40", "--n-samples", "512", "--seed", "3", "--out", str(out)],
        cwd=tmp_path, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert len(proc.stdout.strip().splitlines()) == 1 and str(out) in proc.stdout
    data = load_dataset(out)
    assert torch.equal(data["train_tensors"],
                       generate_dataset(SynthSettings(n_examples=40, n_samples=512, seed=3))["train_tensors"])


def test_cli_bad_values(capsys) -> None:
    from sotddsp.core.command_line import run_cli_main

    cases = ((["--f0-max", "9000", "--n-examples", "10"], "f0_max"),
             (["--n-examples", "many"], "n-examples"))
    for argv, named in cases:
        with pytest.raises(SystemExit) as info:
            run_cli_main(lambda argv=argv: main(argv))
        assert info.value.code == 2
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and named in err and "Traceback" not in err


def test_fix_in_missing_file_error_regenerates_that_file(tmp_path: Path, capsys) -> None:
    path = tmp_path / "40_1950_512_025_1_30_8_1_harmonic_seed3_snr-5.pth"
    with pytest.raises(DataFormatError) as info:
        PreloadedSinusoidDataModule(data_path=str(path), generate_if_missing=False).setup()
    command = shlex.split(str(info.value).split("`")[1])
    assert command[:2] == ["python", "synthetic_data.py"]
    assert main(command[2:]) == path
    capsys.readouterr()
    expected = generate_dataset(SynthSettings(n_examples=30, n_samples=512, amp_min=0.25, seed=3, snr_db=-5.0))
    assert torch.equal(load_dataset(path)["val_tensors"], expected["val_tensors"])
