"""Train an experiment from its YAML files, then test its best-validation checkpoint.

    python train.py --help

A thin script for a checkout; installed, the same command is `sotddsp-train`. The code is
`sotddsp.apps.train`.
"""

from sotddsp.apps.train import cli

if __name__ == "__main__":
    cli()
