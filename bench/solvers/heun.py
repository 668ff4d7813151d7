"""Heun: EDM's second-order deterministic sampler (Karras et al. 2022, Algorithm 1), 2 NFE per step.

In the schedule's VE view (y = x/alpha, s = sigma/alpha, dy/ds = eps) -- which for VE is exactly
EDM's sampler -- step n is an Euler predictor followed by the trapezoidal corrector:
    y' = y_n + (s_{n+1} - s_n) eps(x_n, t_n)
    y_{n+1} = y_n + (s_{n+1} - s_n) * (eps(x_n, t_n) + eps(alpha_{n+1} y', t_{n+1})) / 2.
EDM replaces the last step by a plain Euler step only because its last time is t = 0, where eps is
undefined; every `Discretization` here ends at t_min > 0, so *every* step is a Heun step and
nfe(N) = 2N (2N - 1 with AFS, which replaces only the first step's predictor evaluation).

t_eval / scale: the predictor evaluation of step n uses t_eval[:, n] and scale[:, n]; the corrector
evaluation at t_{n+1} uses the plain time t_{n+1} (the decoupled input time belongs to the state
x_n, not to the predicted point) and the same scale[:, n], so gamma rescales the whole step's
direction.

Parameters: `afs` (default False). Order 2.
"""
from __future__ import annotations

from ..registry import SOLVERS
from .base import Solver, predict, ve_view


@SOLVERS.register("heun")
class Heun(Solver):
    order = 2
    evals_per_step = 2

    def sample(self, model, x_T, disc, cond=None, return_trajectory=False):
        schedule = model.schedule
        x = x_T
        trajectory = [x]
        for n in range(disc.steps):
            t, t_next, t_eval, scale = disc.step(n)
            alpha, s = ve_view(schedule, t, x.ndim)
            alpha_next, s_next = ve_view(schedule, t_next, x.ndim)
            y = x / alpha
            _, eps = self.evaluate(model, x, t, t_eval, scale, cond, first=n == 0)
            x_pred = alpha_next * (y + (s_next - s) * eps)
            _, eps_pred = predict(model, x_pred, t_next, None, scale, cond)
            x = alpha_next * (y + (s_next - s) * (eps + eps_pred) / 2)
            if return_trajectory:
                trajectory.append(x)
        return trajectory if return_trajectory else x
