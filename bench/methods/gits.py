"""`gits`: Geometry-Inspired Time Scheduling (Chen et al., ICML 2024, "On the trajectory regularity of
ODE-based diffusion sampling"; reference: github zju-pi/diff-sampler, `gits-main/gits_utils.py`).

The search, once per fit:
  1. A fine timestep grid of `teacher_steps` steps (T + 1 nodes, node 0 = t_max, node T = t_min) from
     the closed-form baseline `timestep_grid`.
  2. A teacher (`teacher_solver`) integrates `warmup` training priors along all grid nodes; its states
     x*_i and its data predictions x0_i at the nodes are kept (a single-evaluation teacher made those
     evaluations anyway, so they cost nothing extra).
  3. Cost matrix of one-step jumps: for i < j, the student's one step from the teacher state x*_i
     (with the teacher's evaluation there) to time t_j, compared with x*_j. The jump is, as in the
     reference (`x_next = x_cur + (t_next - t_cur) * d_cur`, whatever the student solver), one Euler /
     DDIM step in the VE view (`jump: euler`): y = x/alpha, s = sigma/alpha, y_j = y_i + (s_j - s_i) eps_i
     -- the EDM Euler step for VE, the velocity Euler step for FlowOT, DDIM for VP. `jump: solver`
     takes the bound student solver's own single step instead (identical for single-evaluation solvers,
     whose first step is DDIM; for Heun / DPM-Solver-2 it adds the corrector's / midpoint's evaluation,
     made for every (i, j): one evaluation more per pair and sample). If the student uses AFS, the jumps
     from node 0 use AFS's analytic prediction, since that is what the student's first step sees.
  4. Metric (`metric`): the reference's `dev` (default): the trajectory deviation of GITS -- the
     distance of a state from the straight line through x_T and the teacher's x_0 -- of the jumped
     state, averaged over samples, minus that of the teacher state x*_j:
        cost[i, j] = mean_b dev(jump_b(i -> j)) - mean_b dev(x*_j,b)   (may be negative);
     `l2` / `l1`: the mean over samples of the L2 / L1 norm of jump(i -> j) - x*_j.
  5. Dynamic programming (`gits_dp` in bench/methods/search/gits_dp.py): the K-step path 0 -> ... -> T minimising
     sum_m coeff^m cost[n_m, n_{m+1}], the m-th jump from the noise end weighted coeff^m. Both
     endpoints are always kept.
  6. Only when `coeff` is a list (or `sweep`, the reference's list 0.8, 0.85, ..., 1.2): one DP per
     value, then the student (the cell's solver) runs each distinct path from the warm-up priors and
     the value whose endpoints are closest to the teacher's (mean L2 norm over the warm-up samples) is
     kept. The reference writes the DP paths of this list for MS-COCO and leaves the choice to the
     user; the choice rule is the one its AFS option uses to place its extra step. It costs one student
     solve (NFE evaluations) per distinct path and warm-up sample; the chosen value is `coeff` in the
     row's fit info.
Distances are measured in EDM's coordinates y = x / alpha (`space: ve`, default), as the reference
does: its models are VE ones, where y is the model's own state. `space: model` measures them on the
model's own state x instead (the state the solver carries); for a VE model the two are the same, for
FlowOT / VP models `ve` weights the errors at high noise by 1/alpha and picks other steps.
grids/gits-coeff-toy2d.yaml and grids/gits-coeff-digits.yaml compare the DP weights and the metrics by
their samples; scripts/gits_cost_analysis.py shows how the paths rank among all of the grid's subsets.

Reference and variants (the project's rule, README "Defaults"):

  | reference    | zju-pi/diff-sampler, gits-main/gits_utils.py (get_dp_list, dp, cal_deviation),    |
  |              | commit 68d5ce427f261962b89ce3b0ee8f6b29f0577328; defaults from launch.sh            |
  | default      | the reference: costs in y = x / alpha, `dev` metric, coeff 1.15, Euler jumps, 60    |
  |              | teacher steps of iPNDM on the EDM rho = 7 grid, 256 warm-up priors, first-index     |
  |              | ties in the DP                                                                      |
  | space: model | costs on the model's own state x (identical for VE models)                          |
  | metric: l2   | the reference's other metrics (`--metric l2` / `l1`): mean norm of jump - teacher   |
  | coeff: sweep | or a list: one DP per weight, the one whose student endpoints are closest to the    |
  |              | teacher's on the warm-up priors is kept (the reference only writes the list's paths) |
  | jump: solver | the student solver's own single step instead of the Euler jump                      |

Defaults and where they come from:
  * `teacher_steps` = 60: the reference's recommended `--num_steps_tea=61` timestamps (launch.sh,
    README) = 60 steps (the click default of its sample.py, 21 timestamps, is used by none of its
    published commands).
  * `teacher_solver` = "ipndm" (max_order 4): the reference's `--solver_tea` default.
  * `timestep_grid` = "edm" (rho = 7): the reference's `--schedule_type=polynomial --schedule_rho=7`, EDM's
    polynomial in the VE noise level sigma. For FlowOT and VP models the `edm` baseline maps the same
    sigma levels to the model's time at equal log-SNR (sigma = exp(-lambda)), so the grid is the same
    set of noise levels whatever the parametrisation. Any heuristic can be given (e.g. `uniform`, the
    reference's 'time_uniform', or `{name: polynomial, rho: 2}`).
  * `metric` = "dev", `coeff` = 1.15, `warmup` = 256: the reference's defaults (`--metric=dev
    --coeff=1.15 --num_warmup=256`). `coeff` may also be a list of numbers or `sweep` (see 6). The
    warm-up priors are the first `warmup` training priors of the cell (`ctx.teacher("train",
    warmup).x_T`, with their class labels), so the fit is deterministic.
  * `jump` = "euler": the reference (see 3).
  * `space` = "ve": the reference's coordinates (see above).
Not reproduced: the reference's AFS variant that inserts an extra "free" step after the search (here
AFS is the solver's option and the DP searches all of the cell's steps).

fit_nfe counts network evaluations per sample row (warmup * teacher evaluations, plus the extra
evaluations of `jump: solver` and the student solves of a `coeff` list).
"""
from __future__ import annotations

from typing import Annotated, Literal

import torch
from pydantic import AfterValidator, Field

from bench.discretization import Discretization, FitContext, FittedGlobalMethod
from bench.errors import UserError
from bench.params import Params
from bench.registry import METHODS
from bench.schedules import append_dims
from bench.seeding import MAX_SPLIT_SIZE
from bench.solvers import make_solver
from bench.solvers.base import AnalyticFirstStep

from ._params import HeuristicSpec, SolverSpec
from .search.gits_dp import deviation, gits_dp
from .search.student_step import one_step_jumps
from .search.teacher_path import RowCounter, teacher_trajectory
from .search.timestep_grid import timestep_grid

METRICS = ("dev", "l1", "l2")
# The reference's list of DP weights for MS-COCO (`dp(..., multiple_coeff=True)` in gits_utils.py).
COEFF_SWEEP = (0.8, 0.85, 0.9, 0.95, 1.0, 1.05, 1.1, 1.15, 1.2)
JUMPS = ("euler", "solver")
SPACES = ("ve", "model")


@METHODS.register("gits")
class GITS(FittedGlobalMethod):
    # 2: fit_nfe counts network rows x evals_per_call (bench.counting); a guided model's rows count twice
    version = 2

    class Params(Params):
        teacher_steps: int = Field(60, ge=2, le=100_000, description="steps of the fine teacher grid (reference: 60)")
        teacher_solver: SolverSpec = Field("ipndm", description="the warm-up teacher's solver (reference: ipndm)")
        timestep_grid: HeuristicSpec = Field("edm", description="the fine grid's schedule (reference: EDM rho=7)")
        metric: Literal["dev", "l1", "l2"] = Field("dev", description="the local cost (reference: dev)")
        coeff: Annotated[int | float | list[int | float] | Literal["sweep"], AfterValidator(_coeff_value)] = Field(
            1.15, json_schema_extra={"accepts": "a number > 0, a list of them, or 'sweep'"},
            description="the DP weight: a number > 0, a list of them, or 'sweep' (0.8..1.2)")
        warmup: int = Field(256, ge=1, le=MAX_SPLIT_SIZE, description="warm-up priors (reference: 256)")
        jump: Literal["euler", "solver"] = Field("euler", description="the one-step jump the costs model")
        space: Literal["ve", "model"] = Field(
            "ve", description="coordinates the deviations are measured in: ve (the reference's) or model (ours)")

    def __init__(self, **params):
        super().__init__(**params)
        p = self.params
        self.coeffs = coeff_candidates(p.coeff)
        self.t = None
        self.path = None
        self.cost = None
        self.coeff = None  # the weight the path was found with (the chosen one when sweeping)
        self.selection = None  # {coeff: warm-up endpoint error} when sweeping

    def fit(self, ctx: FitContext) -> None:
        p = self.params
        schedule = self.noise_schedule
        T = p.teacher_steps
        if self.steps > T:
            raise UserError(f"method 'gits': teacher_steps={T} is fewer than the {self.steps} student steps; "
                            f"raise teacher_steps")
        t_nodes = timestep_grid(schedule, p.timestep_grid, T)
        warm = ctx.teacher("train", p.warmup)
        x_T, cond = warm.x_T, warm.cond
        with torch.no_grad():
            teacher = make_solver(p.teacher_solver)
            traj, x0, rows = teacher_trajectory(teacher, ctx.model, x_T, t_nodes, cond)
            if ctx.solver is not None and ctx.solver.params.afs:
                x0 = x0.clone()
                x0[0] = AnalyticFirstStep(schedule)(traj[0], t_nodes[:1].to(x_T).expand(x_T.shape[0]))
            cost, jump_rows = self.cost_matrix(ctx, traj, x0, t_nodes, cond)
        ctx.count_nfe(rows + jump_rows)
        self.cost = cost
        paths = {c: gits_dp(cost.numpy(), self.steps, c) for c in self.coeffs}
        if len(self.coeffs) == 1:
            self.coeff, self.selection = self.coeffs[0], None
        else:
            with torch.no_grad():
                errors, select_rows = self.endpoint_errors(ctx, paths, t_nodes, x_T, traj[-1], cond)
            ctx.count_nfe(select_rows)
            self.selection = {c: errors[tuple(paths[c])] for c in self.coeffs}
            self.coeff = min(self.coeffs, key=self.selection.__getitem__)  # ties: same path
        self.path = paths[self.coeff]
        self.t = t_nodes[self.path].clone()

    def endpoint_errors(self, ctx, paths, t_nodes, x_T, x_0, cond):
        """{path: mean over warm-up samples of ||student(x_T along path) - teacher x_0||_2} for each
        distinct path, and the network rows the student solves spent."""
        student = ctx.solver if ctx.solver is not None else make_solver("euler")
        counter = RowCounter(ctx.model)
        errors = {}
        for path in {tuple(path) for path in paths.values()}:
            disc = Discretization(t_nodes[list(path)].to(device=x_T.device, dtype=x_T.dtype)[None])
            x = student.sample(counter, x_T, disc, cond)
            errors[path] = float((x - x_0).flatten(1).norm(dim=1).mean())
        return errors, counter.rows

    def cost_matrix(self, ctx, traj, x0, t_nodes, cond):
        """cost [T+1, T+1] (float64; inf where i >= j) and the network rows the jumps spent."""
        p = self.params
        schedule = self.noise_schedule
        T = t_nodes.numel() - 1
        t_nodes_x = t_nodes.to(device=traj.device, dtype=traj.dtype)
        cost = torch.full((T + 1, T + 1), float("inf"), dtype=torch.float64)
        if p.space == "ve":  # y = x / alpha: EDM's coordinates, whatever the model's schedule
            inv_alpha = lambda t, ndim: append_dims(1 / schedule.alpha(t), ndim)  # noqa: E731
        else:
            inv_alpha = lambda t, ndim: 1.0  # noqa: E731
        ref = traj * inv_alpha(t_nodes_x, traj.ndim)
        start, end = ref[0], ref[T]
        if p.metric == "dev":
            dev_teacher = deviation(ref, start, end).mean(-1).to(torch.float64)  # [T+1]
        student = make_solver("euler")
        if p.jump == "solver":
            spec = ctx.solver.spec() if ctx.solver is not None else {"name": "euler"}
            student = make_solver({k: v for k, v in spec.items() if k != "afs"})
        rows = 0
        for i in range(T):
            js = torch.arange(i + 1, T + 1)
            jumped, r = one_step_jumps(student, ctx.model, traj[i], x0[i], t_nodes_x[i], t_nodes_x[js], cond)
            rows += r
            jumped = jumped * inv_alpha(t_nodes_x[js], jumped.ndim)
            if p.metric == "dev":
                cost[i, js] = deviation(jumped, start, end).mean(-1).to(torch.float64) - dev_teacher[js]
            else:
                order = 2 if p.metric == "l2" else 1
                diff = (jumped - ref[js]).flatten(2)
                cost[i, js] = torch.linalg.vector_norm(diff, ord=order, dim=-1).mean(-1).to(torch.float64)
        return cost, rows

    def fit_info(self) -> dict:
        if self.selection is None:
            return {}
        return {"coeff": self.coeff, "warmup_endpoint_l2": self.selection[self.coeff]}

    def state_dict(self) -> dict:
        return {"t": self.t, "path": self.path, "cost": self.cost, "coeff": self.coeff, "selection": self.selection}

    def load_state_dict(self, state: dict) -> None:
        self.t = state["t"]
        self.path = list(state["path"])
        self.cost = state.get("cost")
        self.coeff = state.get("coeff")
        self.selection = state.get("selection")


def _coeff_value(value):
    coeff_candidates(value)
    return value


def coeff_candidates(value) -> tuple[float, ...]:
    """The DP weights to try: a number, a non-empty list of numbers, or 'sweep' (COEFF_SWEEP); all > 0."""
    if value == "sweep":
        return COEFF_SWEEP
    values = value if isinstance(value, list) else [value]
    if not values or any(isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0 for v in values):
        raise ValueError(f"must be a number > 0, a list of them, or 'sweep', got {value!r}")
    return tuple(dict.fromkeys(float(v) for v in values))
