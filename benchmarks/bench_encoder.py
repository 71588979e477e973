"""Time the PESTO encoder: its first formulation (nn.Conv1d layers) beside the current one.

Per layer: each layer alone, forward then backward (gradients of its input and parameters), on
the activations of a batch of CQT frames (train mode). The first formulation runs its nn.Conv1d
modules in (N, C, Q) layout; the current one is shown with the op its trunk uses for that layer,
on the whole batch in channels-last rows (N * Q, C). The trunk itself runs these ops fused into
one autograd node over chunks of frames: the `features()` row times that node against the
first formulation's layers.
Whole step: forward + backward + Adam on the same frames (the encoder-only step of
bench_train_step.py), in float32 and under CPU bfloat16 autocast.
Matmul rates (2048^3, float32 and bfloat16) are measured in the same run, between rounds.
Everything alternates in one process; times are medians over the repeats. FLOPs are counted
analytically (benchmarks/_rates.py): 2 per multiply-add of the linear layers, backward = 2 x
forward, 48.9 GFLOP per step at the paper's sizes and 1024 frames.

    python benchmarks/bench_encoder.py [--threads N] [--quick] [--frames 1024]
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from _rates import (
    encoder_layer_flops,
    encoder_step,
    encoder_step_flops,
    matmul_rates,
    share,
)
from _reference_encoder import ConvReferenceEncoder
from torch import Tensor

from sotddsp.model.encoder import PESTOEncoder, exp_sigmoid


@dataclass
class Layer:
    """One layer in both formulations: ``first`` / ``current`` run its forward on fixed inputs."""

    name: str
    forward_flops: float
    first: Callable[[], Tensor]
    current: Callable[[], Tensor]
    leaves: dict[str, list[Tensor]]  # formulation -> tensors whose gradients backward computes
    grads: dict[str, Tensor] = field(default_factory=dict)  # of the outputs, set when timed
    times: dict[str, list[tuple[float, float]]] = field(
        default_factory=lambda: {"first": [], "current": []})


def _leaf(t: Tensor) -> Tensor:
    return t.detach().clone().requires_grad_()


def _rows(ncl: Tensor) -> Tensor:
    """(N, C, Q) -> channels-last rows (N * Q, C), a leaf."""
    return _leaf(ncl.transpose(1, 2).reshape(-1, ncl.shape[1]))


def _weight_2d(conv: torch.nn.Conv1d) -> Tensor:
    return conv.weight.flatten(1)


def build_layers(first: ConvReferenceEncoder, current: PESTOEncoder, cqt: Tensor) -> list[Layer]:
    """The layers of both models (same parameters) on the activations of ``cqt`` (N, Q)."""
    slope = current.leaky_relu_slope
    flops = encoder_layer_flops(current, cqt.shape[0])
    n_frames, n_bins = cqt.shape
    with torch.no_grad():
        normed = first.input_norm(cqt.unsqueeze(1))
        inputs = [F.leaky_relu(first.input_conv(normed), slope)]  # inputs of the later layers
        for conv in first.prefilter_convs:
            y = F.leaky_relu(conv(inputs[-1]), slope)
            inputs.append(inputs[-1] + y if first.residual else y)
        for conv in first.pointwise_convs:
            inputs.append(F.leaky_relu(conv(inputs[-1]), slope))
        features = first.output_conv(inputs[-1]).flatten(1)

    def params(module: torch.nn.Module) -> list[Tensor]:
        return list(module.parameters())

    layers = []
    x = _leaf(normed)
    x_rows = _leaf(normed.squeeze(1))
    in_conv = current.input_conv
    k = in_conv.kernel_size[0]
    layers.append(Layer(
        f"input conv 1->{in_conv.out_channels}, k={k}, + LeakyReLU (current: im2col matmul)",
        flops["input_conv"],
        lambda: F.leaky_relu(first.input_conv(x), slope),
        lambda: F.leaky_relu(F.linear(F.pad(x_rows, (k // 2, k // 2)).unfold(1, k, 1),
                                      _weight_2d(in_conv), in_conv.bias), slope),
        {"first": [x, *params(first.input_conv)], "current": [x_rows, *params(in_conv)]},
    ))
    for i, (conv_first, conv) in enumerate(zip(first.prefilter_convs, current.prefilter_convs)):
        h, h_rows = _leaf(inputs[i]), _rows(inputs[i])
        pad = conv.kernel_size[0] // 2

        def first_fn(h=h, c=conv_first) -> Tensor:
            y = F.leaky_relu(c(h), slope)
            return h + y if first.residual else y

        def current_fn(h=h_rows, c=conv, pad=pad) -> Tensor:
            z = F.conv2d(h.view(n_frames, n_bins, -1).permute(0, 2, 1).unsqueeze(2),
                         c.weight.unsqueeze(2), c.bias, padding=(0, pad))
            y = F.leaky_relu(z.squeeze(2).permute(0, 2, 1).reshape(h.shape), slope)
            return h + y if current.residual else y

        layers.append(Layer(
            f"prefilter conv {conv.in_channels}->{conv.out_channels}, k={conv.kernel_size[0]}, "
            "+ LeakyReLU, residual (current: channels-last conv2d)",
            flops[f"prefilter_convs.{i}"], first_fn, current_fn,
            {"first": [h, *params(conv_first)], "current": [h_rows, *params(conv)]},
        ))
    offset = len(current.prefilter_convs)
    for j, (conv_first, conv) in enumerate(zip(first.pointwise_convs, current.pointwise_convs)):
        h, h_rows = _leaf(inputs[offset + j]), _rows(inputs[offset + j])
        layers.append(Layer(
            f"1x1 conv {conv.in_channels}->{conv.out_channels} + LeakyReLU (current: matmul)",
            flops[f"pointwise_convs.{j}"],
            lambda h=h, c=conv_first: F.leaky_relu(c(h), slope),
            lambda h=h_rows, c=conv: F.leaky_relu(F.linear(h, _weight_2d(c), c.bias), slope),
            {"first": [h, *params(conv_first)], "current": [h_rows, *params(conv)]},
        ))
    h, h_rows = _leaf(inputs[-1]), _rows(inputs[-1])
    out_conv, p = current.output_conv, current.dropout.p

    def dropout_rows(t: Tensor) -> Tensor:  # the trunk's mask: rand >= p, scaled by 1 / (1 - p)
        return t * torch.rand(t.shape).ge_(p).div_(1 - p)

    layers.append(Layer(
        f"dropout + 1x1 conv {out_conv.in_channels}->{out_conv.out_channels} "
        "(first: nn.Dropout; current: rand mask, matmul)",
        flops["output_conv"],
        lambda: first.output_conv(first.dropout(h)),
        lambda: F.linear(dropout_rows(h_rows), _weight_2d(out_conv), out_conv.bias),
        {"first": [h, *params(first.output_conv)], "current": [h_rows, *params(out_conv)]},
    ))
    f_first, f_current = _leaf(features), _leaf(features)
    layers.append(Layer(
        f"Toeplitz head {features.shape[1]}->{current.n_bins_out} "
        "(first: conv1d; current: gathered-matrix matmul)",
        flops["pitch_head"],
        lambda: first.pitch_logits(f_first),
        lambda: current.pitch_head(f_current),
        {"first": [f_first, *params(first.pitch_head)],
         "current": [f_current, *params(current.pitch_head)]},
    ))
    layers.append(Layer(
        f"Linear {features.shape[1]}->{current.n_harmonics} + exp-sigmoid",
        flops["amplitude_head"],
        lambda: exp_sigmoid(first.amplitude_head(f_first)),
        lambda: exp_sigmoid(current.amplitude_head(f_current)),
        {"first": [f_first, *params(first.amplitude_head)],
         "current": [f_current, *params(current.amplitude_head)]},
    ))

    def trunk_params(model: PESTOEncoder) -> list[Tensor]:
        return [t for name, t in model.named_parameters()
                if not name.startswith(("pitch_head.", "amplitude_head."))]

    layers.append(Layer(
        "features(): LayerNorm ... last 1x1 conv, whole (current: one fused, chunked node)",
        sum(v for name, v in flops.items() if not name.endswith("_head")),
        lambda: first.features(cqt),
        lambda: current.features(cqt),
        {"first": trunk_params(first), "current": trunk_params(current)},
    ))
    return layers


def time_layer(run: Callable[[], Tensor], leaves: list[Tensor], grad: Tensor) -> tuple[float, float]:
    """(forward seconds, backward seconds) of one call."""
    start = time.perf_counter()
    out = run()
    middle = time.perf_counter()
    torch.autograd.grad(out, leaves, grad)
    return middle - start, time.perf_counter() - middle


def time_step(model: torch.nn.Module, optimizer: torch.optim.Optimizer, cqt: Tensor,
              autocast: bool) -> float:
    """Seconds of one encoder step (benchmarks._rates.encoder_step), bf16 autocast or not."""
    start = time.perf_counter()
    encoder_step(model, optimizer, cqt, torch.bfloat16 if autocast else None)
    return time.perf_counter() - start


def bf16_output_errors(model: PESTOEncoder, cqt: Tensor) -> tuple[float, float]:
    """Norm-relative error of (logits, amplitudes) under bf16 autocast vs float32, eval mode."""
    model.eval()
    with torch.no_grad():
        reference = model(cqt)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            bf16 = model(cqt)
    model.train()
    return tuple(float((b.float() - r).norm() / r.norm()) for b, r in zip(bf16, reference))


def main(argv: list[str] | None = None) -> dict:
    """Run the benchmark, print Markdown tables, return the medians.

    ``argv`` are command-line options (e.g. ``["--quick"]``); None means none, not ``sys.argv``.
    """
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=0,
                        help="torch CPU threads (default 0: torch's default)")
    parser.add_argument("--quick", action="store_true", help="fewer repeats")
    parser.add_argument("--frames", type=int, default=1024,
                        help="CQT frames per step (batch 64 x 16 frames by default)")
    args = parser.parse_args([] if argv is None else argv)
    if args.threads < 0 or args.frames <= 0:
        raise ValueError("--threads must be >= 0 and --frames positive")
    previous_threads = torch.get_num_threads()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    layer_repeats, step_repeats, rounds = (3, 2, 2) if args.quick else (7, 4, 3)
    try:
        result = run(args.frames, layer_repeats, step_repeats, rounds)
    finally:
        torch.set_num_threads(previous_threads)
    return result


def run(n_frames: int, layer_repeats: int, step_repeats: int, rounds: int) -> dict:
    """Time the layers (layer_repeats rounds), then rounds x step_repeats steps of each model and
    dtype with the matmul rates after each round; print the tables."""
    threads = torch.get_num_threads()
    torch.manual_seed(0)
    current = PESTOEncoder()
    first = ConvReferenceEncoder()
    first.load_state_dict(current.state_dict())
    cqt = torch.rand(n_frames, current.n_bins_in)

    # per layer
    layers = build_layers(first, current, cqt)
    for layer in layers:
        for name in ("first", "current"):
            layer.grads[name] = torch.randn_like(getattr(layer, name)())
            time_layer(getattr(layer, name), layer.leaves[name], layer.grads[name])  # warm-up
    for _ in range(layer_repeats):
        for layer in layers:
            for name in ("first", "current"):
                layer.times[name].append(
                    time_layer(getattr(layer, name), layer.leaves[name], layer.grads[name]))

    # whole step, alternating with the matmul rates
    models = {(formulation, autocast): copy.deepcopy(model)
              for formulation, model in (("first", first), ("current", current))
              for autocast in (False, True)}
    optimizers = {key: torch.optim.Adam(m.parameters(), lr=1e-4, weight_decay=1e-4)
                  for key, m in models.items()}
    steps: dict[tuple[str, bool], list[float]] = {key: [] for key in models}
    rates: dict[str, list[float]] = {"fp32": [], "bf16": []}
    for key, model in models.items():
        time_step(model, optimizers[key], cqt, key[1])  # warm-up
    for _ in range(rounds):
        for key, model in models.items():
            steps[key] += [time_step(model, optimizers[key], cqt, key[1])
                           for _ in range(step_repeats)]
        for dtype, rate in matmul_rates(repeats=3).items():
            rates[dtype].append(rate)
    rate = {dtype: statistics.median(v) for dtype, v in rates.items()}
    step_flops = encoder_step_flops(current, n_frames)
    errors = {name: bf16_output_errors(m, cqt) for name, m in (("first", first),
                                                                 ("current", current))}

    print(f"PESTO encoder, {n_frames} frames x {current.n_bins_in} bins, CPU, {threads} "
          f"thread(s), torch {torch.__version__}; {step_flops / 1e9:.1f} GFLOP per step")
    print("\n| 2048^3 matmul | GFLOP/s |\n|---|---:|")
    print(f"| float32 | {rate['fp32']:.0f} |\n| bfloat16 | {rate['bf16']:.0f} |")

    print(f"\nPer layer, float32, train mode, median of {layer_repeats} (ms; GFLOP/s of forward "
          "+ backward)")
    print("| layer | GFLOP fwd+bwd | first: fwd | bwd | GFLOP/s | current: fwd | bwd | GFLOP/s "
          "| speed-up |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for layer in layers:
        cells = []
        total = {}
        for name in ("first", "current"):
            fwd = statistics.median(t[0] for t in layer.times[name])
            bwd = statistics.median(t[1] for t in layer.times[name])
            total[name] = fwd + bwd
            cells.append(f"{1e3 * fwd:.1f} | {1e3 * bwd:.1f} | "
                         f"{3 * layer.forward_flops / total[name] / 1e9:.0f}")
        print(f"| {layer.name} | {3 * layer.forward_flops / 1e9:.2f} | {cells[0]} | {cells[1]} "
              f"| {total['first'] / total['current']:.1f}x |")

    print(f"\nWhole step (forward + backward + Adam), median of {rounds * step_repeats}")
    print("| formulation | dtype | step (ms) | GFLOP/s | share of fp32 matmul "
          "| share of bf16 matmul | speed-up |\n|---|---|---:|---:|---:|---:|---:|")
    medians = {key: statistics.median(v) for key, v in steps.items()}
    for (formulation, autocast), seconds in medians.items():
        achieved = step_flops / seconds / 1e9
        print(f"| {formulation} | {'bf16 autocast' if autocast else 'float32'} "
              f"| {1e3 * seconds:.0f} | {achieved:.0f} | {share(achieved, rate['fp32'])} "
              f"| {share(achieved, rate['bf16'])} "
              f"| {medians[('first', autocast)] / seconds:.1f}x |")
    for name, (logits, amplitudes) in errors.items():
        print(f"{name}: bf16 autocast vs float32 outputs (eval, |difference| / |float32|): "
              f"logits {logits:.1e}, amplitudes {amplitudes:.1e}")
    return {"rates": rate, "steps": medians, "step_flops": step_flops, "errors": errors}


if __name__ == "__main__":
    main(sys.argv[1:])
