"""PESTO-style frame encoder: one CQT frame -> pitch logits and harmonic amplitudes.

Per frame (PAPER.md "Encoder"): LayerNorm over (1, Q); Conv1d 1->c0 (kernel k, same padding)
+ LeakyReLU; (n_prefilter_layers - 1) Conv1d c0->c0 + LeakyReLU, each added residually;
1x1 convs c0->c1->c2->c3 (+ LeakyReLU each); Dropout; 1x1 conv c3->c4; flatten (c4 * Q);
heads: a Toeplitz linear layer (c4 * Q -> Q_out pitch logits) and Linear (c4 * Q -> K) followed
by the exp-sigmoid 2 * sigmoid(z) ** ln(10) + 1e-7 (harmonic amplitudes).
At the defaults (Q = 285, K = 20, channels (40, 30, 30, 10, 3), k = 15, 2 prefilter layers)
the model has 46,012 trainable parameters, as in the paper.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "PESTOEncoder",
    "ToeplitzLinear",
    "exp_sigmoid",
    "load_original_encoder_state",
    "toeplitz_linear",
]


def exp_sigmoid(z: Tensor, exponent: float = math.log(10.0), max_value: float = 2.0,
                threshold: float = 1e-7) -> Tensor:
    """DDSP's exp-sigmoid: ``max_value * sigmoid(z) ** exponent + threshold``.

    z: any shape (logits). Returns the same shape, values in [threshold, max_value + threshold].
    """
    return max_value * torch.sigmoid(z) ** exponent + threshold


def toeplitz_linear(x: Tensor, kernel: Tensor, out_features: int) -> Tensor:
    """Linear map by a Toeplitz matrix, as a 1-channel convolution.

    x: (N, D_in); kernel: (1, 1, D_in + out_features - 1). Returns (N, out_features) with
    ``y[n, j] = sum_i M[i, j] x[n, i]`` and ``M[i, j] = kernel[i - j + out_features - 1]``
    (the matrix is constant along its diagonals, so the map is shift-equivariant).
    """
    return F.conv1d(x.unsqueeze(-2), kernel, padding=out_features - 1).squeeze(-2)


class ToeplitzLinear(nn.Module):
    """Bias-free Toeplitz linear layer D_in -> D_out (PESTO); ``weight`` (1, 1, D_in + D_out - 1).

    forward(x (N, D_in)) -> (N, D_out), see :func:`toeplitz_linear`.
    """

    def __init__(self, in_features: int, out_features: int) -> None:
        super().__init__()
        self.in_features = in_features
        self.out_features = out_features
        kernel_size = in_features + out_features - 1
        bound = 1.0 / math.sqrt(kernel_size)  # nn.Conv1d(1, 1, kernel_size)'s default init
        self.weight = nn.Parameter(torch.empty(1, 1, kernel_size).uniform_(-bound, bound))

    def forward(self, x: Tensor) -> Tensor:
        return toeplitz_linear(x, self.weight, self.out_features)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}"


def _check_positive_int(value: object, name: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")


class PESTOEncoder(nn.Module):
    """Frame encoder of the paper (PESTO-style), see the module docstring.

    Args:
        n_bins_in: Q, CQT bins per input frame (285 at 16 kHz).
        n_harmonics: K, number of harmonic amplitudes returned.
        channels: 5 channel counts (c0, c1, c2, c3, c4); the flattened feature size is c4 * Q.
        kernel_size: odd kernel size of the input and prefilter convolutions ('same' padding).
        n_prefilter_layers: 1 + number of c0->c0 convolutions after the input convolution.
        leaky_relu_slope: negative slope of every LeakyReLU.
        dropout: dropout probability before the last 1x1 convolution, in [0, 1).
        residual: add each prefilter convolution's output to its input (else replace it).
        n_bins_out: Q_out, number of pitch logits; None -> n_bins_in.

    forward(cqt_frames (N, Q)) -> (pitch_logits (N, Q_out), amplitudes (N, K)), amplitudes in
    [1e-7, 2 + 1e-7] (linear scale).
    """

    def __init__(
        self,
        n_bins_in: int = 285,
        n_harmonics: int = 20,
        channels: Sequence[int] = (40, 30, 30, 10, 3),
        kernel_size: int = 15,
        n_prefilter_layers: int = 2,
        leaky_relu_slope: float = 0.3,
        dropout: float = 0.5,
        residual: bool = True,
        n_bins_out: int | None = None,
    ) -> None:
        super().__init__()
        _check_positive_int(n_bins_in, "n_bins_in")
        if n_bins_out is not None:
            _check_positive_int(n_bins_out, "n_bins_out")
        _check_positive_int(n_harmonics, "n_harmonics")
        channels = tuple(channels)
        if len(channels) != 5:
            raise ValueError(f"channels must have 5 entries (c0, c1, c2, c3, c4), got {channels!r}")
        for c in channels:
            _check_positive_int(c, "channels entries")
        if isinstance(kernel_size, bool) or not isinstance(kernel_size, int) or kernel_size < 1 \
                or kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be an odd positive integer, got {kernel_size!r}")
        _check_positive_int(n_prefilter_layers, "n_prefilter_layers")
        if not math.isfinite(leaky_relu_slope):
            raise ValueError(f"leaky_relu_slope must be a finite number, got {leaky_relu_slope!r}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
        if not isinstance(residual, bool):
            raise ValueError(f"residual must be True or False, got {residual!r}")

        self.n_bins_in = n_bins_in
        self.n_bins_out = n_bins_in if n_bins_out is None else n_bins_out
        self.n_harmonics = n_harmonics
        self.leaky_relu_slope = float(leaky_relu_slope)
        self.residual = residual
        c0, c1, c2, c3, c4 = channels
        pad = kernel_size // 2

        self.input_norm = nn.LayerNorm((1, n_bins_in))
        self.input_conv = nn.Conv1d(1, c0, kernel_size, padding=pad)
        self.prefilter_convs = nn.ModuleList(
            nn.Conv1d(c0, c0, kernel_size, padding=pad) for _ in range(n_prefilter_layers - 1)
        )
        self.pointwise_convs = nn.ModuleList(
            [nn.Conv1d(c0, c1, 1), nn.Conv1d(c1, c2, 1), nn.Conv1d(c2, c3, 1)]
        )
        self.dropout = nn.Dropout(dropout)
        self.output_conv = nn.Conv1d(c3, c4, 1)
        n_features = c4 * n_bins_in
        self.pitch_head = ToeplitzLinear(n_features, self.n_bins_out)
        self.amplitude_head = nn.Linear(n_features, n_harmonics)

    def features(self, cqt_frames: Tensor) -> Tensor:
        """Shared trunk: cqt_frames (N, Q) -> flattened features (N, c4 * Q)."""
        if cqt_frames.ndim != 2 or cqt_frames.shape[-1] != self.n_bins_in:
            raise ValueError(
                f"cqt_frames must have shape (N, {self.n_bins_in}), got {tuple(cqt_frames.shape)}"
            )
        slope = self.leaky_relu_slope
        x = self.input_norm(cqt_frames.unsqueeze(1))
        x = F.leaky_relu(self.input_conv(x), slope)
        for conv in self.prefilter_convs:
            y = F.leaky_relu(conv(x), slope)
            x = x + y if self.residual else y
        for conv in self.pointwise_convs:
            x = F.leaky_relu(conv(x), slope)
        x = self.output_conv(self.dropout(x))
        return x.flatten(1)

    def forward(self, cqt_frames: Tensor) -> tuple[Tensor, Tensor]:
        """cqt_frames (N, Q) CQT magnitudes -> (pitch_logits (N, Q_out), amplitudes (N, K))."""
        h = self.features(cqt_frames)
        return self.pitch_head(h), exp_sigmoid(self.amplitude_head(h))


# The authors' encoder state_dict keys -> ours. "{i}" is a prefilter layer index.
ORIGINAL_KEY_MAP: dict[str, str] = {
    "layernorm.weight": "input_norm.weight",
    "layernorm.bias": "input_norm.bias",
    "conv1.0.weight": "input_conv.weight",
    "conv1.0.bias": "input_conv.bias",
    "prefilt_list.{i}.0.weight": "prefilter_convs.{i}.weight",
    "prefilt_list.{i}.0.bias": "prefilter_convs.{i}.bias",
    "conv2.0.weight": "pointwise_convs.0.weight",
    "conv2.0.bias": "pointwise_convs.0.bias",
    "conv3.0.weight": "pointwise_convs.1.weight",
    "conv3.0.bias": "pointwise_convs.1.bias",
    "conv4.0.weight": "pointwise_convs.2.weight",
    "conv4.0.bias": "pointwise_convs.2.bias",
    "conv4.3.weight": "output_conv.weight",
    "conv4.3.bias": "output_conv.bias",
    "linear.frequency.0.weight": "pitch_head.weight",
    "linear.weights.0.weight": "amplitude_head.weight",
    "linear.weights.0.bias": "amplitude_head.bias",
}
# Authors' keys with no counterpart here (PESTO's integer pitch-shift buffer, unused by the paper).
ORIGINAL_DROPPED_KEYS: frozenset[str] = frozenset({"abs_shift"})
_ORIGINAL_PREFIX = "encoder."
_PREFILTER_KEY = re.compile(r"prefilt_list\.(\d+)\.0\.(weight|bias)")


def load_original_encoder_state(state_dict: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Rename the paper authors' encoder state_dict onto :class:`PESTOEncoder`'s names.

    state_dict: the authors' encoder keys (see ``ORIGINAL_KEY_MAP``), either bare
    (``conv1.0.weight``) or as in their LightningModule (``encoder.conv1.0.weight``; then keys
    without the ``encoder.`` prefix, e.g. the CQT kernels, are ignored). ``abs_shift`` is dropped.
    Returns a new dict {our key: the same tensor}, ready for ``load_state_dict(strict=True)``.
    Raises ValueError (one line) listing unknown or missing keys.
    """
    if any(k.startswith(_ORIGINAL_PREFIX) for k in state_dict):
        items = {k[len(_ORIGINAL_PREFIX):]: v for k, v in state_dict.items()
                 if k.startswith(_ORIGINAL_PREFIX)}
    else:
        items = dict(state_dict)

    prefilter_indices = set()
    unknown = []
    for key in items:
        match = _PREFILTER_KEY.fullmatch(key)
        if match:
            prefilter_indices.add(int(match.group(1)))
        elif key not in ORIGINAL_KEY_MAP and key not in ORIGINAL_DROPPED_KEYS:
            unknown.append(key)

    n_prefilter = max(prefilter_indices) + 1 if prefilter_indices else 0
    expected = []
    for theirs in ORIGINAL_KEY_MAP:
        if "{i}" in theirs:
            expected += [theirs.format(i=i) for i in range(n_prefilter)]
        else:
            expected.append(theirs)
    missing = [k for k in expected if k not in items]
    if unknown or missing:
        raise ValueError(
            f"state_dict does not match the authors' PESTO encoder: unknown keys "
            f"{sorted(unknown)}, missing keys {missing}; pass the 'encoder.*' entries of their "
            "checkpoint's state_dict"
        )

    mapped: dict[str, Tensor] = {}
    for theirs, ours in ORIGINAL_KEY_MAP.items():
        if "{i}" in theirs:
            for i in range(n_prefilter):
                mapped[ours.format(i=i)] = items[theirs.format(i=i)]
        else:
            mapped[ours] = items[theirs]
    return mapped
