"""What every entry point shares on the command line: user mistakes end with one line
``<program>: error: <what is wrong and how to fix it>`` on stderr, a non-zero exit and no
traceback. Imports no torch (hydra's sweeper plugin reads it at every hydra start).

- ``UserError``: a mistake in the user's input;
- ``run_cli_main``: runs an entry point and turns known mistakes into that one line;
  ``console_script``: the function a console script (and a checkout's thin script) calls;
- ``OneLineArgumentParser``, ``positive_int`` and ``non_negative_int``: argparse with one-line
  errors;
- ``optional_import``: a package of an optional extra, or one line saying how to install it;
- ``one_line``, ``condense_argument_error``, ``describe_config_error``, ``describe_os_error``:
  the one-line forms of an exception, a jsonargparse parse error, an error raised while
  building a config's classes (naming its key), and a disk error.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import logging
import re
import sys
import types
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from sotddsp.core.run_layout import EXIT_INTERRUPTED, EXIT_TERMINATED, EXIT_USER_ERROR

__all__ = [
    "JSONARGPARSE_TESTED",
    "OneLineArgumentParser",
    "UserError",
    "condense_argument_error",
    "config_leaves",
    "console_script",
    "describe_config_error",
    "describe_os_error",
    "non_negative_int",
    "one_line",
    "option_values",
    "optional_import",
    "positive_int",
    "run_cli_main",
]


class UserError(Exception):
    """A mistake in the user's input: reported as one line, without a traceback."""


def one_line(message: object, limit: int = 360) -> str:
    """A message as one line: its non-empty lines stripped and joined by spaces, cut to
    ``limit`` characters (with "...")."""
    text = " ".join(line.strip() for line in str(message).splitlines() if line.strip())
    text = text or "unknown error"
    return text if len(text) <= limit else text[: limit - 3] + "..."


class OneLineArgumentParser(argparse.ArgumentParser):
    """argparse whose errors raise ``UserError`` (one line, exit 2 under ``run_cli_main``)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UserError(one_line(message))


def option_values(args: Sequence[str], option: str) -> list[str]:
    """The values given to ``option`` in ``args``, in order: ``--config a.yaml`` and
    ``--config=a.yaml`` alike (e.g. every ``--config`` of a train.py command line)."""
    values = []
    for i, arg in enumerate(args):
        if arg == option and i + 1 < len(args):
            values.append(args[i + 1])
        elif arg.startswith(option + "="):
            values.append(arg.split("=", 1)[1])
    return values


def _int_at_least(text: str, minimum: int, kind: str) -> int:
    """``text`` as an integer >= ``minimum``; argparse.ArgumentTypeError "must be <kind>, got ..."."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be {kind}, got {text!r}") from None
    if value < minimum:
        raise argparse.ArgumentTypeError(f"must be {kind}, got {text}")
    return value


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    return _int_at_least(text, 1, "a positive integer")


def non_negative_int(text: str) -> int:
    """argparse type: an integer >= 0."""
    return _int_at_least(text, 0, "an integer >= 0")
# The optional extra that provides each optional package (pyproject.toml).
OPTIONAL_EXTRAS = {"librosa": "audio", "mido": "audio"}


def optional_import(module: str, purpose: str) -> types.ModuleType:
    """``import module``, or UserError (one line: what needs it and the pip command) when it is not
    installed. ``purpose``: what needs it, e.g. "the pYIN baseline"."""
    try:
        return importlib.import_module(module)
    except ImportError:
        extra = OPTIONAL_EXTRAS.get(module.split(".")[0])
        how = f"pip install 'sot-ddsp[{extra}]'" if extra else f"pip install {module}"
        raise UserError(f"{purpose} needs the Python package {module}, which is not installed: "
                        f"{how}") from None


# The jsonargparse versions whose messages condense_argument_error reads (pyproject.toml pins
# them); tests/test_config_errors.py fails if one of the covered messages comes out generic.
JSONARGPARSE_TESTED = ">=4.53,<4.54"
IMPORT_FAILURE = re.compile(r"No module named|has no attribute|does not exist|not a subclass|"
                            r"Import path|cannot import")


def _option_given(keys: list[str], args: Sequence[str]) -> str | None:
    """The one command-line option of ``args`` (without ``--``) that the key chain of a nested
    error designates: it starts with the outermost key and ends with the innermost one, e.g.
    ``model.loss.init_args.terms.sot.init_args.n_fft`` for ("model.loss", "terms", "n_fft")."""
    names = {arg[2:].split("=", 1)[0] for arg in args if arg.startswith("--")}
    matches = [name for name in names
               if name.startswith(keys[0]) and (len(keys) == 1 or name.endswith("." + keys[-1]))]
    return matches[0] if len(matches) == 1 else None


def _condensed_detail(text: str, lines: list[str]) -> str:
    """The innermost problem of a jsonargparse error, in our words."""
    importing = re.search(r"Problem with given class_path '([^']+)':\s*\n\s*(.+)", text)
    if importing and IMPORT_FAILURE.search(importing.group(2)):
        return (f"cannot import class_path '{importing.group(1)}' ({importing.group(2).strip()}); "
                "check its spelling")
    unknown = re.search(r"Problem with given class_path '([^']+)':\s*\n\s*Option '(\w+)' is not "
                        r"accepted", text)
    if unknown:
        return f"{unknown.group(2)} is not an option of {unknown.group(1)}; check its spelling"
    typed = re.search(r"Expected a <class '(?:[\w.]*\.)?(\w+)'>\. Got value: (.+)", text)
    if typed:
        return f"expected {typed.group(1)}, got {typed.group(2).strip()}"
    choice = re.search(r"Expected a typing\.Literal\[(.*)\]\. Got value: (.+)", text)
    if choice:
        return f"expected one of {choice.group(1)}, got {choice.group(2).strip()}"
    union = re.search(r"Subtypes: \[(.*?)\]", text)
    given = re.search(r"Given value: (.*?)(?:\. Got value:|$)", text, flags=re.MULTILINE)
    if union and given:
        types = re.findall(r"<class '(?:[\w.]*\.)?(\w+)'>", union.group(1))
        return f"expected {' or '.join(types)}, got {given.group(1)}"
    missing = re.search(r"File does not exist: (.+)", text)
    if missing:
        return f"file does not exist: {missing.group(1).strip()}; check the path"
    details = [re.sub(r'^.*Parser key "[^"]+":\s*', "", line) for line in lines]
    details = [d for d in details if d and not d.startswith("Problem with given class_path")]
    return details[-1] if details else one_line(text)


def condense_argument_error(message: str, args: Sequence[str] = ()) -> str:
    """One line from a jsonargparse error: the dotted key, then the innermost problem and its fix.

    'Parser key "model.loss": ... Parser key "n_fft": Expected a <class 'int'>. Got value: abc'
    becomes 'model.loss.init_args.terms.sot.init_args.n_fft: expected int, got abc' when ``args``
    (the command line) holds that option, else 'model.loss.terms.n_fft: ...'; an unknown option,
    a class_path that does not import, an option a class does not take, a choice outside a
    Literal, a missing or malformed config file each get their own wording. The messages read
    are those of the jsonargparse versions ``JSONARGPARSE_TESTED``.
    """
    text = str(message)
    lines = [raw.strip() for raw in text.splitlines() if raw.strip()]
    if text.startswith("unrecognized arguments:"):
        return f"{one_line(text)}; check the spelling (--help lists the options)"
    if lines and lines[0].startswith("Problems parsing config"):
        problems = [line for line in lines[1:] if not line.startswith("in ")]
        where = re.findall(r'line (\d+), column (\d+)', text)
        position = f" (line {where[-1][0]}, column {where[-1][1]})" if where else ""
        problem = problems[-1] if problems else one_line(lines[0].split(":", 1)[-1])
        return f"cannot parse a config file: {problem}{position}; fix its YAML syntax"
    keys = re.findall(r'Parser key "([^"]+)":', text)
    if keys[:1] == ["config"] and "File does not exist" not in text:
        problems = [re.sub(r'^Parser key "config":\s*', "", line) for line in lines]
        problems = [p for p in problems if p and not p.startswith("in ")]
        where = re.findall(r'line (\d+), column (\d+)', text)
        position = f" (line {where[-1][0]}, column {where[-1][1]})" if where else ""
        problem = problems[-1] if problems else "unreadable"
        return f"--config: invalid YAML: {problem}{position}; fix it"
    detail = _condensed_detail(text, lines)
    if not keys:
        return detail
    unknown = re.match(r"(\w+) is not an option of ", detail)
    if unknown:
        keys = [*keys, "init_args", unknown.group(1)]
    where = _option_given(keys, args) or ".".join(keys)
    if where == "config":
        where = "--config"
    return f"{where}: {detail}"


def config_leaves(node: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """(dotted key, value) of every leaf of a nested config mapping (a list is one leaf), in
    the mapping's order: ``("model.optimizer.init_args.lr", 0.0001)``."""
    if isinstance(node, Mapping):
        for key, value in node.items():
            yield from config_leaves(value, f"{prefix}.{key}" if prefix else str(key))
    else:
        yield prefix, node


def describe_config_error(error: BaseException, config: Mapping[str, Any]) -> str:
    """One line for an error raised while a config's classes were built, naming its key.

    Our constructors say ``"<argument> must ..., got <value>"``; jsonargparse wraps those of a
    subclass-mode component ("Does not validate against any of the Union subtypes") with the
    component's class_path. The key is the config leaf with that argument's name (inside that
    component, when named) whose value reads as the one reported, e.g.
    'data.init_args.batch_size: batch_size must be an integer >= 1, got 0'.
    """
    text = str(error)
    reasons = [line.strip()[2:] for line in text.splitlines() if line.strip().startswith("- ")]
    reasons = [r for r in reasons if not r.startswith("Expected a <class 'NoneType'>")]
    message = reasons[0] if "Union subtypes" in text and reasons else one_line(text)
    class_path = re.search(r"class_path='([^']+)'", text)
    argument = re.match(r"(\w+) must\b", message)
    if argument is None:
        return message
    got = re.search(r"got (.+?)(?:;|$)", message)
    candidates = []
    for key, value in config_leaves(config):
        if key.rsplit(".", 1)[-1] != argument.group(1):
            continue
        if class_path is not None:
            component = key.rsplit(".init_args.", 1)[0]
            if dict(config_leaves(config)).get(f"{component}.class_path") != class_path.group(1):
                continue
        candidates.append((key, value))
    if got is not None and len(candidates) > 1:
        matching = [(k, v) for k, v in candidates if str(v) == got.group(1).strip()]
        candidates = matching or candidates
    return f"{candidates[0][0]}: {message}" if len(candidates) == 1 else message


def describe_os_error(error: OSError) -> str | None:
    """A one-line explanation for disk errors a user can fix, else None."""
    where = f" ({error.filename})" if error.filename else ""
    if error.errno == errno.ENOSPC:
        return f"no space left on the device{where}: free some space or write elsewhere"
    if error.errno == errno.EROFS:
        return f"the file system is read-only{where}: choose a writable output directory"
    if error.errno in (errno.EACCES, errno.EPERM):
        return f"permission denied{where}: choose a directory you can write to"
    if error.errno == errno.ENOENT:
        return f"file not found{where}: check the path"
    return None


class _NeverRaised(Exception):
    """Stands for an exception class whose module was never imported: nothing raised it."""


def _raised_class(module: str, name: str) -> type[BaseException]:
    """``module.name`` if that module is loaded, else a class no error is an instance of. A
    command that never imported lightning (the data generators) cannot have raised its
    exceptions, and importing it only to catch them costs seconds at every start."""
    loaded = sys.modules.get(module)
    return getattr(loaded, name) if loaded is not None else _NeverRaised


def run_cli_main(
    main: Callable[[], Any], known_errors: tuple[type[BaseException], ...] = ()
) -> None:
    """Run an entry point; user mistakes exit 2 with one line on stderr and no traceback.

    ``UserError``, ``ValueError`` (raised by our constructors for bad settings) and the given
    ``known_errors`` are user mistakes; disk-full, read-only and permission errors are too.
    Anything else is a bug and keeps its traceback.
    """
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    program = Path(sys.argv[0]).name
    try:
        main()
    except KeyboardInterrupt:
        print(f"{program}: interrupted", file=sys.stderr)
        sys.exit(EXIT_INTERRUPTED)
    # an except clause's class is looked up only when an error reaches it (the classes of a
    # module never imported stand for nothing: _raised_class)
    except _raised_class("lightning.pytorch.utilities.exceptions", "SIGTERMException"):
        print(f"{program}: terminated (SIGTERM); run the same command again to resume",
              file=sys.stderr)
        sys.exit(EXIT_TERMINATED)
    except _raised_class("jsonargparse", "ArgumentError") as error:
        print(f"{program}: error: {condense_argument_error(str(error), sys.argv[1:])}",
              file=sys.stderr)
        sys.exit(EXIT_USER_ERROR)
    except (UserError, ValueError, *known_errors) as error:
        print(f"{program}: error: {one_line(error)}", file=sys.stderr)
        sys.exit(EXIT_USER_ERROR)
    except OSError as error:
        # an OSError without errno was raised by our own code with a one-line message
        described = describe_os_error(error) if error.errno is not None else one_line(error)
        if described is None:
            raise
        print(f"{program}: error: {described}", file=sys.stderr)
        sys.exit(EXIT_USER_ERROR)


def console_script(
    main: Callable[[], Any], known_errors: tuple[type[BaseException], ...] = ()
) -> Callable[[], None]:
    """The function a console script calls (``pyproject.toml`` ``[project.scripts]``): ``main()``
    (its arguments from ``sys.argv``) through ``run_cli_main`` with ``known_errors``."""

    def cli() -> None:
        run_cli_main(main, known_errors)

    cli.__doc__ = f"The console script: ``{main.__module__}.main`` with one-line errors."
    return cli
