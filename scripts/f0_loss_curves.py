"""Loss against the f0 offset under each SOT framing, no optimization: a sine and a 4-harmonic note.

    python scripts/f0_loss_curves.py [--f0 440] [--out figures]

The target is a note at ``--f0`` Hz rendered by SOT-2048's synth (4096 samples, 16 kHz) and
scaled to a peak of 0.9 as the data set is: a sine (harmonic 1 alone) or harmonics 1-4 with
amplitudes 1, 0.7, 0.5, 0.4. The prediction is the same note (the same scaled amplitudes) with
its f0 moved by an offset, -2..+2 octaves by 1/48 octave. Curves, each a loss between prediction
and target:

- "SOT-2048 <framing>": SOT-2048's training loss (SOT + 0.05 MSS-Lin) with the SOT term's
  ``framing`` padded (the paper's), full or centered (scripts/f0_basin_grid.py's configurations
  <framing>-flattop-mss0.05-linear);
- "SOT <framing>": its SOT term alone (<framing>-flattop-mss0-linear);
- "MSS-Lin": the MSS-Lin experiment's loss, for comparison.

Writes ``<out>/f0_loss_curves.csv`` (one row per offset, one column per note and curve),
``<out>/f0_loss_curves.png`` (each curve over its maximum; the whole range, and a +-1/2 octave
zoom), and prints per note and curve the local minima on the grid other than offset 0 and the
monotone range around 0 (the offsets from which the loss decreases at every grid step toward
offset 0).
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import torch
import yaml
from f0_basin_grid import Config, build_loss, instantiate
from f0_descent import N_FRAMES, N_HARMONICS, N_SAMPLES
from torch import nn
from tqdm import tqdm

from sotddsp.core.atomic_files import atomic_write_bytes, atomic_write_text
from sotddsp.core.command_line import OneLineArgumentParser, run_cli_main
from sotddsp.core.result_tables import csv_text
from sotddsp.core.run_layout import experiment_config
from sotddsp.dsp.spectral import FRAMINGS
from sotddsp.dsp.synth import HarmonicSynth

NOTES = {"sine": (1.0,), "4 harmonics": (1.0, 0.7, 0.5, 0.4)}
OFFSETS_OCTAVES = np.arange(-96, 97) / 48


def curve_losses() -> dict[str, nn.Module]:
    """{curve name: loss module}, in the order of the figure's legend."""
    losses = {f"SOT-2048 {f}": build_loss(Config(f, "flattop", 0.05, "linear")) for f in FRAMINGS}
    losses |= {f"SOT {f}": build_loss(Config(f, "flattop", 0.0, "linear")) for f in FRAMINGS}
    losses["MSS-Lin"] = instantiate(
        yaml.safe_load(experiment_config("MSS-Lin").read_text())["model"]["loss"])
    return losses


def render(amplitudes: torch.Tensor, f0_hz: torch.Tensor) -> torch.Tensor:
    """Notes (M, N) with amplitudes (K,) at f0 (M,) Hz, constant over the control frames."""
    amps = torch.zeros(N_HARMONICS)
    amps[: len(amplitudes)] = amplitudes
    return HarmonicSynth(n_samples=N_SAMPLES)(
        amps.expand(len(f0_hz), N_FRAMES, N_HARMONICS).contiguous(),
        f0_hz[:, None, None].expand(-1, N_FRAMES, 1).contiguous())


def loss_curves(f0: float, offsets: np.ndarray = OFFSETS_OCTAVES) -> dict[str, np.ndarray]:
    """{"<note>: <curve>": float64 (len(offsets),)}: each loss between the note at
    f0 2^offset and at f0 (both scaled by the target's peak normalization)."""
    losses = curve_losses()
    curves = {}
    progress = tqdm(total=len(NOTES) * len(losses), desc="loss curves", unit="curve")
    with torch.no_grad():
        for note, amplitudes in NOTES.items():
            amplitudes = torch.tensor(amplitudes)
            target = render(amplitudes, torch.tensor([f0]))
            scale = 0.9 / target.abs().max()
            predictions = render(amplitudes, f0 * torch.tensor(2.0 ** offsets,
                                                               dtype=torch.float32)) * scale
            target = target * scale
            for name, loss in losses.items():
                curves[f"{note}: {name}"] = np.array(
                    [float(loss(p[None], target)) for p in predictions])
                progress.update()
    progress.close()
    return curves


def shape_summary(offsets: np.ndarray, values: np.ndarray) -> dict[str, object]:
    """Local minima on the grid other than offset 0 (their offsets), and the monotone range
    around 0: the farthest offsets on each side from which every grid step toward 0 lowers the
    loss."""
    interior = (values[1:-1] < values[:-2]) & (values[1:-1] < values[2:])
    minima = [float(o) for o in offsets[1:-1][interior] if o != 0.0]
    zero = int(np.flatnonzero(offsets == 0.0)[0])
    low = zero
    while low > 0 and values[low - 1] > values[low]:
        low -= 1
    high = zero
    while high < len(values) - 1 and values[high + 1] > values[high]:
        high += 1
    return {"local_minima": minima, "monotone_from": float(offsets[low]),
            "monotone_to": float(offsets[high])}


def markdown(offsets: np.ndarray, curves: dict[str, np.ndarray]) -> str:
    lines = ["| note | loss | monotone toward 0 from (octaves) | local minima besides 0 |",
             "|---|---|---|---:|"]
    for key, values in curves.items():
        note, name = key.split(": ")
        s = shape_summary(offsets, values)
        lines.append(f"| {note} | {name} | {s['monotone_from']:+.3f} .. "
                     f"{s['monotone_to']:+.3f} | {len(s['local_minima'])} |")
    return "\n".join(lines) + "\n"


def figure(offsets: np.ndarray, curves: dict[str, np.ndarray], f0: float) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    styles = {"padded": "C0", "full": "C2", "centered": "C3"}
    fig, axes = plt.subplots(len(NOTES), 2, figsize=(12.5, 4.2 * len(NOTES)),
                             gridspec_kw={"width_ratios": [2.2, 1]}, squeeze=False)
    for row, note in zip(axes, NOTES):
        for ax, half_width in zip(row, (None, 0.5)):
            mask = np.ones_like(offsets, bool) if half_width is None else \
                np.abs(offsets) <= half_width + 1e-9
            for key, values in curves.items():
                if not key.startswith(f"{note}: "):
                    continue
                name = key.split(": ")[1]
                framing = name.split()[-1]
                mixture = name.startswith("SOT-2048")
                style = ({"color": "0.45", "lw": 1.2, "ls": "-."} if name == "MSS-Lin" else
                         {"color": styles[framing], "lw": 1.6 if mixture else 1.0,
                          "ls": "-" if mixture else "--"})
                shown = values[mask]
                ax.plot(offsets[mask], shown / shown.max(), label=name, **style)
            ax.axvline(0.0, color="0.6", lw=0.8, ls=":")
            ax.grid(alpha=0.3)
            ax.set_title(f"{note} at {f0:g} Hz" + ("" if half_width is None else
                                                   f", zoom ±{half_width:g} octave"), fontsize=10)
        row[0].set_ylabel("loss / its max")
    for ax in axes[-1]:
        ax.set_xlabel("f0 offset of the prediction (octaves)")
    axes[0, 0].legend(fontsize=8, ncol=2, loc="lower right")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    return buffer.getvalue()


def main(argv: list[str] | None = None) -> dict[str, np.ndarray]:
    parser = OneLineArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--f0", type=float, default=440.0,
                        help="the target's f0 (Hz), in the data set's range 40..1950")
    parser.add_argument("--out", type=Path, default=Path("figures"))
    args = parser.parse_args(argv)
    if not 40.0 <= args.f0 <= 1950.0:
        parser.error(f"--f0 must be in 40..1950 Hz (the data set's range), got {args.f0:g}")
    curves = loss_curves(args.f0)
    columns = ["offset_octaves", *curves]
    rows = [{"offset_octaves": float(o), **{k: float(v[i]) for k, v in curves.items()}}
            for i, o in enumerate(OFFSETS_OCTAVES)]
    atomic_write_text(args.out / "f0_loss_curves.csv", csv_text(columns, rows))
    atomic_write_bytes(args.out / "f0_loss_curves.png", figure(OFFSETS_OCTAVES, curves, args.f0))
    print(markdown(OFFSETS_OCTAVES, curves))
    print(f"wrote {args.out}/f0_loss_curves.csv, f0_loss_curves.png")
    return curves


if __name__ == "__main__":
    run_cli_main(main)
