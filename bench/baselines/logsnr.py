"""`logsnr`: timesteps equally spaced in lambda = log(alpha/sigma) (half log-SNR).

The schedule DPM-Solver (Lu et al. 2022) recommends for high-resolution pixel models ("logSNR" /
"time_uniform" in its terms is the other one). For VE models it is uniform in log sigma.
"""
import torch

from bench.discretization import HeuristicMethod
from bench.registry import METHODS


@METHODS.register("logsnr")
class LogSNR(HeuristicMethod):
    paper_baseline = True
    def timesteps(self):
        s = self.noise_schedule
        lam = torch.linspace(s.lambda_min, s.lambda_max, self.steps + 1, dtype=torch.float64)
        t = s.t_of_lambda(lam)
        # Pin the ends exactly: t_of_lambda(lambda(t)) carries rounding error.
        t[0], t[-1] = s.t_max, s.t_min
        return t


METHODS.alias("exponential", "logsnr", "k-diffusion get_sigmas_exponential, ComfyUI's exponential: uniform in log sigma")
METHODS.alias("use_exponential_sigmas", "logsnr", "diffusers' scheduler option: uniform in log sigma")
METHODS.alias("use_lu_lambdas", "logsnr", "diffusers' DPM-Solver option: uniform in log sigma (Lu et al.'s lambda)")
