"""The paper's results table as pure functions of run records (dicts, as in runs.csv): grouping
over seeds, best/second marks, and Markdown, LaTeX and CSV renderings. No torch: a table can be
rebuilt, tested or restyled from a CSV alone.

A run record has ``experiment``, ``source`` ("ours", "original" for the authors' checkpoints, or
"baseline"), and metrics: ``lsd``, ``rpa`` and ``rca`` (fractions), ``od`` (octaves), ...
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

__all__ = [
    "BASELINE_NAME",
    "CORE_METRICS",
    "DASH",
    "RUN_COLUMNS",
    "SOURCE_BASELINE",
    "SOURCE_ORIGINAL",
    "SOURCE_OURS",
    "TABLE_COLUMNS",
    "Cell",
    "Column",
    "Skipped",
    "TableRow",
    "breakdown_markdown",
    "csv_text",
    "family_rows_table",
    "label",
    "mark_best",
    "render_family_markdown",
    "render_latex",
    "render_markdown",
    "runs_csv",
    "summarize",
    "table_cells",
    "table_csv",
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


def family_rows_table(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per experiment and instrument family: RPA and RCA (%) averaged over seeds, with n seeds."""
    grouped: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for row in rows:
        for family in row.get("families") or ():
            row_label = label(row["experiment"], row["source"])
            grouped.setdefault((row_label, family["family"]), []).append(family)
    return [
        {"experiment": name, "family": family, "n": len(items),
         "examples": items[0]["n_examples"],
         "rpa_percent": 100 * float(np.mean([i["rpa"] for i in items])),
         "rca_percent": 100 * float(np.mean([i["rca"] for i in items])),
         "median_cents_error": float(np.mean([i["median_cents_error"] for i in items]))}
        for (name, family), items in grouped.items()
    ]


def render_family_markdown(table: Sequence[dict[str, Any]]) -> str:
    """The per-family table as Markdown: one row per experiment, RPA / RCA (%) per family."""
    families = list(dict.fromkeys(r["family"] for r in table))
    experiments = list(dict.fromkeys(r["experiment"] for r in table))
    cell = {(r["experiment"], r["family"]): r for r in table}
    lines = ["| experiment | " + " | ".join(f"{f} RPA / RCA (%)" for f in families) + " |",
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
