"""`laplace`: the Laplace schedule of Tiankai Hang et al. 2024 ("Improved Noise Schedule for Diffusion
Training", arXiv:2407.03297) as ComfyUI implements it (`get_sigmas_laplace` in ComfyUI's copy of
k-diffusion, `comfy/k_diffusion/sampling.py`; the `LaplaceScheduler` node):

    lambda_i = mu - beta sign(1/2 - x_i) log(1 - 2 |1/2 - x_i| + 1e-5),   x_i = i/N,  i = 0..N,
    sigma_i  = clamp(exp(lambda_i), sigma_min, sigma_max),

with sigma the VE noise level (non-VE models: sigma/alpha, mapped to the model's time at equal log-SNR)
and ComfyUI's defaults mu = 0, beta = 0.5 (its node's defaults). The node returns these N + 1 values
(no trailing 0); the harness's N steps are the same values, except that the last is the model's
sigma_min: the formula's last value, exp(mu + beta log 1e-5) (0.00316 with the defaults), is
replaced by it (every schedule of the harness ends at t_min) -- the only departure. The first value
is clamped to sigma_max by the formula itself. Interior values that the clamp makes equal would not
decrease: that is a one-line error naming mu and beta.
"""
import torch
from pydantic import Field

from bench.discretization import HeuristicMethod
from bench.errors import UserError
from bench.params import Params
from bench.registry import METHODS

from .polyexponential import sigma_range, times_of_sigmas

EPSILON = 1e-5  # the reference's "avoid log(0)"


@METHODS.register("laplace")
class Laplace(HeuristicMethod):
    class Params(Params):
        mu: float = Field(0.0, allow_inf_nan=False, description="location in log sigma (ComfyUI: 0)")
        beta: float = Field(0.5, gt=0, allow_inf_nan=False, description="scale in log sigma (ComfyUI: 0.5)")

    def timesteps(self):
        s = self.noise_schedule
        lo, hi = sigma_range(s)
        mu, beta = float(self.params.mu), float(self.params.beta)
        x = torch.linspace(0, 1, self.steps + 1, dtype=torch.float64)
        lam = mu - beta * torch.sign(0.5 - x) * torch.log(1 - 2 * torch.abs(0.5 - x) + EPSILON)
        sigmas = torch.clamp(torch.exp(lam), min=lo, max=hi)
        sigmas[-1] = lo
        if not bool((sigmas[1:] < sigmas[:-1]).all()):
            raise UserError(f"method 'laplace': mu={mu}, beta={beta} put several of the {self.steps} steps at the same "
                            f"clamped sigma (model range {lo:.4g}..{hi:.4g}); choose mu and beta inside the range")
        return times_of_sigmas(s, sigmas)
