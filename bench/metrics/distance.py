"""Distances to the teacher endpoint: `mse` and `psnr`.

Both compare each sample with the teacher's endpoint x0* from the *same* prior x_T (the teacher set
pairs them), so they measure the few-step sampler's discretization error, not sample quality. They
are computed in float64 on the CPU, a chunk of samples at a time, so float32 round-off and large
image batches do not matter.

- `mse`: the squared L2 distance ||x0 - x0*||^2 per sample, SUMMED over all dimensions (not the
  per-dimension mean), then averaged over samples. Lower is better. This is the "L2 to the teacher"
  that the learned-schedule papers (DMN, LD3, ...) optimise, up to the mean over samples.
- `psnr`: per sample, 10 log10(R^2 / m) with m = ||x0 - x0*||^2 / D the per-dimension mean squared
  error (D = number of values in one sample) and R = `model.data_range`, the data's peak-to-peak range
  (2.0 for data in [-1, 1]); then averaged over samples (the mean of per-sample PSNRs, which is not
  the PSNR of the mean MSE). Higher is better. A sample equal to its teacher (m = 0) would have
  infinite PSNR, so each sample's PSNR is capped at `max_db` (default 100 dB, well above anything
  float32 sampling reaches on data in [-1, 1] and far from float64 round-off); non-finite samples give NaN.
"""
from __future__ import annotations

import math
from typing import ClassVar

import torch
from pydantic import Field

from ..params import Params
from ..registry import METRICS
from .base import Metric, MetricContext

_CHUNK = 1024


def per_sample_squared_error(samples: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """||samples_i - teacher_i||^2 summed over all dimensions, as float64 [B] on the CPU."""
    out = []
    for start in range(0, samples.shape[0], _CHUNK):
        a = samples[start : start + _CHUNK].detach().to("cpu", torch.float64)
        b = teacher[start : start + _CHUNK].detach().to("cpu", torch.float64)
        out.append((a - b).reshape(a.shape[0], -1).square().sum(dim=1))
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.float64)


@METRICS.register("mse")
class MSE(Metric):
    higher_is_better: ClassVar[bool] = False
    needs_teacher: ClassVar[bool] = True

    def compute(self, samples: torch.Tensor, ctx: MetricContext) -> dict[str, float]:
        return self.compute_per_sample(samples, ctx)[0]

    def compute_per_sample(self, samples: torch.Tensor, ctx: MetricContext):
        teacher = self.teacher_for(samples, ctx)
        errors = per_sample_squared_error(samples, teacher)
        return {self.name: errors.mean().item()}, {self.name: errors.numpy()}


@METRICS.register("psnr")
class PSNR(Metric):
    higher_is_better: ClassVar[bool] = True
    needs_teacher: ClassVar[bool] = True

    class Params(Params):
        max_db: float = Field(100.0, gt=0, description="cap of a sample's PSNR (an exact match is +inf dB)")

    def compute(self, samples: torch.Tensor, ctx: MetricContext) -> dict[str, float]:
        return self.compute_per_sample(samples, ctx)[0]

    def compute_per_sample(self, samples: torch.Tensor, ctx: MetricContext):
        teacher = self.teacher_for(samples, ctx)
        data_range = float(ctx.model.data_range)
        dims = math.prod(samples.shape[1:])
        mse = per_sample_squared_error(samples, teacher) / dims
        # 10 log10(R^2 / 0) = +inf, capped by the minimum; NaN (diverged samples) stays NaN.
        psnr = 10.0 * torch.log10(data_range**2 / mse)
        psnr = torch.where(psnr.isnan(), psnr, psnr.clamp(max=float(self.params.max_db)))
        return {self.name: psnr.mean().item()}, {self.name: psnr.numpy()}
