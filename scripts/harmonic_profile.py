"""What a trained model predicts on the synthetic test split: the ratio of true to predicted f0
and the harmonic amplitudes it puts out, averaged over examples.

    python scripts/harmonic_profile.py [CHECKPOINT] [--data data/40_1950_...pth]

Without CHECKPOINT: the default model (``checkpoints.load_checkpoint()``, sotddsp/weights/). Prints, as
Markdown: the histogram of the per-example ratio true f0 / predicted f0 (median over frames,
rounded to the nearest integer), the mean amplitude profile (each example's 20 amplitudes,
averaged over frames and divided by their largest, then averaged over examples), and how alike
the examples' profiles are (mean cosine similarity to the mean profile: 1 means one profile for
every input). A model that predicts f0 / k and puts its energy on a few harmonics of that
subharmonic shows up as a ratio k > 1 and a sparse profile.

Then the same ratios broken down by the number of harmonics the target note has (its nonzero
``weights``), with how many of the examples off f0 sit on an *exact alias*: a subharmonic f0 / k
(within 50 cents, RPA's tolerance) whose harmonics k, 2k, ..., n·k (n·k ≤ the model's 20)
carry exactly the note's partials, so that the synthesizer can render the note itself from it
and no loss on the audio can tell the two apart (tests/dsp/test_synth.py checks the identity).
It says the alias exists at the predicted f0, not that the model's amplitudes reach it.
"""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path

import torch
from torch import Tensor

from sotddsp.core.command_line import run_cli_main
from sotddsp.data.datamodule import PreloadedSinusoidDataModule
from sotddsp.data.synthetic import DEFAULT_DATA_PATH
from sotddsp.dsp.metrics import CENT_TOLERANCE
from sotddsp.model.checkpoints import load_checkpoint

ALIAS_TOLERANCE_CENTS = CENT_TOLERANCE  # RPA's, strict like RPA: on an alias as RPA would call it on f0


def profile(f0_true: Tensor, f0_pred: Tensor, amplitudes: Tensor,
            target_harmonics: Tensor | None = None) -> dict:
    """f0_true (B,) Hz, f0_pred (B, T) Hz, amplitudes (B, T, K), target_harmonics (B,) int, the
    number of harmonics of each target note (optional) -> the summary described above:
    ``ratios`` (B,), ``histogram`` {rounded ratio: count}, ``mean_profile`` (K,),
    ``similarity`` (mean cosine similarity of the examples' profiles to the mean profile); with
    target_harmonics also ``by_target_harmonics`` {n: {rounded ratio: count}} and
    ``exact_aliases``, the number of examples whose ratio is within ALIAS_TOLERANCE_CENTS of an
    integer k > 1 with k·n ≤ K."""
    # .contiguous(): median(dim) of an expanded (stride-0) tensor is wrong in torch 2.13 on CPU
    ratios = f0_true / f0_pred.contiguous().median(dim=-1).values
    per_example = amplitudes.mean(dim=1)
    per_example = per_example / per_example.amax(dim=-1, keepdim=True).clamp_min(1e-30)
    mean_profile = per_example.mean(dim=0)
    similarity = torch.nn.functional.cosine_similarity(per_example, mean_profile[None], dim=-1)
    rounded = [round(float(r)) for r in ratios]
    summary = {
        "ratios": ratios,
        "histogram": Counter(rounded),
        "mean_profile": mean_profile,
        "similarity": float(similarity.mean()),
    }
    if target_harmonics is not None:
        counts = [int(n) for n in target_harmonics]
        by_n: dict[int, Counter] = {}
        for n, k in zip(counts, rounded, strict=True):
            by_n.setdefault(n, Counter())[k] += 1
        summary["by_target_harmonics"] = dict(sorted(by_n.items()))
        cents_off = (1200 * torch.log2(ratios / torch.tensor(rounded))).abs()
        summary["exact_aliases"] = sum(
            1 for n, k, off in zip(counts, rounded, cents_off.tolist(), strict=True)
            if k > 1 and k * n <= amplitudes.shape[-1] and off < ALIAS_TOLERANCE_CENTS)
    return summary


def markdown(summary: dict, title: str) -> str:
    histogram = sorted(summary["histogram"].items())
    total = sum(count for _, count in histogram)
    lines = [f"**{title}**", "",
             "| true f0 / predicted f0 (rounded) | " + " | ".join(str(k) for k, _ in histogram)
             + " |", "|---|" + "---:|" * len(histogram),
             "| examples (%) | " + " | ".join(f"{100 * c / total:.1f}" for _, c in histogram)
             + " |", "",
             "| harmonic | " + " | ".join(str(k + 1) for k in range(len(summary["mean_profile"])))
             + " |", "|---|" + "---:|" * len(summary["mean_profile"]),
             "| mean amplitude / max | " + " | ".join(f"{v:.2f}" for v in summary["mean_profile"])
             + " |", "",
             (f"Mean cosine similarity of the examples' profiles to the mean profile: "
             f"{summary['similarity']:.3f} (over {total} test examples).")]
    if "by_target_harmonics" in summary:
        ratios = sorted(summary["histogram"])
        lines += ["", "| harmonics in the target \\ true f0 / predicted f0 | "
                  + " | ".join(str(k) for k in ratios) + " |", "|---|" + "---:|" * len(ratios)]
        for n, counter in summary["by_target_harmonics"].items():
            lines.append(f"| {n} | " + " | ".join(str(counter.get(k, 0)) for k in ratios) + " |")
        off_f0 = total - summary["histogram"].get(1, 0)
        lines += ["", (f"Examples off f0 (rounded ratio ≠ 1): {off_f0}; of them on an exact alias "
                  f"(ratio within {ALIAS_TOLERANCE_CENTS:g} cents of an integer k > 1 with k × "
                  f"harmonics in the target ≤ {len(summary['mean_profile'])}): "
                  f"{summary['exact_aliases']}.")]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", nargs="?", type=Path, default=None)
    parser.add_argument("--data", type=Path, default=Path(DEFAULT_DATA_PATH))
    args = parser.parse_args(argv)
    model = load_checkpoint(args.checkpoint)
    datamodule = PreloadedSinusoidDataModule(data_path=str(args.data), batch_size=64)
    datamodule.setup("test")
    truths, predictions, amplitudes, target_harmonics = [], [], [], []
    with torch.no_grad():
        for batch in datamodule.test_dataloader():
            out = model.estimate(batch["x"])
            truths.append(batch["f0_hz"].reshape(-1))
            predictions.append(out["f0_hz"])
            amplitudes.append(out["amplitudes"])
            target_harmonics.append((batch["weights"] > 0).sum(dim=-1))
    summary = profile(torch.cat(truths), torch.cat(predictions), torch.cat(amplitudes),
                      torch.cat(target_harmonics))
    name = args.checkpoint.name if args.checkpoint else "the default model"
    print(markdown(summary, f"{name} on the test split of {args.data}"))
    return summary


if __name__ == "__main__":
    run_cli_main(main)
