"""Where a learned schedule starts: the closed-form heuristics it may start from and the choice of
one (`init: auto`, the heuristic with the lowest validation loss, as LD3, GOD, INDIS and the oracle
start; `bench.methods._params.init_heuristics` names the candidates: the papers' four closed forms).
"""
from __future__ import annotations

import math
from typing import Callable

import torch

from bench.errors import UserError
from bench.schedules import NoiseSchedule

from .._params import init_heuristics


def heuristic_timesteps(schedule: NoiseSchedule, steps: int, solver, data_shape) -> dict[str, torch.Tensor]:
    """{name: float64 timesteps [N+1]} of the papers' closed-form heuristics (default parameters)."""
    from bench.registry import METHODS

    out = {}
    probe = torch.zeros((1,) + tuple(data_shape), dtype=torch.float64)
    for name in init_heuristics():
        try:
            method = METHODS.create(name).bind(schedule, steps, solver)
            t = method.discretize(probe).t[0].detach().to(torch.float64).cpu()
        except (UserError, ValueError, NotImplementedError):
            continue
        if t.numel() == steps + 1 and bool((t[1:] < t[:-1]).all()):
            out[name] = t
    return out


def choose_init(init: str, candidates: dict[str, torch.Tensor], score: Callable[[torch.Tensor], float]):
    """(name, timesteps, {name: validation loss}) of the heuristic to start from.

    `init` = "auto" scores every candidate with `score` (mean validation loss) and takes the lowest."""
    if init != "auto":
        if init not in candidates:
            raise UserError(f"init heuristic {init!r} gives no valid schedule here; use init: auto")
        return init, candidates[init], {}
    scores = {name: float(score(t)) for name, t in candidates.items()}
    finite = {k: v for k, v in scores.items() if math.isfinite(v)}
    if not finite:
        raise RuntimeError(f"every heuristic schedule diverged on the validation set: {scores}")
    best = min(finite, key=finite.get)
    return best, candidates[best], scores


def best_heuristic(init: str, schedule, steps: int, solver, data_shape,
                   score: Callable[[torch.Tensor], float]):
    """`choose_init` among the `heuristic_timesteps` of this schedule, steps and solver."""
    return choose_init(init, heuristic_timesteps(schedule, steps, solver, data_shape), score)


__all__ = ["best_heuristic", "choose_init", "heuristic_timesteps", "init_heuristics"]
