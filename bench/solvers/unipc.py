"""UniPC (Zhao et al. 2023, "UniPC: A unified predictor-corrector framework for fast sampling of
diffusion models"): multistep predictor-corrector in data prediction, B(h) variants bh1 and bh2
as in the reference's `multistep_uni_pc_bh_update`, 1 NFE per step.

In the schedule's VE view (y = x/alpha, dy/dlambda = x0 - y) with h = lambda_{n+1} - lambda_n and
m_0 = x0_n, step n of predictor order p uses the p - 1 previous data predictions m_k at
lambda_{n-k} through the divided differences D_k = (m_k - m_0) / r_k, r_k = (lambda_{n-k} -
lambda_n) / h:
    UniP:  y' = e^{-h} y_n + (1 - e^{-h}) m_0 - B(h) sum_{k<p} a_k D_k
    UniC:  y_{n+1} = e^{-h} y_n + (1 - e^{-h}) m_0 - B(h) (sum_{k<p} c_k D_k + c_p D_new),
where D_new = x0(x', t_{n+1}) - m_0 (r = 1) and B(h) = -h (bh1) or expm1(-h) (bh2), the
reference's B(hh) at hh = -h. Matching the Taylor expansion of x0 in lambda against the moments
I_i = int_0^h e^{-(h-u)} u^i / i! du of the exponential integrator, the weights w (a for UniP, c
for UniC) solve the Vandermonde system sum_k w_k r_k^(i-1) = b_i = -i! I_i / (h^i B(h)),
i = 1..(number of weights), with I_0 = 1 - e^{-h} and I_i = h^i / i! - I_{i-1}. As in the
reference, the order-2 predictor uses a_1 = 1/2 and the order-1 corrector c_1 = 1/2. The corrector
raises the order by one: the interior steps of `order` p have global order p + 1. The default
`lower_order_final` lowers the last step to first order at every N, and that step's local error
O(h^2) bounds the global order by 2 as N grows (declared `order`: 2 then, see `base.global_order`);
on data whose x0 is flat near t_min (a Gaussian) the error at moderate N still falls as N^-(p+1),
and with `lower_order_final: false` it does on every data (declared p + 1).

The model value at the predicted point x' = alpha_{n+1} y' is evaluated once and used twice: by
step n's corrector and as m_0 of step n + 1 (`denoise.at_node(x', n + 1)`, being the evaluation at
the start of step n + 1); the state's history holds it. The last step makes no
corrector evaluation (it would feed nothing): NFE N (N - 1 with AFS). Coefficients in float64.

| reference | wl-zhao/UniPC `uni_pc.py` `multistep_uni_pc_bh_update`, `sample` (25acd34); diffusers 0.42 `UniPCMultistepScheduler`; diff-sampler `unipc_sampler` (68d5ce4) |
| default   | `order` 3 (the reference's unconditional pixel-space example, with bh1; its guided example and diffusers use 2 with bh2); `lower_order_final: true` at any N (uni_pc.py and diffusers); `afs: false` |
| variants  | `unipc-bh1` / `unipc-bh2`; `order` 1..3; `lower_order_final`: `uni-pc` / `diffusers` (any N), `diff-sampler` (any N, warm-up first; its extra corrector on a last warm-up step is not reproduced), false; `final_step` (`zero`: the last corrector evaluation's x0, as diffusers) |
"""
from __future__ import annotations

from typing import ClassVar, Literal

import torch
from pydantic import Field

from ..registry import SOLVERS
from ..schedules import append_dims
from .base import (ALWAYS, LoweringParams, Solver, State, factorial, global_order, log_snr, lowered_order, lowering_rule,
                   push, ve_view)

REFERENCE_RULES = {"uni-pc": ALWAYS, "diffusers": ALWAYS, "diff-sampler": (ALWAYS[0], True)}


def unipc_rhs(h: torch.Tensor, b_h: torch.Tensor, count: int) -> torch.Tensor:
    """b_i = -i! I_i / (h^i B(h)) for i = 1..count, shape [B, count]."""
    moment = -torch.expm1(-h)  # I_0
    out = []
    for i in range(1, count + 1):
        moment = h**i / factorial(i) - moment  # I_i
        out.append(-factorial(i) * moment / (h**i * b_h))
    return torch.stack(out, dim=-1)


def solve_weights(ratios: list, rhs: torch.Tensor) -> torch.Tensor:
    """Weights w [B, K] with sum_k w_k r_k^(i-1) = rhs_i, i = 1..K (K = len(ratios))."""
    r = torch.stack(ratios, dim=-1)  # [B, K]
    rows = [torch.ones_like(r)]
    for _ in range(1, r.shape[-1]):
        rows.append(rows[-1] * r)
    return torch.linalg.solve(torch.stack(rows, dim=-2), rhs)


def half(h: torch.Tensor) -> torch.Tensor:
    return torch.full_like(h, 0.5)[:, None]


class UniPC(Solver):
    variant: ClassVar[str] = "bh1"

    class Params(Solver.Params, LoweringParams):
        order: Literal[1, 2, 3] = Field(3, description="order of the multistep predictor (the corrector adds one)")

    def __init__(self, **params):
        super().__init__(**params)
        self.rule = lowering_rule(self, REFERENCE_RULES)

    @property
    def order(self) -> int:  # type: ignore[override]
        return global_order(self.params.order + 1, self.rule)

    def step(self, state, n, disc, denoise):
        schedule, x, m = denoise.schedule, state.x, state.history
        if not m:  # step 0: the evaluation at x_T (later ones are made by the previous corrector)
            m = (denoise.at_node(x, n)[0],)
        p = lowered_order(self.params.order, n, disc.steps, self.rule)
        lam = log_snr(schedule, disc, x)
        scalar = lambda v: append_dims(v.to(x.dtype), x.ndim)  # noqa: E731  [B] coefficient -> state shape
        h = lam[:, n + 1] - lam[:, n]
        b_h = -h if self.variant == "bh1" else torch.expm1(-h)
        ratios = [(lam[:, n - k] - lam[:, n]) / h for k in range(1, p)]
        diffs = [scalar(1 / r) * (m[k] - m[0]) for k, r in enumerate(ratios, start=1)]
        rhs = unipc_rhs(h, b_h, p)  # [B, p]
        alpha, _ = ve_view(schedule, disc.t[:, n], x.ndim)
        alpha_next, _ = ve_view(schedule, disc.t[:, n + 1], x.ndim)
        y_base = scalar(torch.exp(-h)) * (x / alpha) - scalar(torch.expm1(-h)) * m[0]
        y_pred = y_base
        if p > 1:
            a = half(h) if p == 2 else solve_weights(ratios, rhs[:, : p - 1])
            y_pred = y_base - scalar(b_h) * sum(scalar(a[:, k]) * d for k, d in enumerate(diffs))
        if n == disc.steps - 1:  # no corrector after the last step: its evaluation would feed nothing
            return State(alpha_next * y_pred, m)
        x0, _ = denoise.at_node(alpha_next * y_pred, n + 1)
        c = half(h) if p == 1 else solve_weights(ratios + [torch.ones_like(h)], rhs)
        correction = sum(scalar(c[:, k]) * d for k, d in enumerate(diffs)) + scalar(c[:, -1]) * (x0 - m[0])
        return State(alpha_next * (y_base - scalar(b_h) * correction), push(m, x0, self.params.order))

    def step_to_zero(self, state, n, disc, denoise):
        """`final_step: zero`: the x0 of the last corrector evaluation (at the predicted point)."""
        return state.history[0] if state.history else super().step_to_zero(state, n, disc, denoise)


@SOLVERS.register("unipc-bh1")
class UniPCBh1(UniPC):
    variant = "bh1"


@SOLVERS.register("unipc-bh2")
class UniPCBh2(UniPC):
    variant = "bh2"
