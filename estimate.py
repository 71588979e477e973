"""Estimate f0 and harmonic amplitudes of a recording with a trained model.

    python estimate.py --help

A thin script for a checkout; installed, the same command is `sotddsp-pitch`. The code is
`sotddsp.apps.estimate`.
"""

from sotddsp.apps.estimate import cli

if __name__ == "__main__":
    cli()
