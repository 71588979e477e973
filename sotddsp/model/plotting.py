"""Figures a researcher looks at: spectra of target vs resynthesis, predicted vs true f0, a
run's training and validation curves, the results table's RPA per seed, and the outcome of many
seeds (one strip per experiment)."""

from __future__ import annotations

import itertools
import textwrap
from collections.abc import Sequence
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import torch
from lightning.pytorch.loggers import Logger, TensorBoardLogger, WandbLogger
from matplotlib.figure import Figure

from sotddsp.core.result_tables import (
    BASELINE_NAME,
    SOURCE_BASELINE,
    SOURCE_ORIGINAL,
    SOURCE_OURS,
    label,
    summarize,
)


def power_spectrum_db(audio: torch.Tensor, sample_rate: int) -> tuple[np.ndarray, np.ndarray]:
    """Hann-windowed power spectrum of each row of audio (B, N) -> (freqs (F,) Hz, dB (B, F))."""
    x = np.asarray(audio, dtype=np.float64)
    window = np.hanning(x.shape[-1])
    spectrum = np.abs(np.fft.rfft(x * window, axis=-1)) ** 2 / np.sum(window**2)
    freqs = np.fft.rfftfreq(x.shape[-1], 1.0 / sample_rate)
    return freqs, 10.0 * np.log10(np.maximum(spectrum, 1e-10))


def spectra_figure(target: torch.Tensor, resynthesis: torch.Tensor, sample_rate: int) -> Figure:
    """One panel per example: target and resynthesis power spectra (dB) on a log-frequency axis."""
    n = target.shape[0]
    figure, axes = plt.subplots(n, 1, figsize=(8, 2.6 * n), squeeze=False)
    freqs, target_db = power_spectrum_db(target, sample_rate)
    _, resynthesis_db = power_spectrum_db(resynthesis, sample_rate)
    for i, axis in enumerate(axes[:, 0]):
        axis.plot(freqs[1:], target_db[i, 1:], label="target", lw=1.0)
        axis.plot(freqs[1:], resynthesis_db[i, 1:], label="resynthesis", lw=1.0, alpha=0.8)
        axis.set_xscale("log")
        axis.set_ylim(max(target_db[i].max(), resynthesis_db[i].max()) - 90, None)
        axis.set_ylabel("power (dB)")
        axis.legend(loc="upper right", fontsize=8)
    axes[-1, 0].set_xlabel("frequency (Hz)")
    figure.tight_layout()
    return figure


def draw_f0_scatter(
    axis, predicted_hz: np.ndarray, true_hz: np.ndarray, title: str = "",
    limits_hz: tuple[float, float] | None = None,
) -> None:
    """Draw per-frame predicted against true f0 (log-log) on ``axis``, with the identity and
    octave lines; ``limits_hz`` fixes both axes (default: the data's range)."""
    predicted = np.asarray(predicted_hz, dtype=np.float64).ravel()
    true = np.broadcast_to(np.asarray(true_hz, dtype=np.float64), np.shape(predicted_hz)).ravel()
    axis.scatter(true, predicted, s=3, alpha=0.3)
    if limits_hz is None:
        limits_hz = (min(true.min(), predicted.min()) * 0.9, max(true.max(), predicted.max()) * 1.1)
    line = np.array(limits_hz)
    axis.plot(line, line, "k-", lw=0.8, label="identity")
    axis.plot(line, 2 * line, "k:", lw=0.8, label="octave errors")
    axis.plot(line, line / 2, "k:", lw=0.8)
    axis.set(xscale="log", yscale="log", xlim=limits_hz, ylim=limits_hz,
             xlabel="true f0 (Hz)", ylabel="predicted f0 (Hz)", title=title)
    axis.legend(loc="upper left", fontsize=8)


def f0_scatter_figure(predicted_hz: np.ndarray, true_hz: np.ndarray, title: str = "") -> Figure:
    """Per-frame predicted against true f0 (log-log), with the identity and octave lines."""
    figure, axis = plt.subplots(figsize=(5, 5))
    draw_f0_scatter(axis, predicted_hz, true_hz, title)
    figure.tight_layout()
    return figure


def models_f0_figure(models: dict, dataloader, limits_hz: tuple[float, float] = (30.0, 8000.0)
                     ) -> Figure:
    """One panel per ``models`` entry (title -> a model with ``estimate(audio)``): its per-frame
    predicted f0 against the true f0 of every batch (``x``, ``f0_hz``) of ``dataloader``."""
    figure, axes = plt.subplots(1, len(models), figsize=(5 * len(models), 5), squeeze=False)
    for axis, (title, model) in zip(axes[0], models.items()):
        predicted, true = [], []
        with torch.no_grad():
            for batch in dataloader:
                predicted.append(model.estimate(batch["x"])["f0_hz"])
                true.append(batch["f0_hz"].expand_as(predicted[-1]))
        draw_f0_scatter(axis, torch.cat(predicted).numpy(), torch.cat(true).numpy(), title,
                        limits_hz=limits_hz)
    figure.tight_layout()
    return figure


CURVE_PANELS = (
    ("train", "train/loss", "training loss", True),
    ("val", "val/lsd", "validation LSD (dB²)", False),
    ("val", "val/rpa", "validation RPA", False),
    ("val", "val/median_cents_error", "validation median |error| (cents)", True),
)


def curves_figure(runs: dict[str, list[dict]], title: str = "") -> Figure:
    """A 2 x 2 figure of curves against the training step: the training loss, the validation
    LSD, RPA and median cents error; one line per run (``runs``: label -> MetricsHistory rows,
    as read back from curves.csv; missing metrics are left out)."""
    figure, axes = plt.subplots(2, 2, figsize=(11, 7))
    for axis, (split, key, axis_label, log_scale) in zip(axes.ravel(), CURVE_PANELS):
        for name, rows in runs.items():
            points = [(float(r["step"]), float(r[key])) for r in rows
                      if r.get("split") == split and r.get(key) not in (None, "")]
            if points:
                steps, values = zip(*points)
                axis.plot(steps, values, lw=1.0 if split == "train" else 1.5,
                          marker="" if split == "train" else ".", ms=3, label=name)
        axis.set(xlabel="training step", ylabel=axis_label)
        if log_scale:
            axis.set_yscale("log")
        axis.grid(alpha=0.3)
        if len(runs) > 1 and axis.get_lines():
            axis.legend(fontsize=8)
    if title:
        figure.suptitle(textwrap.fill(title, width=110))  # a long title wraps instead of clipping
    figure.tight_layout()
    return figure


def rpa_per_seed_figure(rows: Sequence[dict[str, Any]]) -> Figure:
    """RPA (%) and median cents error per seed for every experiment of the results table, from
    its run records (``result_tables``; runs.csv's rows); the baseline as a dashed line."""
    table = [r for r in summarize(rows) if r.source != SOURCE_BASELINE]
    baseline = next((r for r in rows if r["source"] == SOURCE_BASELINE), None)
    by_label: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        if row["source"] != SOURCE_BASELINE:
            by_label.setdefault(label(row["experiment"], row["source"]), []).append(row)
    figure, axes = plt.subplots(1, 2, figsize=(max(8.0, 1.6 * len(table) + 4), 4.4))
    colors = {SOURCE_OURS: "tab:blue", SOURCE_ORIGINAL: "tab:orange"}
    names = {SOURCE_OURS: "our runs", SOURCE_ORIGINAL: "authors' checkpoints"}
    panels = (("rpa", 100.0, "RPA (%)", False),
              ("median_cents_error", 1.0, "median |error| (cents)", True))
    for ax, (key, factor, ylabel, log_scale) in zip(axes, panels):
        for x, table_row in enumerate(table):
            runs = [r for r in by_label[table_row.label] if isinstance(r.get(key), float)]
            values = np.array([factor * r[key] for r in runs])
            offsets = np.linspace(-0.15, 0.15, len(values)) if len(values) > 1 \
                else np.zeros(len(values))
            ax.scatter(x + offsets, values, s=28, zorder=3, color=colors[table_row.source])
            for offset, value, run in zip(offsets, values, runs):
                ax.annotate(str(run["seed"]), (x + offset, value), xytext=(4, 2),
                            textcoords="offset points", fontsize=6, color="0.35")
            if len(values):
                ax.hlines(np.mean(values), x - 0.25, x + 0.25, color="black", lw=1.5, zorder=4)
        handles = [plt.Line2D([], [], ls="", marker="o", color=colors[s], label=names[s])
                   for s in (SOURCE_OURS, SOURCE_ORIGINAL) if any(r.source == s for r in table)]
        handles.append(plt.Line2D([], [], color="black", lw=1.5, label="mean over seeds"))
        if baseline is not None and isinstance(baseline.get(key), float):
            handles.append(ax.axhline(factor * baseline[key], color="tab:green", ls="--", lw=1.2,
                                      label=BASELINE_NAME))
        ax.legend(handles=handles, loc="best", fontsize=7)
        ax.set_xticks(range(len(table)), [r.label for r in table], rotation=30, ha="right")
        ax.set_xlim(-0.6, len(table) - 0.4)
        ax.set_ylabel(ylabel)
        ax.grid(axis="y", alpha=0.3)
        if log_scale:
            ax.set_yscale("log")
        else:
            ax.set_ylim(-3, 103)
    axes[0].set_title("Raw pitch accuracy per seed (labels: seeds)")
    axes[1].set_title("Median f0 error per seed (log scale)")
    figure.tight_layout()
    return figure


def seed_strip_figure(
    values: dict[str, list[float]], threshold: float, notes: dict[str, str],
    ylabel: str = "test median |error| (cents)", title: str = "", floor: float = 1.0,
    threshold_label: str = "", seeds: dict[str, list[int]] | None = None,
) -> Figure:
    """One strip per experiment (``values``: experiment -> one value per seed) on a log y axis,
    each seed a dot (x jittered by a fixed generator), filled when it is <= ``threshold``
    (a dashed line), hollow otherwise; ``notes[experiment]`` is written above its strip (e.g.
    the share that localizes); ``threshold_label`` names the line in the legend. Values under
    ``floor`` are drawn at ``floor``. With ``seeds`` (experiment -> the seed of each value),
    a thin grey line joins a seed's dots in neighbouring strips (runs of one seed are paired)."""
    names = list(values)
    figure, axis = plt.subplots(figsize=(max(4.5, 1.9 * len(names) + 1.5), 4.8))
    rng = np.random.default_rng(0)
    points: dict[str, dict[int, tuple[float, float]]] = {}
    for i, name in enumerate(names):
        y = np.maximum(np.asarray(values[name], dtype=np.float64), floor)
        x = i + rng.uniform(-0.18, 0.18, size=y.shape)
        inside = y <= threshold
        axis.scatter(x[inside], y[inside], s=28, color="C0", zorder=3)
        axis.scatter(x[~inside], y[~inside], s=28, facecolors="none", edgecolors="C3", zorder=3)
        if seeds is not None:
            points[name] = {int(s): (float(a), float(b)) for s, a, b in zip(seeds[name], x, y)}
    for left, right in itertools.pairwise(names):
        if left in points and right in points:
            for seed in sorted(points[left].keys() & points[right].keys()):
                (x0, y0), (x1, y1) = points[left][seed], points[right][seed]
                axis.plot([x0, x1], [y0, y1], color="0.6", lw=0.6, alpha=0.6, zorder=2,
                          gid=f"pair-{left}-{right}-{seed}")
    axis.axhline(threshold, color="k", ls="--", lw=1.0,
                 label=threshold_label or f"≤ {threshold:g}")
    axis.set_yscale("log")
    every = [float(v) for seeds in values.values() for v in seeds]
    top = max([threshold, *every]) * 8.0
    axis.set_ylim(max(floor, min([threshold, *every])) / 3.0, top)
    for i, name in enumerate(names):
        axis.text(i, top / 1.15, notes.get(name, ""), ha="center", va="top", fontsize=8)
    axis.set_xticks(range(len(names)), names, rotation=20 if len(names) > 3 else 0)
    axis.set_xlim(-0.6, len(names) - 0.4)
    axis.set_ylabel(ylabel)
    axis.grid(axis="y", alpha=0.3, which="both")
    axis.legend(loc="lower right", fontsize=8)
    if title:
        axis.set_title(title)
    figure.tight_layout()
    return figure


def spectrogram_db(
    audio: np.ndarray, sample_rate: int, max_columns: int = 4000
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Hann STFT power of audio (N,) in dB: (times (M,) s, frequencies (F,) Hz, dB (F, M)),
    n_fft 1024, centred frames, hop >= 256 and at most ``max_columns`` frames."""
    n_fft = 1024
    hop = max(256, -(-audio.shape[0] // max_columns))
    padded = np.concatenate([np.zeros(n_fft // 2), audio, np.zeros(n_fft // 2)])
    n_cols = max(1, 1 + (padded.shape[0] - n_fft) // hop)
    index = np.arange(n_fft)[None, :] + hop * np.arange(n_cols)[:, None]
    frames = padded[index] * np.hanning(n_fft)
    power = np.abs(np.fft.rfft(frames, axis=1)) ** 2
    return (
        np.arange(n_cols) * hop / sample_rate,
        np.fft.rfftfreq(n_fft, 1.0 / sample_rate),
        10.0 * np.log10(np.maximum(power.T, 1e-10)),
    )


def pitch_track_figure(
    audio: np.ndarray,
    sample_rate: int,
    time: np.ndarray,
    frequency: np.ndarray,
    confidence: np.ndarray,
    title: str = "",
) -> Figure:
    """A recording's f0 track: its spectrogram (audio (N,) at ``sample_rate``, log frequency)
    with the track over it (time (T,) s, frequency (T,) Hz), each point as opaque as its
    confidence (T,) in [0, 1], and the confidence below."""
    times, freqs, db = spectrogram_db(np.asarray(audio, dtype=np.float64), sample_rate)
    figure, (top, bottom) = plt.subplots(
        2, 1, figsize=(10, 5.5), sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    top.pcolormesh(times, freqs[1:], db[1:], shading="auto", cmap="magma",
                   vmin=db.max() - 80, vmax=db.max())
    top.scatter(time, frequency, s=4, color="cyan", alpha=np.clip(confidence, 0.05, 1.0),
                linewidths=0, label="estimated f0 (opacity: confidence)")
    top.set_yscale("log")
    top.set_ylim(30, sample_rate / 2)
    top.set_ylabel("frequency (Hz)")
    top.set_title(title)
    top.legend(loc="upper right", fontsize=8)
    bottom.plot(time, confidence, color="tab:blue", lw=1)
    bottom.set_ylim(0, 1)
    bottom.set_xlabel("time (s)")
    bottom.set_ylabel("confidence")
    figure.tight_layout()
    return figure


def figure_png(figure: Figure, dpi: int = 110) -> bytes:
    """The figure as PNG bytes (closed afterwards)."""
    import io

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi)
    plt.close(figure)
    return buffer.getvalue()


def log_figure(logger: Logger, name: str, figure: Figure, step: int) -> None:
    """Send a figure to loggers that store images (W&B, TensorBoard); others keep the PNG only."""
    if isinstance(logger, WandbLogger):
        logger.log_image(key=name, images=[figure], step=step)
    elif isinstance(logger, TensorBoardLogger):
        logger.experiment.add_figure(name, figure, global_step=step, close=False)
