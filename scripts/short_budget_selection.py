"""Does the short-budget answer depend on which checkpoint is tested? Each finished seed's
validation median |error| at the checkpoint each selection rule picks.

    python scripts/short_budget_selection.py                 # reference-runs/short-budget
    python scripts/short_budget_selection.py --root DIR      # another study's root

Exploratory, beside the rule fixed in advance (short_budget.py tests each seed at its best
validation LSD, as the paper does). The rules, each read from the run's ``curves.csv``:
- ``lsd``: the lowest validation LSD (the paper's choice; the checkpoint train.py tests);
- ``loss``: the lowest validation loss (what the run minimizes; differs from LSD when the loss
  has no MSS term, e.g. the variant beyond the paper);
- ``last``: the last validation;
- ``oracle``: the lowest validation median |error| of the run. No rule without labels can pick
  it; it bounds what any choice of checkpoint could have shown.
Per experiment: how many seeds are within 100 cents (result_tables.LOCALIZE_MAX_MEDIAN_CENTS) on
the validation examples under each rule.

Rows written before commit ff04c2c (the MetricsHistory fix) hold the previous validation's
metrics, and the first validation wrote none. Such a file is recognized by its first
validation row sitting one interval late (the interval being the step between its validation
rows); its rows are shifted back one interval here, and its last validation is unknown (``–``).
The check that the shift is right: the shifted best-LSD step equals the step of the checkpoint
train.py tested (test_metrics.json), printed per seed.
"""

from __future__ import annotations

import argparse
import itertools
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from short_budget import DEFAULT_ROOT
from short_budget import collect as finished_runs

from sotddsp.core.command_line import UserError, run_cli_main
from sotddsp.core.result_tables import DASH, LOCALIZE_MAX_MEDIAN_CENTS
from sotddsp.core.run_layout import CURVES_FILE, read_curves, run_directory

RULES = ("lsd", "loss", "last", "oracle")


@dataclass(frozen=True)
class Validation:
    step: int
    lsd: float
    loss: float
    median_cents: float


@dataclass(frozen=True)
class SeedSelection:
    experiment: str
    seed: int
    lagged: bool  # rows written before the MetricsHistory fix, shifted back here
    tested_step: int | None  # test_metrics.json's global_step
    picks: dict[str, Validation | None]  # rule -> the validation it picks (None: unknown)


def validations(run_dir: Path) -> tuple[list[Validation], bool]:
    """The validations of one run's curves.csv, in step order, and whether its rows lagged (then
    shifted back one interval, so that each holds its own step's metrics)."""
    path = run_dir / CURVES_FILE
    rows = [r for r in read_curves(run_dir) if r.get("split") == "val"]
    if len(rows) < 2:
        raise UserError(f"{path}: fewer than 2 validation rows (or not a readable CSV file); "
                        "it cannot tell its interval")
    steps = [int(r["step"]) for r in rows]
    interval = steps[1] - steps[0]
    if interval <= 0 or any(b - a != interval for a, b in itertools.pairwise(steps)):
        raise UserError(f"{path}: validation steps {steps} are not evenly spaced (a resumed "
                        "run?); this check reads only runs trained in one go")
    if steps[0] not in (interval, 2 * interval):
        raise UserError(f"{path}: the first validation row is at step {steps[0]}, neither one "
                        f"nor two intervals ({interval}) in; cannot tell whether it lags")
    lagged = steps[0] == 2 * interval
    shift = interval if lagged else 0
    return [Validation(int(r["step"]) - shift, float(r["val/lsd"]), float(r["val/loss"]),
                       float(r["val/median_cents_error"])) for r in rows], lagged


def select(history: Sequence[Validation], lagged: bool) -> dict[str, Validation | None]:
    """The validation each rule picks (the first on ties, as ModelCheckpoint keeps the first).
    For lagged rows the last validation is missing: ``last`` is unknown, and a best-LSD or
    best-loss pick may have been beaten by it (its tested step then tells)."""
    return {
        "lsd": min(history, key=lambda v: v.lsd),
        "loss": min(history, key=lambda v: v.loss),
        "last": None if lagged else history[-1],
        "oracle": min(history, key=lambda v: v.median_cents),
    }


def collect(root: Path) -> list[SeedSelection]:
    """Every finished run under ``root`` that has a curves.csv: the runs short_budget.py
    counts (its ``collect``: experiment, seed and tested step), in its order."""
    found = []
    for row in finished_runs(root)[0]:
        run_dir = run_directory(root, row["experiment"], row["seed"])
        if not (run_dir / CURVES_FILE).is_file():
            continue
        history, lagged = validations(run_dir)
        tested = row["steps"]
        found.append(SeedSelection(row["experiment"], row["seed"], lagged,
                                   None if tested is None else int(tested),
                                   select(history, lagged)))
    return found


def _cell(pick: Validation | None) -> str:
    return DASH if pick is None else f"{pick.median_cents:.0f} (step {pick.step})"


def report(selections: Sequence[SeedSelection]) -> str:
    """Markdown: per experiment the seeds within the rule's cents under each selection; then
    per seed the validation median |error| (cents) and the step each rule picks."""
    limit = LOCALIZE_MAX_MEDIAN_CENTS
    lines = [(f"Seeds whose validation median |error| is <= {limit:g} cents, by the checkpoint "
              "each rule picks (k/n; `last` counts only the runs that recorded it):"), "",
             ("| experiment | n | " + " | ".join(RULES) + " | lowest median \\|error\\| any "
              "recorded validation reached (cents) |"),
             "|---|--:|" + "--:|" * len(RULES) + "--:|"]
    for experiment in sorted({s.experiment for s in selections}):
        seeds = [s for s in selections if s.experiment == experiment]
        counts = []
        for rule in RULES:
            known = [s.picks[rule] for s in seeds if s.picks[rule] is not None]
            within = sum(p.median_cents <= limit for p in known)
            counts.append(f"{within}/{len(known)}")
        floor = min(s.picks["oracle"].median_cents for s in seeds)  # type: ignore[union-attr]
        lines.append(f"| {experiment} | {len(seeds)} | " + " | ".join(counts)
                     + f" | {floor:.0f} |")
    lines += ["", "| experiment | seed | rows lagged | " + " | ".join(RULES)
              + " | tested step | best-LSD pick is the tested step |",
              "|---|--:|---|" + "--:|" * len(RULES) + "--:|---|"]
    for s in selections:
        best = s.picks["lsd"]
        agrees = (DASH if s.tested_step is None or best is None
                  else "yes" if best.step == s.tested_step
                  else "no: a later validation, unrecorded" if s.lagged else "no")
        lines.append(f"| {s.experiment} | {s.seed} | {'yes' if s.lagged else 'no'} | "
                     + " | ".join(_cell(s.picks[r]) for r in RULES)
                     + f" | {DASH if s.tested_step is None else s.tested_step} | {agrees} |")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, default=DEFAULT_ROOT,
                        help="the study's root: <root>/<experiment>/<experiment>-<seed>/")
    args = parser.parse_args(argv)
    if not args.root.is_dir():
        raise UserError(f"--root {args.root}: no such directory; give a short_budget.py root")
    selections = collect(args.root)
    if not selections:
        raise UserError(f"--root {args.root}: no finished run with a {CURVES_FILE}; run "
                        "scripts/short_budget.py first")
    if any(math.isnan(p.median_cents) for s in selections for p in s.picks.values() if p):
        print("note: some validations have no median |error| (NaN)", file=sys.stderr)
    text = report(selections)
    print(text, end="")
    return text


if __name__ == "__main__":
    run_cli_main(main)
