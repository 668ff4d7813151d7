"""`edm`: Karras et al. 2022 (EDM), rho = 7 polynomial in the VE noise level sigma:

    sigma_i = (sigma_max^(1/rho) + i/N * (sigma_min^(1/rho) - sigma_max^(1/rho)))^rho,  i = 0..N,

the values of k-diffusion's `get_sigmas_karras(N+1, sigma_min, sigma_max, rho)` without its
trailing zero. For a non-VE model, sigma is the schedule's equivalent VE noise level sigma/alpha
(= exp(-lambda)) and each sigma_i is mapped back to the model's time t at equal log-SNR.
"""
import torch
from pydantic import Field

from bench.discretization import HeuristicMethod
from bench.params import Params
from bench.registry import METHODS


@METHODS.register("edm")
class EDM(HeuristicMethod):
    paper_baseline = True

    class Params(Params):
        rho: float = Field(7.0, gt=0, allow_inf_nan=False, description="EDM's rho (Karras et al. 2022, sec. 3: rho = 7)")

    def timesteps(self):
        s = self.noise_schedule
        rho = float(self.params.rho)
        sigma_max = float(s.sigma_ve(torch.tensor(s.t_max, dtype=torch.float64)))
        sigma_min = float(s.sigma_ve(torch.tensor(s.t_min, dtype=torch.float64)))
        ramp = torch.linspace(0, 1, self.steps + 1, dtype=torch.float64)
        sigmas = (sigma_max ** (1 / rho) + ramp * (sigma_min ** (1 / rho) - sigma_max ** (1 / rho))) ** rho
        t = s.t_of_sigma_ve(sigmas)
        t[0], t[-1] = s.t_max, s.t_min
        return t


METHODS.alias("karras", "edm", "k-diffusion get_sigmas_karras, ComfyUI's karras: the same rho = 7 schedule")
METHODS.alias("use_karras_sigmas", "edm", "diffusers' scheduler option: the same sigmas on the table's range")
