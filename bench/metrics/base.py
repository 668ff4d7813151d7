"""The metric interface.

A `Metric` scores one cell's samples: `compute(samples, ctx) -> {column: value}`. The main value is
under the metric's own name (`"mse"`); a metric may add columns prefixed with its name, e.g. the noise
floor `"wasserstein_floor"` (the value a perfect sampler would get from the same estimator), so a
report can tell a real gap from estimator noise. `columns()` lists every column a metric writes.

What a metric needs is declared on the class, so the runner can prepare it or refuse early:
- `needs_teacher`: `ctx.teacher` holds the teacher endpoints x0* of the same priors as `samples`
  (same shape, same order);
- `needs_data_sampler`: the model can draw exact data, `model.sample_data(n, generator)` (toy models).

Every random draw a metric makes comes from `ctx.generator` (seeded from the cell), so a metric is a
deterministic function of (samples, teacher, model, generator state).

A metric that is a mean over samples (`mse`, `psnr`, `lpips`) also overrides `compute_per_sample`,
returning its per-sample values beside the usual columns; the runner keeps them (in the order of the
evaluation priors) so the report can put an interval on every mean and pair two methods sample by
sample (`bench.scores`, `bench.stats`). Its reported mean stays the one `compute` always returned.
Distribution distances (FID, KID, Wasserstein, KL) have no per-sample part and keep the default.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import torch

from ..errors import UserError
from ..plugin import Plugin
from ..registry import METRICS


@dataclass
class MetricContext:
    teacher: torch.Tensor | None  # x0* for the same priors, same shape and order as the samples
    model: object  # the Denoiser: .data_range, .data_shape, .sample_data(n, generator)
    generator: torch.Generator  # seeded from the cell; every random draw comes from it
    device: torch.device = torch.device("cpu")
    results_root: Path | None = None  # where cached references live (<root>/cache/fid-refs)


class Metric(Plugin):
    kind: ClassVar[str] = "metric"
    higher_is_better: ClassVar[bool] = False
    needs_teacher: ClassVar[bool] = True
    needs_data_sampler: ClassVar[bool] = False
    # Suffixes of the extra columns, e.g. ("floor",) -> "<name>_floor".
    extra_columns: ClassVar[tuple[str, ...]] = ()

    def columns(self) -> list[str]:
        """Every column `compute` returns: the main one first."""
        return [self.name] + [f"{self.name}_{suffix}" for suffix in self.extra_columns]

    def compute(self, samples: torch.Tensor, ctx: MetricContext) -> dict[str, float]:
        """Return {column name: value}; the main value under self.name, extra columns e.g. f"{self.name}_floor"."""
        raise NotImplementedError

    def compute_per_sample(self, samples: torch.Tensor, ctx: MetricContext):
        """(`compute`'s columns, {column: float64 numpy vector of per-sample values}); the default
        has no per-sample part. A metric that is a mean over samples returns its main column's
        per-sample values, in the order of `samples`, with the column's mean computed as `compute`
        computes it."""
        return self.compute(samples, ctx), {}

    # Helpers for subclasses.

    def teacher_for(self, samples: torch.Tensor, ctx: MetricContext) -> torch.Tensor:
        """`ctx.teacher`, checked to be present and of the same shape as `samples`."""
        if ctx.teacher is None:
            raise ValueError(f"metric {self.name!r} needs the teacher endpoints, but ctx.teacher is None")
        if tuple(ctx.teacher.shape) != tuple(samples.shape):
            raise ValueError(
                f"metric {self.name!r}: teacher shape {tuple(ctx.teacher.shape)} differs from "
                f"samples shape {tuple(samples.shape)}"
            )
        return ctx.teacher

    def data_samples(self, ctx: MetricContext, n: int) -> torch.Tensor:
        """`n` exact data samples from `ctx.model.sample_data`, as a float64 CPU tensor."""
        sampler = getattr(ctx.model, "sample_data", None)
        if sampler is None:
            raise UserError(f"metric {self.name!r} needs a model with exact data (a toy model); remove it from the grid")
        try:
            data = sampler(n, ctx.generator)
        except NotImplementedError:
            name = getattr(ctx.model, "name", type(ctx.model).__name__)
            raise UserError(
                f"metric {self.name!r} needs exact data samples, which model {name!r} cannot draw; "
                f"use it only with toy models"
            ) from None
        return data.detach().to("cpu", torch.float64)


def make_metric(spec) -> Metric:
    """Build a metric from a name or a dict {name: ..., **params} (`Registry.build`)."""
    return METRICS.build(spec)
