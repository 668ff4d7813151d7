"""`polynomial`: t_i = t_min + (t_max - t_min) * ((N - i) / N)^rho in the model's own time t.

rho = 2 (the default) is the "time-quadratic" schedule of DDIM (Song et al. 2021, quadratic
skipping) and DPM-Solver ("time_quadratic"); rho = 1 is `uniform`. Steps crowd near t_min for rho > 1.
"""
import torch
from pydantic import Field

from bench.discretization import HeuristicMethod
from bench.params import Params
from bench.registry import METHODS


@METHODS.register("polynomial")
class Polynomial(HeuristicMethod):
    paper_baseline = True

    class Params(Params):
        rho: float = Field(2.0, gt=0, allow_inf_nan=False, description="the exponent (2: time-quadratic, 1: uniform)")

    def timesteps(self):
        s = self.noise_schedule
        n = self.steps
        frac = torch.arange(n, -1, -1, dtype=torch.float64) / n
        return s.t_min + (s.t_max - s.t_min) * frac ** float(self.params.rho)
