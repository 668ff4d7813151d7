"""Heun: EDM's second-order deterministic sampler (Karras et al. 2022, "Elucidating the design
space of diffusion-based generative models", Algorithm 1 without churn), 2 NFE per step.

In the schedule's VE view (y = x/alpha, s = sigma/alpha, dy/ds = eps) -- which for VE is exactly
EDM's sampler -- step n is an Euler predictor followed by the trapezoidal corrector:
    y' = y_n + (s_{n+1} - s_n) eps(x_n, t_n)
    y_{n+1} = y_n + (s_{n+1} - s_n) * (eps(x_n, t_n) + eps(alpha_{n+1} y', t_{n+1})) / 2.
EDM replaces the last step by a plain Euler step only because its last time is t = 0, where eps is
undefined; with the default `final_step: t_min` every step ends at t > 0, so *every* step is a
Heun step (2N NFE, 2N - 1 with AFS); `final_step: zero` gives EDM's own 2N - 1.

Learned evaluation times: the predictor evaluation of step n is `denoise.at_node(x_n, n)`; the
corrector evaluation at t_{n+1} is `denoise.inside(x_pred, t_{n+1}, n)` (the decoupled input time
belongs to the state x_n, not to the predicted point; step n's output factor applies, so it
rescales the whole direction).

| reference | NVlabs/edm `generate.py` `edm_sampler` (S_churn = 0; 62072d2); k-diffusion `sample_heun` (686dbad); diff-sampler `heun_sampler` (68d5ce4) |
| default   | a Heun step to every node, including the last (t_min > 0); order 2 |
| variants  | `afs`, `final_step` (`zero`: EDM's Euler step to sigma = 0) |
"""
from __future__ import annotations

from ..registry import SOLVERS
from .base import Solver, State, ve_view


@SOLVERS.register("heun")
class Heun(Solver):
    order = 2
    evals_per_step = 2

    def step(self, state, n, disc, denoise):
        t, t_next = denoise.interval(n)
        alpha, s = ve_view(denoise.schedule, t, state.x.ndim)
        alpha_next, s_next = ve_view(denoise.schedule, t_next, state.x.ndim)
        y = state.x / alpha
        _, eps = denoise.at_node(state.x, n)
        x_pred = alpha_next * (y + (s_next - s) * eps)
        _, eps_pred = denoise.inside(x_pred, t_next, n)
        return State(alpha_next * (y + (s_next - s) * (eps + eps_pred) / 2))
