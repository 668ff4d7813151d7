"""Classifier-free guidance (Ho & Salimans 2022, "Classifier-Free Diffusion Guidance") for any
conditional denoiser whose condition accepts the label -1 as "unconditional".

Parametrisation. The guided data prediction is
    x0 = x0_uncond + scale * (x0_cond - x0_uncond),
so `scale` = 1 is the conditional model, 0 the unconditional one, and > 1 extrapolates past the
conditional prediction (this is diffusers' `guidance_scale`; Ho & Salimans' w is scale - 1). Guidance
in x0 equals guidance in eps at the same (x, t): eps = (x - alpha x0) / sigma is affine in x0 with
coefficients that do not depend on the condition, and the guidance weights (1 - scale, scale) sum to
one, so eps_guided = eps_uncond + scale (eps_cond - eps_uncond). The same holds for v- and
velocity-prediction, which are affine in x0 at fixed (x, t) too.

Cost. One guided evaluation runs the network on one batch of 2B rows (the B conditional rows, then
the same B states with label -1): that is 2 network evaluations per sample. The wrapper says so with
`evals_per_call` = 2; the runner's counting model honours it. Result rows keep the papers' convention
for `nfe` (a guided evaluation is ONE function evaluation: DPM-Solver++, UniPC and LD3 count NFE this
way for guided Stable Diffusion), and report the honest network cost in `network_evals_expected` /
`network_evals_measured` (= evals_per_call x NFE); see `bench.runner`.

Use from a grid: conditional models that mix in `GuidanceParam` (digits, edm) take a model parameter
`guidance: <scale>` (null = no guidance, one network evaluation per call).
"""
from __future__ import annotations

import math

import torch
from pydantic import Field

from .errors import UserError
from .params import Params


def guided_call(denoise, x: torch.Tensor, t, cond, scale: float) -> torch.Tensor:
    """x0_u + scale (x0_c - x0_u) from one call of `denoise` on the 2B rows [x; x] with [cond; -1]."""
    b = x.shape[0]
    t = torch.as_tensor(t, dtype=x.dtype, device=x.device)
    t = t.reshape(()).expand(b) if t.numel() == 1 else t.reshape(b)
    if cond is None:
        cond = torch.full((b,), -1, dtype=torch.long, device=x.device)
    cond = torch.as_tensor(cond, device=x.device).long()
    cond = cond.reshape(()).expand(b) if cond.numel() == 1 else cond
    both = denoise(torch.cat([x, x]), torch.cat([t, t]), torch.cat([cond, torch.full_like(cond, -1)]))
    x0_cond, x0_uncond = both[:b], both[b:]
    return x0_uncond + scale * (x0_cond - x0_uncond)


class GuidanceParams(Params):
    guidance: float | None = Field(None, ge=0, allow_inf_nan=False,
                                   description="classifier-free guidance scale (null: none; 1: the conditional model)")


def check_scale(model: str, value) -> float | None:
    """Validate a `guidance` model parameter: null or a finite number >= 0."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise UserError(f"model {model!r}: guidance must be a number >= 0 (1 = conditional) or null, got {value!r}")
    return float(value)


class Guided(torch.nn.Module):
    """`Guided(model, scale)`: the classifier-free-guided denoiser around a conditional `model`."""

    evals_per_call = 2

    def __init__(self, model, scale: float):
        super().__init__()
        if not getattr(model, "num_classes", 0):
            raise UserError(f"guidance needs a class-conditional model; {getattr(model, 'name', model)!r} has no classes")
        self.model = model
        self.scale = check_scale(getattr(model, "name", "?"), scale)
        if self.scale is None:
            raise UserError("Guided: scale must be a number >= 0, got None")
        if getattr(model, "evals_per_call", 1) != 1:
            raise UserError("Guided: the model is already guided (evals_per_call > 1); guide it once")

    def forward(self, x, t, cond=None):
        return guided_call(self.model, x, t, cond, self.scale)

    def model_id(self) -> str:
        return f"{self.model.model_id()}+cfg({self.scale})"

    def __getattr__(self, name):
        # Everything else (schedule, data_shape, num_classes, prior, decode, ...) is the model's.
        try:
            return super().__getattr__(name)
        except AttributeError:
            inner = self.__dict__.get("_modules", {}).get("model")
            if inner is None:
                raise
            return getattr(inner, name)


class GuidanceParam:
    """Mixin for conditional `Denoiser`s: a `guidance` parameter (null or a scale >= 0).

    The class's `Params` derive from `GuidanceParams`, puts this mixin before `Denoiser` and calls
    `self.guide(self.denoise, x, t, cond)` in `forward`. With no guidance the model id is unchanged
    (the parameter is left out), so caches made before this parameter existed stay valid.
    """

    @property
    def guidance(self) -> float | None:
        return check_scale(self.name, self.params.guidance)

    @property
    def evals_per_call(self) -> int:
        return 1 if self.guidance is None else 2

    def check_guidance(self) -> None:
        if self.guidance is not None and not self.num_classes:
            raise UserError(f"model {self.name!r}: guidance needs a class-conditional model (this one has no "
                            "classes); remove the guidance parameter")

    def guide(self, denoise, x, t, cond):
        scale = self.guidance
        return denoise(x, t, cond) if scale is None else guided_call(denoise, x, t, cond, scale)

    def model_id(self) -> str:
        args = ",".join(f"{k}={v}" for k, v in sorted(dict(self.params).items()) if not (k == "guidance" and v is None))
        return f"{self.name}({args})"


__all__ = ["Guided", "GuidanceParam", "GuidanceParams", "guided_call", "check_scale"]
