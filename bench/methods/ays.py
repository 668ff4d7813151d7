"""`ays`: Align Your Steps (Sabour, Fidler, Kreis, "Align Your Steps: Optimizing Sampling Schedules in
Diffusion Models", ICML 2024, arXiv:2404.14507), the schedule optimisation the paper describes; no
code of it was published, so this follows the paper's text (sec. 3). NVIDIA's published lists for
SD1.5 / SDXL / SVD are the `manual` lists of schedules/ays.json, not this fit. References below are
to sections and to the paper's KLUB theorem; equation numbers are not cited because the full text
was not at hand when this module was written (check them against the paper before relying on them).

What is minimised (paper, sec. 3, its KLUB theorem). In EDM's variance-exploding coordinates
(y = x / alpha, noise level sigma = sigma/alpha = exp(-lambda), the same for every model here), the
generative SDE is dy = -2 sigma grad log p(y; sigma) dsigma + sqrt(2 sigma) dw with grad log p =
(D(y; sigma) - y) / sigma^2 and D the denoiser (the model's data prediction). A stochastic first-order
solver on the schedule sigma_0 > ... > sigma_N solves instead the *linearised* SDE in which, on step n
(from sigma_n down to sigma_{n+1}), the denoiser is frozen at its value D(y_{sigma_n}; sigma_n) at the
start of the step. Girsanov's theorem bounds the KL divergence between the path measures of the two
processes (the KLUB); with these drifts and diffusion the integrand is (1/2) |Delta f|^2 / g^2 =
|D(y_sigma; sigma) - D(y_{sigma_n}; sigma_n)|^2 / sigma^3, so

    KLUB(sigma_0..sigma_N) = sum_n  int_{sigma_{n+1}}^{sigma_n}  E |D(y_s; s) - D(y_{sigma_n}; sigma_n)|^2 / s^3  ds,

the expectation over paths of the exact process, whose pairs (y_s, y_{sigma_n}) for s < sigma_n are
those of the forward (noising) process: y_s = x0 + s eps, y_{sigma_n} = y_s + sqrt(sigma_n^2 - s^2) eps'.

Monte-Carlo estimate (paper, sec. 3): over training samples x0, noises eps, eps' and the time s. The
training samples are the cell's teacher endpoints (`ctx.teacher("train", data)`: the model's own
distribution, the one its denoiser describes; the paper uses the model's training data, which the
exact toy and digits models are built from); their class labels condition the denoiser. s is drawn
log-uniformly in each interval (importance weight s log(sigma_n / sigma_{n+1}) / s^3; this proposal is
this module's choice: it cancels one power of the 1/s^3 weight and keeps every interval's draws in
log sigma, where the schedule lives). The
draws are fixed for the whole fit (common random numbers: draw k of interval n keeps its x0, eps,
eps' and its fraction u of the interval in log sigma), so the estimate is a smooth deterministic
function of the knots and a coordinate search on it converges.

Optimisation (paper, sec. 3: optimise each t_i with its neighbours fixed, iterate; refine a short
schedule after subdividing it). For a cell of N steps:
  1. initial schedule: `init` (default `edm`, EDM's rho = 7 polynomial, the schedule the paper's EDM
     models ship with; any closed-form method can be named);
  2. the short schedule: `short_steps` = ceil(N / 2) steps (log-linear resampling of the initial one),
     optimised by coordinate sweeps: each interior knot in turn minimises the two KLUB terms it
     enters (bounded scalar search in log sigma between its neighbours, scipy's `minimize_scalar`,
     to `xatol`);
  3. subdivision to N steps by AYS's log-linear interpolation (`bench.baselines.manual.loglinear_interp`,
     the paper's rule for moving a schedule to another step count), then the same sweeps on all N - 1
     interior knots (the refinement);
  4. stopping rule: sweeps stop when one lowers the KLUB estimate by less than `tol` (relative) or after
     `max_sweeps` (the threshold and the cap are this module's choices).
The fitted schedule never has a larger KLUB estimate than the subdivided one it refines (each scalar
step keeps the old knot when it finds nothing better).

Per model, not per solver (the paper optimises per model and dataset, and reuses the schedule across
ODE solvers): the KLUB involves the model and its data only, so every solver of a grid gets the same
schedule (the cells still fit once per solver, as every fitted method is keyed by its cell).

Defaults and their sources: `init` edm (above); `data` = 1024 teacher samples (or the grid's
`samples.train` when it has fewer) and `samples` = 256 draws
per interval, `tol` = 1e-3, `max_sweeps` = 20, `xatol` = 1e-3 (in log sigma): the paper gives no
numbers for these (it reports hours of GPU time for its image models); they are this module's
choices, sized so a digits fit takes tens of seconds on a CPU core. fit_nfe counts every denoiser
evaluation (one row per evaluated sample).

The row's fit info carries the KLUB estimate of the fitted schedule and of each of the papers' four
closed forms (`uniform`, `logsnr`, `polynomial`, `edm`) at the cell's N, on the same draws.
"""
from __future__ import annotations

import math
from typing import Callable

import numpy as np
import torch
from pydantic import Field
from scipy.optimize import minimize_scalar

from bench.baselines.manual import loglinear_interp
from bench.discretization import FitContext, FittedGlobalMethod
from bench.params import Params
from bench.registry import METHODS
from bench.schedules import append_dims
from bench.seeding import MAX_SPLIT_SIZE

from ._params import HeuristicSpec
from .search.timestep_grid import timestep_grid

COMPARED = ("uniform", "logsnr", "polynomial", "edm")
DEFAULT_DATA = 1024


def coordinate_descent(log_sigmas: np.ndarray, interval: Callable[[int, float, float], float], tol: float,
                       max_sweeps: int, xatol: float) -> tuple[np.ndarray, float, int]:
    """Minimise sum_n interval(n, log_sigma_n, log_sigma_{n+1}) over the interior knots of a decreasing
    list of log sigmas (ends fixed) by sweeps of bounded scalar searches; stop when a sweep's relative
    decrease is below `tol` or after `max_sweeps`. Returns (knots, objective, sweeps)."""
    ls = np.array(log_sigmas, dtype=np.float64)
    n = len(ls) - 1

    def total(v):
        return sum(interval(k, v[k], v[k + 1]) for k in range(n))

    best = total(ls)
    sweeps = 0
    for sweeps in range(1, max_sweeps + 1):
        before = best
        for i in range(1, n):
            hi, lo = ls[i - 1], ls[i + 1]
            local = lambda x, i=i: interval(i - 1, ls[i - 1], x) + interval(i, x, ls[i + 1])  # noqa: E731
            old = local(ls[i])
            margin = 1e-6 * (hi - lo)
            res = minimize_scalar(local, bounds=(lo + margin, hi - margin), method="bounded",
                                  options={"xatol": xatol})
            if res.fun < old:
                ls[i] = res.x
        best = total(ls)
        if not before - best > tol * abs(before):
            break
    return ls, best, sweeps


class KLUBEstimate:
    """The Monte-Carlo KLUB of the module docstring with fixed draws per interval (common random numbers).

    `denoise(y, sigma, cond)` is the data prediction at VE noise level sigma ([B]) for the VE state y;
    `x0` [D, ...] (with `cond` [D] or None) the training samples; draws come from `generator`."""

    def __init__(self, denoise, x0: torch.Tensor, cond, intervals: int, samples: int, generator: torch.Generator):
        self.denoise, self.x0, self.cond = denoise, x0, cond
        shape = (intervals, samples) + tuple(x0.shape[1:])
        self.index = torch.randint(0, x0.shape[0], (intervals, samples), generator=generator)
        self.eps = torch.randn(shape, generator=generator, dtype=torch.float64).to(x0)
        self.eps2 = torch.randn(shape, generator=generator, dtype=torch.float64).to(x0)
        self.u = torch.rand((intervals, samples), generator=generator, dtype=torch.float64)

    def interval(self, k: int, log_hi: float, log_lo: float) -> float:
        """The estimate of interval k's term, from sigma = exp(log_hi) down to exp(log_lo)."""
        x0 = self.x0[self.index[k]]
        cond = None if self.cond is None else self.cond[self.index[k]]
        log_s = log_lo + self.u[k] * (log_hi - log_lo)
        s = torch.exp(log_s).to(x0)
        s_hi = torch.full_like(s, math.exp(log_hi))
        y_s = x0 + append_dims(s, x0.ndim) * self.eps[k]
        y_hi = y_s + append_dims(torch.sqrt(torch.clamp(s_hi ** 2 - s ** 2, min=0)), x0.ndim) * self.eps2[k]
        d = self.denoise(y_s, s, cond) - self.denoise(y_hi, s_hi, cond)
        sq = d.flatten(1).double().pow(2).sum(1)
        weight = (log_hi - log_lo) / torch.exp(2 * log_s)  # s (log ratio) / s^3
        return float((weight * sq).mean())

    def total(self, log_sigmas) -> float:
        return sum(self.interval(k, log_sigmas[k], log_sigmas[k + 1]) for k in range(len(log_sigmas) - 1))


@METHODS.register("ays")
class AlignYourSteps(FittedGlobalMethod):

    class Params(Params):
        init: HeuristicSpec = Field("edm", description="the initial schedule (EDM's rho = 7)")
        data: int | None = Field(None, ge=1, le=MAX_SPLIT_SIZE,
                                 description="training samples x0 (teacher endpoints); None: min(1024, samples.train)")
        samples: int = Field(256, ge=1, le=1_000_000, description="Monte-Carlo draws per interval")
        tol: float = Field(1e-3, gt=0, lt=1, description="stop when a sweep lowers the KLUB by less (relative)")
        max_sweeps: int = Field(20, ge=1, le=1000, description="most coordinate sweeps per stage")
        xatol: float = Field(1e-3, gt=0, lt=1, description="scalar search tolerance in log sigma")
        short_steps: int | None = Field(None, ge=1, description="steps of the short schedule (ceil(N / 2))")

    def __init__(self, **params):
        super().__init__(**params)
        self.t = None
        self.info: dict = {}

    def denoiser(self, ctx: FitContext):
        """D(y, sigma, cond) on VE states through the model's own time and state scale; counts rows."""
        s = self.noise_schedule

        def denoise(y, sigma, cond):
            t = s.t_of_sigma_ve(sigma.double()).to(y)
            x = y * append_dims(s.alpha(t), y.ndim)
            with torch.no_grad():
                out = ctx.model(x, t, cond)
            ctx.count_nfe(y.shape[0])
            return out

        return denoise

    def fit(self, ctx: FitContext) -> None:
        p = self.params
        s = self.noise_schedule
        n = self.steps
        data = ctx.teacher("train", p.data or min(DEFAULT_DATA, ctx.train_size))
        estimate = KLUBEstimate(self.denoiser(ctx), data.x0, data.cond, n, p.samples, ctx.generator)

        def log_sigmas_of(t):
            return torch.log(s.sigma_ve(t.to(torch.float64))).numpy()

        init = log_sigmas_of(timestep_grid(s, p.init, n))
        short = min(n, p.short_steps or math.ceil(n / 2))
        stages = []
        ls = init
        if short < n and short >= 2:
            ls_short = np.log(loglinear_interp(np.exp(init), short + 1))
            ls_short, klub_short, sweeps = coordinate_descent(ls_short, estimate.interval, p.tol, p.max_sweeps,
                                                              p.xatol)
            stages.append({"steps": short, "klub": klub_short, "sweeps": sweeps})
            ls = np.log(loglinear_interp(np.exp(ls_short), n + 1))
            ls[0], ls[-1] = init[0], init[-1]
        klub_subdivided = estimate.total(ls)
        ls, klub, sweeps = coordinate_descent(ls, estimate.interval, p.tol, p.max_sweeps, p.xatol)
        stages.append({"steps": n, "klub_start": klub_subdivided, "klub": klub, "sweeps": sweeps})
        t = s.t_of_sigma_ve(torch.from_numpy(np.exp(ls))).to(torch.float64)
        t[0], t[-1] = s.t_max, s.t_min
        if not bool((t[1:] < t[:-1]).all()):
            raise RuntimeError(f"ays: fitted times are not strictly decreasing: {t.tolist()}")
        compared = {name: estimate.total(log_sigmas_of(timestep_grid(s, name, n))) for name in COMPARED}
        compared["init"] = estimate.total(init)
        self.t = t
        self.info = {"klub": klub, "klub_closed_forms": compared, "stages": stages}

    def fit_info(self) -> dict:
        return dict(self.info)

    def state_dict(self) -> dict:
        return {"t": self.t, "info": self.info}

    def load_state_dict(self, state: dict) -> None:
        self.t = state["t"]
        self.info = state.get("info", {})
