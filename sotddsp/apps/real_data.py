"""The real-instrument test set's command: ``python real_data.py`` (a checkout) or
``sotddsp-real-data`` (installed) renders isolated notes of General MIDI instruments with
FluidSynth (``sotddsp.data.real``) and writes data/fluidr3_notes_sr16000_4096.pth and its CSV.

FluidSynth and the FluidR3 GM SoundFont come from the Debian packages ``fluidsynth`` and
``fluid-soundfont-gm``: when they are missing, the command installs them with
``scripts/install_fluidsynth.sh`` (apt-get; a checkout only), else it names the apt-get command.
"""

from __future__ import annotations

import argparse
import logging
import os
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

from sotddsp.core.command_line import OneLineArgumentParser, UserError, console_script
from sotddsp.core.run_layout import REPO
from sotddsp.data import real
from sotddsp.data.files import save_dataset
from sotddsp.data.real import (
    FAMILIES,
    SOUNDFONT,
    default_output,
    find_renderer,
    missing_parts,
    plan_notes,
    render_dataset,
    write_records_csv,
)

__all__ = ["INSTALL_SCRIPT", "cli", "ensure_renderer", "main"]

log = logging.getLogger("real_data")

# Installs fluidsynth and fluid-soundfont-gm with apt-get; in a checkout only.
INSTALL_SCRIPT = REPO / "scripts" / "install_fluidsynth.sh"


def ensure_renderer(
    soundfont: str | Path = SOUNDFONT, install_script: str | Path | None = INSTALL_SCRIPT
) -> str:
    """Path of the ``fluidsynth`` program, installing it and the GM SoundFont when missing.

    When ``fluidsynth`` or ``soundfont`` is missing, ``install_script`` is given and exists, and
    the SoundFont is the default one (which the script provides), logs one line and runs the
    script (apt-get). Then ``sotddsp.data.real.find_renderer``: raises UserError (one line) when
    they are still missing.
    """
    soundfont = Path(soundfont)
    missing = missing_parts(soundfont)
    if missing and install_script is not None and Path(install_script).is_file() \
            and soundfont == SOUNDFONT:
        log.info(
            "%s missing: installing fluidsynth and fluid-soundfont-gm with %s (apt-get)",
            " and ".join(missing),
            install_script,
        )
        result = subprocess.run(
            ["bash", str(install_script)], check=False, capture_output=True, text=True
        )
        reason = (result.stderr.strip().splitlines() or ["no message"])[-1]
        missing = missing_parts(soundfont)
        if missing:
            raise UserError(
                f"{' and '.join(missing)} missing and could not be installed ({reason}); "
                "run `sudo apt-get install fluidsynth fluid-soundfont-gm`"
            )
    return find_renderer(soundfont)


def _parser() -> argparse.ArgumentParser:
    p = OneLineArgumentParser(description=real.__doc__.split("\n\n")[0])
    p.add_argument(
        "--out",
        type=Path,
        default=None,
        help="output file (default data/fluidr3_notes_sr<rate>_<n>.pth); the CSV goes beside it",
    )
    p.add_argument(
        "--families",
        nargs="+",
        default=list(FAMILIES),
        choices=FAMILIES,
        metavar="FAMILY",
        help=f"instrument families (default: all of {', '.join(FAMILIES)})",
    )
    p.add_argument(
        "--velocities", nargs="+", type=int, default=[40, 80, 120], help="MIDI velocities"
    )
    p.add_argument("--note-step", type=int, default=5, help="semitones between rendered notes")
    p.add_argument("--sample-rate", type=int, default=16000, help="Hz")
    p.add_argument("--n-samples", type=int, default=4096, help="samples per excerpt")
    p.add_argument(
        "--offset-ms",
        type=float,
        default=100.0,
        help="excerpt start after the note starts sounding (ms)",
    )
    p.add_argument(
        "--min-rms-db", type=float, default=-60.0, help="drop quieter excerpts (dBFS RMS)"
    )
    p.add_argument("--soundfont", type=Path, default=SOUNDFONT, help="SoundFont (.sf2)")
    p.add_argument(
        "--jobs", type=int, default=min(2, os.cpu_count() or 1), help="FluidSynth processes"
    )
    return p


def main(argv: Sequence[str] | None = None) -> Path:
    """Command line: render, save the data file and its CSV; return the data file's path."""
    args = _parser().parse_args(argv)
    start = time.perf_counter()
    notes = plan_notes(args.families, args.velocities, args.note_step)
    ensure_renderer(args.soundfont)
    data = render_dataset(
        notes,
        args.sample_rate,
        args.n_samples,
        args.offset_ms,
        args.min_rms_db,
        args.soundfont,
        args.jobs,
    )
    out = args.out if args.out is not None else default_output(args.sample_rate, args.n_samples)
    save_dataset(data, out)
    table = write_records_csv(data["meta"]["records"], out.with_suffix(".csv"))
    meta = data["meta"]
    print(
        f"wrote {out} and {table}: {meta['n_examples']} notes "
        f"({meta['n_dropped_silent']} silent dropped), "
        f"{len(meta['families'])} families, {args.n_samples} samples at {args.sample_rate} Hz, "
        f"in {time.perf_counter() - start:.1f} s"
    )
    return out


# The console script (and the thin script of a checkout).
cli = console_script(main)


if __name__ == "__main__":
    cli()
