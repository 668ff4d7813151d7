"""OSS's searches over a timestep grid (Pei, Hu & Gu 2025, "Optimal stepsize for diffusion sampling";
reference: bebebe666/OptimalSteps, `OSS/OSS.py`, commit ee350436c86e29088c0cf550300a2e6a5911a7ee).

* `oss_dp`: the paper's dynamic program (Algorithm 1), per sample, written over abstract `advance` /
  `cost` callbacks (`student_step.StudentSteps` supplies them for the solvers of `bench.solvers`);
* `oss_code_search`: the search as the reference code runs it (see its docstring for the two ways it
  departs from the paper);
* `median_path`: OSS-ave's per-position median of many searched paths.
"""
from __future__ import annotations

from typing import Callable

import torch


NodeState = dict  # name -> tensor; a node's state has a leading batch dim [B, ...], candidates [J, B, ...]


def oss_dp(num_nodes: int, steps: int, init: NodeState, advance: Callable, cost: Callable,
           progress: Callable | None = None) -> torch.Tensor:
    """OSS's dynamic program (Pei et al. 2025, Algorithm 1), per sample.

    Layer k holds, for every node j and sample b, the state reached from node 0 in exactly k student
    steps that ends at j and is closest to the teacher there (cost[j, b] minimal among the one-step
    extensions of layer k-1's states). Layer 0 is `init` at node 0. Only nodes from which the
    remaining steps still fit are kept (at layer k: k <= j <= T - (K - k)), so layer K is node T.

    advance(state_i, k, i, js) -> candidate states {name: [J, B, ...]}: one student step from the
        layer-k state at node i (each entry [B, ...]) to every node of `js` (a LongTensor [J]).
    cost(candidates, k, js) -> [J, B]: distance of each candidate to the teacher at its node.
    Returns the searched paths [B, K + 1] (node indices, 0 first, T last). Ties keep the earlier i.
    """
    T = num_nodes - 1
    if not 1 <= steps <= T:
        raise ValueError(f"oss_dp needs 1 <= steps <= {T}, got {steps}")
    batch = next(iter(init.values())).shape[0]
    layer = {name: v.unsqueeze(0) for name, v in init.items()}  # [1, B, ...] at node 0
    layer_nodes = [0]
    back = torch.full((steps + 1, num_nodes, batch), -1, dtype=torch.long)
    for k in range(steps):
        lo, hi = k + 1, T - (steps - k - 1)
        best = torch.full((num_nodes, batch), float("inf"), dtype=torch.float64)
        new: dict[str, torch.Tensor] = {}
        for slot, i in enumerate(layer_nodes):
            js = torch.arange(max(i + 1, lo), hi + 1)
            if js.numel() == 0:
                continue
            state_i = {name: v[slot] for name, v in layer.items()}
            cand = advance(state_i, k, i, js)
            a, b = int(js[0]), int(js[-1]) + 1  # js is a contiguous range: update slices in place
            c = cost(cand, k, js).to(device="cpu", dtype=torch.float64)  # [J, B]
            better = c < best[a:b]
            if not bool(better.any()):
                continue
            best[a:b] = torch.where(better, c, best[a:b])
            back[k + 1, a:b][better] = i
            for name, v in cand.items():
                store = new.get(name)
                if store is None:
                    store = new[name] = v.new_zeros((num_nodes,) + tuple(v.shape[1:]))
                store[a:b][better.to(v.device)] = v[better.to(v.device)]
            if progress is not None:
                progress()
        layer_nodes = list(range(lo, hi + 1))
        layer = {name: v[lo : hi + 1] for name, v in new.items()}
    paths = torch.empty((batch, steps + 1), dtype=torch.long)
    node = torch.full((batch,), T, dtype=torch.long)
    paths[:, steps] = node
    for k in range(steps, 0, -1):
        node = back[k, node, torch.arange(batch)]
        paths[:, k - 1] = node
    if not bool((paths[:, 0] == 0).all()):
        raise RuntimeError("oss_dp: backtracking did not reach node 0 (non-finite costs?)")
    return paths


def oss_code_search(num_nodes: int, steps: int, x_T: torch.Tensor, teacher: torch.Tensor, predict: Callable,
                    jump: Callable, progress: Callable | None = None) -> torch.Tensor:
    """The search of the OSS reference code (bebebe666/OptimalSteps, `OSS/OSS.py`, `search_OSS`, commit
    ee350436c86e29088c0cf550300a2e6a5911a7ee), for B samples at once, in the harness's node order
    (node 0 = t_max, node T = t_min). It departs from the paper's dynamic program (`oss_dp`) in two ways:
      * before the first step x_T is the state of *every* node, so a path may start at any node i with
        x_T taken as the state at t_i, below t_max;
      * the best cost, predecessor and state of each node are carried from one step count to the next
        and replaced only by a strictly better one, so layer k holds the best state reached in at most
        k steps (by any history), while the backtracking reads layer k's predecessor as a k-th step.
    Within a layer the nodes i are visited from the noise end and a candidate replaces the node's
    entry only when strictly closer to the teacher (ties keep the earlier i), as in the reference.

    predict(x [B, ...], i) -> the data prediction [B, ...] of state x at node i (one network call).
    jump(x [B, ...], x0 [B, ...], i, js) -> [J, B, ...]: the student step from node i to each node of js.
    teacher: [T + 1, B, ...], the teacher's states at the nodes; the cost is the mean over dimensions of
    the squared difference, in the states' dtype (the reference's `((z_j - traj_tea[j]) ** 2).mean()`).
    Returns the paths [B, K + 1] (node indices, increasing, T last; the first may be > 0).
    """
    T = num_nodes - 1
    if not 1 <= steps <= T:
        raise ValueError(f"oss_code_search needs 1 <= steps <= {T}, got {steps}")
    batch = x_T.shape[0]
    state = x_T.unsqueeze(0).repeat((T + 1,) + (1,) * x_T.ndim)  # x_T at every node
    best = torch.full((T + 1, batch), float("inf"), dtype=x_T.dtype, device=x_T.device)
    before = torch.zeros((T + 1, batch), dtype=torch.long, device=x_T.device)  # the reference's initial N
    trace = []
    for _ in range(steps):
        previous = state.clone()
        for i in range(T):
            x_i = previous[i]
            js = torch.arange(i + 1, T + 1, device=x_T.device)
            cand = jump(x_i, predict(x_i, i), i, js)  # [J, B, ...]
            c = (cand - teacher[i + 1 :]).flatten(2).square().mean(-1)  # [J, B]
            better = c < best[i + 1 :]
            best[i + 1 :] = torch.where(better, c, best[i + 1 :])
            before[i + 1 :][better] = i
            state[i + 1 :][better] = cand[better]
            if progress is not None:
                progress()
        trace.append(before.clone())
    paths = torch.empty((batch, steps + 1), dtype=torch.long)
    node = torch.full((batch,), T, dtype=torch.long, device=x_T.device)
    paths[:, steps] = node.cpu()
    for k in range(steps - 1, -1, -1):
        node = trace[k][node, torch.arange(batch, device=x_T.device)]
        paths[:, k] = node.cpu()
    return paths


MEDIANS = ("reference", "noise-end")


def median_path(paths: torch.Tensor, rule: str = "noise-end") -> torch.Tensor:
    """OSS-ave: the per-position median of node paths [B, K+1] (node T last in every path).

    rule "reference": the reference's `cal_medium` (OSS/OSS.py, same commit): in its own node order (r = T - node,
        0 = the data end) the floor of the mean of the sorted values l[B//2] and l[B//2 - 1], for any B
        (for an odd B the middle value and the one before it; for B = 1 the value itself), i.e. the
        mean of the two middle values rounded towards the data end.
    rule "noise-end": the true median for an odd B; for an even B the mean of the two middle values
        rounded towards the noise end (the floor in the harness's node order).
    Componentwise-increasing paths give a strictly increasing result under both rules."""
    if rule == "reference":
        T = paths[:, -1:]
        r = (T - paths).sort(dim=0).values
        n = r.shape[0]
        mid = torch.div(r[n // 2] + r[(n // 2 - 1) % n], 2, rounding_mode="floor")
        return T[0] - mid
    if rule != "noise-end":
        raise ValueError(f"median_path: rule must be one of {', '.join(MEDIANS)}, got {rule!r}")
    s = paths.sort(dim=0).values
    n = s.shape[0]
    if n % 2:
        return s[n // 2].clone()
    return torch.div(s[n // 2] + s[n // 2 - 1], 2, rounding_mode="floor")


__all__ = ["MEDIANS", "NodeState", "median_path", "oss_code_search", "oss_dp"]
