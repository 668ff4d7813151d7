"""Shared machinery of the searched schedules (GITS, OSS): fine grids, teacher trajectories, the two
dynamic programs as pure functions, and a "replay" stepper that advances any solver by one step.

Node convention everywhere: a fine grid has nodes 0..T with t[0] = t_max (noise) and t[T] = t_min
(data), strictly decreasing; a student path of K steps is a node sequence 0 = n_0 < n_1 < ... < n_K = T.

* `fine_grid(schedule, spec, steps)`: the T+1 grid times of a closed-form baseline (`edm`, `uniform`,
  `logsnr`, `polynomial`, or any heuristic plugin) with `steps` steps, pinned at the ends.
* `gits_dp(cost, steps, coeff)`: GITS's dynamic program over a cost matrix of one-step jumps;
  `gits_brute_force` is the exhaustive reference used by the tests.
* `oss_dp(num_nodes, steps, init, advance, cost)`: OSS's dynamic program that, for every student step
  count k and node j, keeps per sample the state (reached in exactly k steps, ending at j) closest to
  the teacher, then backtracks; it is written over abstract `advance`/`cost` callbacks so that the
  tests can run it on scalar toy dynamics and compare it with `oss_brute_force`.
* `oss_code_search(...)`: the search as the OSS reference code runs it (x_T at every node before the
  first step, each step count's best results carried into the next; see its docstring).
* `median_path(paths, rule)`: OSS-ave's per-position median of many searched paths (the reference's
  `cal_medium` or the noise-end rounding).
* `SolverReplay`: the `advance` of OSS for any solver of `bench.solvers`, multistep ones included (see
  its docstring), and `one_step_jumps`, GITS's optional "student solver" jump.
"""
from __future__ import annotations

import itertools
from typing import Callable

import numpy as np
import torch

from bench.discretization import Discretization
from bench.errors import UserError
from bench.registry import METHODS
from bench.schedules import append_dims


# ---------------------------------------------------------------------------------------------
# Grids


def fine_grid(schedule, spec, steps: int) -> torch.Tensor:
    """The float64 times [steps + 1] of the heuristic `spec` with `steps` steps, from t_max to t_min."""
    spec = dict(spec) if isinstance(spec, dict) else {"name": spec}
    method = METHODS.create(spec.pop("name"), **spec).bind(schedule, steps)
    t = method.timesteps().to(torch.float64).clone()
    t[0], t[-1] = schedule.t_max, schedule.t_min
    if not bool((t[1:] < t[:-1]).all()):
        raise UserError(f"grid {spec!r} with {steps} steps is not strictly decreasing; use fewer steps "
                        f"or another grid")
    return t


# ---------------------------------------------------------------------------------------------
# Teacher trajectories


class RowCounter:
    """Passes calls to `model` and counts the rows evaluated."""

    def __init__(self, model):
        self.model = model
        self.schedule = model.schedule
        self.rows = 0

    def __call__(self, x, t, cond=None):
        self.rows += x.shape[0]
        return self.model(x, t, cond)


class RecordingModel(RowCounter):
    """A RowCounter that also keeps (x, t, output) of each call."""

    def __init__(self, model):
        super().__init__(model)
        self.records: list[tuple] = []

    def __call__(self, x, t, cond=None):
        out = super().__call__(x, t, cond)
        self.records.append((x, t, out))
        return out


def teacher_trajectory(solver, model, x_T, t_nodes: torch.Tensor, cond=None, need_x0: bool = True):
    """Run `solver` along all grid nodes; return (trajectory [T+1, B, ...], x0 [T, B, ...] or None, rows).

    x0[i] is the data prediction at the teacher's state of node i, i < T. It is reused from the
    teacher's own evaluations when one was made exactly there (single-evaluation solvers), otherwise
    evaluated; `rows` counts the network evaluations (per sample row) that were spent.
    """
    recorder = RecordingModel(model)
    disc = Discretization(t_nodes.to(device=x_T.device, dtype=x_T.dtype)[None])
    traj = solver.sample(recorder, x_T, disc, cond, return_trajectory=True)
    if not need_x0:
        return torch.stack(traj), None, recorder.rows
    by_id = {id(x): (t, out) for x, t, out in recorder.records}
    x0 = []
    for i in range(len(traj) - 1):
        hit = by_id.get(id(traj[i]))
        if hit is not None and bool((hit[0] == disc.t[0, i]).all()):
            found = hit[1]
        else:
            ti = disc.t[:, i].expand(x_T.shape[0])
            found = model(traj[i], ti, cond)
            recorder.rows += x_T.shape[0]
        x0.append(found)
    return torch.stack(traj), torch.stack(x0), recorder.rows


# ---------------------------------------------------------------------------------------------
# GITS


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


def gits_brute_force(cost, steps: int, coeff: float) -> list[int]:
    """Exhaustive search over all interior subsets (for tests)."""
    T = np.asarray(cost).shape[0] - 1
    best, best_path = np.inf, None
    for interior in itertools.combinations(range(1, T), steps - 1):
        path = [0, *interior, T]
        value = gits_path_cost(cost, path, coeff)
        if value < best:
            best, best_path = value, path
    return best_path


def deviation(points: torch.Tensor, start: torch.Tensor, end: torch.Tensor) -> torch.Tensor:
    """GITS's trajectory deviation: the distance of each point from the line through `start` (x_T)
    and `end` (the teacher's x_0), per sample. points [..., B, *shape], start/end [B, *shape] -> [..., B]."""
    dims = tuple(range(-(start.ndim - 1), 0))
    direction = end - start
    unit = direction / direction.square().sum(dims, keepdim=True).sqrt()
    ac = end - points
    along = (ac * unit).sum(dims, keepdim=True)
    return (ac - along * unit).square().sum(dims).sqrt()


# ---------------------------------------------------------------------------------------------
# OSS


State = dict  # name -> tensor; a node's state has a leading batch dim [B, ...], candidates [J, B, ...]


def oss_dp(num_nodes: int, steps: int, init: State, advance: Callable, cost: Callable,
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


def oss_brute_force(num_nodes: int, steps: int, init: State, step_fn: Callable, final_cost: Callable):
    """Exhaustive reference for tests: the path minimising `final_cost` of the state at node T.

    step_fn(state, i, j) -> state; final_cost(state) -> [B]. Returns [B, K + 1] per-sample argmins.
    """
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


# ---------------------------------------------------------------------------------------------
# Replaying a solver one step further


class _ProbeModel:
    """A stand-in network for `calls_needed`: returns 0.1 for the first `good` calls, then NaN."""

    def __init__(self, schedule, good: int):
        self.schedule, self.good, self.calls = schedule, good, 0

    def __call__(self, x, t, cond=None):
        value = 0.1 if self.calls < self.good else float("nan")
        self.calls += 1
        return torch.full_like(x, value)


def calls_needed(solver, schedule, steps: int) -> list[int]:
    """For a `steps`-step run of `solver`: needed[k] = how many model calls (in call order) determine
    the state after step k (k = 0..steps-1). Found by NaN propagation: with calls >= c returning NaN,
    trajectory[k+1] is finite iff it depends on calls < c only. AFS's analytic first evaluation is not
    a model call and is not counted."""
    lam = torch.linspace(schedule.lambda_min, schedule.lambda_max, steps + 1, dtype=torch.float64)
    t = schedule.t_of_lambda(lam)
    t[0], t[-1] = schedule.t_max, schedule.t_min
    disc = Discretization(t[None])
    x = torch.ones(1, 2, dtype=torch.float64)
    counter = _ProbeModel(schedule, 10**9)
    solver.sample(counter, x, disc)
    total = counter.calls
    needed = []
    for k in range(steps):
        for c in range(total + 1):
            traj = solver.sample(_ProbeModel(schedule, c), x, disc, return_trajectory=True)
            if bool(torch.isfinite(traj[k + 1]).all()):
                needed.append(c)
                break
        else:  # pragma: no cover - a state always depends on at most all calls
            needed.append(total)
    return needed


class _ReplayModel:
    """The model seen by a solver that re-runs a recorded path and then takes one new step.

    Rows are candidate-major: row r = j * B + b (J candidates of B samples). Calls c < n_replay return
    the recorded outputs of the path (records[b, c]); calls n_replay <= c < n_real go to the network,
    evaluated once per sample when every candidate's input is identical (the evaluation at the path's
    last node, shared by all candidate next nodes) and otherwise for every row, in calls of B rows so
    that the counting wrapper counts per-sample evaluations; later calls belong to padding steps that
    no searched state depends on and return zeros without a network call.
    """

    def __init__(self, model, records, n_replay: int, n_real: int, J: int, B: int):
        self.model, self.schedule = model, model.schedule
        self.records = records  # [B, n_replay, ...]
        self.n_replay, self.n_real, self.J, self.B = n_replay, n_real, J, B
        self.calls = 0
        self.rows = 0
        self.outputs: list[torch.Tensor] = []  # the new calls' outputs, [J*B, ...] each

    def __call__(self, x, t, cond=None):
        c = self.calls
        self.calls += 1
        J, B = self.J, self.B
        if c < self.n_replay:
            rec = self.records[:, c]
            return rec.unsqueeze(0).expand((J,) + tuple(rec.shape)).reshape(x.shape)
        if c >= self.n_real:
            return torch.zeros_like(x)
        xv, tv = x.reshape((J, B) + tuple(x.shape[1:])), t.reshape(J, B)
        cb = None if cond is None else cond[:B]
        if J == 1 or (torch.equal(xv, xv[:1].expand_as(xv)) and torch.equal(tv, tv[:1].expand_as(tv))):
            out = self.model(xv[0], tv[0], cb)
            self.rows += B
            out = out.unsqueeze(0).expand((J,) + tuple(out.shape)).reshape(x.shape)
        else:
            out = torch.cat([self.model(xv[j], tv[j], cb) for j in range(J)])
            self.rows += J * B
        self.outputs.append(out)
        return out


def repeat_rows(cond, J: int):
    """The condition of B samples for J candidate-major copies (row j * B + b has cond[b])."""
    if cond is None:
        return None
    return cond.repeat((J,) + (1,) * (cond.ndim - 1))


class SolverReplay:
    """OSS's student step for any solver: `advance` for `oss_dp`, plus the teacher-distance `cost`.

    DP state of a node (per sample): the node path taken so far ("path" [k+1]) and the outputs of the
    network calls that determine the solver's state there ("rec" [n_k, ...]) -- for a multistep solver
    the state includes its history, and the history is exactly what these outputs and the path times
    encode. A step from node i to the candidates js re-runs the student solver on the per-row
    discretization [path times, t_j, padding], where the network is replaced by `_ReplayModel`: the
    recorded calls are replayed, the new step's calls are real, and padding steps (needed only so that
    a solver with `lower_order_final` sees the full step count K) cost nothing. The candidate's state
    is the solver's trajectory entry k + 1. The cost is the per-sample mean squared distance to the
    teacher state at j (the reference's `((z_j - traj_tea[j]) ** 2).mean()`).

    Approximation (documented in methods/oss.py): only the best state per (k, j) survives, with the
    history of its own path, although a multistep solver's future depends on the history too.
    """

    def __init__(self, solver, model, t_nodes: torch.Tensor, steps: int, x_T: torch.Tensor,
                 teacher: torch.Tensor, cond=None):
        self.solver, self.model, self.steps = solver, model, steps
        self.t_nodes = t_nodes.to(device=x_T.device, dtype=x_T.dtype)
        self.x_T, self.teacher, self.cond = x_T, teacher, cond
        self.needed = calls_needed(solver, model.schedule, steps)
        self.rows = 0

    def init_state(self) -> State:
        B = self.x_T.shape[0]
        return {"path": torch.zeros(B, 1, dtype=torch.long),
                "rec": self.x_T.new_zeros((B, 0) + tuple(self.x_T.shape[1:]))}

    def advance(self, state: State, k: int, i: int, js: torch.Tensor) -> State:
        B, J, K = self.x_T.shape[0], js.numel(), self.steps
        path, rec = state["path"], state["rec"]  # [B, k+1], [B, n_k, ...]
        n_replay = self.needed[k - 1] if k > 0 else 0
        n_real = self.needed[k]
        T = self.t_nodes.numel() - 1
        # per-row node indices: the path, the candidate, then padding nodes j+1, j+2, ... (in range,
        # since oss_dp only proposes nodes j <= T - (K - k - 1))
        pad = torch.arange(1, K - k)
        nodes = torch.cat([
            path.unsqueeze(0).expand(J, B, k + 1),
            js.view(J, 1, 1).expand(J, B, 1),
            (js.view(J, 1, 1) + pad.view(1, 1, -1)).clamp(max=T).expand(J, B, K - k - 1),
        ], dim=2)
        disc = Discretization(self.t_nodes[nodes.reshape(J * B, K + 1)])
        replay = _ReplayModel(self.model, rec, n_replay, n_real, J, B)
        x = self.x_T.unsqueeze(0).expand((J,) + tuple(self.x_T.shape)).reshape((J * B,) + tuple(self.x_T.shape[1:]))
        traj = self.solver.sample(replay, x, disc, repeat_rows(self.cond, J), return_trajectory=True)
        self.rows += replay.rows
        shape = (J, B) + tuple(self.x_T.shape[1:])
        new_rec = [o.reshape(shape) for o in replay.outputs]
        rec_all = torch.cat([rec.unsqueeze(0).expand((J,) + tuple(rec.shape))]
                            + [o.unsqueeze(2) for o in new_rec], dim=2)
        return {
            "path": nodes[:, :, : k + 2],
            "rec": rec_all,
            "x": traj[k + 1].reshape(shape),
        }

    def cost(self, cand: State, k: int, js: torch.Tensor) -> torch.Tensor:
        diff = cand["x"] - self.teacher[js]
        return diff.flatten(2).square().mean(-1)


def one_step_jumps(solver, model, x_i, x0_i, t_i, t_js, cond=None):
    """GITS's jump with the student's own single step: from state x_i [B, ...] at t_i to each time of
    t_js [J], with the first evaluation given (x0_i, the teacher's prediction at x_i) and any further
    evaluation of the step (Heun's corrector, DPM-Solver-2's midpoint) made by the network.
    Returns (states [J, B, ...], rows evaluated). `solver` must not use AFS (the caller gives the
    analytic first prediction as x0_i where the student uses it)."""
    B, J = x_i.shape[0], t_js.numel()
    rec = x0_i.unsqueeze(1)  # [B, 1, ...]
    replay = _ReplayModel(model, rec, 1, 10**9, J, B)
    x = x_i.unsqueeze(0).expand((J,) + tuple(x_i.shape)).reshape((J * B,) + tuple(x_i.shape[1:]))
    t = torch.stack([t_i.expand(J), t_js], dim=1).to(x_i.dtype)  # [J, 2]
    disc = Discretization(t.repeat_interleave(B, dim=0))
    out = solver.sample(replay, x, disc, repeat_rows(cond, J))
    return out.reshape((J, B) + tuple(x_i.shape[1:])), replay.rows


def ddim_jumps(schedule, x_i, x0_i, t_i, t_js):
    """One Euler/DDIM step in the VE view from x_i at t_i to every time in t_js [J]: [J, B, ...].
    y = x/alpha, s = sigma/alpha, y_j = y_i + (s_j - s_i) eps_i, eps_i = (y_i - x0_i)/s_i."""
    t_i = t_i.to(x_i.dtype)
    t_js = t_js.to(x_i.dtype)
    alpha_i, sigma_i = schedule.alpha(t_i), schedule.sigma(t_i)
    s_i = sigma_i / alpha_i
    eps = (x_i - alpha_i * x0_i) / sigma_i
    alpha_j = schedule.alpha(t_js)
    s_j = schedule.sigma(t_js) / alpha_j
    ndim = x_i.ndim + 1
    a = append_dims(alpha_j, ndim)
    ds = append_dims(s_j - s_i, ndim)
    return a * (x_i / alpha_i + ds * eps)


__all__ = [
    "fine_grid", "teacher_trajectory", "gits_dp", "gits_brute_force", "gits_path_cost",
    "deviation", "oss_dp", "oss_brute_force",
    "oss_code_search", "median_path", "MEDIANS", "calls_needed", "SolverReplay",
    "one_step_jumps", "ddim_jumps", "RowCounter",
]
