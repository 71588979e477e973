"""run_cli_main: which error gives which exit status and line, and that catching Lightning's and
jsonargparse's errors does not import them into a command that never used them."""

from __future__ import annotations

import sys

import pytest
from helpers.entrypoints import run_python
from jsonargparse import ArgumentError
from lightning.pytorch.utilities.exceptions import SIGTERMException

from sotddsp.core.command_line import UserError, run_cli_main
from sotddsp.core.run_layout import EXIT_TERMINATED, EXIT_USER_ERROR


def _exit_of(error: BaseException, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    def main() -> None:
        raise error

    with pytest.raises(SystemExit) as ended:
        run_cli_main(main)
    return ended.value.code, capsys.readouterr().err


@pytest.mark.parametrize(("error", "status", "line"), [
    (SIGTERMException(), EXIT_TERMINATED, "terminated (SIGTERM); run the same command again"),
    (ArgumentError(None, "Option '--x' is unknown"), EXIT_USER_ERROR, "error: "),
    (UserError("--out: bad; fix it"), EXIT_USER_ERROR, "error: --out: bad; fix it"),
    (ValueError("n_fft must be a positive integer"), EXIT_USER_ERROR, "error: n_fft must be"),
])
def test_each_known_error_exits_with_its_status_and_one_line(
        error: BaseException, status: int, line: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, err = _exit_of(error, capsys)
    assert code == status
    assert err.count("\n") == 1 and line in err and "Traceback" not in err


def test_a_bug_keeps_its_traceback_and_a_plain_exit_passes_through(
        capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(KeyError):
        run_cli_main(lambda: {}["missing"])
    with pytest.raises(SystemExit) as ended:
        run_cli_main(lambda: sys.exit(0))
    assert ended.value.code == 0 and capsys.readouterr().err == ""


def test_a_command_that_never_imports_lightning_is_not_made_to() -> None:
    """The data generators use neither Lightning nor jsonargparse: their one-line errors must
    not cost an import of either (seconds at every start)."""
    code = (
        "import sys\n"
        "from sotddsp.core.command_line import UserError, run_cli_main\n"
        "sys.argv = ['prog']\n"
        "def main():\n"
        "    print(sorted(m for m in ('lightning', 'jsonargparse') if m in sys.modules))\n"
        "    raise UserError('--x: bad; fix it')\n"
        "run_cli_main(main)\n"
    )
    done = run_python(code, timeout=120)
    assert done.returncode == EXIT_USER_ERROR, done.stderr
    assert done.stdout.strip() == "[]"
    assert done.stderr == "prog: error: --x: bad; fix it\n"
