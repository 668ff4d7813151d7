"""The solver interface: one step at a time, one sampling loop for every solver, declared conventions.

A solver is two functions and a few declared class attributes:
  * `init_state(x_T, disc) -> State`: the state at the first node (the sample, an empty history);
  * `step(state, n, disc, denoise) -> State`: from node n to node n + 1 of the `Discretization`
    (times `denoise.interval(n)`), calling `denoise.at_node(x, n)` for an evaluation at node n's time
    and `denoise.inside(x, t, n)` for one inside step n at another time t; each returns (x0, eps);
  * `order` (global order of accuracy, the one `tests/solvers/test_conformance.py` measures; a
    property where it depends on a parameter), `evals_per_step` (network evaluations per step).
`Solver.sample` is the only sampling loop (`Solver.trajectory` runs the same loop and keeps every
state): it runs `step` for n = 0..N-1, applies the conventions
below, and calls an optional per-step `callback(info)` (as k-diffusion's samplers do) with a dict:
n, the new `state` and its sample `x`, the step's times `t`, `t_next`, and `evaluations`, the
list of `Evaluation(x, t, x0, eps)` the step made (`denoised` is the last x0, or None). A `State`
holds the sample x at node n and the solver's `history` of past denoiser outputs (most recent
first), so a search can resume a state from any node by calling `step` itself.

Everything is written with plain torch ops, so gradients reach `disc.t`, `disc.t_eval`,
`disc.scale` and `x_T`; every per-step time has shape [B] (B = 1 broadcasts), so each sample may
follow its own schedule. Solvers only use the schedule's `alpha`, `sigma`, `lambda_` and
`t_of_lambda`, so they work for every `NoiseSchedule` (VE, VP, FlowOT).

`predict` evaluates the network once. With a decoupled input time t_eval and an output scale gamma
(LD3, INDIS), the network sees the state x as if it were at t_eval; its noise prediction is
eps = (x - alpha(t_eval) x0_hat) / sigma(t_eval), scaled by gamma, and converted back to a data
prediction at the state's own time t: x0 = (x - sigma(t) * gamma * eps) / alpha(t). Without them it
is the plain x0_hat and eps = (x - alpha(t) x0_hat) / sigma(t). (The network is fed the raw x at
t_eval, as LD3 and INDIS do in their own schedules; unlike everything else here this is not invariant
under a change of schedule at equal log-SNR.) Which t_eval/scale an evaluation uses is `Denoise`'s
rule, so no solver applies it by hand:
  * `denoise.at_node(x, n)`: an evaluation at node n's time t_n uses t_eval[:, n] and scale[:, n]:
    the evaluation at the state x_n at the start of step n, and a multistep corrector's evaluation at
    the next node (UniPC's at t_{n+1}, `at_node(x, n + 1)`, which also feeds step n + 1);
  * `denoise.inside(x, t, n)`: an extra evaluation inside step n at another time t (Heun's corrector
    at t_{n+1}, DPM-Solver-2's midpoint) is made at its plain time (no t_eval: the decoupled time
    belongs to the state x_n) with scale[:, n].

Many solvers are simplest in the schedule's *VE view*: y = x / alpha, s = sigma / alpha
(= exp(-lambda)), where the ODE reads dy/ds = eps. Euler there is DDIM in any schedule, and equals
EDM's Euler for VE and the flow-matching Euler step for FlowOT. The exponential integrators
(DPM-Solver++, UniPC) read, in the same view and in data prediction, dy/dlambda = x0 - y, so one
step of size h = lambda_{n+1} - lambda_n is y_{n+1} = e^{-h} y_n + integral of e^{-(h-u)} x0 du.

Parameters every solver takes (declared in `Solver.Params`):
  * `afs` (False): the analytical first step (Zhou et al. 2024, "Fast ODE-based sampling for
    diffusion models in around 5 steps" (AMED-Solver); an option of every sampler of its code base,
    also used by GITS). The first evaluation of step 0 spends no network call: the noise prediction
    is taken as eps = y / sqrt(1 + s^2) = x / sqrt(alpha^2 + sigma^2) (VE: x / sqrt(1 + t^2)), the
    large-noise limit of the eps of zero-mean, unit-variance data; x0 = (x - sigma eps) / alpha.
    It is an analytic denoiser passed through `predict`, so t_eval[:, 0] and scale[:, 0] apply to
    it; an analytic eps enters multistep histories like a network one. `nfe` subtracts it.
  * `final_step` ("t_min"): where the last step lands.
      - `t_min`: at the discretization's last node t_N = t_min > 0; the sample is that state (the
        default: zju-pi/diff-sampler's samplers and the DPM-Solver / UniPC reference codes end at
        sigma_min; every number this harness has produced uses it).
      - `denoise`: as `t_min`, then one more evaluation returns x0(x_N, t_N) (diff-sampler's
        `denoise_to_zero=True`); one extra NFE; the trajectory gets that x0 as an extra entry.
      - `zero`: the last step goes from t_{N-1} to sigma = 0 (t_N is unused), which for every solver
        here is the first-order step x_N = x0(x_{N-1}, t_{N-1}) (k-diffusion's samplers on
        sigmas ending in 0; diffusers' `final_sigmas_type="zero"`). Single-step solvers save their
        second evaluation there (EDM's Heun: 2N - 1 NFE); UniPC takes the x0 of its last corrector
        evaluation, as diffusers does.
Multistep solvers add `lower_order_final` and `lower_order_final_below` (see `lowering_rule`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from enum import Enum
from typing import Annotated, Callable, ClassVar, Literal, NamedTuple

import torch
from pydantic import AfterValidator, Field

from ..errors import UserError
from ..params import Params
from ..plugin import Plugin
from ..registry import SOLVERS
from ..schedules import append_dims



def predict(model, x: torch.Tensor, t: torch.Tensor, t_eval=None, scale=None, cond=None):
    """One network evaluation at state time t [B]: returns (x0, eps), both consistent with time t."""
    schedule = model.schedule
    ndim = x.ndim
    if t_eval is None and scale is None and schedule.unit_alpha and t.dtype == x.dtype and not torch.is_grad_enabled():
        # VE (alpha = 1), sampling: the same numbers as below without the multiplications by ones.
        # (With t in another dtype than x the general path promotes x before subtracting; under
        # autograd the backward pass would sum its terms in another order, and learned schedules
        # amplify that round-off; both take the general path.)
        x0 = model(x, t.expand(x.shape[0]), cond)
        return x0, (x - x0) / append_dims(schedule.sigma(t), ndim)
    alpha, sigma = append_dims(schedule.alpha(t), ndim), append_dims(schedule.sigma(t), ndim)
    if t_eval is None:
        x0 = model(x, t.expand(x.shape[0]), cond)
        eps = (x - alpha * x0) / sigma
        if scale is None:
            return x0, eps
    else:
        x0_net = model(x, t_eval.expand(x.shape[0]), cond)
        alpha_e = append_dims(schedule.alpha(t_eval), ndim)
        sigma_e = append_dims(schedule.sigma(t_eval), ndim)
        eps = (x - alpha_e * x0_net) / sigma_e
    if scale is not None:
        eps = eps * append_dims(scale, ndim)
    x0 = (x - sigma * eps) / alpha
    return x0, eps


class AnalyticFirstStep:
    """AFS's stand-in for the network: the denoiser whose eps is x / sqrt(alpha^2 + sigma^2)."""

    def __init__(self, schedule):
        self.schedule = schedule

    def __call__(self, x, t, cond=None):
        alpha = append_dims(self.schedule.alpha(t), x.ndim)
        sigma = append_dims(self.schedule.sigma(t), x.ndim)
        eps = x / torch.sqrt(alpha**2 + sigma**2)
        return (x - sigma * eps) / alpha


@dataclass(frozen=True)
class State:
    """What a solver carries from node n to node n + 1: the sample `x` at node n and its `history`
    of past denoiser outputs (x0 or eps, the solver's choice), most recent first."""

    x: torch.Tensor
    history: tuple = ()


class Evaluation(NamedTuple):
    x: torch.Tensor
    t: torch.Tensor
    x0: torch.Tensor
    eps: torch.Tensor


class Denoise:
    """The denoiser as a step sees it, owning the evaluation-time rule of the discretization `disc`
    (module docstring): `at_node(x, n)` and `inside(x, t, n)` return (x0, eps) at the state's time,
    through `predict`; calling it, `denoise(x, t, t_eval=None, scale=None)`, is the plain evaluation
    underneath. With `analytic_first` its first evaluation is AFS's analytic one. It keeps the step's
    evaluations for the callback."""

    def __init__(self, model, cond=None, analytic_first: bool = False, disc=None):
        self.model, self.cond, self.schedule = model, cond, model.schedule
        self.analytic_first = analytic_first
        self.disc = disc
        self._steps: dict[int, tuple] = {}
        self.evaluations: list[Evaluation] = []

    def _rule(self, n: int):
        # one `disc.step(n)` per node and step: the times a step moves between and the ones its
        # evaluations use are the same tensors, so gradients reach t through one path, in one order
        if self.disc is None:
            raise ValueError("this Denoise was made without the discretization its rule reads; pass disc=")
        if n not in self._steps:
            self._steps[n] = self.disc.step(n)
        return self._steps[n]

    def interval(self, n: int):
        """(t_n, t_{n+1}), each [B]: the times step n goes between."""
        t, t_next, _, _ = self._rule(n)
        return t, t_next

    def at_node(self, x, n: int):
        """An evaluation at node n's time t_n: with t_eval[:, n] and scale[:, n] where `disc` has them."""
        t, _, t_eval, scale = self._rule(n)
        return self(x, t, t_eval, scale)

    def inside(self, x, t, n: int):
        """An evaluation inside step n at its own time t: plain t (no t_eval), scale[:, n]."""
        _, _, _, scale = self._rule(n)
        return self(x, t, None, scale)

    def __call__(self, x, t, t_eval=None, scale=None):
        first = self.analytic_first and not self.evaluations
        model = AnalyticFirstStep(self.schedule) if first else self.model
        x0, eps = predict(model, x, t, t_eval, scale, self.cond)
        self.evaluations.append(Evaluation(x, t, x0, eps))
        return x0, eps


@dataclass(frozen=True)
class StepPlan:
    """`nfe` network evaluations spent as `steps` steps of one solver: made once, by `Solver.plan`, and
    carried by the grid's cells, the fit context and bound methods."""

    nfe: int
    steps: int


class FinalStep(str, Enum):
    """Where the last step lands (`Solver.Params.final_step`, module docstring)."""

    T_MIN = "t_min"
    DENOISE = "denoise"
    ZERO = "zero"


FINAL_STEPS = tuple(f.value for f in FinalStep)  # the choices of Solver.Params.final_step


class Solver(Plugin):
    kind: ClassVar[str] = "solver"
    # Global order of accuracy on smooth non-uniform steps: what the conformance suite measures.
    order: ClassVar[int] = 1
    # Network evaluations per step without AFS.
    evals_per_step: ClassVar[int] = 1

    class Params(Params):
        afs: bool = Field(False, description="analytical first step (Dockhorn et al. 2023 / AMED): the first "
                                            "evaluation uses eps = x / sqrt(alpha^2 + sigma^2), saving one NFE")
        final_step: Literal["t_min", "denoise", "zero"] = Field(
            "t_min", description="where the last step lands: t_min (this harness), denoise (one more evaluation, "
                                 "diff-sampler's denoise_to_zero) or zero (sigma = 0, k-diffusion)")

    # -- the step API -------------------------------------------------------------------------
    def init_state(self, x_T: torch.Tensor, disc) -> State:
        return State(x_T)

    def step(self, state: State, n: int, disc, denoise: Denoise) -> State:
        raise NotImplementedError

    @property
    def final_step(self) -> FinalStep:
        return FinalStep(self.params.final_step)

    def step_to_zero(self, state: State, n: int, disc, denoise: Denoise) -> torch.Tensor:
        """`final_step: zero`: the last step, from t_n to sigma = 0, is x0(x_n, t_n)."""
        return denoise.at_node(state.x, n)[0]

    def advance(self, state: State, n: int, disc, denoise: Denoise) -> State:
        """Step n under the `final_step` convention (`zero`: the last step goes to sigma = 0). The
        sampling loop and the searches that resume a state at any node (OSS) both step through it."""
        if self.final_step is FinalStep.ZERO and n == disc.steps - 1:
            return State(self.step_to_zero(state, n, disc, denoise))
        return self.step(state, n, disc, denoise)

    def sample(self, model, x_T: torch.Tensor, disc, cond=None,
               callback: Callable[[dict], None] | None = None) -> torch.Tensor:
        """x_0 from x_T along `disc` (`trajectory` keeps every state)."""
        return self._run(model, x_T, disc, cond, callback, None)

    def trajectory(self, model, x_T: torch.Tensor, disc, cond=None,
                   callback: Callable[[dict], None] | None = None) -> list[torch.Tensor]:
        """The states [x_T, x_1, ..., x_N] along `disc` (with `final_step: denoise` followed by the
        denoised sample), from the same loop as `sample`."""
        states: list[torch.Tensor] = []
        self._run(model, x_T, disc, cond, callback, states)
        return states

    def _run(self, model, x_T, disc, cond, callback, trajectory: list | None) -> torch.Tensor:
        state = self.init_state(x_T, disc)
        if trajectory is not None:  # kept only on request: N states cost memory
            trajectory.append(state.x)
        for n in range(disc.steps):
            denoise = Denoise(model, cond, analytic_first=bool(self.params.afs) and n == 0, disc=disc)
            state = self.advance(state, n, disc, denoise)
            if trajectory is not None:
                trajectory.append(state.x)
            if callback is not None:
                callback(_step_info(n, state, disc.t[:, n], disc.t[:, n + 1], denoise.evaluations))
        if self.final_step is FinalStep.DENOISE:
            denoise = Denoise(model, cond, disc=disc)
            state = State(denoise(state.x, disc.t[:, -1])[0])
            if trajectory is not None:
                trajectory.append(state.x)
            if callback is not None:
                callback(_step_info(disc.steps, state, disc.t[:, -1], disc.t[:, -1], denoise.evaluations))
        return state.x

    # -- accounting ---------------------------------------------------------------------------
    def nfe(self, steps: int) -> int:
        """Network evaluations spent for `steps` steps (AFS saves the first one)."""
        final = {FinalStep.T_MIN: 0, FinalStep.DENOISE: 1, FinalStep.ZERO: 1 - self.evals_per_step}[self.final_step]
        return self.evals_per_step * steps + final - (1 if self.params.afs else 0)

    def plan(self, nfe: int) -> StepPlan:
        """The step plan that spends exactly `nfe` evaluations, or a UserError if none does."""
        return StepPlan(int(nfe), self.steps_for_nfe(nfe))

    def steps_for_nfe(self, nfe: int) -> int:
        """The step count that spends exactly `nfe` evaluations, or a UserError if none does."""
        nfe = int(nfe)
        steps = 1
        while self.nfe(steps) < nfe:
            steps += 1
        if self.nfe(steps) == nfe:
            return steps
        below = [(s, self.nfe(s)) for s in range(1, steps) if self.nfe(s) >= 1][-1:]
        nearest = below + [(steps, self.nfe(steps))]
        options = " or ".join(f"nfe={n} ({s} step{'s' if s > 1 else ''})" for s, n in nearest)
        spends = ", ".join(str(self.nfe(s)) for s in (1, 2, 3))
        hint = "" if self.params.afs or self.evals_per_step == 1 else "; or set afs: true to save one evaluation"
        raise UserError(
            f"solver {self.name!r} cannot spend exactly nfe={nfe} (it spends {spends}, ... evaluations "
            f"for 1, 2, 3, ... steps); choose {options}{hint}"
        )


def _step_info(n, state, t, t_next, evaluations) -> dict:
    denoised = evaluations[-1].x0 if evaluations else None
    return {"n": n, "state": state, "x": state.x, "t": t, "t_next": t_next,
            "evaluations": list(evaluations), "denoised": denoised}


def make_solver(spec) -> Solver:
    """Build a solver from a name or a dict {name: ..., **params} (`Registry.build`)."""
    return SOLVERS.build(spec)


# -- shared pieces of steps -------------------------------------------------------------------
def ve_view(schedule, t: torch.Tensor, ndim: int):
    """(alpha, s = sigma/alpha) at t, shaped to broadcast against an ndim-dimensional state."""
    alpha = append_dims(schedule.alpha(t), ndim)
    return alpha, append_dims(schedule.sigma(t), ndim) / alpha


def ve_step(schedule, x, t, t_next, direction):
    """x_{n+1} = alpha_{n+1} (x_n / alpha_n + (s_{n+1} - s_n) direction): a step along dy/ds."""
    if schedule.unit_alpha and not torch.is_grad_enabled():  # VE sampling: y = x, s = sigma (see `predict`)
        return x + (append_dims(schedule.sigma(t_next), x.ndim) - append_dims(schedule.sigma(t), x.ndim)) * direction
    alpha, s = ve_view(schedule, t, x.ndim)
    alpha_next, s_next = ve_view(schedule, t_next, x.ndim)
    return alpha_next * (x / alpha + (s_next - s) * direction)


def push(history: tuple, value: torch.Tensor, keep: int) -> tuple:
    """`value` prepended to a most-recent-first history, which keeps at most `keep` entries."""
    return ((value,) + tuple(history))[:keep]


def coefficient_dtype(x: torch.Tensor) -> torch.dtype:
    """The dtype for step coefficients (phi functions, divided differences, small linear solves).

    These lose digits to cancellation for small log-SNR steps h (the k-th phi function loses about
    k * log10(1/h) digits), so they are computed in float64 whatever the state's dtype, except on
    devices without float64 (MPS), and cast back to x's dtype where they meet the state.
    """
    return torch.float32 if x.device.type == "mps" else torch.float64


def log_snr(schedule, disc, x: torch.Tensor) -> torch.Tensor:
    """lambda at every node of `disc`, [B, N+1], in the coefficient dtype."""
    return schedule.lambda_(disc.t.to(coefficient_dtype(x)))


def factorial(k: int) -> float:
    return float(math.factorial(k))


# -- lower_order_final: the order of a multistep solver's last steps ----------------------------
# A multistep solver of maximal order p uses order min(p, n + 1) at step n (warm-up). Lowering the
# final order caps step n of N at N - n (the last step first order, the one before it at most
# second), a stabilizer for few steps. The parameter takes a bool or the name of a reference:
#   true          lower when N < `lower_order_final_below` (null: at any N)
#   false         never
#   dpm-solver    N < 10          LuChengTHU/dpm-solver dpm_solver_pytorch.py, 0fdeb80 (its docstring says 15)
#   diffusers     0.42: DPMSolverMultistepScheduler N < 15; UniPCMultistepScheduler any N
#   k-diffusion   never (sample_dpmpp_2m, 686dbad; its step to sigma = 0 is first order: `final_step: zero`)
#   diff-sampler  any N, but a warm-up step keeps order n + 1 (zju-pi/diff-sampler dpm_pp_sampler, unipc_sampler, 68d5ce4)
#   uni-pc        any N           wl-zhao/UniPC uni_pc.py, 25acd34
# A rule is (below, warmup_first): lower when N < below; with warmup_first, a step n with n + 1 < p
# keeps order n + 1 even near the end.
NEVER, ALWAYS = (0, False), (math.inf, False)


def lowering_rule(solver: Solver, references: dict) -> tuple:
    """The (below, warmup_first) rule of `solver.params.lower_order_final`; `references` maps the
    reference names the solver accepts to their rules."""
    value, below = solver.params.lower_order_final, solver.params.lower_order_final_below
    if value is True:
        return ALWAYS if below is None else (below, False)
    if value is False:
        return NEVER
    if value not in references:
        choices = ", ".join(["true", "false", *references])
        raise UserError(f"solver {solver.name!r}: lower_order_final must be one of {choices}, got {value!r}")
    return references[value]


def _lowering_value(value):
    if isinstance(value, (bool, str)):
        return value
    raise ValueError(f"must be true, false or a reference's name, got {value!r}")


class LoweringParams(Params):
    """The final-order convention of a multistep solver (see `lowering_rule`)."""

    lower_order_final: Annotated[bool | str, AfterValidator(_lowering_value)] = Field(
        True, json_schema_extra={"accepts": "true, false or a reference's name"}, description="lower the order of the last steps: true (below `lower_order_final_below` steps, "
                          "or always when null), false, or a reference's rule by name")
    lower_order_final_below: int | None = Field(None, ge=1, description="the step count below which to lower")


def global_order(step_order: int, rule: tuple) -> int:
    """The declared global order of a multistep solver whose interior steps have `step_order`: a rule
    that lowers the final order at every N keeps a first-order last step (local error O(h^2)) as
    N grows, which bounds the global order by 2 (on data whose x0 still moves at t_min, as toy2d's)."""
    return min(step_order, 2) if rule[0] == math.inf else step_order


def lowered_order(order: int, n: int, steps: int, rule: tuple) -> int:
    """The order of step n of `steps` for a multistep solver of maximal `order` under `rule`."""
    below, warmup_first = rule
    warm = min(order, n + 1)
    if steps >= below or (warmup_first and n + 1 < order):
        return warm
    return min(warm, steps - n)


__all__ = [
    "Solver", "State", "Denoise", "FinalStep", "FINAL_STEPS", "StepPlan", "Evaluation", "make_solver", "predict", "ve_view", "ve_step", "push",
    "AnalyticFirstStep", "LoweringParams", "coefficient_dtype", "log_snr", "lowering_rule",
    "lowered_order", "global_order",
]
