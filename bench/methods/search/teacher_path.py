"""The teacher's path through a timestep grid: its state at every node and, for GITS, its data
prediction there.

GITS measures one-step jumps from the teacher's states x*_i, starting from the teacher's own
prediction x0(x*_i, t_i); a teacher that evaluates the network at its own state at the start of a
step (Euler, iPNDM, DPM-Solver++, Heun, DPM-Solver-2) has made that evaluation already, and it is
taken from the step's evaluations (the solvers' per-step callback, `bench.solvers.base`). Where the
teacher did not (UniPC evaluates at the predicted point of the previous step; AFS's first evaluation
is analytic) the prediction is evaluated, and counted.
"""
from __future__ import annotations

import torch

from bench.counting import NetworkCounter
from bench.discretization import Discretization


RowCounter = NetworkCounter  # `rows`: single-sample network evaluations (x evals_per_call under guidance)


def teacher_trajectory(solver, model, x_T, t_nodes: torch.Tensor, cond=None, need_x0: bool = True):
    """Run `solver` along all grid nodes; return (states [T+1, B, ...], x0 [T, B, ...] or None, rows).

    x0[i] is the network's data prediction at the teacher's state of node i, i < T; `rows` counts the
    network evaluations (per sample row) spent, the teacher's own and the extra ones for x0."""
    counter = RowCounter(model)
    disc = Discretization(t_nodes.to(device=x_T.device, dtype=x_T.dtype)[None])
    analytic_first = bool(solver.params.afs)
    states, x0 = [x_T], []

    def keep_prediction(info):
        n, start = info["n"], states[-1]
        if need_x0 and n < disc.steps:
            at_start = [e for e in info["evaluations"]
                        if torch.equal(e.x, start) and torch.equal(e.t, disc.t[:, n])]
            network = at_start and not (analytic_first and n == 0)  # AFS: step 0's evaluation is analytic
            x0.append(at_start[0].x0 if network else None)
        states.append(info["x"])

    solver.sample(counter, x_T, disc, cond, callback=keep_prediction)
    trajectory = torch.stack(states[: disc.steps + 1])
    if not need_x0:
        return trajectory, None, counter.rows
    for i, found in enumerate(x0):
        if found is None:
            x0[i] = counter(trajectory[i], disc.t[:, i].expand(x_T.shape[0]), cond)
    return trajectory, torch.stack(x0), counter.rows


__all__ = ["RowCounter", "teacher_trajectory"]
