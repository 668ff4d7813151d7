"""`polynomial`: t_i = t_min + (t_max - t_min) * ((N - i) / N)^rho in the model's own time t.

rho = 2 (the default) is the "time-quadratic" schedule of DDIM (Song et al. 2021, quadratic
skipping) and DPM-Solver ("time_quadratic"); rho = 1 is `uniform`. Steps crowd near t_min for rho > 1.
"""
import torch

from bench.discretization import HeuristicMethod
from bench.errors import UserError
from bench.registry import METHODS


@METHODS.register("polynomial")
class Polynomial(HeuristicMethod):
    paper_baseline = True
    defaults = {"rho": 2.0}

    def __init__(self, **params):
        super().__init__(**params)
        if not float(self.params["rho"]) > 0:
            raise UserError(f"method 'polynomial' needs rho > 0, got rho={self.params['rho']}")

    def timesteps(self):
        s = self.noise_schedule
        n = self.steps
        frac = torch.arange(n, -1, -1, dtype=torch.float64) / n
        return s.t_min + (s.t_max - s.t_min) * frac ** float(self.params["rho"])
