"""`polyexponential`: k-diffusion's polynomial-in-log-sigma schedule (`get_sigmas_polyexponential`,
crowsonkb/k-diffusion `k_diffusion/sampling.py`, also in ComfyUI's copy):

    log sigma_i = log sigma_min + r_i^rho (log sigma_max - log sigma_min),  r_i = 1 - i/N,  i = 0..N,

with sigma the VE noise level (for a non-VE model the equivalent sigma/alpha = exp(-lambda), mapped back
to the model's time at equal log-SNR, as `edm` does). k-diffusion's `get_sigmas_polyexponential(n, ...)`
returns these n = N + 1 values and a trailing 0; the harness's N steps are its values without the 0.
rho = 1 (k-diffusion's default) is `exponential` (= `logsnr`); rho > 1 crowds the steps at low noise.
"""
import torch
from pydantic import Field

from bench.discretization import HeuristicMethod
from bench.params import Params
from bench.registry import METHODS


def sigma_range(s) -> tuple[float, float]:
    """(sigma_min, sigma_max): the model's VE-equivalent noise levels at t_min and t_max."""
    lo = float(s.sigma_ve(torch.tensor(s.t_min, dtype=torch.float64)))
    hi = float(s.sigma_ve(torch.tensor(s.t_max, dtype=torch.float64)))
    return lo, hi


def times_of_sigmas(s, sigmas: torch.Tensor) -> torch.Tensor:
    """Map VE sigmas [N+1] (first = sigma_max, last = sigma_min) to the model's time, ends exact."""
    t = s.t_of_sigma_ve(sigmas)
    t[0], t[-1] = s.t_max, s.t_min
    return t


@METHODS.register("polyexponential")
class PolyExponential(HeuristicMethod):
    class Params(Params):
        rho: float = Field(1.0, gt=0, allow_inf_nan=False, description="the exponent of the ramp (k-diffusion: 1)")

    def timesteps(self):
        s = self.noise_schedule
        lo, hi = sigma_range(s)
        ramp = torch.linspace(1, 0, self.steps + 1, dtype=torch.float64) ** float(self.params.rho)
        lo_t, hi_t = torch.tensor(lo, dtype=torch.float64), torch.tensor(hi, dtype=torch.float64)
        sigmas = torch.exp(ramp * (torch.log(hi_t) - torch.log(lo_t)) + torch.log(lo_t))
        return times_of_sigmas(s, sigmas)
