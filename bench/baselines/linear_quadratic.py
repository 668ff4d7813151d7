"""`linear_quadratic`: Mochi's linear-quadratic schedule (Genmo, github genmoai/models,
`src/mochi_preview/infer.py`), as ComfyUI's `linear_quadratic` scheduler implements it
(`comfy/samplers.py: linear_quadratic_schedule`). With L = N // 2 linear steps, threshold tau = 0.025:

    u_i = i tau / L                                  for i < L,
    u_i = a i^2 + b i + c                            for L <= i < N,   u_N = 1,
    a = (L - tau N) / (L (N - L)^2),  b = tau / L - 2 (L - tau N) / (N - L)^2,  c = a L^2,

and ComfyUI's sigmas are (1 - u_i) sigma_max (N + 1 values, the last 0; one step: [1, 0]). The
fraction 1 - u_i is of the model's own time range here: t_i = t_min + (1 - u_i)(t_max - t_min), so
t_0 = t_max and t_N = t_min (ComfyUI's range is [0, sigma_max]; for flow models, sigma is the time).
A flow schedule is what it was made for; on other models it is the same fractions of their own time.
"""
import torch
from pydantic import Field

from bench.discretization import HeuristicMethod
from bench.errors import UserError
from bench.params import Params
from bench.registry import METHODS


def linear_quadratic_fractions(steps: int, threshold: float, linear_steps: int | None) -> list[float]:
    """The N + 1 values u_i of the module docstring (u_0 = 0 ... u_N = 1)."""
    if steps == 1:
        return [0.0, 1.0]
    lin = steps // 2 if linear_steps is None else linear_steps
    quad = steps - lin
    diff = lin - threshold * steps
    a = diff / (lin * quad ** 2)
    b = threshold / lin - 2 * diff / quad ** 2
    c = a * lin ** 2
    return [i * threshold / lin for i in range(lin)] + [a * i * i + b * i + c for i in range(lin, steps)] + [1.0]


@METHODS.register("linear_quadratic")
class LinearQuadratic(HeuristicMethod):
    class Params(Params):
        threshold_noise: float = Field(0.025, gt=0, lt=1, description="where the linear part ends (ComfyUI: 0.025)")
        linear_steps: int | None = Field(None, ge=1, description="linear steps (ComfyUI: N // 2)")

    def timesteps(self):
        s = self.noise_schedule
        lin = self.params.linear_steps
        if lin is not None and self.steps > 1 and lin >= self.steps:
            raise UserError(f"method 'linear_quadratic': linear_steps={lin} must be below the {self.steps} steps")
        u = torch.tensor(linear_quadratic_fractions(self.steps, float(self.params.threshold_noise),
                                                    self.params.linear_steps), dtype=torch.float64)
        t = s.t_min + (1 - u) * (s.t_max - s.t_min)
        t[0], t[-1] = s.t_max, s.t_min
        return t
