"""Our one-line config errors survive a jsonargparse upgrade.

``command_line.condense_argument_error`` reads jsonargparse's messages, so pyproject.toml pins
the versions it was written against (``JSONARGPARSE_TESTED``). Each case below is a real parse
failure of train.py's parser (in this process, nothing built): the condensed line must name
the key, say what is wrong and how to fix it, and never fall back to jsonargparse's generic
wording. A new jsonargparse that rewords a message fails here, before a user sees the generic
text: widen the pin only when this file passes.
"""

from __future__ import annotations

import re
import warnings
from importlib.metadata import version

import pytest
import tomllib
from jsonargparse import ArgumentError
from packaging.specifiers import SpecifierSet

from sotddsp.core import run_layout
from sotddsp.core.command_line import JSONARGPARSE_TESTED, condense_argument_error
from sotddsp.model.cli import config_parser

# What jsonargparse's own messages look like: none of it may reach the user.
GENERIC = (
    "Parser key",
    "Problem with given class_path",
    "Does not validate against",
    "Expected a <class",
    "typing.Literal",
    "Given value",
    "NestedArg",
    "Subtypes",
    "<unicode string>",
    "\n",
)

CASES = [
    # (name, arguments, regexes the condensed line must match)
    ("unknown-option", ["--trainer.max_step", "5"],
     [r"^unrecognized arguments: --trainer\.max_step 5", r"check the spelling"]),
    ("bad-type", ["--trainer.max_steps", "abc"],
     [r"^trainer\.max_steps: expected int, got abc$"]),
    ("bad-type-nested-class",
     ["--model.loss.init_args.terms.sot.init_args.n_fft", "abc"],
     [r"^model\.loss\.init_args\.terms\.sot\.init_args\.n_fft: expected int, got abc$"]),
    ("bad-type-in-init-args", ["--data.init_args.batch_size", "x"],
     [r"^data\.init_args\.batch_size: expected int, got x$"]),
    ("bad-value-in-optimizer", ["--model.optimizer.init_args.lr", "fast"],
     [r"^model\.optimizer\.init_args\.lr: expected float", r"got fast$"]),
    ("bad-union", ["--seed_everything", "abc"],
     [r"^seed_everything: expected bool or int, got abc$"]),
    ("bad-choice", ["--resume", "sometimes"],
     [r"^resume: expected one of 'auto', 'never', got sometimes$"]),
    ("missing-config-file", ["--config", "/nonexistent/nope.yaml"],
     [r"^--config: file does not exist: '/nonexistent/nope\.yaml'; check the path$"]),
    ("malformed-inline-config", ["--config", "{trainer: [1"],
     [r"^--config: invalid YAML: did not find expected", r"\(line \d+, column \d+\)",
      r"fix it$"]),
    ("bad-class-path", ["--model.loss.class_path", "losses.NoSuchLoss"],
     [r"^model\.loss(\.class_path)?: cannot import class_path 'losses\.NoSuchLoss'",
      r"check its spelling$"]),
    ("bad-class-path-in-union", ["--data", "nomodule.DataModule"],
     [r"^data: cannot import class_path 'nomodule\.DataModule'",
      r"No module named 'nomodule'", r"check its spelling$"]),
    ("unknown-init-arg", ["--model.encoder.init_args.kernel", "3"],
     [(r"^model\.encoder\.init_args\.kernel: kernel is not an option of "
       r"sotddsp\.model\.encoder\.PESTOEncoder; check its spelling$")]),
]


@pytest.fixture(scope="module")
def parser():
    """train.py's parser (experiment_cli.build_cli's), built once."""
    return config_parser()


@pytest.mark.parametrize("name, args, says", CASES, ids=[case[0] for case in CASES])
def test_each_covered_message_condenses_to_our_line(parser, name: str, args: list[str],
                                                    says: list[str]) -> None:
    with pytest.raises(ArgumentError) as raised:
        parser.parse_args(["--trainer.logger", "false", *args])
    message = str(raised.value)
    line = condense_argument_error(message, ["--trainer.logger", "false", *args])
    generic = [phrase for phrase in GENERIC if phrase in line]
    assert not generic, f"jsonargparse's generic text {generic} in {line!r} (from {message!r})"
    for pattern in says:
        assert re.search(pattern, line), f"{pattern!r} not in {line!r} (from {message!r})"
    assert len(line) <= 300


def test_a_yaml_syntax_error_in_a_config_file_names_the_file(tmp_path) -> None:
    """train.py reads each --config file itself first (jsonargparse's message names no file)."""
    from sotddsp.apps import train
    from sotddsp.core.command_line import UserError

    bad = tmp_path / "bad.yaml"
    bad.write_text("trainer:\n  max_steps: [1, 2\n")
    with pytest.raises(UserError, match=r"bad\.yaml: invalid YAML: .*\(line 3, column 1\); fix"):
        train.resolve_config_files(["--config", str(bad)], tmp_path)
    with pytest.raises(UserError, match=r"^--config gone\.yaml: the file does not exist; check"):
        train.resolve_config_files(["--config=gone.yaml"], tmp_path)
    inline = ["--config", "{trainer: {max_steps: 3}}"]  # inline YAML: the parser's
    assert train.resolve_config_files(inline, tmp_path) == inline


def test_the_installed_jsonargparse_is_a_tested_one() -> None:
    """pyproject.toml pins exactly the versions the messages were tested against."""
    project = tomllib.loads((run_layout.REPO / "pyproject.toml").read_text())["project"]
    (pin,) = [d for d in project["dependencies"] if d.startswith("jsonargparse")]
    assert SpecifierSet(pin.split("]", 1)[1]) == SpecifierSet(JSONARGPARSE_TESTED)
    assert version("jsonargparse") in SpecifierSet(JSONARGPARSE_TESTED)


def test_the_parser_alone_says_nothing_of_the_command_line_it_ignores(monkeypatch) -> None:
    """sweep.py and scripts/short_budget.py build train.py's parser under their own command
    lines: LightningCLI's warning that it ignores sys.argv would be noise on every sweep."""
    monkeypatch.setattr("sys.argv", ["sweep.py", "seed=42,123", "experiment=SOT-2048"])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        parser = config_parser()
    assert not [w for w in caught if "args parameter" in str(w.message)]
    assert parser.parse_args(["--seed_everything", "7"]).seed_everything == 7
