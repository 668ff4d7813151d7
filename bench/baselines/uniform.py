"""`uniform`: timesteps equally spaced in the model's own time t, from t_max down to t_min.

For flow-matching models this is the usual uniform-in-t schedule (Lipman et al. 2023); for VE (EDM)
models it is uniform in sigma, and for VP models uniform in the diffusion time of DDPM/DDIM.
"""
import torch

from bench.discretization import HeuristicMethod
from bench.registry import METHODS


@METHODS.register("uniform")
class Uniform(HeuristicMethod):
    paper_baseline = True
    def timesteps(self):
        s = self.noise_schedule
        return torch.linspace(s.t_max, s.t_min, self.steps + 1, dtype=torch.float64)
