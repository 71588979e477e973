"""Run the paper's grid of trainings (experiments x seeds) here or on SLURM.

    python sweep.py --help

A thin script for a checkout; installed, the same command is `sotddsp-sweep`. The code is
`sotddsp.apps.sweep`.
"""

from sotddsp.apps.sweep import cli

if __name__ == "__main__":
    cli()
