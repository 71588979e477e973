"""Two experiments run with the same seed are a paired comparison: they start from the same
encoder weights, read the same batches (the paper's loader is unshuffled: test_reference_runs checks
the recipe), and draw their dropout
masks from the same random stream, because no loss draws random numbers. Only the loss differs.
(docs/RESULTS.md reads the reference runs' seeds as pairs on this ground.)"""

from __future__ import annotations

from pathlib import Path

import torch

from sotddsp.core.run_layout import REPO
from sotddsp.model.cli import build_cli

EXPERIMENTS = ("SOT-2048", "MSS-Lin", "beyond/SOT-2048-full-hann-nomss-logf")


def _model(experiment: str, seed: int, root: Path) -> torch.nn.Module:
    cli = build_cli(["--config", str(REPO / "paper-experiments" / f"{experiment}.yaml"),
                     "--seed_everything", str(seed), "--checkpoint_root", str(root),
                     "--trainer.logger", "false"])
    return cli.model


def test_the_same_seed_gives_every_experiment_the_same_start_and_no_loss_draws_randomness(
    tmp_path: Path,
) -> None:
    models = {e: _model(e, 123, tmp_path) for e in EXPERIMENTS}
    reference = models["SOT-2048"].encoder.state_dict()
    for experiment, model in models.items():
        state = model.encoder.state_dict()
        assert state.keys() == reference.keys()
        assert all(torch.equal(state[k], reference[k]) for k in reference), experiment
    other_seed = _model("SOT-2048", 42, tmp_path).encoder.state_dict()
    assert not all(torch.equal(other_seed[k], reference[k]) for k in reference)

    torch.manual_seed(0)
    target, prediction = torch.randn(2, 4096), torch.randn(2, 4096)
    for experiment, model in models.items():
        before = torch.get_rng_state()
        total, _ = model.loss.compute_terms(prediction, target)  # as in a training step
        assert torch.isfinite(total).all(), experiment
        assert torch.equal(torch.get_rng_state(), before), f"{experiment}'s loss drew randomness"

