r"""Exact optimal transport between 1-D distributions on a shared sorted support: the solver
behind the spectral OT loss (``losses.SpectralOTLoss``), apart from any spectrum or module, as
POT keeps ``ot/lp/solver_1d.py``.

For weights u, v (..., n) on positions x (n,) ascending, with cumulative levels
U_i = sum_{k <= i} u_k and V_j = sum_{k <= j} v_k, W_p^p is the integral over the quantile
level q of |x[i_u(q)] - x[i_v(q)]|^p, i(q) = the first index whose level reaches q. On the
merged, sorted levels q_1 <= ... <= q_2n (q_0 = 0) it is the finite sum

    W_p^p = sum_m (q_m - q_{m-1}) |x[i_u(q_m)] - x[i_v(q_m)]|^p,

computed by a rank merge of the two cumulative sums (O(n) after one ``searchsorted``, no sort),
with an analytic O(n) backward. The paper's unbalanced mode ("cutoff") transports mass only up
to the level 1.

- ``wasserstein_1d(u, v, positions, p, cutoff, backend, cutoff_rule) -> W_p^p (...)``;
- ``native_kernel_available()``: whether the C merge kernel (``csrc/sot_merge.h``) was built;
- the autograd Functions ``_MergedW1D`` (torch ops, CPU and CUDA) and ``_NativeW1D`` (the C
  kernel, CPU float32/float64): the same values to rounding and the same one-sided gradients.
"""

from __future__ import annotations

import math
import warnings
from typing import Literal

import torch
from torch import Tensor
from torch.autograd.function import FunctionCtx, once_differentiable

from sotddsp.dsp.native import kernels as _native_kernels  # the C kernels, or None

__all__ = ["CUTOFF_RULES", "Backend", "CutoffRule", "native_kernel_available", "wasserstein_1d"]

Backend = Literal["auto", "native", "torch"]
_BACKENDS = ("auto", "native", "torch")
CutoffRule = Literal["drop", "clip"]
CUTOFF_RULES = ("drop", "clip")
# How levels above 1 are treated, as the C kernel numbers them (csrc/sot_merge.h).
_NO_CUTOFF, _CUTOFF_DROP, _CUTOFF_CLIP = 0, 1, 2
_NATIVE_DTYPES = (torch.float32, torch.float64)
# Below this many weights per thread, one more thread costs more than it saves.
_NATIVE_WORK_PER_THREAD = 1 << 16
# What the backward of both autograd Functions returns: d/du, d/dv, and nothing for x, p, cutoff.
_Gradients = tuple[Tensor | None, Tensor | None, None, None, None]


def _check_wasserstein_args(u: Tensor, v: Tensor, positions: Tensor, p: float) -> None:
    if u.shape != v.shape:
        raise ValueError(
            f"u_weights and v_weights must have the same shape, got {tuple(u.shape)} and "
            f"{tuple(v.shape)}"
        )
    if u.ndim == 0 or positions.ndim != 1 or positions.shape[0] != u.shape[-1]:
        raise ValueError(
            f"positions must have shape (n,) with n = weights.shape[-1], got positions "
            f"{tuple(positions.shape)} for weights {tuple(u.shape)}"
        )
    if u.shape[-1] == 0:
        raise ValueError("weights must have at least one bin (n >= 1), got n = 0")
    if not (u.is_floating_point() and v.is_floating_point()) or u.dtype != v.dtype:
        raise ValueError(
            f"u_weights and v_weights must share one floating dtype, got {u.dtype} and {v.dtype}"
        )
    if not (isinstance(p, (int, float)) and math.isfinite(p) and p >= 1):
        raise ValueError(f"p must be a finite number >= 1, got {p!r}")
    if positions.requires_grad and torch.is_grad_enabled():
        raise ValueError(
            "positions must not require grad: wasserstein_1d differentiates weights only"
        )
    # Checked on CPU only: on an accelerator the check would stall on a host sync every call.
    on_cpu = positions.device.type == "cpu"
    if on_cpu and positions.shape[0] > 1 and bool((positions[1:] < positions[:-1]).any()):
        raise ValueError("positions must be sorted in ascending order; sort them and the weights")


def _level_cost_into(out: Tensor, d: Tensor, p: float) -> None:
    """out = |d|^p (exact for p = 2); ``d`` may be overwritten."""
    if p == 2:
        torch.mul(d, d, out=out)
    else:
        torch.pow(d.abs_(), p, out=out)


class _MergedW1D(torch.autograd.Function):
    """W_p^p through the rank merge of the two cumulative sums, with an O(n) analytic backward.

    u, v: (M, n) contiguous; x: (n,); cutoff: _NO_CUTOFF, _CUTOFF_DROP or _CUTOFF_CLIP. The 2n
    levels U_i = cumsum(u)_i, V_j = cumsum(v)_j are ordered by value, ties broken with U before
    V and each in index order. In that order U_i follows r_i = #{V < U_i} levels of v (one
    ``searchsorted``) and V_j follows s_j = #{U <= V_j} = #{i : r_i <= j} levels of u (a
    histogram of r, no second search); its predecessor is max(U_{i-1}, V_{r_i - 1}), resp.
    max(V_{j-1}, U_{s_j - 1}). The interval ending at a level q has the quantile lookups
    #{U < q}, #{V < q} (clipped to n - 1), i.e. (i, r_i) for U_i and (s_j, j) for V_j, and the
    cost c_m = |x_a - x_b|^p. Then, with q_0 = 0,
        W = sum_m (L(q_m) - L(q_{m-1})) c'_m = sum_m L(q_m) (c'_m - c'_{m+1}):
    no cutoff: L(q) = q, c' = c; drop (the paper's): L(q) = q, c'_m = c_m [q_m <= 1] (every
    interval ending above 1 costs nothing); clip: L(q) = min(q, 1), c' = c. So
    dW/dq_m = L'(q_m) (c'_m - c'_{m+1}) and dW/du_k = sum_{i >= k} dW/dU_i.
    """

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: FunctionCtx, u: Tensor, v: Tensor, x: Tensor, p: float, cutoff: int
    ) -> Tensor:
        rows, n = u.shape
        cum_u = u.cumsum(-1)
        cum_v = v.cumsum(-1)
        r = torch.searchsorted(cum_v, cum_u, side="left")
        if torch.are_deterministic_algorithms_enabled():
            # Same integers; a 2-D scatter_add_ has no deterministic CUDA kernel.
            s = torch.searchsorted(cum_u, cum_v, side="right")
        else:
            counts = torch.zeros(rows, n + 1, dtype=r.dtype, device=r.device)
            s = counts.scatter_add_(-1, r, torch.ones_like(r)).cumsum_(-1)[:, :n]
        # L(levels) with a leading 0: padded[:, k] is level k - 1.
        padded_u = cum_u.new_empty(rows, n + 1)
        padded_v = cum_v.new_empty(rows, n + 1)
        padded_u[:, 0] = 0.0
        padded_v[:, 0] = 0.0
        if cutoff == _CUTOFF_CLIP:
            torch.clamp(cum_u, max=1.0, out=padded_u[:, 1:])
            torch.clamp(cum_v, max=1.0, out=padded_v[:, 1:])
        else:
            padded_u[:, 1:] = cum_u
            padded_v[:, 1:] = cum_v
        prev = torch.maximum(padded_u[:, :-1], padded_v.gather(-1, r))
        delta_u = torch.sub(padded_u[:, 1:], prev, out=prev)
        prev = torch.maximum(padded_v[:, :-1], padded_u.gather(-1, s))
        delta_v = torch.sub(padded_v[:, 1:], prev, out=prev)
        # Rank n (a lookup past the last level) lands on the last bin: x extended by x[n - 1].
        # Costs get a trailing 0 column: the cost "after" the last merged level.
        x_ext = torch.cat([x, x[-1:]]).expand(rows, n + 1)
        cost_u = cum_u.new_empty(rows, n + 1)
        cost_v = cum_v.new_empty(rows, n + 1)
        cost_u[:, n] = 0.0
        cost_v[:, n] = 0.0
        _level_cost_into(cost_u[:, :n], x_ext.gather(-1, r).sub_(x), p)
        _level_cost_into(cost_v[:, :n], x_ext.gather(-1, s).sub_(x), p)
        if cutoff == _CUTOFF_DROP:
            cost_u[:, :n].mul_(cum_u <= 1.0)
            cost_v[:, :n].mul_(cum_v <= 1.0)
        w = torch.linalg.vecdot(delta_u, cost_u[:, :n]) + torch.linalg.vecdot(
            delta_v, cost_v[:, :n]
        )
        # Clipping makes L' = 0 above 1, so the backward needs the levels.
        clip = cutoff == _CUTOFF_CLIP
        ctx.save_for_backward(r, s, cost_u, cost_v, *((cum_u, cum_v) if clip else ()))
        ctx.clip = clip
        return w

    @staticmethod
    @once_differentiable
    def backward(  # type: ignore[override]
        ctx: FunctionCtx, grad_w: Tensor
    ) -> _Gradients:
        r, s, cost_u, cost_v, *levels = ctx.saved_tensors
        rows, n = r.shape
        sides = ((r, cost_u, cost_v), (s, cost_v, cost_u))
        grads: list[Tensor | None] = []
        for side, (rank, cost_own, cost_other) in enumerate(sides):
            if not ctx.needs_input_grad[side]:
                grads.append(None)
                continue
            # The successor of a level in the merged order is the next level of its own
            # distribution when no level of the other comes between (equal ranks), else the
            # other's level at its rank. The choice is made with exact 0/1 float weights (costs
            # are finite), much faster on CPU than torch.where.
            next_is_own = cost_own.new_empty(rows, n)
            torch.eq(rank[:, 1:], rank[:, :-1], out=next_is_own[:, :-1])
            next_is_own[:, -1] = 0.0
            successor = cost_other.gather(-1, rank).mul_(1.0 - next_is_own)
            successor.addcmul_(cost_own[:, 1:], next_is_own)
            grad_levels = torch.sub(cost_own[:, :n], successor, out=successor)
            if ctx.clip:
                grad_levels.mul_(levels[side] <= 1.0)
            grad = grad_levels.flip(-1).cumsum_(-1).flip(-1)
            grads.append(grad.mul_(grad_w[:, None]))
        return grads[0], grads[1], None, None, None


def _native_w1d(
    u: Tensor, v: Tensor, x: Tensor, p: float, cutoff: int, need_u: bool, need_v: bool
) -> tuple[Tensor, Tensor | None, Tensor | None]:
    """(W_p^p (M,), dW/du (M, n) or None, dW/dv (M, n) or None) from the C merge kernel.

    u, v: (M, n) contiguous CPU float32/float64; x: (n,) contiguous, same dtype; cutoff as in
    ``_MergedW1D``. The same tie order and one-sided derivative as ``_MergedW1D``; levels are
    cumulated in double and rounded, as ``torch.cumsum`` does on the CPU.
    """
    rows, n = u.shape
    out = u.new_empty(rows)
    grad_u = u.new_empty(rows, n) if need_u else None
    grad_v = v.new_empty(rows, n) if need_v else None
    if rows > 0:
        threads = max(1, min(torch.get_num_threads(), rows * n // _NATIVE_WORK_PER_THREAD))
        _native_kernels.wasserstein_1d(
            u.data_ptr(),
            v.data_ptr(),
            x.data_ptr(),
            rows,
            n,
            p,
            cutoff,
            u.dtype == torch.float64,
            out.data_ptr(),
            0 if grad_u is None else grad_u.data_ptr(),
            0 if grad_v is None else grad_v.data_ptr(),
            threads,
        )
    return out, grad_u, grad_v


class _NativeW1D(torch.autograd.Function):
    """``_native_w1d`` under autograd.

    W is piecewise linear in the levels, so its gradient is known once the merge is: the forward
    computes dW/du and dW/dv with W, and the backward only scales them by the upstream gradient.
    """

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: FunctionCtx, u: Tensor, v: Tensor, x: Tensor, p: float, cutoff: int
    ) -> Tensor:
        w, grad_u, grad_v = _native_w1d(
            u, v, x, p, cutoff, ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        )
        ctx.save_for_backward(grad_u, grad_v)
        return w

    @staticmethod
    @once_differentiable
    def backward(ctx: FunctionCtx, grad_w: Tensor) -> _Gradients:  # type: ignore[override]
        grad_u, grad_v = ctx.saved_tensors
        scale = grad_w[:, None]
        return (
            None if grad_u is None else grad_u * scale,
            None if grad_v is None else grad_v * scale,
            None,
            None,
            None,
        )


def native_kernel_available() -> bool:
    """True when the C merge kernel was built (``pip install -e .`` with a C compiler)."""
    return _native_kernels is not None


_warned_no_native = False


def _use_native(backend: str, u: Tensor, closed_form: bool) -> bool:
    """Whether the C kernel computes this call; ``closed_form``: "auto" prefers the p = 1 form."""
    global _warned_no_native
    if backend == "torch":
        return False
    on_cpu = u.device.type == "cpu" and u.dtype in _NATIVE_DTYPES
    if backend == "native":
        if _native_kernels is None:
            raise RuntimeError(
                "backend='native' needs the C merge kernel, which is not built; reinstall with a "
                "C compiler present (pip install -e .) or use backend='torch'"
            )
        if not on_cpu:
            raise ValueError(
                f"backend='native' runs on CPU float32/float64 only, got {u.dtype} on "
                f"{u.device.type}; use backend='auto' or 'torch'"
            )
        return True
    if not on_cpu or closed_form:
        return False
    if _native_kernels is None:
        if not _warned_no_native:
            warnings.warn(
                "sotddsp.dsp.ot: the C merge kernel is not built, so SOT on the CPU uses the slower "
                "pure-torch path; reinstall with a C compiler present (pip install -e .)",
                stacklevel=3,
            )
            _warned_no_native = True
        return False
    return True


def _wasserstein_1d_p1(u: Tensor, v: Tensor, x: Tensor, clip: bool) -> Tensor:
    """W_1 = sum_{k < n-1} |L(U_k) - L(V_k)| (x_{k+1} - x_k): the area between the two CDFs.

    L(q) = min(q, 1) with ``clip``, else q. (The "drop" cutoff has no such form.)
    """
    cum_u = u.cumsum(-1)[:, :-1]
    cum_v = v.cumsum(-1)[:, :-1]
    if clip:
        cum_u = cum_u.clamp(max=1.0)
        cum_v = cum_v.clamp(max=1.0)
    diff = cum_u - cum_v
    # |diff| written as sign * diff with sign(0) := -1: the same one-sided derivative as the merge.
    sign = torch.where(diff > 0, 1.0, -1.0).to(diff.dtype)
    return (sign * diff * (x[1:] - x[:-1])).sum(-1)


def wasserstein_1d(
    u_weights: Tensor,
    v_weights: Tensor,
    positions: Tensor,
    p: float = 2.0,
    cutoff: bool = False,
    backend: Backend = "auto",
    cutoff_rule: CutoffRule = "drop",
) -> Tensor:
    r"""Exact W_p^p (not W_p) between weight vectors on a shared sorted 1-D support.

    Args:
        u_weights, v_weights: (..., n) non-negative masses (not checked), any leading dims; they
            are NOT normalized here (the caller normalizes).
        positions: (n,) ascending support (e.g. normalized frequency, unitless; checked when on
            CPU); no gradient.
        p: ground-cost exponent, p >= 1.
        cutoff: the paper's unbalanced mode: transport above a cumulative level of 1 is free.
        backend: "auto" (default) runs the fused C merge kernel on CPU float32/float64 inputs
            when it is built (``native_kernel_available()``), except where the p = 1 closed form
            applies, and pure torch ops otherwise; "native" insists on the C kernel; "torch"
            never uses it. All give the same values (to rounding) and the same one-sided
            gradients.
        cutoff_rule: how ``cutoff`` treats levels above 1. "drop" (default, the paper's, as the
            authors compute it): every merged interval (q_{m-1}, q_m] whose upper level q_m
            exceeds 1 in the working dtype costs nothing, the whole interval. "clip" (not the
            paper's): each interval is clipped at exactly 1, q -> min(q, 1).

    Returns:
        Tensor (...): W_p^p = \sum_m (q_m - q_{m-1}) |x[i_u(q_m)] - x[i_v(q_m)]|^p, with q_m the
        sorted merge of cumsum(u) and cumsum(v) (q_0 = 0), i(q) = searchsorted(cumsum, q,
        side="left") clipped to n - 1 (a lookup past a distribution's total mass lands on the
        last bin), and under cutoff the terms with q_m > 1 left out ("drop") or q_m -> min(q_m, 1)
        ("clip"). Same values as POT's ``ot.wasserstein_1d(positions, positions, u, v, p)`` (no
        cutoff). For p = 1 without "drop" the closed form
        \sum_k |L(U_k) - L(V_k)| (x_{k+1} - x_k) is used (L(q) = min(q, 1) when clipping).

    Gradients (both weights; an O(n) analytic backward, no sort): W_p^p is piecewise linear in the
    cumulative levels and not differentiable where levels tie (U_i = V_j, or a zero weight making
    two levels of one distribution equal; common in float32). The gradient returned is the
    one-sided derivative of the piece on which tied levels are ordered u before v and each
    distribution's levels in index order: as if every zero weight were slightly increased and v's
    tied levels sat just above u's. Under cutoff a level exactly at 1 counts as below the cutoff
    (kept by "drop"; its derivative passes under "clip", like ``torch.clamp``). Dropping an
    interval is a jump of W at q_m = 1, where the derivative is that of the side it is on.
    The torch path runs on CPU and CUDA.
    """
    if backend not in _BACKENDS:
        raise ValueError(f"backend must be one of {_BACKENDS}, got {backend!r}")
    if cutoff_rule not in CUTOFF_RULES:
        raise ValueError(f"cutoff_rule must be one of {CUTOFF_RULES}, got {cutoff_rule!r}")
    _check_wasserstein_args(u_weights, v_weights, positions, p)
    batch_shape = u_weights.shape[:-1]
    n = u_weights.shape[-1]
    u = u_weights.reshape(-1, n).contiguous()
    v = v_weights.reshape(-1, n).contiguous()
    x = positions.to(device=u.device, dtype=u.dtype)
    mode = _NO_CUTOFF if not cutoff else _CUTOFF_DROP if cutoff_rule == "drop" else _CUTOFF_CLIP
    closed_form = p == 1 and mode != _CUTOFF_DROP
    if _use_native(backend, u, closed_form):
        x = x.contiguous()
        if torch.is_grad_enabled() and (u.requires_grad or v.requires_grad):
            w = _NativeW1D.apply(u, v, x, float(p), mode)
        else:  # no graph: skip the gradients (autograd.Function would still ask for them)
            w = _native_w1d(u, v, x, float(p), mode, False, False)[0]
    elif closed_form:
        w = _wasserstein_1d_p1(u, v, x, clip=mode == _CUTOFF_CLIP)
    else:
        w = _MergedW1D.apply(u, v, x, float(p), mode)
    return w.reshape(batch_shape)
