"""`digits`: the exact posterior-mean denoiser of the empirical distribution of 8x8 digit images.

Data. scikit-learn's `load_digits` (the UCI optical-recognition digits, 1797 images of 8x8 pixels
with values 0..16, labels 0..9, shipped with scikit-learn, no download), mapped to [-1, 1] by
x / 8 - 1. One sample has shape (1, 8, 8); `data_range` = 2 (for PSNR); `num_classes` = 10.

Denoiser. For the empirical distribution p = (1/N) sum_i delta(x_i), the VE-noised density at level s
is (1/N) sum_i N(x; x_i, s^2 I), so the exact posterior mean is the softmax-weighted average
    E[x0 | x] = sum_i w_i x_i,   w = softmax_i(-||x - x_i||^2 / (2 s^2)).
||x - x_i||^2 = ||x||^2 - 2 x.x_i + ||x_i||^2; the ||x||^2 term is the same for every i and cancels
in the softmax, so the logits are (x.x_i - ||x_i||^2 / 2) / s^2: one matmul of [x / s^2, -1 / s^2]
against [x_i, ||x_i||^2 / 2]. The (fused) softmax subtracts the row maximum (log-sum-exp), so nothing
underflows to 0/0: float32 stays finite at s = 0.002 arbitrarily far from the data. Every sample has
its own s (t is [B]). The output is differentiable in x and t (plain torch ops). The computation
runs in the dtype and on the device of x (float32 or float64); the data set is kept in float64 on
the CPU and cast once per (dtype, device). Batches are processed in chunks of `CHUNK` rows, bounding
the [chunk, 1797] weight matrix (7 MB in float32).

Throughput: `python benchmarks/bench_digits.py` prints samples x evaluations per second for the
unconditional and the conditional model.

Class-conditional use: `cond` is a LongTensor [B] of labels 0..9 (or None: unconditional). The
condition restricts the average to that digit's training images -- the same as masking the logits
of the other classes with -inf, but computed by grouping the batch by label and using only the
class's ~180 images, which is ~10x faster. A label of -1 marks an unconditional row (handy for
classifier-free-guidance batches that mix both). `guidance` (null or a scale >= 0) turns on
classifier-free guidance (`bench.guidance`: x0_u + scale (x0_c - x0_u), 2 evaluations per call).

Time. `time` names the noise schedule the model is used in (default "ve"): "ve" is EDM's
VE(0.002, 80) with t = sigma, the model's native coordinates; "flow" is FlowOT(0.002, 80/81) (VE
sigma 80 at t_max, as the toy2d model); "vp-linear", "vp-cosine", "vp-scaled-linear" are those
schedules with their defaults (see `bench.schedules`); {name: flow, shift: s} is the flow time with
SD3/FLUX's time shift s (`bench.schedules.flow_time`: same VE range, only the time axis moves). In a non-VE time, (x, t) is moved to VE by
SNR matching (`bench.schedules.convert`) and the posterior mean is returned unchanged, since the
data prediction is invariant under the conversion.

Accessors for metrics: `training_images()` [1797, 1, 8, 8], `training_labels()` [1797], and
`sample_data(n, generator)` / `sample_labeled(n, generator)` (uniform draws from the training set).
"""
from __future__ import annotations

import functools

import numpy as np
import torch
from pydantic import Field

from ..errors import UserError
from ..guidance import GuidanceParam, GuidanceParams
from ..registry import MODELS, SCHEDULES
from ..schedules import VE, FlowOT, convert, flow_time, make_schedule
from ._lazy import check_label_range
from .base import Denoiser

CHUNK = 1024
NUM_CLASSES = 10
IMAGE_SHAPE = (1, 8, 8)
DIM = 64


@functools.lru_cache(maxsize=1)
def load_data() -> tuple[torch.Tensor, torch.Tensor]:
    """(images [1797, 64] float64 in [-1, 1], labels [1797] int64), read once per process."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = torch.from_numpy(np.asarray(digits.data, dtype=np.float64) / 8.0 - 1.0)
    labels = torch.from_numpy(np.asarray(digits.target, dtype=np.int64))
    return images, labels


def _schedule_for(time):
    if isinstance(time, dict):
        return flow_time(time)
    if time == "ve":
        return VE(0.002, 80.0)
    if time == "flow":
        return FlowOT(0.002, 80.0 / 81.0)
    return make_schedule(time)


def _weighted_mean(x: torch.Tensor, inv_s2: torch.Tensor, AT: torch.Tensor, X: torch.Tensor) -> torch.Tensor:
    """sum_i softmax_i((x.X_i - |X_i|^2/2) * inv_s2) X_i for x [b, 64], inv_s2 [b, 1], X [n, 64].

    The logits come from one matmul of the augmented row [x * inv_s2, -inv_s2] with AT = [X | |X|^2/2]^T
    [65, n], so the per-row scale costs nothing extra; `torch.softmax` is fused and subtracts the max.
    """
    logits = torch.cat([x * inv_s2, -inv_s2], dim=1) @ AT
    return torch.softmax(logits, dim=1) @ X


@MODELS.register("digits")
class Digits(GuidanceParam, Denoiser):
    """The exact posterior mean of the 1797 scikit-learn 8x8 digits, optionally class-conditional."""

    class Params(GuidanceParams):
        time: str | dict = Field("ve", description="the time variable: ve (EDM), flow, vp-linear, vp-cosine, "
                                                   "vp-scaled-linear, or {name: flow, shift: s}")

    data_shape = IMAGE_SHAPE
    num_classes = NUM_CLASSES
    data_range = 2.0

    def __init__(self, **params):
        super().__init__(**params)
        time = self.params.time
        times = [n for n in SCHEDULES.names() if n != "vp-discrete"]
        if isinstance(time, dict):
            try:
                flow_time(time)
            except ValueError as err:
                raise UserError(f"model 'digits': time must be one of {', '.join(times)} or "
                                f"{{name: flow, shift: 3.0}}; {err}") from None
        elif not isinstance(time, str) or time not in times:
            raise UserError(f"model 'digits': time must be one of {', '.join(times)}, got {time!r}")
        self.check_guidance()
        self.schedule = _schedule_for(time)
        self._ve = VE(0.002, 80.0)
        # Float64 master copies on the CPU (plain attributes, not buffers, so Module.to(dtype) never
        # degrades them); per-(dtype, device) casts are cached in `_cache`.
        self.images, self.labels = load_data()
        self._cache: dict = {}

    @property
    def num_images(self) -> int:
        return self.images.shape[0]

    # ------------------------------------------------------------------ tables
    def _tables(self, dtype: torch.dtype, device: torch.device) -> dict:
        key = (dtype, device)
        tab = self._cache.get(key)
        if tab is None:
            half_sq = 0.5 * (self.images * self.images).sum(1, keepdim=True)
            aug = torch.cat([self.images, half_sq], dim=1)  # [N, 65]

            def cast(rows):
                return (aug[rows].t().to(device=device, dtype=dtype).contiguous(),
                        self.images[rows].to(device=device, dtype=dtype).contiguous())

            tab = {"all": cast(slice(None)), "classes": [cast(self.labels == c) for c in range(NUM_CLASSES)]}
            self._cache[key] = tab
        return tab

    # ------------------------------------------------------------------ checks
    def _flat(self, x: torch.Tensor) -> torch.Tensor:
        if not isinstance(x, torch.Tensor) or not x.is_floating_point():
            raise ValueError(f"digits: x must be a floating-point tensor, got {getattr(x, 'dtype', type(x))}")
        if x.ndim < 2 or x[0].numel() != DIM:
            raise ValueError(f"digits: x must have shape [B, 1, 8, 8] (or [B, 64]), got {tuple(x.shape)}")
        return x.reshape(x.shape[0], DIM)

    def _sigma_batch(self, sigma, x: torch.Tensor) -> torch.Tensor:
        if isinstance(sigma, torch.Tensor):
            sigma = sigma.to(device=x.device, dtype=x.dtype)
        else:
            sigma = torch.as_tensor(sigma, dtype=x.dtype, device=x.device)
        if sigma.ndim == 0 or sigma.numel() == 1:
            return sigma.reshape(()).expand(x.shape[0])
        if sigma.shape != (x.shape[0],):
            raise ValueError(f"digits: t must have shape [B] = [{x.shape[0]}] or be a scalar, got {tuple(sigma.shape)}")
        return sigma

    def _labels(self, cond, batch: int, device) -> torch.Tensor | None:
        if cond is None:
            return None
        cond = torch.as_tensor(cond, device=device)
        if cond.dtype.is_floating_point or cond.dtype == torch.bool:
            raise ValueError(f"digits: cond must be an integer tensor of labels, got {cond.dtype}")
        if cond.ndim == 0 or cond.numel() == 1:
            cond = cond.reshape(()).expand(batch)
        if cond.shape != (batch,):
            raise ValueError(f"digits: cond must have shape [B] = [{batch}], got {tuple(cond.shape)}")
        check_label_range(cond, NUM_CLASSES, "digits")
        return cond.long()

    # ------------------------------------------------------------------ the denoiser
    def _mean(self, xf: torch.Tensor, sigma: torch.Tensor, tables) -> torch.Tensor:
        # sigma -> 0 is the nearest-neighbour limit; the floor keeps x / s^2 finite (float32 included).
        sigma = sigma.clamp(min=torch.finfo(sigma.dtype).tiny ** 0.25)
        inv_s2 = (1.0 / (sigma * sigma))[:, None]
        outs = [_weighted_mean(xc, sc, *tables) for xc, sc in zip(xf.split(CHUNK), inv_s2.split(CHUNK))]
        return torch.cat(outs) if len(outs) > 1 else outs[0]

    def _posterior_mean(self, xf: torch.Tensor, sigma: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        tab = self._tables(xf.dtype, xf.device)
        if labels is None:
            return self._mean(xf, sigma, tab["all"])
        # Group rows by label (-1: all images), evaluate each group against its class, restore order.
        order = torch.argsort(labels, stable=True)
        counts = torch.bincount(labels + 1, minlength=NUM_CLASSES + 1).tolist()
        outs = []
        for c, (xg, sg) in enumerate(zip(xf[order].split(counts), sigma[order].split(counts))):
            if xg.shape[0] == 0:
                continue
            outs.append(self._mean(xg, sg, tab["all"] if c == 0 else tab["classes"][c - 1]))
        out = torch.cat(outs)
        return out[torch.argsort(order)]

    def forward(self, x: torch.Tensor, t, cond=None) -> torch.Tensor:
        """E[x0 | x_t = x (, label)] in the model's time (guided when `guidance` is set)."""
        return self.guide(self.denoise, x, t, cond)

    def denoise(self, x: torch.Tensor, t, cond=None) -> torch.Tensor:
        """E[x0 | x_t = x (, label)] in the model's time; x [B, 1, 8, 8], t [B] or scalar, cond [B] or None."""
        xf = self._flat(x)
        t = self._sigma_batch(t, x)
        labels = self._labels(cond, x.shape[0], x.device)
        if self.params.time != "ve":
            xf, t = convert(xf, t, self.schedule, self._ve)
        return self._posterior_mean(xf, t, labels).reshape(x.shape)

    def posterior_mean(self, x: torch.Tensor, sigma, cond=None) -> torch.Tensor:
        """E[x0 | x0 + sigma * noise = x] in VE coordinates, whatever the model's time."""
        xf = self._flat(x)
        labels = self._labels(cond, x.shape[0], x.device)
        return self._posterior_mean(xf, self._sigma_batch(sigma, x), labels).reshape(x.shape)

    # ------------------------------------------------------------------ data access
    def _dtype(self, dtype):
        return torch.get_default_dtype() if dtype is None else dtype

    def training_images(self, dtype: torch.dtype | None = None, device=None) -> torch.Tensor:
        """All 1797 training images in [-1, 1]: [1797, 1, 8, 8] (default: torch's default dtype)."""
        return self.images.reshape(-1, *IMAGE_SHAPE).to(device=device, dtype=self._dtype(dtype), copy=True)

    def training_labels(self, device=None) -> torch.Tensor:
        """The 1797 labels 0..9, int64."""
        return self.labels.to(device=device, copy=True)

    def sample_labeled(self, n: int, generator: torch.Generator, cond=None, dtype: torch.dtype | None = None):
        """(images [n, 1, 8, 8], labels [n]) drawn uniformly from the training set, on the generator's device.

        With `cond` (labels [n]), row j is drawn uniformly among the images of class cond[j].
        """
        n = int(n)
        device = generator.device
        if cond is None:
            idx = torch.randint(self.num_images, (n,), generator=generator, device=device).cpu()
        else:
            labels = self._labels(cond, n, torch.device("cpu"))
            if bool((labels < 0).any()):
                raise ValueError("digits.sample_labeled: cond labels must be in 0..9")
            u = torch.rand(n, generator=generator, device=device, dtype=torch.float64).cpu()
            order = torch.argsort(self.labels, stable=True)  # image indices grouped by class
            counts = torch.bincount(self.labels, minlength=NUM_CLASSES)
            starts = torch.cumsum(counts, 0) - counts
            pick = (u * counts[labels]).long().clamp(max=counts[labels] - 1)
            idx = order[starts[labels] + pick]
        images = self.images[idx].reshape(n, *IMAGE_SHAPE).to(device=device, dtype=self._dtype(dtype))
        return images, self.labels[idx].to(device)

    def sample_data(self, n: int, generator: torch.Generator, dtype: torch.dtype | None = None) -> torch.Tensor:
        """n images drawn uniformly (with replacement) from the training set: [n, 1, 8, 8]."""
        return self.sample_labeled(n, generator, dtype=dtype)[0]

    def nearest_distance(self, x: torch.Tensor) -> torch.Tensor:
        """L2 distance from each x [B, 1, 8, 8] to its nearest training image: [B] (in x's dtype)."""
        xf = self._flat(x).detach()
        X = self._tables(xf.dtype, xf.device)["all"][1]
        d = [torch.cdist(xc, X, compute_mode="donot_use_mm_for_euclid_dist").amin(dim=1) for xc in xf.split(CHUNK)]
        return torch.cat(d)


__all__ = ["Digits", "load_data"]
