"""GITS's dynamic program and trajectory deviation (Chen et al., ICML 2024, "On the trajectory
regularity of ODE-based diffusion sampling"; reference: zju-pi/diff-sampler, `gits-main/gits_utils.py`,
`dp` and `cal_deviation`, commit 68d5ce427f261962b89ce3b0ee8f6b29f0577328).

* `gits_dp(cost, steps, coeff)`: the K-step node path minimising the weighted sum of one-step costs;
* `gits_path_cost`: that weighted sum for a given path;
* `deviation`: the distance of states from the straight line through x_T and the teacher's x_0.
How `bench/methods/gits.py` builds the cost matrix is in its docstring.
"""
from __future__ import annotations

import numpy as np
import torch


def gits_dp(cost, steps: int, coeff: float) -> list[int]:
    """GITS's dynamic program: the path 0 = n_0 < n_1 < ... < n_K = T (K = `steps`) minimising
        sum_{m=0}^{K-1} coeff^m * cost[n_m, n_{m+1}],
    i.e. the m-th jump (counted from the noise end) is weighted coeff^m. cost is [T+1, T+1] (only the
    entries i < j are used). Ties go to the smaller node index, as in the reference's forward scan.
    Returns the K + 1 node indices.
    """
    cost = np.asarray(cost, dtype=np.float64)
    T = cost.shape[0] - 1
    if not 1 <= steps <= T:
        raise ValueError(f"gits_dp needs 1 <= steps <= {T}, got {steps}")
    # V[k, i]: best weighted cost from node i to T in exactly k jumps (the first of them weighted 1).
    V = np.full((steps + 1, T + 1), np.inf)
    choice = np.full((steps + 1, T + 1), -1, dtype=np.int64)
    V[1, :T] = cost[:T, T]
    choice[1, :T] = T
    for k in range(2, steps + 1):
        for i in range(T):
            # the next node is strictly between i and T, and leaves room for k - 1 more jumps
            nxt = np.arange(i + 1, T - k + 2)
            if nxt.size == 0:
                continue
            total = cost[i, nxt] + coeff * V[k - 1, nxt]
            best = int(np.argmin(total))
            V[k, i] = total[best]
            choice[k, i] = nxt[best]
    path, node = [0], 0
    for k in range(steps, 0, -1):
        node = int(choice[k, node])
        path.append(node)
    return path


def gits_path_cost(cost, path, coeff: float) -> float:
    cost = np.asarray(cost, dtype=np.float64)
    return float(sum(coeff**m * cost[a, b] for m, (a, b) in enumerate(zip(path[:-1], path[1:]))))


def deviation(points: torch.Tensor, start: torch.Tensor, end: torch.Tensor) -> torch.Tensor:
    """GITS's trajectory deviation: the distance of each point from the line through `start` (x_T)
    and `end` (the teacher's x_0), per sample. points [..., B, *shape], start/end [B, *shape] -> [..., B]."""
    dims = tuple(range(-(start.ndim - 1), 0))
    direction = end - start
    unit = direction / direction.square().sum(dims, keepdim=True).sqrt()
    ac = end - points
    along = (ac * unit).sum(dims, keepdim=True)
    return (ac - along * unit).square().sum(dims).sqrt()


__all__ = ["deviation", "gits_dp", "gits_path_cost"]
