"""The cumulative-softmax timestep map of the learned schedules (`ld3`, `indis`, `god`, `oracle`) and
their decoupled evaluation times; `discretization` casts and checks the result.

The cumulative-softmax map (LD3, Tong et al. 2025, Sec. 3; INDIS, Yuan et al. 2026, reuses it)
----------------------------------------------------------------------------------------------
N logits o [B, N] give N positive gaps g = softmax(o) that sum to one; their running sums are the
*progress* u_0 = 0 < u_1 < ... < u_N = 1 (u_N and u_0 are set exactly, not summed). A coordinate v
runs linearly from its value at t_max to its value at t_min, v_n = v(t_max) + (v(t_min) - v(t_max)) u_n,
and t_n = t(v_n). The coordinate (`space`) is the model's time t itself ("t") or the half log-SNR
lambda ("lambda", t = t_of_lambda(v)); "auto" takes lambda for VE models (where uniform-in-t steps
crowd at the noise end, and LD3's own EDM runs use lambda) and t otherwise (flow matching, VP:
LD3's "time" mode). The timesteps are therefore strictly decreasing for every o, with
t_0 = t_max and t_N = t_min exactly, and differentiable in o. The map is computed in float64.
Departure: LD3 writes xi in R^(N+1); its normalisation (c - c_0) / (c_N - c_0) of the running sums
c makes the first entry inert (exactly zero gradient), so we keep the N entries that matter, which is
also INDIS's o_tau in R^N. `logits_of(t)` inverts the map (log of the normalised gaps), which is how
a learned schedule starts from a heuristic.

Decoupled evaluation times
--------------------------
* LD3's xi_c (`ld3_eval_times`): the network at step n is evaluated at v_n + clamp(xi_c_n, +-m_n) in
  the map's coordinate; the first evaluation (at t_max) is never shifted ("zero at the ends"; the
  last knot t_min is never evaluated). The half-width m_n (`xi_window`, w = `window`, 0.5, the
  reference's `win_rate`; detached, as in the reference code):
  - "global" (LD3's default, the reference's `discretize_model_wrapper` in vinhsuhi/LD3 trainer.py,
    commit 9e4a66f8238a45903e54b89a1f557df1e7de8afc): one width for
    every step. In "lambda" mode it is w times the smallest gap between adjacent *raw logits*
    [xi_0, xi_1, ..., xi_N] (the reference's `(lambda1[1:] - lambda1[:-1]).abs().min()`), the inert
    first logit xi_0 included; here xi_0 is the constant 0, the mean of the zero-mean logits a fit
    starts from (in the reference it keeps its initial value, which every logit starts from). In "t"
    mode it is w times the smallest gap of the timesteps t_0 > ... > t_N themselves. Note that in
    lambda mode a gap of logits bounds a shift of lambda; a window of zero (all logits equal to xi_0,
    i.e. uniform steps in lambda) leaves every shift at zero until the logits move.
  - "step": m_n = w * min(|v_n - v_{n-1}|, |v_{n+1} - v_n|), the smaller of the step's two
    neighbouring gaps in the map's coordinate, in either mode; steps in wide regions may move further.
    With w < 1 the shifted time stays strictly between t_{n+1} and t_{n-1}, so inside (t_min, t_max].
* INDIS's delta-tau (`relative_eval_times`): *relative*. dtau_n in [-b, b] is a fraction of the
  step's own gap in the map's coordinate: u_eval_n = u_n + dtau_n (u_{n+1} - u_n), positive towards
  the data, clamped at u = 0 (t_max). Why relative, not absolute: an absolute shift of up to b = 0.05
  in flow time is 25x t_min = 0.002 and larger than the last gaps of few-step schedules, so it would
  leave (t_min, t_max] or reorder evaluations; a fraction of the local gap keeps every evaluation
  within 5% of its step's length from its knot (so evaluation times never cross, and stay inside
  (t_min, t_max]), and means the same in every schedule and coordinate.
"""
from __future__ import annotations

import torch

from bench.discretization import Discretization
from bench.schedules import VE, NoiseSchedule

SPACES = ("auto", "t", "lambda")


def resolve_space(space: str, schedule: NoiseSchedule) -> str:
    if space == "auto":
        return "lambda" if isinstance(schedule, VE) else "t"
    return space


class TimeMap:
    """Logits [B, N] -> strictly decreasing timesteps [B, N+1] from t_max to t_min (module docstring)."""

    def __init__(self, schedule: NoiseSchedule, space: str = "auto"):
        self.schedule = schedule
        self.space = resolve_space(space, schedule)
        self.t_max, self.t_min = float(schedule.t_max), float(schedule.t_min)
        if self.space == "lambda":
            self.v_start, self.v_end = float(schedule.lambda_min), float(schedule.lambda_max)
        else:
            self.v_start, self.v_end = self.t_max, self.t_min

    def coord(self, t: torch.Tensor) -> torch.Tensor:
        return self.schedule.lambda_(t) if self.space == "lambda" else t

    def progress(self, logits: torch.Tensor) -> torch.Tensor:
        """u [B, N+1]: 0, the running sums of softmax(logits), 1 (float64; ends exact)."""
        if logits.ndim == 1:
            logits = logits[None]
        gaps = torch.softmax(logits.to(torch.float64), dim=-1)
        inner = torch.cumsum(gaps, dim=-1)[:, :-1]
        return torch.cat([inner.new_zeros(inner.shape[0], 1), inner, inner.new_ones(inner.shape[0], 1)], dim=1)

    def value(self, u: torch.Tensor) -> torch.Tensor:
        """The map's coordinate v at progress u."""
        return self.v_start + (self.v_end - self.v_start) * u

    def time_at(self, u: torch.Tensor) -> torch.Tensor:
        """t at progress u in [0, 1]; exactly t_max at u = 0 and t_min at u = 1."""
        v = self.value(u)
        t = self.schedule.t_of_lambda(v) if self.space == "lambda" else v
        t = torch.where(u <= 0, torch.full_like(t, self.t_max), t)
        return torch.where(u >= 1, torch.full_like(t, self.t_min), t)

    def times(self, logits: torch.Tensor) -> torch.Tensor:
        return self.time_at(self.progress(logits))

    def logits_of(self, t: torch.Tensor) -> torch.Tensor:
        """The (zero-mean) logits [N] whose map is the strictly decreasing schedule t [N+1]."""
        t = torch.as_tensor(t, dtype=torch.float64).flatten()
        v = self.coord(t)
        u = (v - self.v_start) / (self.v_end - self.v_start)
        gaps = u[1:] - u[:-1]
        if not bool((gaps > 0).all()):
            raise ValueError(f"logits_of needs strictly decreasing timesteps, got {t.tolist()}")
        logits = torch.log(gaps)
        return logits - logits.mean()

    # --- decoupled evaluation times ---------------------------------------------------------

    def ld3_eval_times(self, u: torch.Tensor, xi_c: torch.Tensor, window: float, xi_window: str = "step",
                       logits: torch.Tensor | None = None) -> torch.Tensor:
        """LD3: t_eval [B, N] from the shifts xi_c [N] (or [B, N]) in the map's coordinate, clamped to the
        half-width of `xi_window` ("step" or "global", module docstring; "global" in lambda mode needs
        the logits [N] or [B, N] that made u)."""
        v = self.value(u)
        gaps = (v[:, 1:] - v[:, :-1]).abs().detach()  # [B, N]
        xi_c = xi_c.to(torch.float64)
        if xi_c.ndim == 1:
            xi_c = xi_c[None]
        if xi_window == "step":
            bound = window * torch.minimum(gaps[:, :-1], gaps[:, 1:])  # steps 1..N-1
            inner = torch.maximum(torch.minimum(xi_c[:, 1:], bound), -bound)
        elif xi_window == "global":
            if self.space == "lambda":
                if logits is None:
                    raise ValueError("ld3_eval_times: xi_window 'global' in lambda mode needs the logits")
                raw = logits.detach()
                raw = raw[None] if raw.ndim == 1 else raw
                raw = torch.cat([torch.zeros_like(raw[:, :1]), raw], dim=1)  # the inert xi_0 = 0 first
                width = (raw[:, 1:] - raw[:, :-1]).abs().amin(dim=1, keepdim=True).to(torch.float64)
            else:
                width = gaps.amin(dim=1, keepdim=True)
            bound = (window * width).expand(-1, xi_c.shape[1] - 1)
            inner = torch.clamp(xi_c[:, 1:], min=-bound, max=bound)
        else:
            raise ValueError(f"ld3_eval_times: xi_window must be 'step' or 'global', got {xi_window!r}")
        shift = torch.cat([torch.zeros_like(inner[:, :1]), inner], dim=1)
        v_eval = v[:, :-1] + shift
        t_eval = self.schedule.t_of_lambda(v_eval) if self.space == "lambda" else v_eval
        first = torch.zeros_like(t_eval, dtype=torch.bool)
        first[:, 0] = True
        return torch.where(first, torch.full_like(t_eval, self.t_max), t_eval)

    def relative_eval_times(self, u: torch.Tensor, dtau: torch.Tensor) -> torch.Tensor:
        """INDIS: t_eval [B, N] = t(u_n + dtau_n (u_{n+1} - u_n)), clamped at t_max (module docstring)."""
        u_eval = u[:, :-1] + dtau.to(torch.float64) * (u[:, 1:] - u[:, :-1])
        return self.time_at(u_eval.clamp(min=0.0))


def discretization(t: torch.Tensor, t_eval=None, scale=None, dtype=None) -> Discretization:
    """A checked Discretization in `dtype` (the samples' dtype)."""
    cast = (lambda v: v) if dtype is None else (lambda v: None if v is None else v.to(dtype))  # noqa: E731
    return Discretization(cast(t), cast(t_eval), cast(scale)).check()


__all__ = ["SPACES", "TimeMap", "discretization", "resolve_space"]
