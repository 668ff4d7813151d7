"""`toy2d`: the exact 2D "tree" Gaussian mixture and its exact denoiser E[x0 | x_t].

The distribution is the 2D toy of Karras et al. 2024, "Guiding a diffusion model with a bad version
of itself" (NVlabs/edm2, `toy_example.py`), rebuilt here from its description:

* Two classes grow from the origin (0.0030, 0.0325) with per-axis scale (1.3136, 1.3844): class A
  from angle pi/4, grown completely first, then class B from angle 5 pi/4. All random draws come from
  one `numpy.random.RandomState(2)`, one `randn()` per normal, in exactly this order.
* A branch at depth d (nothing is built, and nothing drawn, once d >= 7) with direction
  u = (cos a, sin a) draws n1 and has length L = 0.292 * 0.8^d * (1 + 0.2 n1), relative thickness
  h = 0.2 * 0.8^d / L and per-axis size s = scale * L * 0.06. It holds 8 components at
  f in linspace(0.07, 0.93, 8): weight L * 0.5^d, mean (pos + u L f) * scale and covariance
  (u u^T + (I - u u^T) h^2) * s s^T (elementwise). Then, for sign = +1 and then -1, it draws n2 and
  grows the child at pos + u L with angle a + sign * 0.7^d * (1 + 0.2 n2) at depth d + 1 (the first
  child's whole subtree before the second child's draw). A class has 127 branches: 1016 components.
* The weights are normalised over the selected classes (`classes` = "A" (default), "B" or "AB").

Denoiser. With C_k = Q_k diag(l_k) Q_k^T, the noisy data at VE level s is the mixture with
covariances Q_k diag(l_k + s^2) Q_k^T, so
    r_k(x) ∝ w_k N(x; m_k, C_k + s^2 I)                  (normalised with log-sum-exp),
    E[x0 | x] = sum_k r_k (m_k + Q_k diag(l_k / (l_k + s^2)) Q_k^T (x - m_k)).
The responsibilities are computed in log space: evaluated directly, in float32, they all underflow
off the tree at small s and give 0/0 = NaN. The computation runs in the dtype and on the device of
the input x (float32 or float64); the mixture is kept in float64 and cast once per (dtype, device).
The batch is processed in chunks of `CHUNK` rows to bound memory and stay in cache. When all rows
share one noise level (solvers pass `t.expand(B)`), the per-component variances are folded into the
tables once per call and a chunk costs about eight [chunk, K] elementwise passes and five thin
matmuls; per-row noise levels (per-sample schedules) cost about twice that. Below float64, logits
more than 60 below a row's maximum are raised to that floor before the softmax: their
responsibilities (< e^-60) change nothing, but as subnormals they slow the arithmetic down.

Time. `time="ve"` (default): the EDM schedule VE(0.002, 80), t = sigma. `time="flow"`: flow matching
with the OT path, FlowOT(0.002, 80/81) (the INDIS toy setting; t_max = 80/81 is VE sigma 80); the
state and time are converted to VE by SNR matching (`bench.schedules.convert`:
t_VE = t / (1 - t), x_VE = x / (1 - t)) and the VE posterior mean is returned unchanged, since the
data prediction is invariant under the conversion. The output is differentiable in x and t.
`time={name: flow, shift: s}`: the same OT path with SD3/FLUX's time shift s (`bench.schedules.flow_time`:
the same VE noise range, only the time axis moves, so `uniform` is the shifted default schedule).
"""
from __future__ import annotations

import math
from typing import Annotated, Literal, Union

import numpy as np
import torch
from pydantic import Discriminator, Field, Tag

from ..errors import UserError
from ..params import Params
from ..registry import MODELS
from ..schedules import VE, convert, flow_time
from .base import Denoiser

ORIGIN = (0.0030, 0.0325)
SCALE = (1.3136, 1.3844)
SEED = 2
MAX_DEPTH = 7
CHUNK = 256


def build_tree(seed: int = SEED):
    """Components of both classes, in construction order.

    Returns a list of (class, weight, mean [2], covariance [2, 2]) with float64 numpy values.
    """
    rs = np.random.RandomState(seed)
    scale = np.asarray(SCALE, dtype=np.float64)
    eye = np.eye(2)
    comps = []

    def grow(cls, depth, pos, angle):
        if depth >= MAX_DEPTH:
            return
        u = np.array([math.cos(angle), math.sin(angle)])
        length = 0.292 * 0.8**depth * (1.0 + 0.2 * rs.randn())
        thick = 0.2 * 0.8**depth / length
        size = scale * length * 0.06
        uu = np.outer(u, u)
        cov = (uu + (eye - uu) * thick**2) * np.outer(size, size)
        weight = length * 0.5**depth
        for f in np.linspace(0.07, 0.93, 8):
            comps.append((cls, weight, (pos + u * length * f) * scale, cov.copy()))
        tip = pos + u * length
        for sign in (1.0, -1.0):
            child_angle = angle + sign * 0.7**depth * (1.0 + 0.2 * rs.randn())
            grow(cls, depth + 1, tip, child_angle)

    origin = np.asarray(ORIGIN, dtype=np.float64)
    grow("A", 0, origin, math.pi * 0.25)
    grow("B", 0, origin, math.pi * 1.25)
    return comps


def _time_form(value):
    """Which form of `time` a value takes (a name or a mapping); None makes pydantic report the
    field's own message instead of one error per union member."""
    if isinstance(value, dict):
        return "mapping"
    return "name" if value in ("ve", "flow") else None


# `time`: a name or {name: flow, shift: s}; a value of neither form gets one message (pydantic's
# custom discriminator error), not one per union member.
TimeSpec = Annotated[
    Union[Annotated[Literal["ve", "flow"], Tag("name")], Annotated[dict, Tag("mapping")]],
    Discriminator(_time_form, custom_error_type="time_form",
                  custom_error_message="ve, flow or {name: flow, shift: s}"),
]


@MODELS.register("toy2d")
class Toy2D(Denoiser):
    """The exact posterior mean of the 2D tree mixture (Karras et al. 2024), in VE or flow-OT time."""

    class Params(Params):
        time: TimeSpec = Field(
            "ve", description="ve (EDM sigma 0.002..80), flow (OT, same log-SNR range) or {name: flow, shift: s}")
        classes: Literal["A", "B", "AB"] = Field("A", description="which of the tree's two classes the data holds")

    data_shape = (2,)
    num_classes = 0
    data_range = 2.0

    def __init__(self, **params):
        super().__init__(**params)
        time, classes = self.params.time, self.params.classes
        if time != "ve":
            try:
                flow = flow_time(time)
            except ValueError as err:
                raise UserError(f"model 'toy2d': time must be ve, flow or {{name: flow, shift: 3.0}}; {err}") from None
        self.schedule = VE(0.002, 80.0) if time == "ve" else flow
        self._ve = VE(0.002, 80.0)

        comps = [c for c in build_tree() if c[0] in classes]
        weights = np.array([c[1] for c in comps], dtype=np.float64)
        means = np.stack([c[2] for c in comps])
        covs = np.stack([c[3] for c in comps])
        evals, evecs = np.linalg.eigh(covs)  # covs[k] = evecs[k] @ diag(evals[k]) @ evecs[k].T
        # Float64 master copies on the CPU (plain attributes, not buffers, so that Module.to(dtype)
        # never degrades them); per-(dtype, device) casts are cached in `_cache`.
        self.weights = torch.from_numpy(weights / weights.sum())
        self.means = torch.from_numpy(means)
        self.covs = torch.from_numpy(covs)
        self.evals = torch.from_numpy(np.clip(evals, 0.0, None))
        self.evecs = torch.from_numpy(evecs)
        self._cache: dict = {}

    @property
    def num_components(self) -> int:
        return self.weights.shape[0]

    def _tables(self, dtype: torch.dtype, device: torch.device) -> dict:
        """The mixture, cast once per (dtype, device), laid out for [B, K] elementwise work.

        For eigen-axis j: q{j} [2, K] with q{j}[i, k] = Q_k[i, j], so that the eigen-coordinate of
        x - m_k is p_j = x @ q{j} - c{j}, c{j}[k] = m_k . Q_k[:, j]; l{j} [K] the eigenvalues and
        lq{j} [K, 2] = l{j}[k] Q_k[:, j]^T, which maps weighted coordinates back to the plane.
        """
        key = (dtype, device)
        tables = self._cache.get(key)
        if tables is None:
            Q, m, l = self.evecs, self.means, self.evals
            tables = {"log_w": torch.log(self.weights) - math.log(2 * math.pi), "means": m}  # N's constant folded in
            for j in (0, 1):
                q = Q[:, :, j]  # [K, 2]: the j-th eigenvector of each component
                tables[f"q{j}"] = q.t()
                tables[f"c{j}"] = (m * q).sum(-1)
                tables[f"l{j}"] = l[:, j]
                tables[f"lq{j}"] = l[:, j, None] * q
            tables = {k: v.to(device=device, dtype=dtype).contiguous() for k, v in tables.items()}
            self._cache[key] = tables
        return tables

    @staticmethod
    def _chunks(x: torch.Tensor, sigma: torch.Tensor, tab: dict):
        """Per chunk of rows: (log(w_k N(x; m_k, C_k + s^2 I)) [b, K], a0, a1 [b, K], b0, b1 [K, 2]).

        The posterior mean of the chunk is r @ means + (r * a0) @ b0 + (r * a1) @ b1 with
        r = softmax(logits): per eigen-axis j, a_j b_j carries Q_k[:, j] l_kj p_kj / (l_kj + s^2),
        where p_kj = (x - m_k) . Q_k[:, j] is the eigen-coordinate.

        `sigma` is [1] (one noise level for all rows) or [B] (one per row). With one level, the
        variances v_j = l_j + s^2 are [K] vectors folded into the tables (a_j = p_j / sqrt(v_j),
        b_j = l_j Q_k[:, j] / sqrt(v_j)); with one per row they are [b, K] (a_j = p_j / v_j,
        b_j = l_j Q_k[:, j]). Both work in x's dtype; the eigen-coordinates are formed per component
        (not by expanding the quadratic form), so float32 loses no precision to cancellation.
        """
        if sigma.shape[0] == 1:
            s2 = sigma * sigma
            v0, v1 = tab["l0"] + s2, tab["l1"] + s2
            k0, k1 = torch.rsqrt(v0), torch.rsqrt(v1)
            log_w = tab["log_w"] - 0.5 * torch.log(v0 * v1)
            q0, q1 = tab["q0"] * k0, tab["q1"] * k1
            c0, c1 = tab["c0"] * k0, tab["c1"] * k1
            b0, b1 = tab["lq0"] * k0[:, None], tab["lq1"] * k1[:, None]
            for xc in x.split(CHUNK):
                u0 = torch.addmm(c0, xc, q0, beta=-1)
                u1 = torch.addmm(c1, xc, q1, beta=-1)
                logits = torch.add(log_w, torch.addcmul(u0 * u0, u1, u1), alpha=-0.5)
                yield logits, u0, u1, b0, b1
        else:
            for xc, sc in zip(x.split(CHUNK), sigma.split(CHUNK)):
                s2 = (sc * sc)[:, None]
                p0 = torch.addmm(tab["c0"], xc, tab["q0"], beta=-1)
                p1 = torch.addmm(tab["c1"], xc, tab["q1"], beta=-1)
                v0, v1 = tab["l0"] + s2, tab["l1"] + s2
                z0, z1 = p0 / v0, p1 / v1
                quad = p0 * z0 + p1 * z1 + torch.log(v0 * v1)
                yield torch.add(tab["log_w"], quad, alpha=-0.5), z0, z1, tab["lq0"], tab["lq1"]

    def _posterior_mean(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        if x.shape[0] == 0:
            return x.clone()
        tab = self._tables(x.dtype, x.device)
        outs = []
        for logits, a0, a1, b0, b1 in self._chunks(x, sigma, tab):
            if x.dtype != torch.float64:
                # Responsibilities below e^-60 change nothing but, as float32 subnormals, slow the
                # arithmetic that follows (up to 2x near sigma = 0.05): raise them to e^-60.
                logits = logits.clamp_min(logits.detach().amax(-1, keepdim=True) - 60.0)
            r = torch.softmax(logits, dim=-1)  # log-sum-exp normalisation: no underflow to 0/0
            out = r @ tab["means"]
            out = torch.addmm(out, r * a0, b0)
            outs.append(torch.addmm(out, r * a1, b1))
        return torch.cat(outs) if len(outs) > 1 else outs[0]

    def _sigma(self, sigma, x: torch.Tensor) -> torch.Tensor:
        """The noise level(s) as [1] (shared by all rows) or [B], in x's dtype and device.

        A scalar, a [1] tensor, a [B] tensor expanded from one value (stride 0, as solvers pass
        `t.expand(B)`) and a [B] tensor of equal values that needs no gradient are all shared; the
        gradient of an expanded t still reaches its source, which every row depends on.
        """
        if isinstance(sigma, torch.Tensor):
            if sigma.ndim == 1 and sigma.shape[0] == x.shape[0] > 1 and sigma.stride(0) == 0:
                sigma = sigma[:1]  # before the cast, which would materialise the expansion
            sigma = sigma.to(device=x.device, dtype=x.dtype)
        else:
            sigma = torch.as_tensor(sigma, dtype=x.dtype, device=x.device)
        if sigma.numel() == 1:
            return sigma.reshape(1)
        if sigma.shape != (x.shape[0],):
            raise ValueError(f"toy2d: t must have shape [B] = [{x.shape[0]}] or be a scalar, got {tuple(sigma.shape)}")
        if sigma.numel() and not sigma.requires_grad and bool((sigma == sigma[0]).all()):
            return sigma[:1]
        return sigma

    def _check_x(self, x: torch.Tensor):
        if x.ndim != 2 or x.shape[1] != 2:
            raise ValueError(f"toy2d: x must have shape [B, 2], got {tuple(x.shape)}")
        if not x.is_floating_point():
            raise ValueError(f"toy2d: x must be a floating-point tensor, got {x.dtype}")

    def forward(self, x: torch.Tensor, t, cond=None) -> torch.Tensor:
        """E[x0 | x_t = x] in the model's time; `cond` is ignored (unconditional)."""
        self._check_x(x)
        t = self._sigma(t, x)
        if self.params.time != "ve":
            x, t = convert(x, t, self.schedule, self._ve)
        return self._posterior_mean(x, t)

    def posterior_mean(self, x: torch.Tensor, sigma) -> torch.Tensor:
        """E[x0 | x0 + sigma * noise = x] in VE coordinates, whatever the model's time."""
        self._check_x(x)
        return self._posterior_mean(x, self._sigma(sigma, x))

    def log_prob(self, x: torch.Tensor, sigma=0.0) -> torch.Tensor:
        """log p(x; sigma): the density of x0 + sigma * noise (VE coordinates), shape [B]."""
        self._check_x(x)
        tab = self._tables(x.dtype, x.device)
        outs = [torch.logsumexp(c[0], dim=-1) for c in self._chunks(x, self._sigma(sigma, x), tab)]
        return torch.cat(outs)

    def sample_data(self, n: int, generator: torch.Generator, dtype: torch.dtype | None = None) -> torch.Tensor:
        """n exact samples of the mixture on the generator's device: [n, 2], float64 unless `dtype`.

        The component is drawn with `torch.multinomial` over the exact weights, then
        x0 = m_k + Q_k diag(sqrt(l_k)) z with z ~ N(0, I), all from `generator`.
        """
        device = generator.device
        w = self.weights.to(device)
        idx = torch.multinomial(w, int(n), replacement=True, generator=generator)
        z = torch.randn(int(n), 2, generator=generator, dtype=torch.float64, device=device)
        Q, l, m = self.evecs.to(device)[idx], self.evals.to(device)[idx], self.means.to(device)[idx]
        x0 = m + torch.einsum("nij,nj->ni", Q, l.sqrt() * z)
        return x0 if dtype is None else x0.to(dtype)


__all__ = ["Toy2D", "build_tree"]
