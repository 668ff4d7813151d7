"""The solver interface and the one place where a network evaluation is turned into a prediction.

`Solver.sample(model, x_T, disc, cond)` integrates the probability-flow ODE along the timesteps of a
`Discretization` and returns x_0 (or the whole trajectory, a list [x_T, x_1, ..., x_N]). Solvers are
written with plain torch ops, so gradients reach `disc.t`, `disc.t_eval`, `disc.scale` and `x_T`;
every per-step time has shape [B] (B = 1 broadcasts), so each sample may follow its own schedule.
Solvers only use the schedule's `alpha`, `sigma`, `lambda_` and `t_of_lambda`, so they work for
every `NoiseSchedule` (VE, VP, FlowOT).

`predict` evaluates the network once. With a decoupled input time t_eval and an output scale gamma
(LD3, INDIS), the network sees the state x as if it were at t_eval; its noise prediction is
eps = (x - alpha(t_eval) x0_hat) / sigma(t_eval), scaled by gamma, and converted back to a data
prediction at the state's own time t: x0 = (x - sigma(t) * gamma * eps) / alpha(t). Without them it
is the plain x0_hat and eps = (x - alpha(t) x0_hat) / sigma(t). (The network is fed the raw x at
t_eval, as LD3 and INDIS do in their own schedules; unlike everything else here this is not invariant
under a change of schedule at equal log-SNR.) Every network evaluation of every
solver goes through `predict` (via `Solver.evaluate`). Which t_eval/scale an evaluation uses:
  * the evaluation at the state x_n at the start of step n uses t_eval[:, n] and scale[:, n]
    (for multistep solvers that is also the evaluation that feeds step n-1's corrector);
  * an extra evaluation inside step n (Heun's corrector at t_{n+1}, DPM-Solver-2's midpoint) is made
    at its plain time (no t_eval: the decoupled time belongs to the state x_n) with scale[:, n].

Many solvers are simplest in the schedule's *VE view*: y = x / alpha, s = sigma / alpha
(= exp(-lambda)), where the ODE reads dy/ds = eps. Euler there is DDIM in any schedule, and equals
EDM's Euler for VE and the flow-matching Euler step for FlowOT. The exponential integrators
(DPM-Solver++, UniPC) read, in the same view and in data prediction, dy/dlambda = x0 - y, so one
step of size h = lambda_{n+1} - lambda_n is y_{n+1} = e^{-h} y_n + integral of e^{-(h-u)} x0 du.

AFS, the analytical first step (Zhou et al. 2024, "Fast ODE-based sampling for diffusion models in
around 5 steps" (AMED-Solver); an option of every sampler of its code base, also used by GITS):
every solver takes `afs: bool = False`. With it, the first evaluation (at x_T, t_0) spends no
network call: the noise prediction is taken as
    eps = y / sqrt(1 + s^2) = x / sqrt(alpha^2 + sigma^2)      (VE: x / sqrt(1 + t^2)),
the large-noise limit of the eps of zero-mean, unit-variance data (where the trajectory is nearly
straight); the data-prediction solvers (DPM-Solver++, UniPC) use the matching
x0 = (x - sigma * eps) / alpha (VE: x - t eps). It is implemented as an analytic denoiser passed
through `predict`, so t_eval[:, 0] and scale[:, 0] apply to it as to a network; an analytic eps
enters multistep histories like a network one. `nfe(steps)` subtracts the saved evaluation.
"""
from __future__ import annotations

import math
from typing import ClassVar

import torch
from pydantic import Field

from ..errors import UserError
from ..params import Params
from ..plugin import Plugin
from ..registry import SOLVERS
from ..schedules import append_dims


def predict(model, x: torch.Tensor, t: torch.Tensor, t_eval=None, scale=None, cond=None):
    """One network evaluation at state time t [B]: returns (x0, eps), both consistent with time t."""
    schedule = model.schedule
    ndim = x.ndim
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


class Solver(Plugin):
    kind: ClassVar[str] = "solver"
    # Order of accuracy of the global error (for smooth step-size changes), for tests and docs.
    order: ClassVar[int] = 1
    # Network evaluations per step without AFS.
    evals_per_step: ClassVar[int] = 1
    version: ClassVar[int] = 1

    class Params(Params):
        afs: bool = Field(False, description="analytical first step (Dockhorn et al. 2023 / AMED): the first "
                                            "evaluation uses eps = x / sqrt(alpha^2 + sigma^2), saving one NFE")

    def nfe(self, steps: int) -> int:
        """Network evaluations spent for `steps` steps (AFS saves the first one)."""
        return self.evals_per_step * steps - (1 if self.params.get("afs") else 0)

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
        hint = "" if self.params.get("afs") or self.evals_per_step == 1 else "; or set afs: true to save one evaluation"
        raise UserError(
            f"solver {self.name!r} cannot spend exactly nfe={nfe} (it spends {spends}, ... evaluations "
            f"for 1, 2, 3, ... steps); choose {options}{hint}"
        )

    def evaluate(self, model, x, t, t_eval=None, scale=None, cond=None, first: bool = False):
        """One evaluation through `predict`; the solver's first one is analytic when afs is on."""
        if first and self.params.get("afs"):
            model = AnalyticFirstStep(model.schedule)
        return predict(model, x, t, t_eval, scale, cond)

    def sample(self, model, x_T: torch.Tensor, disc, cond=None, return_trajectory: bool = False):
        raise NotImplementedError


def make_solver(spec) -> Solver:
    if isinstance(spec, str):
        spec = {"name": spec}
    spec = dict(spec)
    return SOLVERS.create(spec.pop("name"), **spec)


def ve_view(schedule, t: torch.Tensor, ndim: int):
    """(alpha, s = sigma/alpha) at t, shaped to broadcast against an ndim-dimensional state."""
    alpha = append_dims(schedule.alpha(t), ndim)
    return alpha, append_dims(schedule.sigma(t), ndim) / alpha


def coefficient_dtype(x: torch.Tensor) -> torch.dtype:
    """The dtype for step coefficients (phi functions, divided differences, small linear solves).

    These lose digits to cancellation for small log-SNR steps h (the k-th phi function loses about
    k * log10(1/h) digits), so they are computed in float64 whatever the state's dtype, except on
    devices without float64 (MPS), and cast back to x's dtype where they meet the state.
    """
    return torch.float32 if x.device.type == "mps" else torch.float64


def factorial(k: int) -> float:
    return float(math.factorial(k))


__all__ = [
    "Solver", "make_solver", "predict", "ve_view", "AnalyticFirstStep", "coefficient_dtype",
]
