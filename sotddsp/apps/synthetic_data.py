"""The synthetic data set's command: ``python synthetic_data.py`` (a checkout) or
``sotddsp-data`` (installed) writes the paper's set, data/40_1950_4096_04_1_4000_8_1_harmonic.pth;
one option per ``SynthSettings`` field (``--help``), plus ``--out``.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from collections.abc import Sequence
from pathlib import Path

from sotddsp.core.command_line import (
    OneLineArgumentParser,
    UserError,
    console_script,
    describe_os_error,
    one_line,
)
from sotddsp.data.files import save_dataset
from sotddsp.data.synthetic import SynthSettings, field_type, generate_dataset

__all__ = ["build_parser", "cli", "main"]


def build_parser() -> argparse.ArgumentParser:
    """One option per ``SynthSettings`` field (--n-examples, --f0-min, ...), plus --out."""
    parser = OneLineArgumentParser(
        description="Generate the paper's synthetic harmonic data set (defaults reproduce it).",
    )
    for f in dataclasses.fields(SynthSettings):
        flag = "--" + f.name.replace("_", "-")
        kind = field_type(f.name)
        if f.name == "split_sizes":
            parser.add_argument(flag, type=int, nargs=3, default=None,
                                metavar=("TRAIN", "VAL", "TEST"), help=f.metadata["help"])
        else:
            parser.add_argument(flag, type=kind, default=f.default, help=f.metadata["help"])
    parser.add_argument("--out", type=Path, default=None,
                        help="output file (default: data/<the authors' name for these settings>)")
    return parser


def main(argv: Sequence[str] | None = None) -> Path:
    """Generate and write a data set; returns its path."""
    args = vars(build_parser().parse_args(argv))
    out = args.pop("out")
    if args["split_sizes"] is not None:
        args["split_sizes"] = tuple(args["split_sizes"])
    settings = SynthSettings(**args)
    start = time.perf_counter()
    data = generate_dataset(settings)
    out = out if out is not None else Path("data") / settings.filename()
    try:
        save_dataset(data, out)
    except OSError as error:
        raise UserError(f"cannot write {out}: {describe_os_error(error) or one_line(error)}") \
            from None
    train, val, test = settings.splits
    print(
        f"wrote {out}: {settings.n_examples} examples (train/val/test {train}/{val}/{test}), "
        f"{settings.n_samples} samples at {settings.sample_rate} Hz, "
        f"{out.stat().st_size / 1e6:.1f} MB in {time.perf_counter() - start:.1f} s"
    )
    return out


# The console script (and the thin script of a checkout).
cli = console_script(main)


if __name__ == "__main__":
    cli()
