"""The fine timestep grid a searched schedule chooses its nodes from (GITS, OSS; DMN's start).

A grid is the T + 1 times of a closed-form heuristic with T steps (any registered heuristic: `edm`,
`uniform`, `logsnr`, `polynomial`, ...), in float64, pinned at the schedule's ends t_max and t_min.
Which heuristic each method uses by default, and why, is in that method's docstring.
"""
from __future__ import annotations

import torch

from bench.errors import UserError
from bench.registry import METHODS


def timestep_grid(schedule, spec, steps: int) -> torch.Tensor:
    """The float64 times [steps + 1] of the heuristic `spec` with `steps` steps, from t_max to t_min."""
    method = METHODS.build(spec).bind(schedule, steps)
    t = method.timesteps().to(torch.float64).clone()
    t[0], t[-1] = schedule.t_max, schedule.t_min
    if not bool((t[1:] < t[:-1]).all()):
        raise UserError(f"timestep grid {spec!r} with {steps} steps is not strictly decreasing; use fewer "
                        f"steps or another grid")
    return t


__all__ = ["timestep_grid"]
