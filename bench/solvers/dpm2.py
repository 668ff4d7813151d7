"""DPM-Solver-2 (Lu et al. 2022): single-step, midpoint at the mean log-SNR, 2 NFE per step.

The second-order single-step DPM-Solver ("DPM-Solver", Algorithm 1 with r1 = 1/2).

Written in the schedule's VE view (y = x/alpha, s = sigma/alpha = exp(-lambda), dy/ds = eps) as the
Euler midpoint method with the midpoint taken at the mean log-SNR:
    lambda_mid = (lambda_n + lambda_{n+1}) / 2,   s_mid = sqrt(s_n s_{n+1}),
    y_mid = y_n + (s_mid - s_n) eps(x_n, t_n)
    y_{n+1} = y_n + (s_{n+1} - s_n) eps(alpha_mid y_mid, t_mid).
This *is* DPM-Solver-2 in noise prediction with the exponential integrator, not an approximation
of it: its first-order update x_t = (alpha_t/alpha_s) x_s - sigma_t (e^h - 1) eps reads, divided by
alpha_t, y_t = y_s + (s_t - s_s) eps. It is also k-diffusion's `sample_dpm_2` (written for VE).

t_eval / scale: the evaluation at x_n uses t_eval[:, n] and scale[:, n]; the midpoint evaluation
uses the plain t_mid and the same scale[:, n]. All steps are DPM-Solver-2 steps (t_min > 0), so
nfe(N) = 2N (2N - 1 with AFS). Parameters: `afs` (default False). Order 2.
"""
from __future__ import annotations

from ..registry import SOLVERS
from .base import Solver, predict, ve_view


@SOLVERS.register("dpm2")
class DPM2(Solver):
    order = 2
    evals_per_step = 2

    def sample(self, model, x_T, disc, cond=None, return_trajectory=False):
        schedule = model.schedule
        x = x_T
        trajectory = [x]
        for n in range(disc.steps):
            t, t_next, t_eval, scale = disc.step(n)
            t_mid = schedule.t_of_lambda((schedule.lambda_(t) + schedule.lambda_(t_next)) / 2)
            alpha, s = ve_view(schedule, t, x.ndim)
            alpha_mid, s_mid = ve_view(schedule, t_mid, x.ndim)
            alpha_next, s_next = ve_view(schedule, t_next, x.ndim)
            y = x / alpha
            _, eps = self.evaluate(model, x, t, t_eval, scale, cond, first=n == 0)
            x_mid = alpha_mid * (y + (s_mid - s) * eps)
            _, eps_mid = predict(model, x_mid, t_mid, None, scale, cond)
            x = alpha_next * (y + (s_next - s) * eps_mid)
            if return_trajectory:
                trajectory.append(x)
        return trajectory if return_trajectory else x
