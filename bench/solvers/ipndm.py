"""iPNDM (Zhang & Chen 2023): Adams-Bashforth on eps, fixed coefficients, 1 NFE per step.

Improved pseudo-numerical methods ("Fast sampling of diffusion models with exponential
integrator", the variant used by DEIS, GITS, AMED and INDIS).

Adams-Bashforth steps on the noise prediction in the schedule's VE view (y = x/alpha,
s = sigma/alpha, dy/ds = eps), one network evaluation per step, with the fixed coefficients of the
uniform-step Adams-Bashforth methods:
    order 1: [1]                 order 2: [3, -1] / 2
    order 3: [23, -16, 5] / 12   order 4: [55, -59, 37, -9] / 24
The order rises during warm-up (step n uses order min(n + 1, max_order)); `max_order` defaults to 4
as in the reference implementations. The fixed coefficients are exact only for equal steps in s;
on the usual non-uniform schedules (EDM, log-SNR) the method is globally second order (the
coefficient error is O(step-size ratio - 1) = O(h)); `ipndm-v` uses the exact variable-step
coefficients.

Parameters: `max_order` (1..4, default 4), `afs` (default False; the analytic eps enters the
history like a network one). NFE for N steps: N (N - 1 with AFS).
"""
from __future__ import annotations

from typing import Literal

from pydantic import Field

from ..registry import SOLVERS
from .base import Solver, ve_view

ADAMS_BASHFORTH = {
    1: (1.0,),
    2: (3 / 2, -1 / 2),
    3: (23 / 12, -16 / 12, 5 / 12),
    4: (55 / 24, -59 / 24, 37 / 24, -9 / 24),
}


@SOLVERS.register("ipndm")
class IPNDM(Solver):
    order = 4

    class Params(Solver.Params):
        max_order: Literal[1, 2, 3, 4] = Field(4, description="highest Adams-Bashforth order used after warm-up")

    def sample(self, model, x_T, disc, cond=None, return_trajectory=False):
        schedule = model.schedule
        x = x_T
        trajectory = [x]
        history = []  # most recent first
        for n in range(disc.steps):
            t, t_next, t_eval, scale = disc.step(n)
            _, eps = self.evaluate(model, x, t, t_eval, scale, cond, first=n == 0)
            history.insert(0, eps)
            del history[self.params["max_order"]:]
            coefficients = ADAMS_BASHFORTH[len(history)]
            direction = sum(c * d for c, d in zip(coefficients, history))
            alpha, s = ve_view(schedule, t, x.ndim)
            alpha_next, s_next = ve_view(schedule, t_next, x.ndim)
            x = alpha_next * (x / alpha + (s_next - s) * direction)
            if return_trajectory:
                trajectory.append(x)
        return trajectory if return_trajectory else x
