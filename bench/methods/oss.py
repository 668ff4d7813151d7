"""`oss`: Optimal Stepsize Search / distillation (Pei, Hu & Gu 2025, "Optimal stepsize for diffusion
sampling", arXiv 2503.21774; reference: github bebebe666/OptimalSteps, `OSS/OSS.py`).

The search of the paper (its recursion over "k student steps from x_T to node j"; `oss_dp` in
bench/methods/search/oss_dp.py, `variant: paper`, default):
  1. A fine grid of `teacher_steps` steps (T + 1 nodes, node 0 = t_max, node T = t_min) and a teacher
     trajectory x*_0..x*_T along all of its nodes (`teacher_solver`, Euler in the paper).
  2. For k = 1..K (K = the student's steps) and every node j: among the one-step extensions of the
     states kept at step k - 1 (nodes i < j; at k = 0 only x_T at node 0), keep the student state after
     exactly k steps that ends at j and is closest to the teacher there, cost = mean over dimensions of
     (x_j - x*_j)^2; remember its predecessor. (Only nodes that leave room for the remaining steps are
     kept.)
  3. Backtrack from node T after K steps: one node path per sample, from node 0 (t_max); the schedule
     is t at those nodes.
The reference code (`search_OSS`; `variant: code`, `oss_code_search` in bench/methods/search/oss_dp.py) runs another
search: before the first step it places x_T at *every* node (a path may start at any node, with x_T
taken as the state there, so its schedule may start below t_max), and it carries each node's best
cost, predecessor and state from one step count to the next (replaced only by a strictly better
one), so a layer holds the best state reached in at most k steps while the backtracking reads it as
the k-th. Its student step is the Euler step of a flow model, x_j = x_i + (t_j - t_i) v_i, which is
what `variant: code` searches with whatever the cell's solver (here `bench.solvers`' Euler step, in
the schedule's VE view: the same step for FlowOT, EDM's Euler step for VE, DDIM for VP; the searched schedule
is then sampled with the cell's solver, as the reference samples its searched steps). Its
comparisons are those of the reference: nodes visited from the noise end, strict improvement,
costs in the states' dtype; the remaining differences are float32 round-off of the step and the
teacher, which can flip near-ties.

The search is per sample. Two modes:
  * global (`instance: false`, default) -- the paper's OSS-ave: search `search_batch` training priors
    (the first ones of the cell's train split, with their labels) in `fit`, and take the per-position
    median of their node paths (`median`, see below). The stored schedule is global ([1, N+1]).
  * per instance (`instance: true`) -- the paper's per-sample OSS: `fit` is a no-op and `discretize(x_T,
    cond)` runs the teacher and the search for every evaluation batch with the bound model (the
    runner's counting wrapper; every network call it makes has the batch's B rows, so the row's
    `schedule_nfe` is the per-sample search cost), returning one schedule per sample ([B, N+1]). The
    whole batch is searched at once: memory grows like T * B * K * (sample size), so keep
    `samples.batch` moderate for large samples.

The student step of `variant: paper`. The paper's student is the Euler step of a flow model, whose
state is x alone. Here the student is the cell's solver, any of `bench.solvers`, and the DP
evaluates the solver's own `step` (`StudentSteps` in bench/methods/search/student_step.py):
  * the DP state of (k, j) is, per sample, the solver's state there (for a multistep solver -- iPNDM,
    DPM-Solver++, UniPC -- its history of denoiser outputs included) and the path that reached it. A
    step resumes that state at node i and steps to every candidate j, with the evaluation at node i
    made once per sample and shared by every candidate (Heun's corrector, DPM-Solver-2's midpoint and
    UniPC's corrector depend on j and are evaluated per candidate). Solvers whose step depends on the
    total step count (lower_order_final) see the run's K steps.
  * approximation: as in the paper, only the best state per (k, j) survives. For Euler this is the
    paper's DP; for a multistep solver the future also depends on the history, and the kept state
    carries the history of its own (greedy) path only -- the DP is then a heuristic search.
  * AFS: the student's analytic first evaluation is used like any other (it is part of the solver).
For Euler on a flow model, `variant: paper` is the paper's recursion; it is not the reference code's
search (which `variant: code` is).

Reference and variants (the project's rule, README "Defaults"):

  | reference         | bebebe666/OptimalSteps, OSS/OSS.py (search_OSS, cal_medium), commit          |
  |                   | ee350436c86e29088c0cf550300a2e6a5911a7ee; examples/sample_oss_dit.py          |
  | default           | the paper's search (x_T at t_max, exactly k steps) with the cell's solver as  |
  |                   | student; OSS-ave's median by the reference's `cal_medium`                    |
  | variant: code     | the reference code's search: x_T at every node, best results carried between |
  |                   | step counts, Euler student; paths may start below t_max                      |
  | median: noise-end | the true median for an odd count, the two middle values' mean rounded        |
  |                   | towards the noise end for an even one                                        |
  | instance: true    | the paper's per-sample OSS (the reference's --search_each)                   |
Why the default is not the code: the code contradicts its paper, whose sampler starts from the
noise at t_max and whose subproblems are reached in exactly k steps from x_T; the project's rule
then takes the paper and names the code's behaviour (`variant: code`). The median is not fixed by
the paper's recursion, so the code's `cal_medium` is the default there.

Defaults and where they come from:
  * `teacher_steps` = 200, `teacher_solver` = "euler": the paper's teacher (200 Euler steps; the
    reference's `--teacher_steps 200` in scripts/dit.sh and the default of `search_OSS`).
  * `timestep_grid` = "auto": the teacher's fine grid. The paper's models are flow models with steps uniform in t
    (`model.fm_steps`), and DiT (a VP model) with its 1000 DDPM steps respaced uniformly to 200; so
    "auto" is `uniform` (in the model's own t) for FlowOT and VP schedules. For VE (EDM) models, uniform
    in sigma would put a single node below sigma = 0.4 (80/200), which no student could use; there
    "auto" is `edm` (rho = 7), EDM's own grid, as GITS uses. Any heuristic can be named instead.
  * `search_batch` = 256: the reference's `--search_batch` default for OSS-ave (sample_oss_dit.py).
  * `instance` = false (OSS-ave), see above.
  * `variant` = "paper", `median` = "reference": see above. `median` "reference" is the reference's
    `cal_medium`: per position, in the reference's node order (0 = the data end), the floor of the mean
    of the sorted values l[B//2] and l[B//2 - 1], for any count B, i.e. rounded towards the data end.
grids/pixel-searched.yaml compares OSS with the heuristics.

Not reproduced: the reference's DiT-specific amplitude re-normalisation (`renorm_flag`), which is a
sampling-time calibration, not part of the search.

fit_nfe counts network evaluations per sample row (teacher: search_batch * T; search: one row per
sample, node and step, plus per-candidate rows for solvers with a second in-step evaluation).
"""
from __future__ import annotations

from typing import Annotated, Literal

import torch
from pydantic import AfterValidator, Field

from bench.counting import evals_per_call
from bench.discretization import Discretization, FitContext, FittedGlobalMethod
from bench.errors import UserError
from bench.params import Params
from bench.registry import METHODS
from bench.seeding import MAX_SPLIT_SIZE
from bench.schedules import VE
from bench.solvers import make_solver

from ._params import SolverSpec, heuristic_spec
from .search.oss_dp import median_path, oss_code_search, oss_dp
from .search.student_step import StudentSteps, one_step_jumps
from .search.teacher_path import teacher_trajectory
from .search.timestep_grid import timestep_grid


def _grid_value(value):
    return value if value == "auto" else heuristic_spec(value)


@METHODS.register("oss")
class OSS(FittedGlobalMethod):
    # 2: fit_nfe counts network rows x evals_per_call (bench.counting); a guided model's rows count twice
    version = 2

    class Params(Params):
        teacher_steps: int = Field(200, ge=2, le=100_000, description="teacher steps on the fine grid (paper: 200)")
        teacher_solver: SolverSpec = Field("euler", description="the teacher's solver (paper: Euler)")
        timestep_grid: Annotated[Literal["auto"] | str | dict, AfterValidator(_grid_value)] = Field(
            "auto", json_schema_extra={"accepts": "auto or a heuristic's name such as 'edm' or {name: edm, rho: 7}"},
            description="the fine grid: auto (edm for VE, else uniform) or a heuristic")
        search_batch: int = Field(256, ge=1, le=MAX_SPLIT_SIZE, description="priors searched (paper: 256)")
        instance: bool = Field(False, description="per-instance OSS (search at sampling time) instead of OSS-ave")
        variant: Literal["paper", "code"] = Field("paper", description="the paper's search (paths from x_T at "
                                                  "t_max) or the reference code's (x_T at every node, carried results)")
        median: Literal["reference", "noise-end"] = Field(
            "reference", description="OSS-ave's median: the reference's cal_medium or the noise-end rounding")

    def __init__(self, **params):
        super().__init__(**params)
        self.t = None
        self.paths = None

    # -- the search ----------------------------------------------------------------------------

    def resolve(self, context=None) -> dict:
        if context is None:
            return dict(self.params)
        grid = self.params.timestep_grid
        return {**dict(self.params), "timestep_grid": self._auto_grid(context.schedule) if grid == "auto" else grid}

    @staticmethod
    def _auto_grid(schedule) -> str:
        return "edm" if isinstance(schedule, VE) else "uniform"

    def grid_spec(self):
        if self.params.timestep_grid != "auto":
            return self.params.timestep_grid
        return self._auto_grid(self.noise_schedule)

    def teacher_grid(self) -> torch.Tensor:
        T = self.params.teacher_steps
        if self.steps > T:
            raise UserError(f"method 'oss': teacher_steps={T} is fewer than the {self.steps} student steps; "
                            f"raise teacher_steps")
        return timestep_grid(self.noise_schedule, self.grid_spec(), T)

    def search(self, model, solver, x_T, cond=None, progress=None):
        """Per-sample OSS paths [B, K+1] for priors x_T, and the network rows spent."""
        t_nodes = self.teacher_grid()
        if solver is None:
            raise RuntimeError("method 'oss' needs the student solver: bind(schedule, steps, solver, model)")
        with torch.no_grad():
            teacher = make_solver(self.params.teacher_solver)
            traj, _, rows = teacher_trajectory(teacher, model, x_T, t_nodes, cond, need_x0=False)
            if self.params.variant == "code":
                return t_nodes, *self.code_search(model, t_nodes, x_T, traj, cond, progress, rows)
            student = StudentSteps(solver, model, t_nodes, self.steps, x_T, traj, cond)
            paths = oss_dp(t_nodes.numel(), self.steps, student.init_state(), student.advance, student.cost,
                           progress=progress)
        return t_nodes, paths, rows + student.rows

    def code_search(self, model, t_nodes, x_T, traj, cond, progress, rows):
        """`variant: code`: the reference code's search with its Euler student step (paths, rows)."""
        t_x = t_nodes.to(device=x_T.device, dtype=x_T.dtype)
        euler = make_solver("euler")
        count = {"rows": rows}

        def predict(x, i):
            count["rows"] += x.shape[0] * evals_per_call(model)
            return model(x, t_x[i].expand(x.shape[0]), cond)

        def jump(x, x0, i, js):
            return one_step_jumps(euler, model, x, x0, t_x[i], t_x[js])[0]

        paths = oss_code_search(t_nodes.numel(), self.steps, x_T, traj, predict, jump, progress=progress)
        return paths, count["rows"]

    def fit(self, ctx: FitContext) -> None:
        if self.params.instance:
            return  # per-instance mode searches inside schedule()
        data = ctx.teacher("train", self.params.search_batch)
        t_nodes, paths, rows = self.search(ctx.model, ctx.solver if ctx.solver is not None else self.solver,
                                           data.x_T, data.cond)
        ctx.count_nfe(rows)
        self.paths = paths
        path = median_path(paths, self.params.median)
        self.t = t_nodes[path].clone()

    def discretize(self, x_T: torch.Tensor, cond=None) -> Discretization:
        if self.params.instance:
            if self.model is None:
                raise RuntimeError("method 'oss' with instance: true needs the model: bind(..., model=...)")
            t_nodes, paths, _ = self.search(self.model, self.solver, x_T, cond)
            t = t_nodes[paths]  # (variant code: a path may start below t_max)
            return Discretization(t.to(device=x_T.device, dtype=x_T.dtype)).check()
        return super().discretize(x_T, cond)

    def state_dict(self) -> dict:
        return {"t": self.t, "paths": self.paths}

    def load_state_dict(self, state: dict) -> None:
        self.t = state.get("t")
        self.paths = state.get("paths")
