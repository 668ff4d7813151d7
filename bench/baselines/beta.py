"""`beta`: timesteps at the quantiles of a Beta(alpha, beta) distribution (Lee, Lin, Ma, Tsai 2024,
"Beta Sampling is All You Need: Efficient Image Generation Strategy for Diffusion Models using
Stepwise Spectral Analysis", arXiv:2407.12173), as ComfyUI's `beta` scheduler implements it:

    t_i = t_min + (t_max - t_min) * F^{-1}(1 - i/N; alpha, beta),   i = 0..N,

in the model's own time t, where F^{-1} is the Beta quantile function (scipy's `betaincinv`).
alpha = beta = 0.6 (the defaults of ComfyUI's `beta_scheduler`, which cites the paper) give a U-shaped density: steps crowd at both ends (structure at high noise, detail at low noise).

Departures from ComfyUI (`comfy/samplers.py: beta_scheduler`), which works on a discrete model's
table of training sigmas: ComfyUI multiplies the quantile by the last training index, rounds it to
an integer index (dropping repeats) and appends sigma = 0, so its N-th step goes to 0. Here t is
continuous (no rounding) and the last knot is t_min (F^{-1}(0) = 0), the harness's convention for
where every schedule ends; t_0 = t_max and t_N = t_min exactly.
"""
import torch
from pydantic import Field
from scipy.special import betaincinv

from bench.discretization import HeuristicMethod
from bench.params import Params
from bench.registry import METHODS


@METHODS.register("beta")
class Beta(HeuristicMethod):
    class Params(Params):
        alpha: float = Field(0.6, gt=0, allow_inf_nan=False, description="Beta(alpha, beta)'s alpha (paper: 0.6)")
        beta: float = Field(0.6, gt=0, allow_inf_nan=False, description="Beta(alpha, beta)'s beta (paper: 0.6)")

    def timesteps(self):
        s = self.noise_schedule
        q = 1 - torch.arange(self.steps + 1, dtype=torch.float64) / self.steps
        frac = torch.from_numpy(betaincinv(float(self.params.alpha), float(self.params.beta), q.numpy()))
        t = s.t_min + (s.t_max - s.t_min) * frac
        t[0], t[-1] = s.t_max, s.t_min
        return t
