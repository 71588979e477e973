"""f0 descent over a grid of SOT-2048 variants: framing x window x MSS weight x positions.

    OMP_NUM_THREADS=1 python scripts/f0_basin_grid.py --shard 1/2 --out results/f0_grid
    OMP_NUM_THREADS=1 python scripts/f0_basin_grid.py --shard 2/2 --out results/f0_grid
    python scripts/f0_basin_grid.py --collect --out results/f0_grid

A configuration is SOT-2048's training loss (``model.loss`` of paper-experiments/base.yaml,
which SOT-2048.yaml leaves as it is: SOT n_fft 2048, hop 256, flattop, power, cutoff, p 2,
+ 0.05 MSS-Lin) with four settings changed, the paper's first:

- framing: padded, full, centered (``SpectralOTLoss``'s ``framing``);
- window: flattop, hann;
- MSS-Lin weight in the mixture: 0.05, 0 (0: SOT alone, the MSS term left out);
- positions: linear, log (``log_frequency``).

Each of the 24 is fitted as scripts/f0_descent.py fits (its ``start_batch``, ``render_targets``,
``fit`` and ``offset_rows``: the same 12 targets, 17 starting offsets -2..+2 octaves by 1/4,
300 Adam steps, lr 0.1 semitone, amplitude lr 0.05, SOT-2048's synth), with the targets' true
amplitudes and with learned amplitudes: 48 fits. A target is found when its final f0 lies within
50 cents of the truth.

Shards and resume: ``--shard K/N`` runs the configurations i = K-1, K-1+N, ... (both modes of
each). Every finished (configuration, mode) fit is written atomically to its own file
``parts/<configuration>__<mode>.csv``, and a re-run skips the fits already there. The fit
settings are kept in ``settings.json``; a re-run with other settings into the same ``--out`` is
refused. When every fit is there (checked after each shard, or by ``--collect``), the collect
step writes ``grid.csv`` (one row per configuration, mode and offset: the share found, the
median final |error| in cents), ``grid.md`` (share found per offset, one row per configuration
and mode, then the ranking), ``grid.png`` (share found against the starting offset; one panel
per framing and mode, one line per other setting), prints the ranking, and writes the chosen
configuration as an experiment outside the paper's seven:
``paper-experiments/beyond/SOT-2048-<framing>[-<other changes>].yaml`` (``--experiment-dir``),
unless the chosen one is the paper's own SOT-2048.

Selection rule (fixed before any result of this grid existed):

- basin width (per configuration and mode): the width in octaves (last minus first offset) of
  the widest contiguous range of starting offsets that contains offset 0 and in which every
  offset has >= 80 % of the targets found; 0 if offset 0 itself is below 80 %;
- configurations are ranked lexicographically, best first, by (basin width with learned
  amplitudes, basin width with true amplitudes, share found over all offsets with learned
  amplitudes, share found over all offsets with true amplitudes); ties are broken by the
  fewest changes from the paper's SOT-2048, then by the grid's order (framing, window, MSS
  weight, positions, each in the order listed above);
- the first is the chosen configuration.
"""

from __future__ import annotations

import argparse
import csv
import importlib
import io
import itertools
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import f0_descent
import numpy as np
import torch
import yaml
from f0_descent import MODES, OFFSETS_OCTAVES
from torch import nn
from tqdm import tqdm

from sotddsp.core.atomic_files import atomic_write_bytes, atomic_write_text
from sotddsp.core.class_paths import normalize_class_path
from sotddsp.core.command_line import OneLineArgumentParser, UserError, run_cli_main
from sotddsp.core.result_tables import csv_text
from sotddsp.core.run_layout import BASE_CONFIG, BEYOND_EXPERIMENTS_DIR, experiment_config
from sotddsp.dsp.losses import LossMixture
from sotddsp.dsp.spectral import FRAMINGS

WINDOWS = ("flattop", "hann")
MSS_WEIGHTS = (0.05, 0.0)
POSITIONS = ("linear", "log")
THRESHOLD = 0.8  # share of targets found for an offset to belong to the basin
CONFIG_COLUMNS = ("configuration", "framing", "window", "mss_weight", "positions")
RESULT_COLUMNS = (*CONFIG_COLUMNS, "mode", "offset_octaves", "within_50_cents",
                  "median_error_cents")
PART_COLUMNS = (*RESULT_COLUMNS, "fit_seconds")


@dataclass(frozen=True)
class Config:
    """One grid point: SOT-2048's training loss with these four settings."""

    framing: str
    window: str
    mss_weight: float
    positions: str

    @property
    def name(self) -> str:
        """e.g. ``padded-flattop-mss0.05-linear``."""
        return f"{self.framing}-{self.window}-mss{self.mss_weight:g}-{self.positions}"

    def changes(self) -> list[str]:
        """The settings that differ from the paper's, as name parts: the framing, then "hann",
        "nomss", "logf"."""
        parts = [self.framing] if self.framing != PAPER.framing else []
        parts += [self.window] if self.window != PAPER.window else []
        parts += ["nomss"] if self.mss_weight != PAPER.mss_weight else []
        parts += ["logf"] if self.positions != PAPER.positions else []
        return parts

    def experiment_name(self) -> str:
        """``SOT-2048-<framing>[-<other changes>]``."""
        others = [part for part in self.changes() if part != self.framing]
        return "-".join(["SOT-2048", self.framing, *others])


PAPER = Config("padded", "flattop", 0.05, "linear")
CONFIGS = tuple(Config(*values) for values in
                itertools.product(FRAMINGS, WINDOWS, MSS_WEIGHTS, POSITIONS))
BY_NAME = {config.name: config for config in CONFIGS}


# ------------------------------------------------------------------------------- the losses


def sot2048_model_config() -> dict[str, Any]:
    """SOT-2048's ``model`` section as its config files give it: base.yaml's (SOT-2048.yaml
    only names the experiment; checked)."""
    experiment = yaml.safe_load(experiment_config("SOT-2048").read_text())
    if set(experiment) != {"experiment"}:
        raise RuntimeError(
            f"{experiment_config('SOT-2048')} now sets {sorted(set(experiment) - {'experiment'})}: "
            "sot2048_model_config reads SOT-2048's loss and synth from base.yaml only; update it"
        )
    return yaml.safe_load(BASE_CONFIG.read_text())["model"]


def loss_config(config: Config) -> dict[str, Any]:
    """The configuration's loss as a config entry (class_path, init_args): SOT-2048's, with the
    SOT term's framing, window and log_frequency set and the MSS-Lin weight changed (the term
    left out at weight 0)."""
    loss = sot2048_model_config()["loss"]
    terms = loss["init_args"]["terms"]
    weights = dict(loss["init_args"]["weights"])
    mixture = f"{LossMixture.__module__}.{LossMixture.__name__}"
    if normalize_class_path(loss["class_path"]) != mixture or set(terms) != {"sot", "mss_lin"}:
        raise RuntimeError(f"SOT-2048's loss is no longer SOT + MSS-Lin: {loss}")
    sot = {"class_path": terms["sot"]["class_path"],
           "init_args": {**terms["sot"]["init_args"], "window": config.window,
                         "log_frequency": config.positions == "log",
                         "framing": config.framing}}
    new_terms = {"sot": sot}
    if config.mss_weight:
        new_terms["mss_lin"] = terms["mss_lin"]
        weights["mss_lin"] = config.mss_weight
    else:
        del weights["mss_lin"]
    return {"class_path": loss["class_path"],
            "init_args": {"terms": new_terms, "weights": weights}}


def instantiate(entry: dict[str, Any]) -> Any:
    """``class_path(**init_args)`` of a config entry; nested entries of a LossMixture's terms
    are built first."""
    module, _, name = normalize_class_path(entry["class_path"]).rpartition(".")
    cls = getattr(importlib.import_module(module), name)
    init_args = dict(entry.get("init_args", {}))
    if cls is LossMixture:
        init_args["terms"] = {key: instantiate(term) for key, term in init_args["terms"].items()}
    return cls(**init_args)


def build_loss(config: Config) -> nn.Module:
    """The configuration's loss module (a ``LossMixture``)."""
    return instantiate(loss_config(config))


def build_synth() -> nn.Module:
    """SOT-2048's synth (base.yaml: 4096 samples, no roll-off)."""
    return instantiate(sot2048_model_config()["synth"])


# ------------------------------------------------------------------------------- the fits


def part_path(out: Path, config: Config, mode: str) -> Path:
    return out / "parts" / f"{config.name}__{mode.split()[0]}.csv"


def run_fit(config: Config, mode: str, settings: dict[str, Any], progress: tqdm) -> list[dict]:
    """One (configuration, mode) fit: one row per starting offset (PART_COLUMNS)."""
    torch.manual_seed(0)
    offsets = np.asarray(settings["offsets"])
    f0_batch, amps_batch, start_midi = f0_descent.start_batch(settings["targets"],
                                                              settings["seed"], offsets)
    target_audio, true_amps = f0_descent.render_targets(f0_batch, amps_batch)
    started = time.perf_counter()
    final = f0_descent.fit(build_synth(), build_loss(config), target_audio, true_amps,
                           start_midi, mode == MODES[1], settings["steps"], settings["lr"],
                           settings["amplitude_lr"], on_step=progress.update)
    seconds = time.perf_counter() - started
    columns = {"configuration": config.name, **asdict(config), "mode": mode}
    return [{**columns, **row, "fit_seconds": seconds}
            for row in f0_descent.offset_rows(final, f0_batch, settings["targets"], offsets)]


def check_settings(out: Path, settings: dict[str, Any]) -> None:
    """Write ``settings.json``, or refuse when the one already in ``out`` differs."""
    path = out / "settings.json"
    if path.is_file():
        before = json.loads(path.read_text())
        if before != settings:
            changed = sorted(k for k in settings.keys() | before.keys()
                             if settings.get(k) != before.get(k))
            raise UserError(
                f"{path} holds fits made with other settings ({', '.join(changed)}): rerun "
                "with the same settings to resume, or choose another --out"
            )
        return
    atomic_write_text(path, json.dumps(settings, indent=1) + "\n")


def run_shard(out: Path, settings: dict[str, Any], shard: tuple[int, int]) -> list[float]:
    """Run this shard's missing fits; returns the seconds each took."""
    k, n = shard
    configs = [BY_NAME[name] for name in settings["configs"]][k - 1 :: n]
    todo = [(c, m) for c in configs for m in MODES if not part_path(out, c, m).is_file()]
    skipped = len(configs) * len(MODES) - len(todo)
    print(f"shard {k}/{n}: {len(todo)} fits to run, {skipped} already done under {out}")
    seconds = []
    with tqdm(total=len(todo) * settings["steps"], desc=f"f0 grid {k}/{n}", unit="step") as bar:
        for config, mode in todo:
            bar.set_postfix_str(f"{config.name}, {mode}")
            rows = run_fit(config, mode, settings, bar)
            atomic_write_text(part_path(out, config, mode), csv_text(PART_COLUMNS, rows))
            seconds.append(rows[0]["fit_seconds"])
    return seconds


# ------------------------------------------------------------------------------- collect


def read_parts(out: Path, configs: list[Config]) -> tuple[list[dict], list[str]]:
    """(rows of every finished fit, in grid order; names of the missing part files)."""
    rows, missing = [], []
    for config in configs:
        for mode in MODES:
            path = part_path(out, config, mode)
            if not path.is_file():
                missing.append(path.name)
                continue
            with open(path, newline="") as handle:
                for row in csv.DictReader(handle):
                    rows.append({**row, **{k: float(row[k]) for k in (
                        "mss_weight", "offset_octaves", "within_50_cents", "median_error_cents")}})
    return rows, missing


def basin_width(shares: dict[float, float], threshold: float = THRESHOLD) -> float:
    """Width in octaves of the contiguous run of offsets around 0 (sorted offset: share found)
    in which every offset has a share >= threshold; 0 when offset 0 is below it."""
    offsets = sorted(shares)
    found = [shares[o] >= threshold - 1e-9 for o in offsets]
    zero = offsets.index(0.0)
    if not found[zero]:
        return 0.0
    low = high = zero
    while low > 0 and found[low - 1]:
        low -= 1
    while high < len(offsets) - 1 and found[high + 1]:
        high += 1
    return float(offsets[high] - offsets[low])


def summarize(rows: list[dict], configs: list[Config]) -> list[dict]:
    """Per configuration: basin widths and shares found over all offsets per mode, the number
    of changes from the paper; ranked by the selection rule (best first, with "rank")."""
    summaries = []
    for index, config in enumerate(configs):
        summary: dict[str, Any] = {"config": config, "changes": len(config.changes()),
                                   "index": index}
        for mode in MODES:
            mine = {r["offset_octaves"]: r["within_50_cents"] for r in rows
                    if r["configuration"] == config.name and r["mode"] == mode}
            key = mode.split()[0]
            summary[f"basin_{key}"] = basin_width(mine)
            summary[f"share_{key}"] = float(np.mean(list(mine.values())))
        summaries.append(summary)
    summaries.sort(key=lambda s: (-s["basin_learned"], -s["basin_true"], -s["share_learned"],
                                  -s["share_true"], s["changes"], s["index"]))
    for rank, summary in enumerate(summaries, 1):
        summary["rank"] = rank
    return summaries


def markdown(rows: list[dict], ranking: list[dict], offsets: list[float]) -> str:
    """The share found per offset (%) per configuration and mode, then the ranking."""
    by_config = {s["config"].name: s for s in ranking}
    lines = ["| configuration | amplitudes | " + " | ".join(f"{o:+g}" if o else "0" for o in offsets) +
             " | all | basin (oct) |", "|---|---|" + "---:|" * (len(offsets) + 2)]
    for name in dict.fromkeys(r["configuration"] for r in rows):
        for mode in MODES:
            share = {r["offset_octaves"]: r["within_50_cents"] for r in rows
                     if r["configuration"] == name and r["mode"] == mode}
            key = mode.split()[0]
            lines.append(f"| {name} | {key} | " +
                         " | ".join(f"{100 * share[o]:.0f}" for o in offsets) +
                         f" | {100 * by_config[name][f'share_{key}']:.0f}"
                         f" | {by_config[name][f'basin_{key}']:g} |")
    lines += ["", "Ranking (the selection rule in scripts/f0_basin_grid.py):", "",
              ("| rank | configuration | changes from SOT-2048 | basin learned (oct) | "
               "basin true (oct) | all learned (%) | all true (%) |"),
              "|---:|---|---:|---:|---:|---:|---:|"]
    for s in ranking:
        lines.append(f"| {s['rank']} | {s['config'].name} | {s['changes']} | "
                     f"{s['basin_learned']:g} | {s['basin_true']:g} | "
                     f"{100 * s['share_learned']:.0f} | {100 * s['share_true']:.0f} |")
    return "\n".join(lines) + "\n"


def figure(rows: list[dict], configs: list[Config], chosen: Config) -> bytes:
    """Share found against the starting offset: a row of panels per framing, a column per mode,
    a line per (window, MSS weight, positions); the chosen configuration drawn thick."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    framings = list(dict.fromkeys(c.framing for c in configs))
    fig, axes = plt.subplots(len(framings), len(MODES), figsize=(11, 3.2 * len(framings)),
                             sharex=True, sharey=True, squeeze=False)
    colors = {(w, p): f"C{i}" for i, (w, p) in enumerate(itertools.product(WINDOWS, POSITIONS))}
    for row_axes, framing in zip(axes, framings):
        for ax, mode in zip(row_axes, MODES):
            for config in (c for c in configs if c.framing == framing):
                mine = [r for r in rows if r["configuration"] == config.name and r["mode"] == mode]
                label = (f"{config.window}, {config.positions}, "
                         f"MSS {config.mss_weight:g}")
                ax.plot([r["offset_octaves"] for r in mine],
                        [100 * r["within_50_cents"] for r in mine],
                        color=colors[config.window, config.positions],
                        ls="-" if config.mss_weight else "--", marker="o", ms=2.5,
                        lw=3.0 if config == chosen else 1.2, label=label)
            ax.axhline(100 * THRESHOLD, color="0.6", lw=0.8, ls=":")
            ax.set_title(f"framing {framing}, {mode}", fontsize=10)
            ax.grid(alpha=0.3)
            ax.set_ylim(-3, 103)
    for ax in axes[-1]:
        ax.set_xlabel("starting offset from the true f0 (octaves)")
    for ax in axes[:, 0]:
        ax.set_ylabel("targets within 50 cents (%)")
    axes[0, -1].legend(fontsize=7.5, loc="upper right")
    fig.suptitle(f"f0 descent on SOT-2048 variants (thick: the chosen {chosen.name}; "
                 f"dotted: {100 * THRESHOLD:.0f} %)", fontsize=10)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    return buffer.getvalue()


def _flow(value: Any) -> str:
    return yaml.safe_dump(value, default_flow_style=True, sort_keys=False, width=10**6).strip()


def experiment_yaml(config: Config, source: str) -> str:
    """The experiment file of ``config``: a diff on base.yaml in the style of
    paper-experiments/*.yaml, labelled as outside the paper's seven."""
    loss = loss_config(config)
    what = [f"framing {config.framing}"] if config.framing != PAPER.framing else []
    what += [f"window {config.window}"] if config.window != PAPER.window else []
    what += ([f"MSS-Lin weight {config.mss_weight:g}" + ("" if config.mss_weight else
                                                          " (SOT alone)")]
             if config.mss_weight != PAPER.mss_weight else [])
    what += [f"{config.positions} positions"] if config.positions != PAPER.positions else []
    lines = [
        "# BEYOND THE PAPER: not one of its seven experiments.",
        f"# SOT-2048's training loss with {', '.join(what)}.",
        f"# scripts/f0_basin_grid.py's configuration {config.name}, chosen by its selection",
        f"# rule (docs/RESULTS.md, issue 19 B) on the f0-descent grid in {source}.",
        f"experiment: {config.experiment_name()}",
        "model:",
        "  loss:",
        f"    class_path: {loss['class_path']}",
        "    init_args:",
        "      terms:",
    ]
    for term, entry in loss["init_args"]["terms"].items():
        lines += [f"        {term}:", f"          class_path: {entry['class_path']}",
                  f"          init_args: {_flow(entry['init_args'])}"]
    lines.append(f"      weights: {_flow(loss['init_args']['weights'])}")
    return "\n".join(lines) + "\n"


def collect(out: Path, experiment_dir: Path) -> dict[str, Any]:
    """Write grid.csv, grid.md, grid.png and the chosen configuration's experiment file; print
    the ranking. Returns {"rows", "ranking", "chosen", "experiment_file" (None for the paper's)}."""
    settings_path = out / "settings.json"
    if not settings_path.is_file():
        raise UserError(f"{settings_path} not found: run the shards first (--shard K/N)")
    settings = json.loads(settings_path.read_text())
    configs = [BY_NAME[name] for name in settings["configs"]]
    rows, missing = read_parts(out, configs)
    if missing:
        raise UserError(
            f"{len(missing)} of {len(configs) * len(MODES)} fits are missing under {out}/parts "
            f"(first: {missing[0]}): run the remaining shards, then --collect"
        )
    ranking = summarize(rows, configs)
    chosen = ranking[0]["config"]
    atomic_write_text(out / "grid.csv", csv_text(RESULT_COLUMNS, rows))
    table = markdown(rows, ranking, settings["offsets"])
    atomic_write_text(out / "grid.md", table)
    atomic_write_bytes(out / "grid.png", figure(rows, configs, chosen))
    print(table)
    print(f"chosen configuration: {chosen.name} (basin {ranking[0]['basin_learned']:g} octave "
          f"with learned amplitudes, {ranking[0]['basin_true']:g} with true ones)")
    experiment_file = None
    if chosen == PAPER:
        print("the chosen configuration is the paper's SOT-2048: no new experiment written")
    else:
        experiment_file = experiment_dir / f"{chosen.experiment_name()}.yaml"
        atomic_write_text(experiment_file, experiment_yaml(chosen, str(out)))
        print(f"wrote {experiment_file}: python train.py --config {experiment_file}")
    print(f"wrote {out}/grid.csv, grid.md, grid.png")
    return {"rows": rows, "ranking": ranking, "chosen": chosen,
            "experiment_file": experiment_file}


# ------------------------------------------------------------------------------- command line


def _shard(text: str) -> tuple[int, int]:
    try:
        k, n = (int(part) for part in text.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be K/N, e.g. 1/2, got {text!r}") from None
    if not 1 <= k <= n:
        raise argparse.ArgumentTypeError(f"must be K/N with 1 <= K <= N, got {text!r}")
    return k, n


def _configs(text: str) -> list[str]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in BY_NAME]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"unknown configuration {unknown[0] if unknown else text!r}; the names are "
            f"<framing>-<window>-mss<weight>-<positions>, e.g. {CONFIGS[0].name}")
    return names


def _offsets(text: str) -> list[float]:
    try:
        offsets = sorted({round(float(o), 6) for o in text.split(",")})
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be comma-separated octaves, got {text!r}") from None
    if 0.0 not in offsets:
        raise argparse.ArgumentTypeError(f"must include 0 (the basin is measured around it), "
                                         f"got {text!r}")
    return offsets


def main(argv: list[str] | None = None) -> dict[str, Any] | None:
    parser = OneLineArgumentParser(description=__doc__.splitlines()[0])
    f0_descent.add_fit_arguments(parser)
    parser.add_argument("--offsets", type=_offsets,
                        default=[float(o) for o in OFFSETS_OCTAVES],
                        help="starting offsets in octaves, comma-separated (default -2..2 by 1/4)")
    parser.add_argument("--configs", type=_configs, default=[c.name for c in CONFIGS],
                        help="a subset of the grid, comma-separated names (default: all 24)")
    parser.add_argument("--shard", type=_shard, default=(1, 1), help="K/N: configurations "
                        "K-1, K-1+N, ... of the grid (default 1/1: all)")
    parser.add_argument("--collect", action="store_true",
                        help="only collect the finished fits (all must be there)")
    parser.add_argument("--out", type=Path, default=Path("results") / "f0_grid")
    parser.add_argument("--experiment-dir", type=Path, default=BEYOND_EXPERIMENTS_DIR,
                        help="where the chosen configuration's experiment file goes")
    args = parser.parse_args(argv)
    if args.collect:
        return collect(args.out, args.experiment_dir)
    settings = {"steps": args.steps, "targets": args.targets, "lr": args.lr,
                "amplitude_lr": args.amplitude_lr, "seed": args.seed, "offsets": args.offsets,
                "configs": args.configs}
    check_settings(args.out, settings)
    seconds = run_shard(args.out, settings, args.shard)
    if seconds:
        print(f"{len(seconds)} fits, {np.mean(seconds) / 60:.2f} min per fit "
              f"({torch.get_num_threads()} thread(s))")
    configs = [BY_NAME[name] for name in settings["configs"]]
    if read_parts(args.out, configs)[1]:
        print("other shards' fits are still missing: --collect once they are done")
        return None
    return collect(args.out, args.experiment_dir)


if __name__ == "__main__":
    run_cli_main(main)
