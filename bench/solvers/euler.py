"""Euler / DDIM: the first-order solver, 1 NFE per step.

Written in the schedule's VE view (y = x/alpha, s = sigma/alpha, dy/ds = eps), one step is
    x_{n+1} = alpha_{n+1} * (x_n / alpha_n + (s_{n+1} - s_n) * eps_n),
which is DDIM (Song et al. 2021, "Denoising diffusion implicit models") for any schedule, EDM's
Euler step for VE (Karras et al. 2022) and the velocity Euler step x + (t_{n+1} - t_n) v for
flow matching on the OT path.

| reference | crowsonkb/k-diffusion `k_diffusion/sampling.py` `sample_euler` (686dbad); zju-pi/diff-sampler `diff-solvers-main/solvers.py` `euler_sampler` (68d5ce4) |
| default   | the reference step; order 1; 1 NFE per step (N - 1 with `afs`) |
| variants  | `afs`, `final_step` (see `bench.solvers.base`) |
"""
from __future__ import annotations

from ..registry import SOLVERS
from .base import Solver, State, ve_step


@SOLVERS.register("euler")
class Euler(Solver):
    order = 1

    def step(self, state, n, disc, denoise):
        t, t_next = denoise.interval(n)
        _, eps = denoise.at_node(state.x, n)
        return State(ve_step(denoise.schedule, state.x, t, t_next, eps))
