"""DPM-Solver++ multistep (Lu et al. 2022, "DPM-Solver++: Fast solver for guided sampling of
diffusion probabilistic models", Algorithm 2 and the third-order multistep update of the reference
code, solver_type "dpmsolver"), 2M and 3M, in data prediction, 1 NFE per step.

The data prediction x0_n = x0(x_n, t_n) joins a history of the last `max_order` ones; with
h = lambda_{n+1} - lambda_n and the log-SNR step ratios r0 = (lambda_n - lambda_{n-1}) / h,
r1 = (lambda_{n-1} - lambda_{n-2}) / h, the step reads, in the schedule's VE view (y = x/alpha; the
reference's x_t = (sigma_t/sigma_s) x_s - alpha_t (...) divided by alpha_t),
    order 1 (DDIM):  y_{n+1} = e^{-h} y_n + (1 - e^{-h}) x0_n
    order 2 (2M):    y_{n+1} = e^{-h} y_n + (1 - e^{-h}) (x0_n + D1_0 / 2),  D1_0 = (x0_n - x0_{n-1}) / r0
    order 3 (3M):    y_{n+1} = e^{-h} y_n - phi1 x0_n + phi2 D1 - phi3 D2,
        D1_1 = (x0_{n-1} - x0_{n-2}) / r1,   D1 = D1_0 + r0 / (r0 + r1) (D1_0 - D1_1),
        D2 = (D1_0 - D1_1) / (r0 + r1),   phi1 = expm1(-h), phi2 = phi1 / h + 1, phi3 = phi2 / h - 1/2.
Step n uses order min(max_order, n + 1) (warm-up), lowered at the end by `lower_order_final`.
D2 as in the reference (and diffusers and k-diffusion) approximates h^2 x0''/2 where the phi3 term
needs h^2 x0'' (the second divided difference lacks its 2! factor), so the reference 3M is locally
O(h^3) and globally second order (declared `order` 2); `exact_d2: true` doubles D2 (order 3).
A `lower_order_final` rule that lowers at every N keeps a first-order last step and declares
order at most 2 (see `base.global_order`).
Coefficients (h, ratios, phi) are computed in float64. NFE: N (N - 1 with AFS).

| reference | LuChengTHU/dpm-solver `dpm_solver_pytorch.py` `multistep_dpm_solver_{second,third}_update`, `sample` (0fdeb80); diffusers 0.42 `DPMSolverMultistepScheduler`; k-diffusion `sample_dpmpp_2m` (686dbad) |
| default   | `lower_order_final: true` with `lower_order_final_below: 10` (the reference code's rule), `exact_d2: false` (3M), `afs: false` |
| variants  | `lower_order_final`: `dpm-solver` (N < 10), `diffusers` (N < 15), `k-diffusion` (never), `diff-sampler` (any N, warm-up first), true / false; `exact_d2: true` (3M, order 3); `final_step` |
"""
from __future__ import annotations

from typing import ClassVar

import torch
from pydantic import Field

from ..registry import SOLVERS
from ..schedules import append_dims
from .base import ALWAYS, NEVER, LoweringParams, Solver, State, global_order, log_snr, lowered_order, lowering_rule, push, ve_view

REFERENCE_RULES = {"dpm-solver": (10, False), "diffusers": (15, False), "k-diffusion": NEVER,
                   "diff-sampler": (ALWAYS[0], True)}


class DPMSolverPPMultistep(Solver):
    max_order: ClassVar[int] = 2
    step_order: ClassVar[int] = 2  # global order without final lowering

    class Params(Solver.Params, LoweringParams):
        lower_order_final_below: int | None = Field(10, ge=1, description="the step count below which to lower "
                                                                          "(dpm-solver's reference code: 10)")

    def __init__(self, **params):
        super().__init__(**params)
        self.rule = lowering_rule(self, REFERENCE_RULES)

    @property
    def order(self) -> int:  # type: ignore[override]
        return global_order(self.step_order, self.rule)

    def d2_factor(self) -> float:
        return 1.0

    def step(self, state, n, disc, denoise):
        t, t_next = denoise.interval(n)
        x0, _ = denoise.at_node(state.x, n)
        m = push(state.history, x0, self.max_order)
        p = lowered_order(self.max_order, n, disc.steps, self.rule)
        lam = log_snr(denoise.schedule, disc, state.x)
        scalar = lambda v: append_dims(v.to(x0.dtype), x0.ndim)  # noqa: E731  [B] coefficient -> state shape
        h = lam[:, n + 1] - lam[:, n]
        alpha, _ = ve_view(denoise.schedule, t, x0.ndim)
        alpha_next, _ = ve_view(denoise.schedule, t_next, x0.ndim)
        y_next = scalar(torch.exp(-h)) * (state.x / alpha) - scalar(torch.expm1(-h)) * x0
        if p >= 2:
            r0 = (lam[:, n] - lam[:, n - 1]) / h
            d1_0 = scalar(1 / r0) * (m[0] - m[1])
        if p == 2:
            y_next = y_next - scalar(torch.expm1(-h) / 2) * d1_0
        elif p == 3:
            r1 = (lam[:, n - 1] - lam[:, n - 2]) / h
            d1_1 = scalar(1 / r1) * (m[1] - m[2])
            d1 = d1_0 + scalar(r0 / (r0 + r1)) * (d1_0 - d1_1)
            d2 = scalar(self.d2_factor() / (r0 + r1)) * (d1_0 - d1_1)
            phi2 = torch.expm1(-h) / h + 1
            y_next = y_next + scalar(phi2) * d1 - scalar(phi2 / h - 0.5) * d2
        return State(alpha_next * y_next, m)


@SOLVERS.register("dpmpp-2m")
class DPMSolverPP2M(DPMSolverPPMultistep):
    step_order = 2
    max_order = 2


@SOLVERS.register("dpmpp-3m")
class DPMSolverPP3M(DPMSolverPPMultistep):
    max_order = 3

    class Params(DPMSolverPPMultistep.Params):
        exact_d2: bool = Field(False, description="the exact second divided difference (order 3) instead of "
                                                  "the reference's (order 2)")

    @property
    def step_order(self) -> int:  # type: ignore[override]
        return 3 if self.params.exact_d2 else 2

    def d2_factor(self) -> float:
        return 2.0 if self.params.exact_d2 else 1.0
