"""`beta_sigmas`: diffusers' `use_beta_sigmas` (the Beta schedule of Lee, Lin, Ma, Tsai 2024,
arXiv:2407.12173, as diffusers' `_convert_to_beta` writes it, e.g. in
`DPMSolverMultistepScheduler` / `EulerDiscreteScheduler`): quantiles of Beta(alpha, beta) spread
linearly over the VE noise level sigma, not over the model's time as `beta` (ComfyUI's) does:

    sigma_i = sigma_min + F^{-1}(1 - i/N; alpha, beta) (sigma_max - sigma_min),   i = 0..N,

alpha = beta = 0.6 (diffusers' defaults). diffusers' `set_timesteps(n)` takes n = N + 1 of these
values (from the model's sigma_max to sigma_min) and appends its final sigma (0, or sigma_min with
final_sigmas_type="sigma_min"); the harness's N steps are those N + 1 values. For a non-VE model sigma
is sigma/alpha, mapped to the model's time at equal log-SNR.
"""
import torch
from pydantic import Field
from scipy.special import betaincinv

from bench.discretization import HeuristicMethod
from bench.params import Params
from bench.registry import METHODS

from .polyexponential import sigma_range, times_of_sigmas


@METHODS.register("beta_sigmas")
class BetaSigmas(HeuristicMethod):
    class Params(Params):
        alpha: float = Field(0.6, gt=0, allow_inf_nan=False, description="Beta(alpha, beta)'s alpha (diffusers: 0.6)")
        beta: float = Field(0.6, gt=0, allow_inf_nan=False, description="Beta(alpha, beta)'s beta (diffusers: 0.6)")

    def timesteps(self):
        s = self.noise_schedule
        lo, hi = sigma_range(s)
        q = 1 - torch.linspace(0, 1, self.steps + 1, dtype=torch.float64)
        frac = torch.from_numpy(betaincinv(float(self.params.alpha), float(self.params.beta), q.numpy()))
        return times_of_sigmas(s, lo + frac * (hi - lo))


METHODS.alias("use_beta_sigmas", "beta_sigmas", "diffusers' scheduler option")
