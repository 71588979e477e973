"""Render the real-instrument test set with FluidSynth.

    python real_data.py --help

A thin script for a checkout; installed, the same command is `sotddsp-real-data`. The code is
`sotddsp.apps.real_data`.
"""

from sotddsp.apps.real_data import cli

if __name__ == "__main__":
    cli()
