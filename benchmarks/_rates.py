"""Shared by the benchmarks: measured matmul rates, the encoder's FLOP count, its training step.

FLOPs are counted analytically, 2 per multiply-add of the encoder's linear layers, over
N frames of Q bins:
- conv c_in -> c_out with kernel k ('same' padding; k = 1 for the 1x1 convs):
  forward 2 N Q c_in c_out k;
- Toeplitz head D = c4 Q -> Q_out: forward 2 N D Q_out (the dense Toeplitz matmul);
- amplitude head D -> K: forward 2 N D K.
Backward costs twice the forward of each layer (input gradient and weight gradient; the input
conv's input gradient is needed too, for the LayerNorm's parameters), so a training step is
3 x forward. Elementwise work (LayerNorm, LeakyReLU, dropout, exp-sigmoid, biases, Adam) and any
recomputation are not counted. At the paper's sizes and N = 1024 (batch 64 x 16 frames):
16.30 GFLOP forward, 48.9 GFLOP per step.
"""

from __future__ import annotations

import statistics
import time

import torch
from torch import nn


def matmul_rate(dtype: torch.dtype, size: int = 2048, repeats: int = 5) -> float:
    """Median GFLOP/s of one (size x size) @ (size x size) matmul in ``dtype`` (2 size^3 FLOP)."""
    generator = torch.Generator().manual_seed(0)
    a = torch.randn(size, size, generator=generator).to(dtype)
    b = torch.randn(size, size, generator=generator).to(dtype)
    a @ b  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - start)
    return 2 * size**3 / statistics.median(times) / 1e9


def matmul_rates(repeats: int = 5) -> dict[str, float]:
    """{"fp32": GFLOP/s, "bf16": GFLOP/s} of 2048^3 matmuls, see :func:`matmul_rate`."""
    return {"fp32": matmul_rate(torch.float32, repeats=repeats),
            "bf16": matmul_rate(torch.bfloat16, repeats=repeats)}


def encoder_layer_flops(encoder: nn.Module, n_frames: int) -> dict[str, float]:
    """Forward FLOPs of each linear layer of a PESTOEncoder (or a module with its submodules).

    Keys: "input_conv", "prefilter_convs.{i}", "pointwise_convs.{j}", "output_conv",
    "pitch_head", "amplitude_head".
    """
    positions = n_frames * encoder.input_norm.normalized_shape[-1]
    convs = {"input_conv": encoder.input_conv,
             **{f"prefilter_convs.{i}": c for i, c in enumerate(encoder.prefilter_convs)},
             **{f"pointwise_convs.{j}": c for j, c in enumerate(encoder.pointwise_convs)},
             "output_conv": encoder.output_conv}
    flops = {name: 2.0 * positions * c.in_channels * c.out_channels * c.kernel_size[0]
             for name, c in convs.items()}
    n_features = encoder.amplitude_head.in_features
    n_bins_out = encoder.pitch_head.weight.numel() - n_features + 1
    flops["pitch_head"] = 2.0 * n_frames * n_features * n_bins_out
    flops["amplitude_head"] = 2.0 * n_frames * n_features * encoder.amplitude_head.out_features
    return flops


def encoder_step_flops(encoder: nn.Module, n_frames: int) -> float:
    """FLOPs of one forward + backward of the encoder on n_frames frames (3 x forward)."""
    return 3.0 * sum(encoder_layer_flops(encoder, n_frames).values())


def encoder_step(encoder: nn.Module, optimizer: torch.optim.Optimizer, frames: torch.Tensor,
                 autocast_dtype: torch.dtype | None = None) -> None:
    """One encoder-only training step on frames (N, Q): forward (under autocast when a dtype is
    given), loss = mean logsumexp(logits) + mean amplitudes (a scalar of both heads, so that
    backward runs through the whole network), backward, optimizer step, zero_grad."""
    with torch.autocast(frames.device.type, dtype=autocast_dtype or torch.bfloat16,
                        enabled=autocast_dtype is not None):
        logits, amplitudes = encoder(frames)
    (logits.float().logsumexp(-1).mean() + amplitudes.float().mean()).backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


def share(gflops_per_s: float, rate: float) -> str:
    """``gflops_per_s`` as a percentage of ``rate``, e.g. '54 %'."""
    return f"{100 * gflops_per_s / rate:.0f} %"
