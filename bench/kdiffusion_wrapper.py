"""A k-diffusion-style denoiser wrapper that applies a learned schedule's `t_eval` and `scale`.

LD3, GOD and INDIS learn, beside the knots t_0 > ... > t_N, a decoupled evaluation time t_eval[n]
and an output scale gamma[n] per step (`bench.solvers.base.predict`): the network sees the state of
node n as if it were at t_eval[n], and its noise prediction is multiplied by gamma[n]. A plain sampler
run on the exported sigmas drops both (`bench export` warns). This wrapper puts them back for any
sampler written in k-diffusion's convention -- a denoiser `model(x, sigma) -> D(x; sigma)` on the VE
state x = y (= x_model / alpha), `sigma` the VE noise level, one evaluation per step at `sigmas[n]`
(k-diffusion's `sample_euler`, `sample_dpmpp_2m`, `sample_lms`, ComfyUI's samplers of the same names):

    wrapped = LearnedScheduleDenoiser.from_record(model, json.load(open("...__ld3__nfe4__seed0.json")))
    x0 = sample_euler(wrapped, x_T, wrapped.sigmas)

For a call at the stepping list's sigma_n it evaluates `model` at sigma_eval[n] = sigma_ve(t_eval[n])
on the state as the harness's network sees it there (y * alpha(t_n) / alpha(t_eval[n]), = y for VE
models), forms eps = (y' - D) / sigma_eval[n], scales it by gamma[n] and returns the data prediction
at the state's own level, y - sigma_n gamma[n] eps: the harness's evaluation rule, step for step.
Samplers that evaluate inside a step at another sigma (Heun, DPM-2: the corrector or midpoint) take
the plain rule there in the harness; this wrapper cannot tell such a call from a node's and refuses
a sigma that is not one of the list's nodes (it passes the exact list's values through unchanged
only at the nodes). The VE view follows k-diffusion's `sampling.py` (crowsonkb/k-diffusion 686dbad)
conventions: `sigmas` decreasing, the sampler's own step between consecutive values.
"""
from __future__ import annotations

import torch

from .schedules import NoiseSchedule, make_schedule


class LearnedScheduleDenoiser:
    """`model(x, sigma)` with per-step evaluation levels `sigma_eval` [N], output scales `scale` [N] and
    input factors alpha(t_n) / alpha(t_eval[n]) [N] (1 for VE), for the stepping list `sigmas`."""

    def __init__(self, model, sigmas, sigma_eval=None, scale=None, input_factor=None, rtol: float = 1e-6):
        self.model = model
        self.sigmas = torch.as_tensor(sigmas, dtype=torch.float64)
        n = int(self.sigmas.numel()) - 1  # the nodes a step starts from (the last value only ends one)

        def as_steps(value, default):  # per node; past the learned steps (final_step: denoise) the plain rule
            if value is None:
                return default
            value = torch.as_tensor(value, dtype=torch.float64).reshape(-1)[:n]
            return torch.cat([value, default[value.numel():]])

        self.sigma_eval = as_steps(sigma_eval, self.sigmas[:n].clone())
        self.scale = as_steps(scale, torch.ones(n, dtype=torch.float64))
        self.input_factor = as_steps(input_factor, torch.ones(n, dtype=torch.float64))
        self.rtol = rtol

    @classmethod
    def from_record(cls, model, record: dict, schedule: NoiseSchedule | None = None, **kwargs):
        """From a `bench export` record (its `t`, `t_eval`, `scale`, `final_step`): the wrapper and, as
        `.sigmas`, the k-diffusion stepping list to pass to the sampler. `schedule` (the model's noise
        schedule) is needed where the record's summary cannot rebuild it (a discrete VP table)."""
        schedule = schedule or make_schedule(record["noise_schedule"])
        t = torch.tensor(record["t"], dtype=torch.float64)
        steps = t.numel() - 1
        t_eval = torch.tensor(record["t_eval"], dtype=torch.float64) if "t_eval" in record else t[:-1]
        scale = torch.tensor(record["scale"], dtype=torch.float64) if "scale" in record else None
        sigmas = torch.tensor(record["forms"]["k_diffusion"]["sigmas"], dtype=torch.float64)
        factor = schedule.alpha(t[:steps]) / schedule.alpha(t_eval)
        return cls(model, sigmas, schedule.sigma_ve(t_eval), scale, factor, **kwargs)

    def step_of(self, sigma: torch.Tensor) -> int:
        """The index n of the node sigma_n that `sigma` is (to `rtol`), else a ValueError."""
        s = float(sigma.reshape(-1)[0])
        nodes = self.sigmas[: self.sigma_eval.numel()]
        err = (nodes - s).abs() / nodes.abs().clamp_min(1e-300)
        n = int(err.argmin())
        if float(err[n]) > self.rtol:
            raise ValueError(f"sigma {s:.9g} is not a node of the learned schedule (nodes: "
                             f"{', '.join(f'{v:.6g}' for v in nodes.tolist())}); an evaluation inside a step "
                             "(Heun, DPM-2) has no learned t_eval here")
        return n

    def __call__(self, x: torch.Tensor, sigma: torch.Tensor, **extra) -> torch.Tensor:
        n = self.step_of(sigma)
        shape = (-1,) + (1,) * (x.ndim - 1)
        sigma = torch.as_tensor(sigma, dtype=x.dtype, device=x.device).reshape(-1)
        sigma_eval = self.sigma_eval[n].to(x)
        x_in = x * self.input_factor[n].to(x)
        denoised = self.model(x_in, sigma_eval.expand(x.shape[0]), **extra)
        eps = (x_in - denoised) / sigma_eval * self.scale[n].to(x)
        return x - sigma.expand(x.shape[0]).reshape(shape) * eps


__all__ = ["LearnedScheduleDenoiser"]
