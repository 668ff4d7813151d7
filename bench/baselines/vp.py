"""`vp`: k-diffusion's continuous VP schedule (`get_sigmas_vp`, crowsonkb/k-diffusion
`k_diffusion/sampling.py`): steps uniform in the time of the linear-beta VP SDE (Song et al. 2021),

    sigma(t) = sqrt(exp(beta_d t^2 / 2 + beta_min t) - 1),   t_i = t_hi + (i/N)(t_lo - t_hi),  i = 0..N,

with k-diffusion's beta_d = 19.9, beta_min = 0.1 (the VP SDE's beta 0.1..20). k-diffusion fixes the
time range to [eps_s, 1] (eps_s = 1e-3) whatever the model; here t_hi and t_lo are the VP times whose
sigma is the model's sigma_max and sigma_min (a closed-form inverse), so the schedule covers the model's
own noise range. On a `vp-linear` model with the defaults (t in [1e-3, 1]) that range is exactly
k-diffusion's, and the values are `get_sigmas_vp(N + 1)` without its trailing 0 (and `uniform`).
sigma is the VE-equivalent noise level sigma/alpha, mapped to the model's time at equal log-SNR.
"""
import math

import torch
from pydantic import Field

from bench.discretization import HeuristicMethod
from bench.params import Params
from bench.registry import METHODS

from .polyexponential import sigma_range, times_of_sigmas


@METHODS.register("vp")
class VPTime(HeuristicMethod):
    class Params(Params):
        beta_d: float = Field(19.9, gt=0, allow_inf_nan=False, description="beta_max - beta_min (k-diffusion: 19.9)")
        beta_min: float = Field(0.1, ge=0, allow_inf_nan=False, description="beta_min (k-diffusion: 0.1)")

    def _t_of_sigma(self, sigma: float) -> float:
        # beta_d t^2 / 2 + beta_min t = log(1 + sigma^2): the positive root, without cancellation
        bd, b0 = float(self.params.beta_d), float(self.params.beta_min)
        c = math.log1p(sigma * sigma)
        return 2 * c / (b0 + math.sqrt(b0 * b0 + 2 * bd * c))

    def timesteps(self):
        s = self.noise_schedule
        lo, hi = sigma_range(s)
        bd, b0 = float(self.params.beta_d), float(self.params.beta_min)
        t = torch.linspace(self._t_of_sigma(hi), self._t_of_sigma(lo), self.steps + 1, dtype=torch.float64)
        sigmas = torch.sqrt(torch.expm1(bd * t ** 2 / 2 + b0 * t))
        return times_of_sigmas(s, sigmas)
