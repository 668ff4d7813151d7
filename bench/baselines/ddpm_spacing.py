"""`linspace`, `leading`, `trailing`: the timestep spacings of diffusers' DDPM-family schedulers for
discrete-time VP models (the three rows of Table 2 of Lin, Liu, Li, Yang 2024, "Common Diffusion
Noise Schedules and Sample Steps are Flawed", arXiv:2305.08891), as diffusers'
`DPMSolverMultistepScheduler.set_timesteps` / `UniPCMultistepScheduler.set_timesteps` compute them
(`timestep_spacing`), in training-step indices n of a table of K = `num_train_timesteps` steps:

  * `linspace`: n_i = round(linspace(0, K - 1, N + 1))[::-1], i = 0..N (the last, n_N = 0, is where
                the final step lands);
  * `leading`:  r = K // (N + 1), n_i = (N - i) r + steps_offset for i < N (the evaluations); diffusers'
                default steps_offset = 0 (Stable Diffusion's configs set 1: `steps_offset: 1`);
  * `trailing`: n_i = round(K - i K / N) - 1 for i < N; starts at the last training step K - 1.
The last knot is the model's t_min (training step 0): the multistep schedulers' final step lands
there with `final_sigmas_type="sigma_min"` (with the default "zero" it lands at sigma 0 instead).
(DDIMScheduler's own `linspace`/`leading` use N points instead of N + 1 and end their evaluations at
step 0; its final step then goes to `final_alpha_cumprod`. The multistep form is the one that ends
where the harness's schedules end.)

Knots map to the model's time through the `DiscreteVP` convention of `bench.schedules`: step n is
t = (n + 1) / K, so the schedule is exact at integer steps (`bench export` gives diffusers the same
integers back). Only models with a discrete training table have these spacings: a VE, flow or
continuous VP model gets a one-line error (digits: `time: vp-scaled-linear` has Stable Diffusion's
table). `leading` does NOT start at t_max: its first knot is step N r + steps_offset < K - 1 and the
solver takes the prior x_T (drawn at t_max) as the state there, exactly as diffusers does with a VP
model (its prior is unit noise at every timestep) -- the flaw Lin et al. point out; the teacher still
starts at t_max. Parameters: `steps_offset` (leading only, default 0 as diffusers).
"""
from __future__ import annotations

import numpy as np
import torch
from pydantic import Field

from bench.discretization import HeuristicMethod
from bench.errors import UserError
from bench.params import Params
from bench.registry import METHODS
from bench.schedules import DiscreteVP


class DDPMSpacing(HeuristicMethod):
    def indices(self, k: int, n: int) -> np.ndarray:
        """The N evaluation steps (training indices, decreasing) for a table of k steps."""
        raise NotImplementedError

    def timesteps(self):
        s = self.noise_schedule
        if not isinstance(s, DiscreteVP):
            raise UserError(f"method {self.name!r} spaces the training steps of a discrete-time VP model; this model's "
                            f"schedule is {s!r}: use a model with a training table (e.g. digits with "
                            f"time: vp-scaled-linear, or a diffusers model)")
        return index_times(self.name, s, self.indices(s.num_train_timesteps, self.steps))


def index_times(method: str, s: DiscreteVP, indices) -> torch.Tensor:
    """Knots at decreasing training indices (time (i + 1) / k of a table of k steps), then t_min; one
    line naming `method` unless they decrease strictly from at most t_max."""
    k = s.num_train_timesteps
    steps = np.asarray(indices, dtype=np.float64)
    t = torch.cat([torch.from_numpy((steps + 1) / k), torch.tensor([s.t_min], dtype=torch.float64)])
    if not bool((t[1:] < t[:-1]).all()) or float(t[0]) > s.t_max:
        raise UserError(f"method {method!r}: {len(steps)} steps on a table of {k} training steps give the indices "
                        f"{steps.astype(int).tolist()}, which do not decrease strictly from t_max to t_min; "
                        f"use fewer steps")
    return t


@METHODS.register("linspace")
class Linspace(DDPMSpacing):
    def indices(self, k, n):
        return np.linspace(0, k - 1, n + 1).round()[::-1][:-1]


@METHODS.register("leading")
class Leading(DDPMSpacing):
    class Params(Params):
        steps_offset: int = Field(0, ge=0, le=1000, description="diffusers' steps_offset (SD configs: 1)")

    def indices(self, k, n):
        ratio = k // (n + 1)
        return (np.arange(0, n + 1) * ratio).round()[::-1][:-1] + self.params.steps_offset


@METHODS.register("trailing")
class Trailing(DDPMSpacing):
    def indices(self, k, n):
        return np.arange(k, 0, -k / n).round()[:n] - 1
