"""Test plugins for the results-store tests: they count computations and carry a version a test can
bump (the fitted, checkpointing method is `test-steps` of `tests.plugins.fit_plugins`). Importable by module
name, so that worker and job processes find them."""
from __future__ import annotations

import os
from pathlib import Path
from typing import ClassVar

import torch
from pydantic import Field

from bench.discretization import HeuristicMethod
from bench.metrics.base import Metric, MetricContext
from bench.models.toy2d import Toy2D
from bench.params import Params
from bench.registry import METHODS, METRICS, MODELS
from bench.baselines.polynomial import Polynomial

from .fit_plugins import StepsFit  # noqa: F401  (registers `test-steps`)


@METRICS.register("test-counted-mse")
class CountedMSE(Metric):
    """mse to the teacher that appends one line to the file `log` per computation (one per cell)."""

    needs_teacher: ClassVar[bool] = True

    class Params(Params):
        log: str = Field(..., description="file that gets one line per computed cell")

    def compute(self, samples: torch.Tensor, ctx: MetricContext) -> dict[str, float]:
        with open(self.params.log, "a") as f:
            f.write(f"{os.getpid()}\n")
        teacher = self.teacher_for(samples, ctx)
        return {self.name: ((samples - teacher) ** 2).sum(dim=1).mean().item()}


@METHODS.register("test-versioned")
class Versioned(Polynomial):
    """The polynomial schedule under another name, whose `version` (and default rho) a test changes."""

    paper_baseline = False


@MODELS.register("test-file-toy2d")
class FileToy2D(Toy2D):
    """toy2d that declares a weights file (never read): its bytes enter the keys."""

    class Params(Toy2D.Params):
        path: str = Field(..., description="a file standing in for checkpoint weights")

    def required_paths(self) -> dict[str, str]:
        return {"path": str(Path(self.params.path))}


@METHODS.register("test-raises")
class Raises(HeuristicMethod):
    """A schedule that always fails (a bug in a plugin)."""

    def timesteps(self):
        raise RuntimeError("this plugin is broken")
