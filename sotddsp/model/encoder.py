"""PESTO-style frame encoder: one CQT frame -> pitch logits and harmonic amplitudes.

Per frame (PAPER.md "Encoder"): LayerNorm over (1, Q); Conv1d 1->c0 (kernel k, same padding)
+ LeakyReLU; (n_prefilter_layers - 1) Conv1d c0->c0 + LeakyReLU, each added residually;
1x1 convs c0->c1->c2->c3 (+ LeakyReLU each); Dropout; 1x1 conv c3->c4; flatten (c4 * Q);
heads: a Toeplitz linear layer (c4 * Q -> Q_out pitch logits) and Linear (c4 * Q -> K) followed
by the exp-sigmoid 2 * sigmoid(z) ** ln(10) + 1e-7 (harmonic amplitudes).
At the defaults (Q = 285, K = 20, channels (40, 30, 30, 10, 3), k = 15, 2 prefilter layers)
the model has 46,012 trainable parameters, as in the paper.

Implementation (same function and parameters as the nn.Conv1d stack above, arranged for speed):
the trunk, from the LayerNorm's output to the last 1x1 conv, is one autograd node
(:class:`_Trunk`) that works on chunks of frames in channels-last rows (one row per frame and
bin), so that a chunk's activations stay in cache and no (N, c0, Q) tensor is allocated. The
input conv is an im2col matmul, the prefilter convs are channels-last conv2d (oneDNN on CPU), the
1x1 convs matmuls. Backward keeps only the convs' pre-activations and recomputes the rest per
chunk. The Toeplitz head is one matmul by the Toeplitz matrix gathered from its kernel.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.autograd.function import FunctionCtx, once_differentiable

from sotddsp.core.checks import check_int

__all__ = [
    "PESTOEncoder",
    "ToeplitzLinear",
    "exp_sigmoid",
    "toeplitz_linear",
]

# Rows (frames x bins) per chunk of the trunk on CPU: one (rows, 40) float32 activation is
# 2.6 MB, so a chunk's working set stays in cache (4096 to 32768 rows measured alike; fewer,
# larger chunks suffer less when other processes take the cores). Other devices: one chunk.
_CPU_CHUNK_ROWS = 16384


def exp_sigmoid(z: Tensor, exponent: float = math.log(10.0), max_value: float = 2.0,
                threshold: float = 1e-7) -> Tensor:
    """DDSP's exp-sigmoid: ``max_value * sigmoid(z) ** exponent + threshold``.

    z: any shape (logits). Returns the same shape, values in [threshold, max_value + threshold].
    """
    return max_value * torch.sigmoid(z) ** exponent + threshold


def toeplitz_linear(x: Tensor, kernel: Tensor, out_features: int) -> Tensor:
    """Linear map by a Toeplitz matrix (a 1-channel convolution, computed as one matmul).

    x: (N, D_in); kernel: (1, 1, D_in + out_features - 1). Returns (N, out_features) with
    ``y[n, j] = sum_i M[i, j] x[n, i]`` and ``M[i, j] = kernel[i - j + out_features - 1]``
    (the matrix is constant along its diagonals, so the map is shift-equivariant). M is gathered
    from the kernel on each call; the kernel's gradient is the sum along M's diagonals.
    """
    matrix = kernel.reshape(-1).unfold(0, out_features, 1).flip(1)  # (D_in, out_features)
    return x @ matrix


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


def _chunks(n_frames: int, n_bins: int, device: torch.device) -> list[tuple[int, int]]:
    """Frame ranges [start, stop) of the trunk's chunks."""
    step = max(1, _CPU_CHUNK_ROWS // n_bins) if device.type == "cpu" else n_frames
    return [(start, min(start + step, n_frames)) for start in range(0, n_frames, step)]


def _as_conv2d(rows: Tensor, n_frames: int) -> Tensor:
    """Rows (F * Q, C) -> the same memory seen as conv2d's (F, C, 1, Q), channels_last."""
    return rows.view(n_frames, -1, rows.shape[1]).permute(0, 2, 1).unsqueeze(2)


def _as_rows(t: Tensor) -> Tensor:
    """(F, C, 1, Q) -> rows (F * Q, C); a view when ``t`` is channels_last."""
    return t.squeeze(2).permute(0, 2, 1).reshape(-1, t.shape[1])


def _leaky_relu_grad(grad: Tensor, pre_activation: Tensor, slope: float) -> Tensor:
    """``grad * (1 if pre_activation > 0 else slope)``, autograd's LeakyReLU backward."""
    return torch.ops.aten.leaky_relu_backward(grad, pre_activation, slope, False)


class _TrunkConfig(NamedTuple):
    """The trunk's non-tensor settings."""

    slope: float  # LeakyReLU negative slope
    residual: bool  # prefilter outputs are added to their inputs
    n_prefilter: int  # number of c0 -> c0 convs
    keep_for_backward: bool  # save the pre-activations (False under no_grad)


class _TrunkWeights:
    """The trunk's parameters (or tensors of their shapes), viewed as its matmuls and convs take
    them.

    params: input conv (w (c0, 1, k), b), n_prefilter prefilter convs (w (c0, c0, k), b), three
    1x1 convs (w (c_j, c_{j-1}, 1), b), output conv (w (c4, c3, 1), b), in this order.
    """

    def __init__(self, params: Sequence[Tensor], n_prefilter: int) -> None:
        self.kernel_size = params[0].shape[-1]
        self.pad = self.kernel_size // 2
        self.w_in, self.b_in = params[0].flatten(1), params[1]  # (c0, k), (c0,)
        self.prefilter = [(params[i].unsqueeze(2), params[i + 1])  # (c0, c0, 1, k), (c0,)
                          for i in range(2, 2 + 2 * n_prefilter, 2)]
        self.pointwise = [(params[i].flatten(1), params[i + 1])  # (c_j, c_{j-1}), (c_j,)
                          for i in range(2 + 2 * n_prefilter, len(params), 2)]


def _prefilter_step(h: Tensor, z: Tensor, slope: float, residual: bool) -> Tensor:
    """The next prefilter output h + lrelu(z) (or lrelu(z)) from the previous one, h, and the
    conv's pre-activation z (rows)."""
    y = F.leaky_relu(z, slope)
    return y.add_(h) if residual else y


def _conv_forward(x_pad: Tensor, w: _TrunkWeights, config: _TrunkConfig
                  ) -> tuple[list[Tensor], Tensor]:
    """One chunk, x_pad (F, Q + k - 1) -> (pre-activations [z_0, z_1, ..], last output h).

    z_0 = input conv + bias, z_i = i-th prefilter conv + bias, h as in :class:`_Trunk`; all are
    (F * Q, c0) rows.
    """
    n_frames = x_pad.shape[0]
    cols = x_pad.unfold(1, w.kernel_size, 1).reshape(-1, w.kernel_size)  # im2col (F * Q, k)
    zs = [torch.addmm(w.b_in, cols, w.w_in.t())]
    h = F.leaky_relu(zs[0], config.slope)
    for weight, bias in w.prefilter:
        z = _as_rows(F.conv2d(_as_conv2d(h, n_frames), weight, bias, padding=(0, w.pad)))
        zs.append(z)
        h = _prefilter_step(h, z, config.slope, config.residual)
    return zs, h


def _pointwise_forward(h: Tensor, w: _TrunkWeights, dropout_scale: Tensor | None,
                       slope: float) -> tuple[list[Tensor], list[Tensor]]:
    """One chunk of the 1x1 convs but the last, in (channels, rows) layout.

    h: (R, c0) rows. a_0 = h^T, y_j = W_j a_{j-1} + b_j, a_j = lrelu(y_j) (j = 1, 2, 3).
    Returns the inputs [a_0, a_1, a_2, a_3 * dropout_scale] of the four 1x1 convs and [y_j].
    """
    inputs, pre = [h.t()], []
    for weight, bias in w.pointwise[:-1]:
        pre.append(torch.addmm(bias[:, None], weight, inputs[-1]))
        inputs.append(F.leaky_relu(pre[-1], slope))
    if dropout_scale is not None:
        inputs[-1] = inputs[-1] * dropout_scale
    return inputs, pre


def _pointwise_backward(g: Tensor, inputs: Sequence[Tensor], pre: Sequence[Tensor],
                        w: _TrunkWeights, grads: _TrunkWeights, dropout_scale: Tensor | None,
                        slope: float) -> Tensor:
    """Backward of :func:`_pointwise_forward` and the last 1x1 conv, from g = d out (c4, R):
    accumulates the 1x1 convs' parameter gradients into ``grads``, returns d h (R, c0) rows."""
    last = len(w.pointwise) - 1
    for layer in range(last, -1, -1):
        grad_weight, grad_bias = grads.pointwise[layer]
        grad_weight += g @ inputs[layer].t()
        grad_bias += g.sum(1)
        if layer > 0:
            g = w.pointwise[layer][0].t() @ g
            if layer == last and dropout_scale is not None:
                g = g * dropout_scale
            g = _leaky_relu_grad(g, pre[layer - 1], slope)
    return g.t() @ w.pointwise[0][0]


def _conv_outputs(zs: Sequence[Tensor], config: _TrunkConfig) -> list[Tensor]:
    """The conv layers' outputs [h_0, h_1, ..] (rows) from their pre-activations zs."""
    hs = [F.leaky_relu(zs[0], config.slope)]
    for z in zs[1:]:
        hs.append(_prefilter_step(hs[-1], z, config.slope, config.residual))
    return hs


def _conv_backward(g: Tensor, zs: Sequence[Tensor], hs: Sequence[Tensor], x_pad: Tensor,
                   w: _TrunkWeights, grads: _TrunkWeights, config: _TrunkConfig,
                   input_grad_dtype: torch.dtype | None) -> Tensor | None:
    """Backward of :func:`_conv_forward` from g = d h_last (F * Q, c0): accumulates the convs'
    parameter gradients into ``grads``; returns d x_pad (F, Q + k - 1) in ``input_grad_dtype``,
    or None when that is None."""
    n_frames, n_cols = x_pad.shape
    k = w.kernel_size
    for i in range(len(w.prefilter), 0, -1):
        g_z = _leaky_relu_grad(g, zs[i], config.slope)
        weight = w.prefilter[i - 1][0]
        # bias gradient summed here: oneDNN's bf16 weight-gradient kernel is slower with it
        g_h, g_weight, _ = torch.ops.aten.convolution_backward(
            _as_conv2d(g_z, n_frames), _as_conv2d(hs[i - 1], n_frames), weight, None,
            [1, 1], [0, w.pad], [1, 1], False, [0, 0], 1, [True, True, False])
        grads.prefilter[i - 1][0].add_(g_weight)
        grads.prefilter[i - 1][1].add_(g_z.sum(0))
        g = _as_rows(g_h).add_(g) if config.residual else _as_rows(g_h)
    g_z = _leaky_relu_grad(g, zs[0], config.slope)
    grads.w_in.add_(g_z.t() @ x_pad.unfold(1, k, 1).reshape(-1, k))
    grads.b_in.add_(g_z.sum(0))
    if input_grad_dtype is None:
        return None
    g_cols = (g_z @ w.w_in).view(n_frames, -1, k).to(input_grad_dtype)  # d im2col
    return torch.ops.aten.unfold_backward(g_cols, [n_frames, n_cols], 1, k, 1)


def _compute_dtype(x: Tensor) -> torch.dtype:
    """The dtype autocast would run a conv on ``x`` in (its dtype when autocast is off)."""
    device = x.device.type
    if torch.is_autocast_enabled(device) and x.dtype != torch.float64:
        return torch.get_autocast_dtype(device)
    return x.dtype


def _channels_by_rows(t: Tensor, dtype: torch.dtype) -> Tensor:
    """(F, C, Q) -> (C, F * Q) in ``dtype``."""
    return t.to(dtype).transpose(0, 1).reshape(t.shape[1], -1)


class _Trunk(torch.autograd.Function):
    """The encoder's trunk as one autograd node, evaluated over chunks of frames.

    forward(x (N, Q) normalized frames, dropout_scale (N, c3, Q) or None, config, *params)
    -> (N, c4, Q), params as in :class:`_TrunkWeights`. Per frame and bin (rows):
    z_0 = conv(x; w_in) + b_in, h_0 = lrelu(z_0); for i = 1..n_prefilter
    z_i = conv(h_{i-1}; w_i) + b_i, h_i = h_{i-1} + lrelu(z_i) (or lrelu(z_i) without residual);
    then the 1x1 convs (:func:`_pointwise_forward`) on h_n_prefilter, the last one without
    activation. Backward keeps z_0..z_n_prefilter and recomputes the rest, chunk by chunk.
    Under autocast the trunk runs in the autocast dtype; gradients come in the inputs' dtypes.
    """

    @staticmethod
    def forward(ctx: FunctionCtx, x: Tensor, dropout_scale: Tensor | None, config: _TrunkConfig,
                *params: Tensor) -> Tensor:
        dtype = _compute_dtype(x)
        with torch.autocast(x.device.type, enabled=False):
            w = _TrunkWeights([p.to(dtype) for p in params], config.n_prefilter)
            n_frames, n_bins = x.shape
            x_pad = F.pad(x.to(dtype), (w.pad, w.pad))
            w_out, b_out = w.pointwise[-1]
            out = x.new_empty((n_frames, w_out.shape[0], n_bins), dtype=dtype)
            saved = []
            for start, stop in _chunks(n_frames, n_bins, x.device):
                zs, h = _conv_forward(x_pad[start:stop], w, config)
                scale = (None if dropout_scale is None
                         else _channels_by_rows(dropout_scale[start:stop], dtype))
                inputs, _ = _pointwise_forward(h, w, scale, config.slope)
                y = torch.addmm(b_out[:, None], w_out, inputs[-1])  # (c4, R)
                out[start:stop] = y.view(-1, stop - start, n_bins).transpose(0, 1)
                if config.keep_for_backward:
                    saved += zs
        ctx.save_for_backward(x, dropout_scale, *params, *saved)
        ctx.config, ctx.dtype, ctx.n_params = config, dtype, len(params)
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx: FunctionCtx, grad_out: Tensor) -> tuple[Tensor | None, ...]:
        x, dropout_scale, *tensors = ctx.saved_tensors
        config, dtype = ctx.config, ctx.dtype
        params, saved = tensors[:ctx.n_params], tensors[ctx.n_params:]
        grad_params = [torch.zeros_like(p) for p in params]
        grads = _TrunkWeights(grad_params, config.n_prefilter)  # views, accumulated in place
        grad_x = torch.empty_like(x) if ctx.needs_input_grad[0] else None
        n_frames, n_bins = x.shape
        n_z = config.n_prefilter + 1
        with torch.autocast(x.device.type, enabled=False):
            w = _TrunkWeights([p.to(dtype) for p in params], config.n_prefilter)
            x_pad = F.pad(x.to(dtype), (w.pad, w.pad))
            for index, (start, stop) in enumerate(_chunks(n_frames, n_bins, x.device)):
                zs = saved[index * n_z:(index + 1) * n_z]
                hs = _conv_outputs(zs, config)
                scale = (None if dropout_scale is None
                         else _channels_by_rows(dropout_scale[start:stop], dtype))
                inputs, pre = _pointwise_forward(hs[-1], w, scale, config.slope)
                g = _pointwise_backward(_channels_by_rows(grad_out[start:stop], dtype), inputs,
                                        pre, w, grads, scale, config.slope)
                g_x_pad = _conv_backward(g, zs, hs, x_pad[start:stop], w, grads, config,
                                         x.dtype if grad_x is not None else None)
                if grad_x is not None:
                    grad_x[start:stop] = g_x_pad[:, w.pad:w.pad + n_bins]
        return (grad_x, None, None, *grad_params)


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
        check_int(n_bins_in, "n_bins_in")
        if n_bins_out is not None:
            check_int(n_bins_out, "n_bins_out")
        check_int(n_harmonics, "n_harmonics")
        channels = tuple(channels)
        if len(channels) != 5:
            raise ValueError(f"channels must have 5 entries (c0, c1, c2, c3, c4), got {channels!r}")
        for c in channels:
            check_int(c, "channels entries")
        if isinstance(kernel_size, bool) or not isinstance(kernel_size, int) or kernel_size < 1 \
                or kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be an odd positive integer, got {kernel_size!r}")
        check_int(n_prefilter_layers, "n_prefilter_layers")
        if not math.isfinite(leaky_relu_slope):
            raise ValueError(f"leaky_relu_slope must be a finite number, got {leaky_relu_slope!r}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
        if not isinstance(residual, bool):
            # ValueError, not TypeError: run_cli_main reports it as a user error, in one line
            raise ValueError(f"residual must be True or False, got {residual!r}")  # noqa: TRY004

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
        """Shared trunk: cqt_frames (N, Q) -> flattened features (N, c4 * Q), channel-major.

        In training, dropout keeps each (frame, channel, bin) of the last 1x1 conv's input where
        ``torch.rand(N, c3, Q) >= p`` and scales it by 1 / (1 - p).
        """
        if cqt_frames.ndim != 2 or cqt_frames.shape[-1] != self.n_bins_in:
            raise ValueError(
                f"cqt_frames must have shape (N, {self.n_bins_in}), got {tuple(cqt_frames.shape)}"
            )
        x = self.input_norm(cqt_frames.unsqueeze(1)).squeeze(1)  # (N, Q)
        p = self.dropout.p if self.dropout.training else 0.0
        dropout_scale = None
        if p > 0.0:
            shape = (x.shape[0], self.pointwise_convs[-1].out_channels, self.n_bins_in)
            keep = torch.rand(shape, dtype=x.dtype, device=x.device).ge_(p)
            dropout_scale = keep.mul_(1.0 / (1.0 - p) if p < 1.0 else 0.0)
        convs = [self.input_conv, *self.prefilter_convs, *self.pointwise_convs, self.output_conv]
        params = [t for conv in convs for t in (conv.weight, conv.bias)]
        config = _TrunkConfig(self.leaky_relu_slope, self.residual, len(self.prefilter_convs),
                              keep_for_backward=torch.is_grad_enabled())
        out = _Trunk.apply(x, dropout_scale, config, *params)
        return out.flatten(1)

    def forward(self, cqt_frames: Tensor) -> tuple[Tensor, Tensor]:
        """cqt_frames (N, Q) CQT magnitudes -> (pitch_logits (N, Q_out), amplitudes (N, K))."""
        h = self.features(cqt_frames)
        return self.pitch_head(h), exp_sigmoid(self.amplitude_head(h))
