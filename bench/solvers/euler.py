"""Euler / DDIM: the first-order solver, 1 NFE per step.

Written in the schedule's VE view (y = x/alpha, s = sigma/alpha, dy/ds = eps), one step is
    x_{n+1} = alpha_{n+1} * (x_n / alpha_n + (s_{n+1} - s_n) * eps_n),
which is DDIM (Song et al. 2021) for any schedule, EDM's Euler step for VE (Karras et al. 2022) and
the usual velocity Euler step x + (t_{n+1} - t_n) v for flow matching with the OT path.

Parameters: `afs` (default False): analytical first step (see `bench.solvers.base`).
NFE for N steps: N (N - 1 with AFS).
"""
from __future__ import annotations

from ..registry import SOLVERS
from .base import Solver, ve_view


@SOLVERS.register("euler")
class Euler(Solver):
    order = 1

    def sample(self, model, x_T, disc, cond=None, return_trajectory=False):
        schedule = model.schedule
        x = x_T
        trajectory = [x]
        for n in range(disc.steps):
            t, t_next, t_eval, scale = disc.step(n)
            _, eps = self.evaluate(model, x, t, t_eval, scale, cond, first=n == 0)
            alpha, s = ve_view(schedule, t, x.ndim)
            alpha_next, s_next = ve_view(schedule, t_next, x.ndim)
            x = alpha_next * (x / alpha + (s_next - s) * eps)
            if return_trajectory:
                trajectory.append(x)
        return trajectory if return_trajectory else x
