"""iPNDM (Zhang & Chen 2023, "Fast sampling of diffusion models with exponential integrator"):
Adams-Bashforth on eps with fixed coefficients, 1 NFE per step.

Adams-Bashforth steps on the noise prediction in the schedule's VE view (y = x/alpha,
s = sigma/alpha, dy/ds = eps), one network evaluation per step, with the fixed coefficients of the
uniform-step Adams-Bashforth methods:
    order 1: [1]                 order 2: [3, -1] / 2
    order 3: [23, -16, 5] / 12   order 4: [55, -59, 37, -9] / 24
Step n uses order min(n + 1, max_order) (warm-up). The fixed coefficients are exact only for equal
steps in s, where the method has order `max_order`; on the usual non-uniform schedules (EDM,
log-SNR) their error is O(step-size ratio - 1) = O(h), so the method is globally of order
min(max_order, 2), which is the declared `order`; `ipndm-v` adapts the coefficients to the steps.

| reference | zju-pi/diff-sampler `diff-solvers-main/solvers.py` `ipndm_sampler` (68d5ce4) |
| default   | `max_order` = 4 (the reference's); `afs` = False (the analytic eps enters the history like a network one) |
| variants  | `max_order` 1..4, `afs`, `final_step` |
"""
from __future__ import annotations

from typing import Literal

from pydantic import Field

from ..registry import SOLVERS
from .base import Solver, State, push, ve_step

ADAMS_BASHFORTH = {
    1: (1.0,),
    2: (3 / 2, -1 / 2),
    3: (23 / 12, -16 / 12, 5 / 12),
    4: (55 / 24, -59 / 24, 37 / 24, -9 / 24),
}


@SOLVERS.register("ipndm")
class IPNDM(Solver):
    class Params(Solver.Params):
        max_order: Literal[1, 2, 3, 4] = Field(4, description="highest Adams-Bashforth order used after warm-up")

    @property
    def order(self) -> int:  # type: ignore[override]
        return min(self.params.max_order, 2)

    def step(self, state, n, disc, denoise):
        t, t_next = denoise.interval(n)
        _, eps = denoise.at_node(state.x, n)
        history = push(state.history, eps, self.params.max_order)
        direction = sum(c * d for c, d in zip(ADAMS_BASHFORTH[len(history)], history))
        return State(ve_step(denoise.schedule, state.x, t, t_next, direction), history)
