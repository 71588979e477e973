"""The paper's results table as pure functions of run records (dicts, as in runs.csv): grouping
over seeds, best/second marks, and Markdown, LaTeX and CSV renderings. No torch: a table can be
rebuilt, tested or restyled from a CSV alone.

A run record has ``experiment``, ``source`` ("ours", "original" for the authors' checkpoints, or
"baseline"), and metrics: ``lsd``, ``rpa`` and ``rca`` (fractions), ``od`` (octaves), ...

The short-budget study (scripts/short_budget.py) has its own pure part here: the localization
rule ``LOCALIZE_MAX_MEDIAN_CENTS``, ``wilson_interval``, ``seed_row`` (a run's test metrics as a
seeds.csv row, ``SEED_COLUMNS``), ``seed_outcomes`` (per experiment: how many seeds localize,
with a 95 % Wilson interval, and the spread of the median error) and its Markdown;
``render_localization_markdown`` applies the same rule to the runs of the paper's table.
"""

from __future__ import annotations

import csv
import io
import itertools
import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

__all__ = [
    "BASELINE_NAME",
    "CORE_METRICS",
    "DASH",
    "LOCALIZE_MAX_MEDIAN_CENTS",
    "RUN_COLUMNS",
    "SEED_COLUMNS",
    "SOURCE_BASELINE",
    "SOURCE_ORIGINAL",
    "SOURCE_OURS",
    "TABLE_COLUMNS",
    "Cell",
    "Column",
    "PairedComparison",
    "SeedOutcome",
    "Skipped",
    "TableRow",
    "breakdown_markdown",
    "cents_text",
    "csv_text",
    "family_rows_table",
    "label",
    "localizes",
    "mark_best",
    "paired_comparisons",
    "render_family_markdown",
    "render_latex",
    "render_localization_markdown",
    "render_markdown",
    "render_paired_comparisons_markdown",
    "render_seed_outcomes_markdown",
    "render_seed_pairs_markdown",
    "runs_csv",
    "seed_outcomes",
    "seed_row",
    "summarize",
    "table_cells",
    "table_csv",
    "wilson_interval",
]

CORE_METRICS = ("lsd", "rpa", "rca", "od", "mse", "mss", "loss", "median_cents_error",
                "within_octave")
SOURCE_OURS = "ours"
SOURCE_ORIGINAL = "original"
SOURCE_BASELINE = "baseline"
BASELINE_NAME = "pYIN (baseline)"  # the experiment label of the baseline's row


@dataclass(frozen=True)
class Skipped:
    """A run (or the baseline) that could not be evaluated, with a one-line reason."""

    path: str
    reason: str


@dataclass(frozen=True)
class Column:
    """A table metric: runs.csv key, header, factor applied, and which values are better."""

    key: str
    header: str
    latex: str
    factor: float
    better: Literal["lower", "higher", "zero"]
    digits: int


TABLE_COLUMNS = (
    Column("lsd", "LSD", "LSD", 1.0, "lower", 2),
    Column("rpa", "RPA (%)", r"RPA (\%)", 100.0, "higher", 1),
    Column("rca", "RCA (%)", r"RCA (\%)", 100.0, "higher", 1),
    Column("od", "−OD", r"$-$OD", -1.0, "zero", 3),
)
DASH = "–"


@dataclass
class TableRow:
    """One row of the paper table: an experiment (over its seeds) or the baseline."""

    label: str
    experiment: str
    source: str
    n: int
    values: dict[str, list[float]] = field(default_factory=dict)  # column key -> per-seed values

    def stat(self, key: str, what: Literal["mean", "std", "median"]) -> float:
        values = [v for v in self.values.get(key, []) if math.isfinite(v)]
        if not values:
            return math.nan
        if what == "mean":
            return float(np.mean(values))
        if what == "median":
            return float(np.median(values))
        return float(np.std(values, ddof=1)) if len(values) > 1 else math.nan


def label(experiment: str, source: str) -> str:
    """A table row's label: the experiment, marked "(original)" for the authors' runs."""
    return f"{experiment} (original)" if source == SOURCE_ORIGINAL else experiment


def summarize(rows: Sequence[dict[str, Any]]) -> list[TableRow]:
    """Group runs.csv rows by (experiment, source) into table rows, sorted by label.

    Column values are scaled for display (RPA, RCA in %, OD negated to -OD). Baseline rows
    (source "baseline") come last.
    """
    groups: dict[tuple[str, str], TableRow] = {}
    for row in rows:
        source = row["source"]
        row_label = label(row["experiment"], source)
        key = (row["experiment"], source)
        table_row = groups.setdefault(key, TableRow(row_label, row["experiment"], source, 0))
        table_row.n += 1
        for column in TABLE_COLUMNS:
            value = row.get(column.key)
            if isinstance(value, (int, float)) and math.isfinite(value):
                table_row.values.setdefault(column.key, []).append(column.factor * float(value))
    return sorted(groups.values(), key=lambda r: (r.source == SOURCE_BASELINE, r.label))


def _goodness(value: float, better: Literal["lower", "higher", "zero"]) -> float:
    """Smaller is better: LSD as is, RPA/RCA negated, -OD by its distance to 0."""
    if better == "lower":
        return value
    if better == "higher":
        return -value
    return abs(value)


def mark_best(values: Sequence[float], better: Literal["lower", "higher", "zero"]) -> list[str]:
    """"best" / "second" / "" per value (NaN never marked).

    Ties share a mark: every value equal to the best is "best", every value equal to the next
    distinct value is "second". ``better``: "lower", "higher" or "zero" (closest to 0).
    """
    scores = [_goodness(v, better) if math.isfinite(v) else math.nan for v in values]
    distinct = sorted({s for s in scores if math.isfinite(s)})
    marks = []
    for score in scores:
        if distinct and score == distinct[0]:
            marks.append("best")
        elif len(distinct) > 1 and score == distinct[1]:
            marks.append("second")
        else:
            marks.append("")
    return marks


def _fmt(value: float, digits: int) -> str:
    if not math.isfinite(value):
        return DASH
    text = f"{value:.{digits}f}"
    return "0." + "0" * digits if text == "-0." + "0" * digits else text


@dataclass
class Cell:
    text: str
    mark: str = ""


def table_cells(rows: Sequence[TableRow]) -> list[list[Cell]]:
    """Cells per row: [n, then per column: "mean (std)", "median"], marks on experiment rows.

    Ranking uses the displayed (rounded) values of mean and median separately; baseline rows
    are shown but not ranked.
    """
    cells: list[list[Cell]] = []
    for row in rows:
        line = [Cell(str(row.n) if row.source != SOURCE_BASELINE else DASH)]
        for column in TABLE_COLUMNS:
            mean = _fmt(row.stat(column.key, "mean"), column.digits)
            std = _fmt(row.stat(column.key, "std"), column.digits)
            median = _fmt(row.stat(column.key, "median"), column.digits)
            if mean == DASH:
                line += [Cell(DASH), Cell(DASH)]
            elif row.source == SOURCE_BASELINE or row.n == 1:
                line += [Cell(mean if row.source == SOURCE_BASELINE else f"{mean} ({DASH})"),
                         Cell(median)]
            else:
                line += [Cell(f"{mean} ({std})"), Cell(median)]
        cells.append(line)
    ranked = [i for i, row in enumerate(rows) if row.source != SOURCE_BASELINE]
    for c, column in enumerate(TABLE_COLUMNS):
        for offset, what in ((0, "mean"), (1, "median")):
            shown = []
            for i in ranked:
                text = _fmt(rows[i].stat(column.key, what), column.digits)
                shown.append(float(text) if text != DASH else math.nan)
            for i, mark in zip(ranked, mark_best(shown, column.better)):
                cells[i][1 + 2 * c + offset].mark = mark
    return cells


def render_markdown(rows: Sequence[TableRow], notes: Sequence[str],
                    skipped: Sequence[Skipped]) -> str:
    """The table as Markdown: bold best, italic second best, then notes and skipped runs."""
    header = ["Experiment", "n"]
    for column in TABLE_COLUMNS:
        header += [f"{column.header} mean (std)", f"{column.header} median"]
    lines = ["| " + " | ".join(header) + " |",
             "|" + "|".join(["---"] + ["--:"] * (len(header) - 1)) + "|"]
    for row, cells in zip(rows, table_cells(rows)):
        texts = [f"**{c.text}**" if c.mark == "best" else f"*{c.text}*" if c.mark == "second"
                 else c.text for c in cells]
        lines.append("| " + " | ".join([row.label.replace("|", "\\|"), *texts]) + " |")
    out = "\n".join(lines) + "\n"
    if notes:
        out += "\n" + "\n".join(f"- {note}" for note in notes) + "\n"
    if skipped:
        out += "\n## Skipped\n\n" + "\n".join(f"- `{s.path}`: {s.reason}" for s in skipped) + "\n"
    return out


_LATEX_SPECIAL = {"&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{",
                  "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
                  "\\": r"\textbackslash{}"}


def _latex_escape(text: str) -> str:
    return "".join(_LATEX_SPECIAL.get(ch, ch) for ch in text)


def render_latex(rows: Sequence[TableRow]) -> str:
    """The table as a LaTeX tabular (needs ``booktabs``): \\textbf best, \\textit second."""
    n_cols = 2 + 2 * len(TABLE_COLUMNS)
    lines = [
        "% Generated by eval_paper.py; needs \\usepackage{booktabs}.",
        "\\begin{tabular}{l" + "r" * (n_cols - 1) + "}",
        "\\toprule",
        "Experiment & $n$ & " + " & ".join(f"\\multicolumn{{2}}{{c}}{{{c.latex}}}"
                                           for c in TABLE_COLUMNS) + " \\\\",
        " & & " + " & ".join("mean (std) & median" for _ in TABLE_COLUMNS) + " \\\\",
        "\\midrule",
    ]
    for row, cells in zip(rows, table_cells(rows)):
        if row.source == SOURCE_BASELINE:
            lines.append("\\midrule")
        texts = []
        for cell in cells:
            text = cell.text.replace(DASH, "--")
            texts.append(f"\\textbf{{{text}}}" if cell.mark == "best"
                         else f"\\textit{{{text}}}" if cell.mark == "second" else text)
        lines.append(" & ".join([_latex_escape(row.label), *texts]) + " \\\\")
    lines += ["\\bottomrule", "\\end{tabular}"]
    return "\n".join(lines) + "\n"


def table_csv(rows: Sequence[TableRow]) -> str:
    """The table as CSV: experiment, source, n and <metric>_{mean,std,median} (display units)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    names = {"lsd": "lsd", "rpa": "rpa_pct", "rca": "rca_pct", "od": "neg_od"}
    writer.writerow(["experiment", "label", "source", "n"]
                    + [f"{names[c.key]}_{s}" for c in TABLE_COLUMNS
                       for s in ("mean", "std", "median")])
    for row in rows:
        values = []
        for column in TABLE_COLUMNS:
            for what in ("mean", "std", "median"):
                value = row.stat(column.key, what)  # type: ignore[arg-type]
                values.append(repr(value) if math.isfinite(value) else "")
        writer.writerow([row.experiment, row.label, row.source, row.n, *values])
    return buffer.getvalue()


def _csv_value(value: Any) -> Any:
    """Empty for None, repr for floats (exact round trip), the value otherwise."""
    if value is None:
        return ""
    return repr(value) if isinstance(value, float) else value


def csv_text(header: Sequence[str], rows: Sequence[dict[str, Any]]) -> str:
    """CSV of ``rows`` with the columns ``header`` (others ignored; floats exact, None empty)."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(header), lineterminator="\n",
                            extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _csv_value(row.get(k)) for k in header})
    return buffer.getvalue()


RUN_COLUMNS = ("experiment", "run", "seed", "checkpoint", "source", "finished", "epoch",
               "global_step", "data")


def runs_csv(rows: Sequence[dict[str, Any]]) -> str:
    """runs.csv text: RUN_COLUMNS, the core metrics, then any other metric (loss terms), floats
    written with repr (they read back exactly)."""
    extra = sorted({k for row in rows for k in row} - set(RUN_COLUMNS) - set(CORE_METRICS)
                   - {"families"})
    return csv_text([*RUN_COLUMNS, *CORE_METRICS, *extra], rows)


def family_rows_table(rows: Sequence[dict[str, Any]], per_run: bool = False
                      ) -> list[dict[str, Any]]:
    """Per experiment and instrument family: RPA and RCA (%) and the median |error| (cents),
    each averaged over the experiment's seeds, with n seeds. With ``per_run``, one row per run
    and family (n = 1; the baseline keeps its experiment label): the mean over seeds hides a
    bimodal outcome (a seed that found f0 beside one that did not)."""
    grouped: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for row in rows:
        for family in row.get("families") or ():
            name = row["run"] if per_run and row["source"] != SOURCE_BASELINE else row["experiment"]
            grouped.setdefault((label(name, row["source"]), family["family"]), []).append(family)
    return [
        {"experiment": name, "family": family, "n": len(items),
         "examples": items[0]["n_examples"],
         "rpa_percent": 100 * float(np.mean([i["rpa"] for i in items])),
         "rca_percent": 100 * float(np.mean([i["rca"] for i in items])),
         "median_cents_error": float(np.mean([i["median_cents_error"] for i in items]))}
        for (name, family), items in grouped.items()
    ]


def render_family_markdown(table: Sequence[dict[str, Any]], first_column: str = "experiment"
                           ) -> str:
    """The per-family table as Markdown: one row per ``table`` label (an experiment, or a run
    for ``family_rows_table(per_run=True)``; ``first_column`` heads them), RPA / RCA (%) per
    family."""
    families = list(dict.fromkeys(r["family"] for r in table))
    experiments = list(dict.fromkeys(r["experiment"] for r in table))
    cell = {(r["experiment"], r["family"]): r for r in table}
    lines = [f"| {first_column} | " + " | ".join(f"{f} RPA / RCA (%)" for f in families) + " |",
             "|---|" + "---:|" * len(families)]
    for experiment in experiments:
        values = []
        for family in families:
            r = cell.get((experiment, family))
            values.append(DASH if r is None else f"{r['rpa_percent']:.1f} / {r['rca_percent']:.1f}")
        lines.append(f"| {experiment} | " + " | ".join(values) + " |")
    return "\n".join(lines)


def breakdown_markdown(rows: Sequence[Mapping[str, Any]]) -> str:
    """The rows of ``family_breakdown`` as a Markdown table (RPA and RCA in %)."""
    lines = [
        "| family | examples | RPA (%) | RCA (%) | median error (cents) |",
        "|---|---:|---:|---:|---:|",
    ]
    lines += [
        f"| {r['family']} | {r['n_examples']} | {100 * r['rpa']:.1f} | {100 * r['rca']:.1f} "
        f"| {r['median_cents_error']:.0f} |"
        for r in rows
    ]
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------
# The short-budget study: the outcome distribution over seeds
# ----------------------------------------------------------------------------------------------

LOCALIZE_MAX_MEDIAN_CENTS = 100.0
"""The localization rule, fixed before any short-budget result was looked at (issue 19, part A):
a seed localizes when its test median |error| is <= 100 cents. The median is over every frame
(16 per example) of the 400 test examples, tested with the run's best-validation-LSD checkpoint
(``metrics.median_cents_error``, the ``median_cents_error`` of test_metrics.json)."""

SEED_COLUMNS = ("experiment", "seed", "steps", "rpa", "rca", "median_abs_cents",
                "median_signed_cents", "within_50", "within_100", "log_f0_corr", "median_pred_hz")
# seeds.csv column <- test_metrics.json key, and the factor applied (fractions become %).
_SEED_METRICS = {
    "rpa": ("rpa", 100.0),
    "rca": ("rca", 100.0),
    "median_abs_cents": ("median_cents_error", 1.0),
    "median_signed_cents": ("median_signed_cents", 1.0),
    "within_50": ("within_50_cents", 100.0),
    "within_100": ("within_100_cents", 100.0),
    "log_f0_corr": ("log_f0_corr", 1.0),
    "median_pred_hz": ("median_pred_hz", 1.0),
}


def localizes(median_abs_cents: float) -> bool:
    """The rule ``LOCALIZE_MAX_MEDIAN_CENTS``: median |error| (cents) <= 100 (NaN: False)."""
    return bool(median_abs_cents <= LOCALIZE_MAX_MEDIAN_CENTS)


def wilson_interval(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval (low, high) of a binomial proportion successes / n, in [0, 1].

    With p = successes / n and z the two-sided normal quantile of ``confidence`` (1.96 at 95 %):
    (p + z^2 / 2n -+ z sqrt(p (1 - p) / n + z^2 / 4n^2)) / (1 + z^2 / n). E.g. 0 / 10 ->
    (0, 0.278) and 5 / 10 -> (0.237, 0.763).
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive integer, got {n!r}")
    if isinstance(successes, bool) or not isinstance(successes, int) or not 0 <= successes <= n:
        raise ValueError(f"successes must be an integer in [0, n = {n}], got {successes!r}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}")
    z = statistics.NormalDist().inv_cdf(0.5 + confidence / 2.0)
    p = successes / n
    denominator = 1.0 + z * z / n
    center = (p + z * z / (2.0 * n)) / denominator
    half = z * math.sqrt(p * (1.0 - p) / n + z * z / (4.0 * n * n)) / denominator
    # at 0 / n and n / n the bound is exactly 0 or 1 (center and half cancel but for rounding)
    low = 0.0 if successes == 0 else max(0.0, center - half)
    high = 1.0 if successes == n else min(1.0, center + half)
    return low, high


def seed_row(experiment: str, seed: int, test_metrics: Mapping[str, Any]) -> dict[str, Any]:
    """A seeds.csv row (``SEED_COLUMNS``) from a run's test_metrics.json: ``steps`` is the
    global step of the tested checkpoint; RPA, RCA and the shares within 50 and 100 cents in %
    (per frame, strict: within_50 is RPA); cents, correlation and Hz as recorded. A metric the
    run's test did not record (tested before it existed) is None."""
    row: dict[str, Any] = {"experiment": experiment, "seed": int(seed),
                           "steps": test_metrics.get("global_step")}
    for column, (key, factor) in _SEED_METRICS.items():
        value = test_metrics.get(key)
        row[column] = None if value is None else factor * float(value)
    return row


@dataclass(frozen=True)
class SeedOutcome:
    """One experiment's outcome over seeds: ``localized`` of ``n`` seeds localize
    (``LOCALIZE_MAX_MEDIAN_CENTS``), the 95 % Wilson interval of that share, and the median,
    quartiles (NumPy's linear interpolation), min and max of the seeds' median |error| (cents)."""

    experiment: str
    n: int
    localized: int
    low: float
    high: float
    median_cents: float
    q1_cents: float
    q3_cents: float
    min_cents: float
    max_cents: float

    @property
    def share(self) -> float:
        return self.localized / self.n


def _errors_by_experiment(rows: Sequence[Mapping[str, Any]]) -> dict[str, list[float]]:
    """seeds.csv rows' ``median_abs_cents`` (as floats) per experiment, in order of first
    appearance."""
    grouped: dict[str, list[float]] = {}
    for row in rows:
        grouped.setdefault(row["experiment"], []).append(float(row["median_abs_cents"]))
    return grouped


def seed_outcomes(rows: Sequence[Mapping[str, Any]]) -> list[SeedOutcome]:
    """Per experiment (in order of first appearance) of seeds.csv rows: the ``SeedOutcome``."""
    outcomes = []
    for experiment, errors in _errors_by_experiment(rows).items():
        values = np.asarray(errors, dtype=np.float64)
        k = sum(localizes(v) for v in errors)
        low, high = wilson_interval(k, len(errors))
        q1, median, q3 = (float(q) for q in np.percentile(values, [25.0, 50.0, 75.0]))
        outcomes.append(SeedOutcome(experiment, len(errors), k, low, high, median, q1, q3,
                                    float(values.min()), float(values.max())))
    return outcomes


@dataclass(frozen=True)
class RankComparison:
    """Two experiments' seeds compared by their median |error| (cents): the Mann-Whitney U of
    ``first`` (pairs of seeds where ``first``'s error is the larger, ties counting 1/2), its
    two-sided p-value (exact without ties, else the normal approximation, as
    ``scipy.stats.mannwhitneyu``'s ``method="auto"``) and the probability that a seed of
    ``first`` has the lower error than one of ``second``, 1 - U / (n_first n_second)."""

    first: str
    second: str
    n_first: int
    n_second: int
    u_first: float
    p_value: float

    @property
    def p_first_lower(self) -> float:
        return 1.0 - self.u_first / (self.n_first * self.n_second)


def rank_comparisons(rows: Sequence[Mapping[str, Any]]) -> list[RankComparison]:
    """Every pair of experiments of seeds.csv rows (in order of first appearance) with at least
    two seeds each: the ``RankComparison`` of their seeds' median |error|. Exploratory: it is
    not the localize rule fixed in advance, and no correction for multiple pairs is applied."""
    from scipy.stats import mannwhitneyu

    grouped = _errors_by_experiment(rows)
    names = [name for name, values in grouped.items() if len(values) >= 2]
    comparisons = []
    for first, second in itertools.combinations(names, 2):
        a, b = grouped[first], grouped[second]
        result = mannwhitneyu(a, b, alternative="two-sided", method="auto")
        comparisons.append(RankComparison(first, second, len(a), len(b),
                                          float(result.statistic), float(result.pvalue)))
    return comparisons


def render_rank_comparisons_markdown(comparisons: Sequence[RankComparison]) -> str:
    """One Markdown table of ``rank_comparisons`` ('' when there is no pair)."""
    if not comparisons:
        return ""
    lines = [("| first | second | n | U (first) | P(a seed of first has the lower error) "
             "| two-sided p |"), "|---|---|--:|--:|--:|--:|"]
    for c in comparisons:
        lines.append(f"| {c.first} | {c.second} | {c.n_first} + {c.n_second} | {c.u_first:g} "
                     f"| {c.p_first_lower:.2f} | {c.p_value:.2g} |")
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class PairedComparison:
    """Two experiments compared seed by seed: runs of one seed start from the same encoder
    weights and draw the same batches and dropout stream (tests/apps/test_paired_seeds.py), so
    each seed both ran is a pair. ``n`` seeds in both; in ``first_lower`` of them ``first``'s
    median |error| (cents) is the lower, in ``second_lower`` the higher (equal: neither); the
    two-sided p-value of the Wilcoxon signed-rank test on the n differences
    (``scipy.stats.wilcoxon``, ``method="auto"``: exact for n <= 50 without ties or zero
    differences), NaN when every difference is 0."""

    first: str
    second: str
    n: int
    first_lower: int
    second_lower: int
    p_value: float


def paired_comparisons(rows: Sequence[Mapping[str, Any]]) -> list[PairedComparison]:
    """Every pair of experiments of seeds.csv rows (in order of first appearance) that share at
    least two seeds (``seed``): their ``PairedComparison`` over the shared seeds. Exploratory,
    as ``rank_comparisons``; no correction for multiple pairs."""
    from scipy.stats import wilcoxon

    grouped: dict[str, dict[int, float]] = {}
    for row in rows:
        grouped.setdefault(row["experiment"], {})[int(row["seed"])] = float(
            row["median_abs_cents"])
    comparisons = []
    for first, second in itertools.combinations(grouped, 2):
        seeds = sorted(grouped[first].keys() & grouped[second].keys())
        if len(seeds) < 2:
            continue
        a = np.array([grouped[first][s] for s in seeds])
        b = np.array([grouped[second][s] for s in seeds])
        p_value = (float(wilcoxon(a, b, alternative="two-sided", method="auto").pvalue)
                   if np.any(a != b) else math.nan)
        comparisons.append(PairedComparison(first, second, len(seeds), int(np.sum(a < b)),
                                            int(np.sum(a > b)), p_value))
    return comparisons


def render_paired_comparisons_markdown(comparisons: Sequence[PairedComparison]) -> str:
    """One Markdown table of ``paired_comparisons`` ('' when there is no pair)."""
    if not comparisons:
        return ""
    lines = [("| first | second | seeds in both | first's error lower | second's error lower "
             "| Wilcoxon two-sided p |"), "|---|---|--:|--:|--:|--:|"]
    for c in comparisons:
        p_text = DASH if math.isnan(c.p_value) else f"{c.p_value:.2g}"
        lines.append(f"| {c.first} | {c.second} | {c.n} | {c.first_lower} | {c.second_lower} "
                     f"| {p_text} |")
    return "\n".join(lines) + "\n"


def _cell(value: Any, digits: int) -> str:
    return DASH if value is None else _fmt(float(value), digits)


def cents_text(cents: float) -> str:
    """A median |error| in cents for a table: one decimal under 10 cents, whole cents above
    (3.2 -> "3.2", 3195.7 -> "3196"), so a run on f0 never reads "0"."""
    return f"{cents:.1f}" if cents < 10 else f"{cents:.0f}"


def render_localization_markdown(rows: Sequence[Mapping[str, Any]],
                                 short_budget: Sequence[Mapping[str, Any]] = ()) -> str:
    """Which seeds localize f0, per experiment, as one Markdown table ('' without trained runs).

    ``rows``: run records (runs.csv's: ``experiment``, ``source``, ``seed``,
    ``median_cents_error``); the baseline's are ignored. Per experiment (``label``): n, the
    seeds that localize by ``LOCALIZE_MAX_MEDIAN_CENTS`` (k / n and the 95 % Wilson interval,
    in %), and each seed's median |error| in cents (``cents_text``; in order of seed).
    ``short_budget``: seeds.csv rows of the short-budget study (``experiment``,
    ``median_abs_cents``); when given, the same share for the experiment at that budget sits
    beside it ("–" where it has none).
    """
    trained = [r for r in rows if r["source"] != SOURCE_BASELINE]
    if not trained:
        return ""
    per_seed: dict[str, list[tuple[tuple[int, Any], str]]] = {}  # sorted by seed, then shown
    errors = []
    for r in trained:
        name = label(r["experiment"], r["source"])
        cents = float(r["median_cents_error"])
        errors.append({"experiment": name, "median_abs_cents": cents})
        shown = cents_text(cents)
        seed = r.get("seed")
        order = (0, int(seed)) if isinstance(seed, int) else (1, str(r.get("run", DASH)))
        per_seed.setdefault(name, []).append((order, f"{order[1]}: {shown}"))
    short = {o.experiment: o for o in seed_outcomes(short_budget)}

    def share(o: SeedOutcome) -> str:
        return f"{o.localized}/{o.n} | {100 * o.low:.1f} – {100 * o.high:.1f}"

    header = ("| experiment | n | localize | 95 % Wilson (%) | each seed: median \\|error\\| "
              "(cents) |")
    rule = "|---|--:|--:|--:|---|"
    if short_budget:
        header += " short budget: localize | 95 % Wilson (%) |"
        rule += "--:|--:|"
    lines = [header, rule]
    for o in seed_outcomes(errors):
        seeds = ", ".join(text for _, text in sorted(per_seed[o.experiment]))
        line = f"| {o.experiment} | {o.n} | {share(o)} | {seeds} |"
        if short_budget:
            line += f" {share(short[o.experiment])} |" if o.experiment in short \
                else f" {DASH} | {DASH} |"
        lines.append(line)
    return "\n".join(lines) + "\n"


def render_seed_pairs_markdown(rows: Sequence[Mapping[str, Any]]) -> str:
    """This project's trained runs by seed, as one Markdown table ('' unless two experiments
    ran a common seed). Runs of one seed are paired: they start from the same encoder weights
    and read the same batches with the same dropout stream (tests/apps/test_paired_seeds.py),
    so a row compares the experiments from one start. ``rows``: run records (``experiment``,
    ``source``, ``seed``, ``median_cents_error``); the baseline and the authors' runs are left
    out. A row per seed that two or more experiments ran (in numeric order), a column per
    experiment (in order of first appearance); a cell is the run's median |error| in cents
    (``cents_text``), marked "✓" when it localizes, a dash where the experiment lacks the seed.
    """
    errors: dict[int, dict[str, float]] = {}
    names: list[str] = []
    for r in rows:
        if r["source"] != SOURCE_OURS or not isinstance(r.get("seed"), int):
            continue
        if r["experiment"] not in names:
            names.append(r["experiment"])
        errors.setdefault(r["seed"], {})[r["experiment"]] = float(r["median_cents_error"])
    shared = sorted(seed for seed, by_experiment in errors.items() if len(by_experiment) >= 2)
    if not shared:
        return ""
    lines = ["| seed | " + " | ".join(names) + " |", "|--:|" + "--:|" * len(names)]
    for seed in shared:
        cells = []
        for name in names:
            cents = errors[seed].get(name)
            cells.append(DASH if cents is None
                         else cents_text(cents) + (" ✓" if localizes(cents) else ""))
        lines.append(f"| {seed} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def render_seed_outcomes_markdown(outcomes: Sequence[SeedOutcome],
                                  rows: Sequence[Mapping[str, Any]],
                                  budgets: Mapping[str, str]) -> str:
    """Two Markdown tables: per experiment (``budgets``: experiment -> its recipe in words), n,
    the seeds that localize (k / n, %, 95 % Wilson interval) and the spread of the median
    |error|; then one line per seed (seeds.csv's values, and whether it localizes)."""
    header = ("| experiment | budget | n | localize | share (%) | 95 % Wilson (%) "
              "| median \\|error\\| (cents): median [IQR] | min – max |")
    lines = [header, "|---|---|--:|--:|--:|--:|--:|--:|"]
    for o in outcomes:
        lines.append(
            f"| {o.experiment} | {budgets.get(o.experiment, DASH)} | {o.n} | {o.localized}/{o.n} "
            f"| {100 * o.share:.0f} | {100 * o.low:.1f} – {100 * o.high:.1f} "
            f"| {o.median_cents:.0f} [{o.q1_cents:.0f}, {o.q3_cents:.0f}] "
            f"| {o.min_cents:.0f} – {o.max_cents:.0f} |")
    seed_header = ("| experiment | seed | steps | RPA (%) | RCA (%) | median \\|error\\| (cents) "
                   "| median signed (cents) | within 50 (%) | within 100 (%) | log-f0 corr "
                   "| median pred f0 (Hz) | localizes |")
    lines += ["", seed_header, "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|"]
    for r in rows:
        lines.append(
            f"| {r['experiment']} | {r['seed']} | {r['steps'] if r['steps'] is not None else DASH} "
            f"| {_cell(r['rpa'], 1)} | {_cell(r['rca'], 1)} | {_cell(r['median_abs_cents'], 0)} "
            f"| {_cell(r['median_signed_cents'], 0)} | {_cell(r['within_50'], 1)} "
            f"| {_cell(r['within_100'], 1)} | {_cell(r['log_f0_corr'], 2)} "
            f"| {_cell(r['median_pred_hz'], 0)} "
            f"| {'yes' if localizes(float(r['median_abs_cents'])) else 'no'} |")
    return "\n".join(lines) + "\n"
