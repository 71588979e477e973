"""Evaluate every trained run on the test split and write the paper's results table.

    python eval_paper.py --help

A thin script for a checkout; installed, the same command is `sotddsp-eval`. The code is
`sotddsp.apps.evaluate`.
"""

from sotddsp.apps.evaluate import cli

if __name__ == "__main__":
    cli()
