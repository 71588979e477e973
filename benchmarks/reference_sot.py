"""The straightforward W_p^p through quantile functions, as POT's ``wasserstein_1d`` computes it.

The baseline of ``bench_sot.py`` (the tests keep an oracle of their own): concatenate both
cumulative sums, sort them fully, look both quantile functions up with two ``searchsorted``
calls, gather, and let autograd differentiate (through the sort).
"""

from __future__ import annotations

import torch
from torch import Tensor


def reference_wasserstein_1d(
    u_weights: Tensor, v_weights: Tensor, positions: Tensor, p: float = 2.0, cutoff: bool = False
) -> Tensor:
    """W_p^p (not W_p) between weights (..., n) on the ascending support ``positions`` (n,).

    qs = sort(cat(cumsum(u), cumsum(v))) (2n levels); each quantile function is
    x[clip(searchsorted(cumsum, qs, side="left"), 0, n - 1)]; returns
    sum_m (qs_m - qs_{m-1}) |x_u(qs_m) - x_v(qs_m)|^p [qs_m <= 1 if ``cutoff``] with qs_0 = 0,
    shape (...): the authors' cutoff gives no cost to the intervals ending above 1.
    """
    n = u_weights.shape[-1]
    x = positions.to(device=u_weights.device, dtype=u_weights.dtype)
    cum_u = u_weights.cumsum(-1)
    cum_v = v_weights.cumsum(-1)
    qs = torch.sort(torch.cat([cum_u, cum_v], -1), -1).values
    lookup = qs.detach().contiguous()
    idx_u = torch.searchsorted(cum_u.detach().contiguous(), lookup).clamp(max=n - 1)
    idx_v = torch.searchsorted(cum_v.detach().contiguous(), lookup).clamp(max=n - 1)
    delta = torch.diff(qs, dim=-1, prepend=torch.zeros_like(qs[..., :1]))
    x_rows = x.expand(*qs.shape[:-1], n)
    diff = (x_rows.gather(-1, idx_u) - x_rows.gather(-1, idx_v)).abs()
    cost = diff.pow(p)
    if cutoff:
        cost = cost * (lookup <= 1.0)
    return (delta * cost).sum(-1)
