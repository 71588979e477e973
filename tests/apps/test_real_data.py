"""The real-instrument set's command (sotddsp/apps/real_data.py): installing the renderer when
it is missing, and one-line errors."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from sotddsp.apps import real_data as real_app
from sotddsp.core.command_line import UserError, run_cli_main


def test_missing_renderer_that_cannot_be_installed_is_one_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    missing = tmp_path / "FluidR3_GM.sf2"
    monkeypatch.setattr(real_app, "SOUNDFONT", missing)
    failing = tmp_path / "install.sh"
    failing.write_text("echo 'install_fluidsynth.sh: needs root' >&2; exit 1\n")
    caplog.set_level("INFO", logger="real_data")
    with pytest.raises(
        UserError, match="could not be installed \\(install_fluidsynth.sh: needs root\\)"
    ):
        real_app.ensure_renderer(missing, install_script=failing)
    assert "installing fluidsynth and fluid-soundfont-gm" in caplog.text
    # an explicit SoundFont that is missing is not installed: the user is told to pass another
    with pytest.raises(UserError, match="not found"):
        real_app.ensure_renderer(tmp_path / "other.sf2", install_script=failing)


def test_cli_with_a_missing_soundfont_exits_2_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "argv", ["real_data.py"])
    args = [
        "--soundfont",
        str(tmp_path / "none.sf2"),
        "--out",
        str(tmp_path / "x.pth"),
        "--families",
        "keys",
    ]
    with pytest.raises(SystemExit) as exit_info:
        run_cli_main(lambda: real_app.main(args))
    assert exit_info.value.code == 2
    stderr = capsys.readouterr().err.strip()
    assert (
        len(stderr.splitlines()) == 1
        and "none.sf2" in stderr
        and stderr.startswith("real_data.py: error:")
    )
    assert not (tmp_path / "x.pth").exists()
