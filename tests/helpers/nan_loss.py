"""A test-only loss that turns non-finite on chosen training steps, selectable from YAML:

model:
  loss:
    class_path: tests.helpers.nan_loss.NonFiniteLoss
    init_args: {first_bad_call: 2, every: 1, kind: gradient}
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn


class NonFiniteLoss(nn.Module):
    """Mean absolute waveform error, made non-finite on some training calls.

    Training calls are the calls with a differentiable ``input`` (validation and test run
    without gradients and are never touched), counted from 0 in each process. Call c is bad
    when ``c >= first_bad_call`` and ``(c - first_bad_call) % every == 0``.
    kind "loss": a bad call returns NaN. kind "gradient": a bad call returns the finite loss
    value, but its gradient is NaN (0 * d sqrt(z)/dz at z = 0, i.e. 0 * inf).

    forward(input (B, N), target (B, N)) -> scalar.
    """

    def __init__(
        self, first_bad_call: int, every: int = 1, kind: Literal["loss", "gradient"] = "loss"
    ) -> None:
        super().__init__()
        if first_bad_call < 0 or every < 1:
            raise ValueError("first_bad_call must be >= 0 and every >= 1")
        self.first_bad_call = first_bad_call
        self.every = every
        self.kind = kind
        self.training_calls = 0

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        loss = (input - target).abs().mean()
        if not input.requires_grad:
            return loss
        call = self.training_calls
        self.training_calls += 1
        if call < self.first_bad_call or (call - self.first_bad_call) % self.every != 0:
            return loss
        if self.kind == "loss":
            return loss * float("nan")
        zero = (input - input.detach()).pow(2).sum()  # value 0, gradient 0
        return loss + 0.0 * torch.sqrt(zero)
