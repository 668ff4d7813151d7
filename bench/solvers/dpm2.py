"""DPM-Solver-2 (Lu et al. 2022, "DPM-Solver: A fast ODE solver for diffusion probabilistic model
sampling in around 10 steps", Algorithm 1 with r1 = 1/2): single-step, 2 NFE per step.

Written in the schedule's VE view (y = x/alpha, s = sigma/alpha = exp(-lambda), dy/ds = eps) as the
Euler midpoint method with the midpoint at the mean log-SNR:
    lambda_mid = (lambda_n + lambda_{n+1}) / 2,   s_mid = sqrt(s_n s_{n+1}),
    y_mid = y_n + (s_mid - s_n) eps(x_n, t_n)
    y_{n+1} = y_n + (s_{n+1} - s_n) eps(alpha_mid y_mid, t_mid).
This *is* DPM-Solver-2 in noise prediction with the exponential integrator: its first-order update
x_t = (alpha_t/alpha_s) x_s - sigma_t (e^h - 1) eps reads, divided by alpha_t, y_t = y_s + (s_t - s_s) eps.

Learned evaluation times: the evaluation at x_n is `denoise.at_node(x_n, n)`, the midpoint one
`denoise.inside(x_mid, t_mid, n)` (`bench.solvers.base`'s rule).

| reference | LuChengTHU/dpm-solver `dpm_solver_pytorch.py` `singlestep_dpm_solver_second_update` (0fdeb80); k-diffusion `sample_dpm_2` (686dbad); diff-sampler `dpm_2_sampler` (68d5ce4) |
| default   | a DPM-Solver-2 step to every node (t_min > 0); order 2; 2N NFE (2N - 1 with `afs`) |
| variants  | `afs`, `final_step` (`zero`: k-diffusion's Euler step to sigma = 0) |
"""
from __future__ import annotations

from ..registry import SOLVERS
from .base import Solver, State, ve_view


@SOLVERS.register("dpm2")
class DPM2(Solver):
    order = 2
    evals_per_step = 2

    def step(self, state, n, disc, denoise):
        schedule, x = denoise.schedule, state.x
        t, t_next = denoise.interval(n)
        t_mid = schedule.t_of_lambda((schedule.lambda_(t) + schedule.lambda_(t_next)) / 2)
        alpha, s = ve_view(schedule, t, x.ndim)
        alpha_mid, s_mid = ve_view(schedule, t_mid, x.ndim)
        alpha_next, s_next = ve_view(schedule, t_next, x.ndim)
        y = x / alpha
        _, eps = denoise.at_node(x, n)
        _, eps_mid = denoise.inside(alpha_mid * (y + (s_mid - s) * eps), t_mid, n)
        return State(alpha_next * (y + (s_next - s) * eps_mid))
