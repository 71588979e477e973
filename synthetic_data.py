"""Generate the paper's synthetic harmonic data set (one option per setting).

    python synthetic_data.py --help

A thin script for a checkout; installed, the same command is `sotddsp-data`. The code is
`sotddsp.apps.synthetic_data`.
"""

from sotddsp.apps.synthetic_data import cli

if __name__ == "__main__":
    cli()
