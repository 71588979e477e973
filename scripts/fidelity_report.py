"""How far our system is from the paper's, as PAPER.md specifies it: the largest errors.

    python scripts/fidelity_report.py [--batch 16]

Every row compares our code (float32, as trained) with a reference written out from PAPER.md
independently of it (``references/paper_reference.py`` beside this script: NumPy, float64;
``references/authors_format.py``: the authors' encoder on their parameter names):

- the decoder, without and with the roll-off, on f0 rising 300 -> 900 Hz over 16 frames with 20
  random amplitudes (harmonics cross Nyquist between frames) and on a paper-style batch of
  controls predicted by a freshly initialised encoder;
- each of the seven experiments' training losses, term by term, on that batch (prediction: the
  resynthesis by the initial model; target: the synthetic set's examples), and the gradient of
  the SOT distance with respect to the normalized spectra against autograd through a full
  merged sort;
- a model rebuilt from a checkpoint in the authors' release format (pickled with their module
  names): f0 and amplitudes against their encoder's forward pass, and its decoder.

Prints a Markdown table (largest absolute error over the peak, or relative error).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import torch
import yaml
from references.authors_format import (
    authors_state_dict,
    fixture_config,
    reference_cqt,
    reference_forward,
    write_checkpoint_pickled_like_theirs,
)
from references.paper_reference import merged_sort_w1d, numpy_decoder, numpy_mss, numpy_sot

from sotddsp.core.run_layout import experiment_config

EXPERIMENTS = ("MSS-Lin", "MSS-LogLin", "SOT-512", "SOT-512-LogF", "SOT-2048", "SOT-NoCut",
               "SOT-2048-SS")


def peak_error(ours: np.ndarray, reference: np.ndarray) -> float:
    return float(np.abs(ours - reference).max() / np.abs(reference).max())


def build(experiment: str, tmp: Path, data_path: Path):
    from sotddsp.model.cli import build_cli

    cli = build_cli([
        "--config", str(experiment_config(experiment)),
        "--checkpoint_root", str(tmp), "--trainer.logger", "false",
        "--data.init_args.data_path", str(data_path), "--trainer.accelerator", "cpu",
    ])
    return cli.model.eval()


def decoder_rows(model, frames: tuple[torch.Tensor, torch.Tensor], label: str) -> list[tuple]:
    """Our decoder against numpy_decoder on every example of (f0 (B, T), amplitudes (B, T, K))."""
    f0, amplitudes = frames
    with torch.no_grad():
        ours = model.decode(f0, amplitudes, 4096).double().numpy()
    errors = [peak_error(ours[b], numpy_decoder(amplitudes[b].double().numpy(),
                                                f0[b].double().numpy()[:, None], 4096,
                                                model.synth.roll_off))
              for b in range(f0.shape[0])]
    roll_off = "with roll-off" if model.synth.roll_off else "no roll-off"
    return [(f"decoder, {roll_off}: {label}", "NumPy float64 (PAPER.md)", "max abs error / peak",
             max(errors))]


def loss_rows(experiment: str, model, target: torch.Tensor) -> list[tuple]:
    """Each term of the experiment's loss against the NumPy / merged-sort reference."""
    with torch.no_grad():
        prediction = model.estimate(target)["audio"]
        _, terms = model.loss.compute_terms(prediction, target)
    rows = []
    for name, module in model.loss.terms.items():
        ours = float(terms[name])
        pred64, true64 = prediction.double().numpy(), target.double().numpy()
        if hasattr(module, "stft") and hasattr(module, "cutoff"):  # SpectralOTLoss
            reference = np.mean([
                numpy_sot(pred64[b], true64[b], module.stft.n_fft, module.log_frequency,
                          module.cutoff, module.p) for b in range(target.shape[0])])
            what = "NumPy STFT + merged-sort W_2^2 (drop cutoff)" if module.cutoff \
                else "NumPy STFT + merged-sort W_2^2 (no cutoff)"
        else:
            reference = np.mean([
                numpy_mss(pred64[b], true64[b], module.fft_sizes, module.mag_weight,
                          module.logmag_weight) for b in range(target.shape[0])])
            what = "NumPy MSS"
        rows.append((f"{experiment}: term `{name}`", what, "relative error",
                     abs(ours - reference) / abs(reference)))
        if hasattr(module, "stft") and hasattr(module, "cutoff"):
            rows.append(sot_gradient_row(experiment, name, module, prediction, target))
    return rows


def sot_gradient_row(experiment: str, name: str, module, prediction, target) -> tuple:
    """d W / d (normalized spectra), ours (float32) against autograd through the merged sort."""
    from sotddsp.dsp.ot import wasserstein_1d

    with torch.no_grad():
        pred, true = module.spectrum(prediction), module.spectrum(target)
        true_mass = true.sum(-1, keepdim=True) + 1e-12
        pred_mass = true_mass if module.cutoff else pred.sum(-1, keepdim=True) + 1e-12
        u0, v0 = pred / pred_mass, true / true_mass
    # A floor so that no two levels tie: there the gradient is a (documented) one-sided choice.
    u0 = u0 + 1e-4 / u0.shape[-1]
    u, v = u0.clone().requires_grad_(), v0.clone().requires_grad_()
    w = wasserstein_1d(u, v, module.positions, p=module.p, cutoff=module.cutoff)
    ours = torch.autograd.grad(w.sum(), (u, v))
    u_ref, v_ref = u0.clone().requires_grad_(), v0.clone().requires_grad_()
    ref = merged_sort_w1d(u_ref, v_ref, module.positions.float(), module.p,
                          "drop" if module.cutoff else None)
    expected = torch.autograd.grad(ref.sum(), (u_ref, v_ref))
    levels = torch.sort(torch.cat([u0.cumsum(-1), v0.cumsum(-1)], -1), dim=-1).values
    untied = levels.diff(dim=-1).amin(-1) > 0  # frames without a chance tie across u and v
    error = max(float((g - e)[untied].abs().max() / e[untied].abs().max())
                for g, e in zip(ours, expected))
    return (f"{experiment}: term `{name}`, gradient", "autograd through the merged sort",
            "max abs error / max abs gradient", error)


def authors_rows(tmp: Path, target: torch.Tensor, data_path: Path) -> list[tuple]:
    """A model rebuilt from their format against their encoder's forward pass, and its decoder."""
    from sotddsp.model.checkpoints import load_checkpoint

    rows = []
    for experiment, roll_off in (("SOT-2048", False), ("MSS-LogLin", True)):
        config = fixture_config()
        config["group"] = experiment
        config["data"]["init_args"]["data_path"] = str(data_path)
        if roll_off:
            mss = config["model"]["loss_fn"]["init_args"]["losses"][0]
            mss["init_args"]["logmag_weight"] = 1
            config["model"]["loss_fn"] = mss
            config["model"]["decoder"]["init_args"]["apply_roll_off"] = True
        run = tmp / "authors" / experiment / "run-42" / "checkpoints"
        run.mkdir(parents=True)
        (run.parent / "train_config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
        state = authors_state_dict(seed=3)
        write_checkpoint_pickled_like_theirs(run / "best.ckpt", state)
        model = load_checkpoint(run / "best.ckpt")
        with torch.no_grad():
            estimate = model.estimate(target)
            f0_ref, amplitudes_ref = reference_forward(state, reference_cqt(target))
        f0_error = float(((estimate["f0_hz"] - f0_ref).abs() / f0_ref).max())
        amp_error = float(((estimate["amplitudes"] - amplitudes_ref).abs()).max()
                          / amplitudes_ref.abs().max())
        if not roll_off:
            rows.append(("authors' checkpoint: f0", "their encoder on their weight names",
                         "max relative error", f0_error))
            rows.append(("authors' checkpoint: amplitudes", "their encoder on their weight names",
                         "max abs error / max", amp_error))
        rows += decoder_rows(model, (estimate["f0_hz"], estimate["amplitudes"]),
                             f"authors' {experiment} checkpoint, its own predictions")
    return rows


def main(argv: list[str] | None = None) -> list[tuple]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=16, help="examples in the paper-style batch")
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    from sotddsp.data.datamodule import peak_normalize
    from sotddsp.data.files import save_dataset
    from sotddsp.data.synthetic import SynthSettings, generate_dataset

    rows: list[tuple] = []
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        data_path = tmp / "data.pth"
        n = args.batch
        save_dataset(generate_dataset(SynthSettings(n_examples=3 * n, split_sizes=(n, n, n), seed=1)),
                     data_path)
        target = peak_normalize(torch.load(data_path, weights_only=True)["test_tensors"], 0.9)
        rng = np.random.default_rng(11)
        rising = (torch.linspace(300.0, 900.0, 16)[None],
                  torch.from_numpy(rng.uniform(0.0, 1.0, (1, 16, 20)).astype(np.float32)))
        for experiment in EXPERIMENTS:
            model = build(experiment, tmp / experiment, data_path)
            if experiment in ("SOT-2048", "MSS-LogLin"):
                with torch.no_grad():
                    estimate = model.estimate(target)
                rows += decoder_rows(model, rising, "f0 300 -> 900 Hz, 20 harmonics")
                rows += decoder_rows(model, (estimate["f0_hz"], estimate["amplitudes"]),
                                     f"{n} predictions of an initial encoder")
            rows += loss_rows(experiment, model, target)
        rows += authors_rows(tmp, target, data_path)
    print("| what | reference | measure | largest error |\n|---|---|---|---:|")
    for what, reference, measure, error in rows:
        print(f"| {what} | {reference} | {measure} | {error:.1e} |")
    return rows


if __name__ == "__main__":
    main()
