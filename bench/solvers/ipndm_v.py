"""iPNDM-v: Adams-Bashforth on eps with variable-step coefficients, 1 NFE per step.

The `ipndm_v` sampler of the AMED / GITS code base (Zhou et al. 2024); Zhang & Chen 2023 for iPNDM.

Same VE-view multistep update as `ipndm` (y = x/alpha, s = sigma/alpha, dy/ds = eps):
    y_{n+1} = y_n + (s_{n+1} - s_n) * sum_j c_j eps_{n-j},   j = 0..k-1,  k = min(n + 1, max_order),
but the weights c_j are those of the Adams-Bashforth method for the *actual* past nodes: the
integral over [s_n, s_{n+1}] of the polynomial interpolating eps at s_n, ..., s_{n-k+1}, divided by
the step. With u_j = (s_{n-j} - s_n) / (s_{n+1} - s_n) they solve the k x k Vandermonde system
    sum_j c_j u_j^i = 1 / (i + 1),   i = 0..k-1,
which for equal steps gives back iPNDM's fixed coefficients. (The reference writes the same weights
out in closed form for k <= 4; the linear solve is equivalent, differentiable and batched over
per-sample timesteps.) Coefficients are computed in float64.

Parameters: `max_order` (1..4, default 4 as in the reference), `afs` (default False).
NFE for N steps: N (N - 1 with AFS). Order 4 (for any smooth step-size sequence).
"""
from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field

from ..registry import SOLVERS
from ..schedules import append_dims
from .base import Solver, coefficient_dtype, ve_view


def adams_bashforth_weights(s_history, s_next):
    """Weights c [B, k] of the variable-step Adams-Bashforth method.

    `s_history` holds the past nodes [B] most recent first (s_n, s_{n-1}, ...); `s_next` is [B].
    """
    h = s_next - s_history[0]
    u = torch.stack([torch.zeros_like(h)] + [(s_j - s_history[0]) / h for s_j in s_history[1:]], dim=-1)
    k = u.shape[-1]
    rows = [torch.ones_like(u)]
    for _ in range(1, k):
        rows.append(rows[-1] * u)  # powers by products: d(u^0)/du stays finite at u = 0
    vandermonde = torch.stack(rows, dim=-2)  # [B, i, j] = u_j^i
    moments = 1.0 / torch.arange(1, k + 1, dtype=u.dtype, device=u.device)
    return torch.linalg.solve(vandermonde, moments.expand(u.shape))


@SOLVERS.register("ipndm-v")
class IPNDMv(Solver):
    order = 4

    class Params(Solver.Params):
        max_order: Literal[1, 2, 3, 4] = Field(4, description="highest Adams-Bashforth order used after warm-up")

    def sample(self, model, x_T, disc, cond=None, return_trajectory=False):
        schedule = model.schedule
        ctype = coefficient_dtype(x_T)
        t_all = disc.t.to(ctype)
        s_all = schedule.sigma(t_all) / schedule.alpha(t_all)  # [B, N+1], VE-view noise levels
        x = x_T
        trajectory = [x]
        eps_history = []  # most recent first
        for n in range(disc.steps):
            t, t_next, t_eval, scale = disc.step(n)
            _, eps = self.evaluate(model, x, t, t_eval, scale, cond, first=n == 0)
            eps_history.insert(0, eps)
            del eps_history[self.params["max_order"]:]
            k = len(eps_history)
            weights = adams_bashforth_weights([s_all[:, n - j] for j in range(k)], s_all[:, n + 1]).to(x.dtype)
            direction = sum(append_dims(weights[:, j], x.ndim) * eps_history[j] for j in range(k))
            alpha, s = ve_view(schedule, t, x.ndim)
            alpha_next, s_next = ve_view(schedule, t_next, x.ndim)
            x = alpha_next * (x / alpha + (s_next - s) * direction)
            if return_trajectory:
                trajectory.append(x)
        return trajectory if return_trajectory else x
