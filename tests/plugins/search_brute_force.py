"""Exhaustive references for the searched schedules' dynamic programs (bench/methods/search/), for tests.

Both enumerate every interior node subset of a small grid, so they are exact and exponential: the
dynamic programs must find the same paths.
"""
from __future__ import annotations

import itertools
from typing import Callable

import numpy as np
import torch

from bench.methods.search.gits_dp import gits_path_cost


def gits_brute_force(cost, steps: int, coeff: float) -> list[int]:
    """The path 0 < ... < T of `steps` jumps with the least `gits_path_cost` (first found on ties)."""
    T = np.asarray(cost).shape[0] - 1
    best, best_path = np.inf, None
    for interior in itertools.combinations(range(1, T), steps - 1):
        path = [0, *interior, T]
        value = gits_path_cost(cost, path, coeff)
        if value < best:
            best, best_path = value, path
    return best_path


def oss_brute_force(num_nodes: int, steps: int, init: dict, step_fn: Callable, final_cost: Callable):
    """Per sample, the path minimising `final_cost` of the state at node T.

    step_fn(state, i, j) -> state; final_cost(state) -> [B]. Returns [B, K + 1] per-sample argmins."""
    T = num_nodes - 1
    best, best_path = None, None
    for interior in itertools.combinations(range(1, T), steps - 1):
        path = [0, *interior, T]
        state = dict(init)
        for a, b in zip(path[:-1], path[1:]):
            state = step_fn(state, a, b)
        c = final_cost(state)
        if best is None:
            best, best_path = c.clone(), torch.tensor(path).repeat(c.shape[0], 1)
        else:
            better = c < best
            best = torch.where(better, c, best)
            best_path[better] = torch.tensor(path)
    return best_path
