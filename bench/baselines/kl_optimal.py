"""`kl-optimal`: the KL-optimal schedule of Sabour, Fidler, Kreis 2024 ("Align Your Steps: Optimizing
Sampling Schedules in Diffusion Models", ICML 2024, arXiv:2404.14507, appendix), as ComfyUI's
`kl_optimal` scheduler and AUTOMATIC1111's "KL Optimal" implement it: uniform steps in arctan(sigma),

    sigma_i = tan((1 - i/N) arctan(sigma_max) + (i/N) arctan(sigma_min)),   i = 0..N,

with sigma the VE noise level (for a non-VE model, the equivalent sigma/alpha = exp(-lambda), mapped
back to the model's time at equal log-SNR, as `edm` does). ComfyUI's `kl_optimal_scheduler(n, ...)`
returns these n values with i/(n-1) and a trailing 0; the harness's N steps are its n = N + 1 values
without the 0 (the same relation as `edm` to k-diffusion's `get_sigmas_karras`). No parameters.
"""
import math

import torch

from bench.discretization import HeuristicMethod
from bench.registry import METHODS


@METHODS.register("kl-optimal")
class KLOptimal(HeuristicMethod):
    def timesteps(self):
        s = self.noise_schedule
        sigma_max = float(s.sigma_ve(torch.tensor(s.t_max, dtype=torch.float64)))
        sigma_min = float(s.sigma_ve(torch.tensor(s.t_min, dtype=torch.float64)))
        ramp = torch.linspace(0, 1, self.steps + 1, dtype=torch.float64)
        sigmas = torch.tan((1 - ramp) * math.atan(sigma_max) + ramp * math.atan(sigma_min))
        t = s.t_of_sigma_ve(sigmas)
        t[0], t[-1] = s.t_max, s.t_min
        return t


METHODS.alias("kl_optimal", "kl-optimal", "ComfyUI's scheduler name")
