"""INDIS's schedule network and the map from its output to a discretization ("Few-Step Diffusion
Sampling Through Instance-Aware Discretizations", Yuan et al., CVPR 2026; `bench.methods.indis` documents
the architecture and where each default comes from).

* `PriorNet`: phi(x_T / sigma(t_max), c) -> O [B, n_out, N] (INDIS); `GlobalO`: one learned O
  [1, n_out, N] for every input (GOD, the oracle's start). The head's bias (or GlobalO's O) starts at
  (the initial schedule's logits, 0, 0).
* `OutputMap`: O -> (t, t_eval, scale) in float64: timesteps from o_tau through the cumulative-softmax
  `TimeMap`; with `shifts`, the relative evaluation shift dtau = b tanh(o_dtau / 2) and the output
  scale gamma = 1 + b tanh(o_gamma / 2). The fitted method's `discretize` and its TorchScript export
  (`bench.methods._learned.export`) both go through it.
* `count_parameters` and `seconds_per_sample`: phi's size and cost for the fit info.
"""
from __future__ import annotations

import math
import time
from typing import Callable

import torch
from torch import nn

from .time_map import TimeMap

HEAD_INIT_SCALE = 0.01


class PriorNet(nn.Module):
    """phi(x_T, c) -> O [B, n_out, N] (the architecture is documented in `bench.methods.indis`)."""

    def __init__(self, data_shape, num_classes: int, steps: int, n_out: int, hidden: int, class_dim: int,
                 svd: bool, init_logits: torch.Tensor):
        super().__init__()
        self.data_shape = tuple(data_shape)
        self.num_classes = int(num_classes)
        self.steps, self.n_out = int(steps), int(n_out)
        self.use_svd = bool(svd) and len(self.data_shape) == 3
        if self.use_svd:
            c, h, w = self.data_shape
            k = min(h, w)
            self.feat_u = nn.Sequential(nn.Linear(c * h * k, hidden), nn.ReLU())
            self.feat_s = nn.Sequential(nn.Linear(c * k, hidden), nn.ReLU())
            self.feat_v = nn.Sequential(nn.Linear(c * k * w, hidden), nn.ReLU())
            features = 3 * hidden
        else:
            d = math.prod(self.data_shape)
            self.mlp = nn.Sequential(nn.Linear(d, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU())
            features = hidden
        if self.num_classes:
            self.embed = nn.Linear(self.num_classes, class_dim)
            features += class_dim
        self.head = nn.Linear(features, n_out * steps)
        with torch.no_grad():
            self.head.weight.mul_(HEAD_INIT_SCALE)
            bias = torch.zeros(n_out, steps)
            bias[0] = init_logits.to(torch.float32)
            self.head.bias.copy_(bias.flatten())

    def forward(self, noise: torch.Tensor, cond=None) -> torch.Tensor:
        """`noise`: x_T / sigma(t_max), [B, *data_shape]."""
        x = noise.to(torch.float32)
        b = x.shape[0]
        if self.use_svd:
            with torch.no_grad():  # x_T is an input, not learned: no gradient through the SVD
                u, s, vh = torch.linalg.svd(x, full_matrices=False)
            parts = [self.feat_u(u.reshape(b, -1)), self.feat_s(s.reshape(b, -1)), self.feat_v(vh.reshape(b, -1))]
        else:
            parts = [self.mlp(x.reshape(b, -1))]
        if self.num_classes:
            onehot = torch.zeros(b, self.num_classes, dtype=x.dtype, device=x.device)
            if cond is not None:
                # written without boolean-mask indexing (same values), so a traced export keeps the batch size free
                labels = cond if isinstance(cond, torch.Tensor) else torch.as_tensor(cond)
                labels = labels.to(x.device).reshape(-1).long()
                valid = (labels >= 0).unsqueeze(1)
                onehot = nn.functional.one_hot(labels.clamp(min=0), self.num_classes).to(x.dtype) * valid.to(x.dtype)
            parts.append(self.embed(onehot / math.sqrt(self.num_classes)))
        return self.head(torch.cat(parts, dim=1)).reshape(b, self.n_out, self.steps)


class GlobalO(nn.Module):
    """GOD: one learned O [1, n_out, N] for every input."""

    def __init__(self, steps: int, n_out: int, init_logits: torch.Tensor):
        super().__init__()
        o = torch.zeros(n_out, steps)
        o[0] = init_logits.to(torch.float32)
        self.o = nn.Parameter(o)

    def forward(self, noise: torch.Tensor, cond=None) -> torch.Tensor:
        return self.o[None]


class OutputMap:
    """O [B, n_out, N] -> (t [B, N+1], t_eval [B, N] or None, scale [B, N] or None), float64."""

    def __init__(self, time_map: TimeMap, shifts: bool, b: float):
        self.map, self.shifts, self.b = time_map, bool(shifts), float(b)

    @property
    def n_out(self) -> int:
        return 3 if self.shifts else 1

    def __call__(self, O: torch.Tensor):
        u = self.map.progress(O[:, 0])
        t = self.map.time_at(u)
        if not self.shifts:
            return t, None, None
        dtau = self.b * torch.tanh(O[:, 1].to(torch.float64) / 2)
        gamma = 1 + self.b * torch.tanh(O[:, 2].to(torch.float64) / 2)
        return t, self.map.relative_eval_times(u, dtau), gamma


def count_parameters(module: torch.nn.Module | None) -> int:
    return 0 if module is None else sum(p.numel() for p in module.parameters())


def seconds_per_sample(fn: Callable, n: int, repeats: int = 7) -> float:
    """The fastest of `repeats` wall times of fn() divided by n (fn processes n samples), after one
    warm-up call; the minimum, not the median, because the machine may be shared (noise only adds)."""
    with torch.no_grad():
        fn()
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
    return min(times) / max(n, 1)


__all__ = ["GlobalO", "HEAD_INIT_SCALE", "OutputMap", "PriorNet", "count_parameters", "seconds_per_sample"]
