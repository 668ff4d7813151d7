"""Distribution metrics for the 2D toy models, against the exact data distribution: `wasserstein`, `kl`.

Both compare the generated set with fresh exact samples of the data (`model.sample_data(n,
generator)`); they need no teacher. Both also report a noise floor: the same estimator with the
generated set replaced by an independent set of true samples of the same size, compared with the same
reference set. That is the value a perfect sampler would get, so a method is only distinguishable
from exact sampling when its value is clearly above the floor. Every draw (subsampling, reference,
floor set) comes from `ctx.generator`, in the order written below, so both metrics are deterministic
given the generator's state. Inputs may be float32 or float64, on any device; the work is done in
float64 numpy on the CPU. Samples are flattened to [B, D] (D = 2 for the toy; `wasserstein` works for
any D, `kl` needs D = 2). A set with a non-finite value (a diverged sampler) gets NaN as its main
value; the floor is still computed.

`wasserstein` (lower is better) -- the exact 2-Wasserstein distance between empirical measures:
  1. m = min(n, B). If B > n, the generated set is subsampled to n points without replacement
     (`torch.randperm(B, generator)[:n]`); otherwise all B points are used.
  2. Draw the reference R = m true samples, then the floor set F = m true samples (independent).
  3. W2(X, Y) = sqrt(ot.emd2(a, b, M)) with uniform weights a = b = 1/m and the squared-Euclidean
     cost M_ij = ||x_i - y_j||^2, solved exactly by POT's network simplex (no entropic
     regularisation). `wasserstein` = W2(generated, R); `wasserstein_floor` = W2(F, R). M comes from
     `scipy.spatial.distance.cdist`, which sums squared differences directly, so coincident points
     cost exactly 0 (`ot.dist` expands the square and leaves ~1e-16 of round-off, which the square
     root lifts to ~1e-8). W2 of a set and its translate by v is exactly ||v||.
  Default n = 4000, a compromise between the floor (which falls as n grows) and the cost of two exact
  transport problems per call (which grows faster than n^2); `wasserstein_floor` shows which gaps
  are estimator noise at that n. `benchmarks/bench_toy2d_metrics.py` prints the cost and the floor.
  The simplex gets an iteration cap far above POT's default of 1e5, which can stop before optimality
  at this n; if it still stops early, a RuntimeError is raised rather than a silently wrong value.

`kl` (lower is better) -- KL(p_data || p_gen) from smoothed histograms:
  1. Draw the reference R = `n_ref` true samples (default 20000: histograms are cheap, and a
     reference that large adds little to the floor), then the floor set F = B true
     samples (B = size of the generated set; all generated points are used).
  2. Histogram each set on the box [low, high]^2 (default [-0.9, 1.5]^2, which holds the tree toy
     of Karras et al. 2024) with `bins` x `bins` equal cells (default 64). Points outside the box are
     clipped into the edge cells, so no mass is dropped: a sampler that throws points outside the
     box is penalised by the excess mass in the edge cells, not rewarded by their silent removal.
  3. Divide by the count, smooth with a Gaussian filter of standard deviation `smooth` cells
     (default 1.0; `scipy.ndimage.gaussian_filter`, mode "reflect", which keeps the mass inside the
     box; 0 disables it), add `eps` (default 1e-6) to every cell so no cell is zero, renormalise to
     probabilities p (reference) and q (generated).
  4. `kl` = sum_cells p log(p / q) (nats) with q from the generated set; `kl_floor` = the same with
     q from F. The estimate is biased upward by the finite sample sizes (mostly B, since n_ref is
     larger); the floor shows that bias for this B. `eps` bounds the penalty for reference mass in
     cells the generated set leaves empty at about log(p_cell / eps).
"""
from __future__ import annotations

import math
from typing import ClassVar

import numpy as np
import ot
import torch
from scipy.ndimage import gaussian_filter
from pydantic import Field, model_validator
from scipy.spatial.distance import cdist

from ..errors import UserError
from ..params import Params
from ..registry import METRICS
from .base import Metric, MetricContext

# Network-simplex iteration cap, far above POT's default (1e5), which can stop early at the default n.
EMD_MAX_ITER = 100_000_000

# The runner seeds the metric generator from (model, seed, evaluation size), not from the cell, so
# every cell of a sweep is compared with the same reference and floor sets (common random numbers)
# and the expensive floor transport is solved once per process.
_FLOOR_CACHE: dict[tuple, float] = {}


def _flat_cpu64(x: torch.Tensor) -> torch.Tensor:
    return x.detach().to("cpu", torch.float64).reshape(x.shape[0], -1)


def w2_distance(x: np.ndarray, y: np.ndarray) -> float:
    """Exact W2 between two equal-weight point sets [n, D] and [m, D] (squared-Euclidean cost)."""
    a = np.full(x.shape[0], 1.0 / x.shape[0])
    b = np.full(y.shape[0], 1.0 / y.shape[0])
    cost, log = ot.emd2(a, b, cdist(x, y, "sqeuclidean"), numItermax=EMD_MAX_ITER, log=True)
    if log.get("warning"):
        raise RuntimeError(f"wasserstein: exact optimal transport did not converge: {log['warning']}")
    return math.sqrt(max(float(cost), 0.0))


@METRICS.register("wasserstein")
class Wasserstein(Metric):
    higher_is_better: ClassVar[bool] = False
    needs_teacher: ClassVar[bool] = False
    needs_data_sampler: ClassVar[bool] = True
    extra_columns: ClassVar[tuple[str, ...]] = ("floor",)

    class Params(Params):
        n: int = Field(4000, ge=2, le=1_000_000, description="samples compared (exact W2 costs O(n^3))")

    def compute(self, samples: torch.Tensor, ctx: MetricContext) -> dict[str, float]:
        gen = _flat_cpu64(samples)
        count = gen.shape[0]
        if count < 1:
            raise ValueError("metric 'wasserstein' got an empty sample set")
        m = min(self.params.n, count)
        floor_key = (getattr(ctx.model, "model_id", lambda: id(ctx.model))(), ctx.generator.initial_seed(), count, m)
        if count > m:
            idx = torch.randperm(count, generator=ctx.generator, device=ctx.generator.device)[:m]
            gen = gen[idx.cpu()]
        ref = self.data_samples(ctx, m).reshape(m, -1)
        floor_set = self.data_samples(ctx, m).reshape(m, -1)
        if ref.shape[1] != gen.shape[1]:
            raise ValueError(
                f"metric 'wasserstein': samples have {gen.shape[1]} values each, the data {ref.shape[1]}"
            )
        ref_np = ref.numpy()
        value = w2_distance(gen.numpy(), ref_np) if torch.isfinite(gen).all() else float("nan")
        if floor_key not in _FLOOR_CACHE:
            _FLOOR_CACHE[floor_key] = w2_distance(floor_set.numpy(), ref_np)
        return {self.name: value, f"{self.name}_floor": _FLOOR_CACHE[floor_key]}


@METRICS.register("kl")
class KL(Metric):
    higher_is_better: ClassVar[bool] = False
    needs_teacher: ClassVar[bool] = False
    needs_data_sampler: ClassVar[bool] = True
    extra_columns: ClassVar[tuple[str, ...]] = ("floor",)

    class Params(Params):
        bins: int = Field(64, ge=1, le=4096, description="histogram cells per axis")
        smooth: float = Field(1.0, ge=0, description="Gaussian smoothing of the histogram, in cells")
        eps: float = Field(1e-6, gt=0, description="floor added to every cell before normalising")
        n_ref: int = Field(20000, ge=1, le=10_000_000, description="exact data samples of the reference histogram")
        low: float = Field(-0.9, description="lower edge of the histogram on both axes")
        high: float = Field(1.5, description="upper edge of the histogram on both axes")

        @model_validator(mode="after")
        def _range(self):
            if not self.low < self.high:
                raise ValueError(f"low must be below high, got low={self.low!r}, high={self.high!r}")
            return self

    def check_model(self, model) -> None:
        """Refuse, before any compute, a model whose samples are not 2-D points."""
        shape = tuple(getattr(model, "data_shape", ()))
        if shape != (2,):
            raise UserError(f"metric 'kl' compares 2-D histograms; model {model.name!r} makes samples of shape "
                            f"{shape}: remove kl from its grid (use it with toy2d)")

    def histogram(self, points: torch.Tensor) -> np.ndarray:
        """Smoothed, floored, normalised histogram [bins, bins] of 2D points (see the module docstring)."""
        p = self.params
        bins, low, high = p.bins, float(p.low), float(p.high)
        x = _flat_cpu64(points).numpy()
        if x.shape[1] != 2:
            raise ValueError(f"metric 'kl' needs 2-D points, got {x.shape[1]} values per sample")
        cell = np.floor((x - low) * (bins / (high - low)))
        cell = np.clip(cell, 0, bins - 1).astype(np.int64)
        counts = np.bincount(cell[:, 0] * bins + cell[:, 1], minlength=bins * bins).reshape(bins, bins)
        h = counts / x.shape[0]
        if float(p.smooth) > 0.0:
            h = gaussian_filter(h, sigma=float(p.smooth), mode="reflect")
        h = h + float(p.eps)
        return h / h.sum()

    @staticmethod
    def divergence(p: np.ndarray, q: np.ndarray) -> float:
        """KL(p || q) = sum p log(p / q) in nats, for strictly positive normalised arrays."""
        return float(np.sum(p * (np.log(p) - np.log(q))))

    def compute(self, samples: torch.Tensor, ctx: MetricContext) -> dict[str, float]:
        count = samples.shape[0]
        if count < 1:
            raise ValueError("metric 'kl' got an empty sample set")
        ref = self.data_samples(ctx, self.params.n_ref)
        floor_set = self.data_samples(ctx, count)
        p = self.histogram(ref)
        finite = bool(torch.isfinite(samples).all())
        value = self.divergence(p, self.histogram(samples)) if finite else float("nan")
        return {self.name: value, f"{self.name}_floor": self.divergence(p, self.histogram(floor_set))}
