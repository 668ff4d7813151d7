"""ComfyUI's schedulers for discrete-time models (`comfy/samplers.py`): `normal` (= `sgm_uniform` in
the harness), `simple`, `ddim_uniform`. They read the model's table of K training noise levels
sigma_n = sqrt((1 - alphas_cumprod[n]) / alphas_cumprod[n]), n = 0..K-1 (ComfyUI's
`ModelSamplingDiscrete.sigmas`), so they exist only for models with such a table (`DiscreteVP`: digits
with `time: vp-scaled-linear`, the diffusers models); a VE, flow or continuous VP model gets a one-line
error (ComfyUI's flow models have their own tables; no continuous analogue is guessed here).

  * `normal`: training indices j_i = (K - 1)(1 - i/N), i = 0..N (ComfyUI's `linspace(timestep(
    sigma_max), timestep(sigma_min), n)`), at fractional j the noise level interpolated linearly in
    log sigma between the table's neighbours (ComfyUI's `ModelSamplingDiscrete.sigma`). ComfyUI's
    `normal_scheduler(n)` returns n values and a trailing 0; the harness's N steps are its n = N + 1
    values without the 0 (as `kl-optimal`), which end at sigma_min = the model's t_min.
  * `sgm_uniform` (`normal_scheduler(..., sgm=True)`): linspace(K - 1, 0, N + 1)[:-1] and a final 0,
    i.e. the same first N values as `normal` at N + 1 knots, its last step going to 0. With the
    harness's rule that the last step ends at t_min (sigma_min, training index 0), it is `normal`:
    registered as an alias of it.
  * `simple`: table indices K - 1 - floor(i K / N), i = 0..N-1, then ComfyUI's final 0; here the final
    knot is t_min (index 0), as diffusers' multistep schedulers with final_sigmas_type="sigma_min"
    end. It equals `trailing` where iK/N is an integer and differs by one index elsewhere (floor vs round).
  * `ddim_uniform`: with c = max(K // N, 1), the indices 1, 1 + c, 1 + 2c, ... below K, in decreasing
    order, then ComfyUI's final 0, here t_min. That list need not have N entries (K = 1000, N = 7:
    c = 142 gives 8); then the cell's N steps are not ComfyUI's N-step schedule and it is a one-line
    error naming the count ComfyUI gives. Like `leading`, it does not start at t_max (its first
    evaluation is index 1 + (N - 1) c < K - 1): the solver takes the prior x_T, drawn at t_max, as the
    state there, exactly as ComfyUI does with the full-noise latent.
Knots at integer indices n are t = (n + 1)/K in the model's time (`DiscreteVP`), exact at the table.
"""
from __future__ import annotations

import numpy as np
import torch

from bench.discretization import HeuristicMethod
from bench.errors import UserError
from bench.registry import METHODS
from bench.schedules import DiscreteVP

from .ddpm_spacing import index_times


class ComfyDiscrete(HeuristicMethod):
    def table(self) -> DiscreteVP:
        s = self.noise_schedule
        if not isinstance(s, DiscreteVP):
            raise UserError(f"method {self.name!r} is ComfyUI's scheduler for discrete-time models (a table of training "
                            f"noise levels); this model's schedule is {s!r}: use a model with a training table (e.g. "
                            f"digits with time: vp-scaled-linear, or a diffusers model)")
        return s

    def log_sigmas(self, s: DiscreteVP) -> torch.Tensor:
        ac = s.alphas_cumprod
        return 0.5 * torch.log((1 - ac) / ac)

    def index_times(self, s: DiscreteVP, indices: np.ndarray) -> torch.Tensor:
        """Knots at decreasing integer indices, then t_min; a one-line error unless strictly decreasing."""
        return index_times(self.name, s, indices)


@METHODS.register("normal")
class Normal(ComfyDiscrete):
    def timesteps(self):
        s = self.table()
        k = s.num_train_timesteps
        j = torch.linspace(k - 1, 0, self.steps + 1, dtype=torch.float64)
        lo, w = j.floor().long(), j - j.floor()
        hi = torch.clamp(lo + 1, max=k - 1)
        log_sigmas = self.log_sigmas(s)
        sigmas = torch.exp((1 - w) * log_sigmas[lo] + w * log_sigmas[hi])
        t = s.t_of_sigma_ve(sigmas)
        t[0], t[-1] = s.t_max, s.t_min
        return t


METHODS.alias("sgm_uniform", "normal", "ComfyUI's sgm_uniform: normal's knots, ending at sigma_min as every harness schedule")


@METHODS.register("simple")
class Simple(ComfyDiscrete):
    def timesteps(self):
        s = self.table()
        k, n = s.num_train_timesteps, self.steps
        indices = np.array([k - 1 - int(x * (k / n)) for x in range(n)], dtype=np.float64)
        return self.index_times(s, indices)


@METHODS.register("ddim_uniform")
class DDIMUniform(ComfyDiscrete):
    def timesteps(self):
        s = self.table()
        k, n = s.num_train_timesteps, self.steps
        c = max(k // n, 1)
        indices = np.arange(1, k, c, dtype=np.float64)[::-1].copy()
        if len(indices) != n:
            raise UserError(f"method 'ddim_uniform': ComfyUI's ddim_uniform with {n} steps on a table of {k} training "
                            f"steps gives {len(indices)} steps (stride {c}); this cell runs {n}: choose another NFE")
        return self.index_times(s, indices)
