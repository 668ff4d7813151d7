"""`oss`: Optimal Stepsize Search / distillation (Pei, Hu & Gu 2025, "Optimal stepsize for diffusion
sampling", arXiv 2503.21774; reference: github bebebe666/OptimalSteps, `OSS/OSS.py`).

The search (Algorithm 1 of the paper; `oss_dp` in methods/_dp.py):
  1. A fine grid of `teacher_steps` steps (T + 1 nodes, node 0 = t_max, node T = t_min) and a teacher
     trajectory x*_0..x*_T along all of its nodes (`teacher_solver`, Euler in the paper).
  2. For k = 1..K (K = the student's steps) and every node j: among the one-step extensions of the
     states kept at step k - 1 (nodes i < j), keep the student state after k steps that ends at j and
     is closest to the teacher there, cost = mean over dimensions of (x_j - x*_j)^2; remember its
     predecessor. (Only nodes that leave room for the remaining steps are kept.)
  3. Backtrack from node T after K steps: one node path per sample; the schedule is t at those nodes.
The search is per sample. Two modes:
  * global (`instance: false`, default) -- the paper's OSS-ave: search `search_batch` training priors
    (the first ones of the cell's train split, with their labels) in `fit`, and take the per-position
    median of their node paths (for an even count the floor of the mean of the two middle values, as
    the reference's `cal_medium`; the reference takes that mean also for odd counts, here the true
    median). The stored schedule is global ([1, N+1]).
  * per instance (`instance: true`) -- the paper's per-sample OSS: `fit` is a no-op and `schedule(x_T,
    cond)` runs the teacher and the search for every evaluation batch with the bound model (the
    runner's counting wrapper; every network call it makes has the batch's B rows, so the row's
    `schedule_nfe` is the per-sample search cost), returning one schedule per sample ([B, N+1]). The
    whole batch is searched at once: memory grows like T * B * K * (sample size), so keep
    `samples.batch` moderate for large samples.

The student step. The paper's student is the Euler step of a flow model, x_j = x_i + (t_j - t_i) v_i,
whose state is x alone. Here the student is the cell's solver, any of `bench.solvers`, and the DP
evaluates the solver's own update (`SolverReplay` in methods/_dp.py). Beyond the paper:
  * the DP state of (k, j) is, per sample, the whole path taken and the network outputs along it,
    which for a multistep solver (iPNDM, DPM-Solver++, UniPC) *is* its history. A step re-runs the
    solver over [path times, t_j] with those outputs replayed and only the new step's evaluations made
    (one per sample at node i, shared by every candidate j; Heun's corrector, DPM-Solver-2's midpoint
    and UniPC's corrector input depend on j and are evaluated per candidate). Solvers whose step
    pattern depends on the total step count (lower_order_final) see the full K steps: the run is
    padded with steps that cost no network call.
  * approximation: as in the paper, only the best state per (k, j) survives. For Euler this is the
    paper's DP; for a multistep solver the future also depends on the history, and the kept state
    carries the history of its own (greedy) path only -- the DP is then a heuristic search.
  * AFS: the student's analytic first evaluation is used like any other (it is part of the solver).
For Euler and a flow model, step 2 is exactly the reference's search.

Defaults and where they come from:
  * `teacher_steps` = 200, `teacher_solver` = "euler": the paper's teacher (200 Euler steps; the
    reference's `--teacher_steps 200` in scripts/dit.sh and the default of `search_OSS`).
  * `grid` = "auto": the teacher grid. The paper's models are flow models with steps uniform in t
    (`model.fm_steps`), and DiT (a VP model) with its 1000 DDPM steps respaced uniformly to 200; so
    "auto" is `uniform` (in the model's own t) for FlowOT and VP schedules. For VE (EDM) models, uniform
    in sigma would put a single node below sigma = 0.4 (80/200), which no student could use; there
    "auto" is `edm` (rho = 7), EDM's own grid, as GITS uses. Any heuristic can be named instead.
  * `search_batch` = 256: the reference's `--search_batch` default for OSS-ave (sample_oss_dit.py).
  * `instance` = false (OSS-ave), see above.
Measured (benchmarks/bench_searched.py, 2000 evaluation priors): OSS-ave beats the best heuristic at
NFE 3-5 on toy2d (Euler; mse 0.0315 / 0.0185 / 0.0121 against 0.0410 / 0.0250 / 0.0178; per-instance
0.0282 / 0.0162 / 0.0105 at ~600-1000 evaluations per sample) and on digits (iPNDM; 4.82 / 4.37 / 4.40
against 8.17 / 6.24 / 4.81). On digits (an exact *empirical* denoiser, which memorises) the per-sample
paths differ a lot, the median path spends its last steps just above t_min and does not improve from
NFE 4 to 5, while per-sample schedules are far better (mse 0.27 against 4.56 for the median path on
64 training priors at NFE 5).

Not reproduced: the reference's DiT-specific amplitude re-normalisation (`renorm_flag`), which is a
sampling-time calibration, not part of the search.

fit_nfe counts network evaluations per sample row (teacher: search_batch * T; search: one row per
sample, node and step, plus per-candidate rows for solvers with a second in-step evaluation).
"""
from __future__ import annotations

from typing import Annotated, Any

import torch
from pydantic import AfterValidator, Field

from bench.discretization import Discretization, DiscretizationMethod, FitContext
from bench.errors import UserError
from bench.params import Params
from bench.registry import METHODS
from bench.seeding import MAX_SPLIT_SIZE
from bench.schedules import VE
from bench.solvers import make_solver

from ._params import SolverSpec, heuristic_spec
from ._dp import (SolverReplay, fine_grid, median_path, oss_dp,
                  teacher_trajectory)


def _grid_value(value):
    return value if value == "auto" else heuristic_spec(value)


@METHODS.register("oss")
class OSS(DiscretizationMethod):
    needs_fit = True

    class Params(Params):
        teacher_steps: int = Field(200, ge=2, le=100_000, description="teacher steps on the fine grid (paper: 200)")
        teacher_solver: SolverSpec = Field("euler", description="the teacher's solver (paper: Euler)")
        grid: Annotated[Any, AfterValidator(_grid_value)] = Field(
            "auto", description="the fine grid: auto (edm for VE, else uniform) or a heuristic")
        search_batch: int = Field(256, ge=1, le=MAX_SPLIT_SIZE, description="priors searched (paper: 256)")
        instance: bool = Field(False, description="per-instance OSS (search at sampling time) instead of OSS-ave")

    def __init__(self, **params):
        super().__init__(**params)
        self.t = None
        self.paths = None

    # -- the search ----------------------------------------------------------------------------

    def resolve(self, context=None) -> dict:
        if context is None:
            return dict(self.params)
        grid = self.params["grid"]
        return {**self.params, "grid": self._auto_grid(context.schedule) if grid == "auto" else grid}

    @staticmethod
    def _auto_grid(schedule) -> str:
        return "edm" if isinstance(schedule, VE) else "uniform"

    def grid_spec(self):
        if self.params["grid"] != "auto":
            return self.params["grid"]
        return self._auto_grid(self.noise_schedule)

    def teacher_grid(self) -> torch.Tensor:
        T = self.params["teacher_steps"]
        if self.steps > T:
            raise UserError(f"method 'oss': teacher_steps={T} is fewer than the {self.steps} student steps; "
                            f"raise teacher_steps")
        return fine_grid(self.noise_schedule, self.grid_spec(), T)

    def search(self, model, solver, x_T, cond=None, progress=None):
        """Per-sample OSS paths [B, K+1] for priors x_T, and the network rows spent."""
        t_nodes = self.teacher_grid()
        if solver is None:
            raise RuntimeError("method 'oss' needs the student solver: bind(schedule, steps, solver, model)")
        with torch.no_grad():
            teacher = make_solver(self.params["teacher_solver"])
            traj, _, rows = teacher_trajectory(teacher, model, x_T, t_nodes, cond, need_x0=False)
            replay = SolverReplay(solver, model, t_nodes, self.steps, x_T, traj, cond)
            paths = oss_dp(t_nodes.numel(), self.steps, replay.init_state(), replay.advance, replay.cost,
                           progress=progress)
        return t_nodes, paths, rows + replay.rows

    def fit(self, ctx: FitContext) -> None:
        if self.params["instance"]:
            return  # per-instance mode searches inside schedule()
        data = ctx.teacher("train", self.params["search_batch"])
        t_nodes, paths, rows = self.search(ctx.model, ctx.solver if ctx.solver is not None else self.solver,
                                           data.x_T, data.cond)
        ctx.count_nfe(rows)
        self.paths = paths
        path = median_path(paths)
        self.t = t_nodes[path].clone()

    def schedule(self, x_T: torch.Tensor, cond=None) -> Discretization:
        if self.params["instance"]:
            if self.model is None:
                raise RuntimeError("method 'oss' with instance: true needs the model: bind(..., model=...)")
            t_nodes, paths, _ = self.search(self.model, self.solver, x_T, cond)
            t = t_nodes[paths]
            t[:, 0], t[:, -1] = self.noise_schedule.t_max, self.noise_schedule.t_min
            return Discretization(t.to(device=x_T.device, dtype=x_T.dtype)).check()
        if self.t is None:
            raise RuntimeError("method 'oss' is not fitted: call fit(ctx) or load_state_dict() first")
        return Discretization(self.t.to(device=x_T.device, dtype=x_T.dtype)[None]).check()

    def state_dict(self) -> dict:
        return {"t": self.t, "paths": self.paths}

    def load_state_dict(self, state: dict) -> None:
        self.t = state.get("t")
        self.paths = state.get("paths")
