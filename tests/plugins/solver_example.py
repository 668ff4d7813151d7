"""A solver written the way README's "Writing a solver" says, registered as `test-midpoint`.

Importing this module registers it; `tests/solvers/test_conformance.py` imports it to show that a
solver registered outside `bench/solvers/` is picked up by the conformance suite without editing
any list. The explicit midpoint method in the schedule's VE view (y = x/alpha, s = sigma/alpha,
dy/ds = eps), midpoint at the mean noise level s_mid = (s_n + s_{n+1}) / 2: 2 NFE per step, order 2.
"""
from __future__ import annotations

from bench.registry import SOLVERS
from bench.solvers.base import Solver, State, ve_step


@SOLVERS.register("test-midpoint")
class Midpoint(Solver):
    order = 2
    evals_per_step = 2

    def step(self, state, n, disc, denoise):
        schedule = denoise.schedule
        t, t_next = denoise.interval(n)
        s, s_next = schedule.sigma(t) / schedule.alpha(t), schedule.sigma(t_next) / schedule.alpha(t_next)
        t_mid = schedule.t_of_lambda(-((s + s_next) / 2).log())
        _, eps = denoise.at_node(state.x, n)
        _, eps_mid = denoise.inside(ve_step(schedule, state.x, t, t_mid, eps), t_mid, n)
        return State(ve_step(schedule, state.x, t, t_next, eps_mid))
