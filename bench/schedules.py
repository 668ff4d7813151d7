"""Noise schedules: the map from a model's own time `t` to alpha(t), sigma(t) and log-SNR.

A diffusion state is x_t = alpha(t) x_0 + sigma(t) eps. Every model carries one `NoiseSchedule`;
`lambda_(t) = log(alpha/sigma)` is its log signal-to-noise ratio (half log-SNR, as in DPM-Solver) and
`t_of_lambda` its inverse. Two schedules describe the same diffusion at equal lambda, up to a scale
of the state, so `convert` moves (x, t) between any two of them (SNR matching):
    t_b = t_of_lambda_b(lambda_a(t_a)),   x_b = x_a * alpha_b(t_b) / alpha_a(t_a).

Named schedules:
  * `VE`     -- EDM (Karras et al. 2022): alpha = 1, sigma = t, t in [0.002, 80].
  * `FlowOT` -- rectified flow / flow matching with the OT path: alpha = 1 - t, sigma = t.
               lambda = log((1-t)/t), so t_OT = t_VE / (1 + t_VE) and x_OT = x_VE / (1 + t_VE).
               Optional resolution `shift` (SD3's scheduler `shift`, Esser et al. 2024): the model's
               time u maps to the OT time s(u) = shift u / (1 + (shift - 1) u), i.e. alpha = (1-u) /
               (1 + (shift-1) u), sigma = shift u / (1 + (shift-1) u) and lambda = log((1-u)/u) - log shift.
               The path is the same; only the time axis moves, so "uniform in t" is diffusers' shifted
               default schedule. shift = 1 (the default) is the plain OT time. The shipped exact models
               (toy2d, digits) take it as `time: {name: flow, shift: 3.0}` (`flow_time`: same VE noise
               range as `time: flow`, only the time axis moves).
VP schedules (alpha^2 + sigma^2 = 1), written through log alpha(t) as DPM-Solver's `NoiseScheduleVP`
(Lu et al. 2022) defines them; sigma = sqrt(1 - alpha^2), lambda = log alpha - log sigma, and the
inverse goes through log alpha(lambda) = -log(1 + e^{-2 lambda}) / 2:
  * `VPLinear` ("vp-linear") -- DDPM / score-SDE linear beta(t) = beta_min + t (beta_max - beta_min),
               beta 0.1..20, log alpha = -(beta_max - beta_min) t^2 / 4 - beta_min t / 2, t in [1e-3, 1];
               closed-form inverse (root of the quadratic, written without cancellation).
  * `VPCosine` ("vp-cosine") -- Nichol & Dhariwal's cosine schedule, s = 0.008, continuous:
               log alpha = log cos((t+s)/(1+s) pi/2) - log cos(s/(1+s) pi/2) (so alpha(0) = 1), t in
               [1e-3, 0.9946]. t_max = 0.9946 is DPM-Solver's clipping (alpha -> 0 as t -> 1, so t = 1
               is unusable); it is VE sigma ~ 119. Closed-form inverse via arccos, evaluated as
               2 asin(sqrt((1 - c)/2)) so that it stays accurate where c = cos(...) is close to 1.
  * `DiscreteVP` ("vp-discrete") -- any discrete-time DDPM given by alphas_cumprod[n], n = 0..N-1,
               made continuous with DPM-Solver's 'discrete' convention: time t_n = (n + 1) / N carries
               log alpha = log(alphas_cumprod[n]) / 2, and log alpha(t) is piecewise linear in t between
               these knots, extended linearly beyond the first and last knot (as DPM-Solver's
               `interpolate_fn`). So t in [1/N, 1] covers the training steps (t_min = 1/N, t_max = 1),
               and network step index n = t N - 1. The inverse inverts the same piecewise-linear map
               segment by segment (it is strictly decreasing), so t_of_lambda(lambda_(t)) = t up to
               rounding, extrapolation included. Below the first knot the extension reaches log alpha = 0
               at t ~ 5e-6 (scaled-linear); lambda_ is NaN for earlier t, t_of_lambda never goes there.
  * `VPScaledLinear` ("vp-scaled-linear") -- Stable Diffusion's discrete scaled-linear betas,
               betas = linspace(sqrt(0.00085), sqrt(0.012), 1000)^2 (computed in float64; diffusers uses
               float32, a ~1e-7 relative difference), alphas_cumprod = cumprod(1 - betas), in the
               `DiscreteVP` convention above. VE sigma runs from ~0.029 (t = 1/1000) to ~14.6 (t = 1).

All functions take and return torch tensors (floats are accepted), and are differentiable.
"""
from __future__ import annotations

import math

import torch

from .registry import SCHEDULES


def as_tensor(t, like: torch.Tensor | None = None) -> torch.Tensor:
    if isinstance(t, torch.Tensor):
        return t
    if like is not None:
        return torch.as_tensor(t, dtype=like.dtype, device=like.device)
    return torch.as_tensor(t, dtype=torch.float64)


class NoiseSchedule:
    """Base class. Subclasses define alpha, sigma and the inverse of lambda; t_min < t_max."""

    t_min: float
    t_max: float
    # alpha(t) == 1 for every t (VE). The solvers then skip multiplying and dividing by alpha, which
    # gives the same numbers bit for bit (x * 1.0 == x) with fewer kernel launches per step.
    unit_alpha: bool = False

    def alpha(self, t):
        raise NotImplementedError

    def sigma(self, t):
        raise NotImplementedError

    def lambda_(self, t):
        t = as_tensor(t)
        return torch.log(self.alpha(t)) - torch.log(self.sigma(t))

    def t_of_lambda(self, lam):
        raise NotImplementedError

    def sigma_ve(self, t):
        """The equivalent VE noise level sigma/alpha = exp(-lambda)."""
        t = as_tensor(t)
        return self.sigma(t) / self.alpha(t)

    def t_of_sigma_ve(self, s):
        s = as_tensor(s)
        return self.t_of_lambda(-torch.log(s))

    @property
    def lambda_min(self) -> float:
        return float(self.lambda_(torch.tensor(self.t_max, dtype=torch.float64)))

    @property
    def lambda_max(self) -> float:
        return float(self.lambda_(torch.tensor(self.t_min, dtype=torch.float64)))

    def prior_std(self) -> float:
        """Standard deviation of the prior x_T = sigma(t_max) * noise used to start sampling."""
        return float(self.sigma(torch.tensor(self.t_max, dtype=torch.float64)))

    def spec(self) -> dict:
        """Plain values that identify this schedule (for cache keys and result rows)."""
        raise NotImplementedError

    def __repr__(self):
        args = ", ".join(f"{k}={v}" for k, v in self.spec().items() if k != "name")
        return f"{type(self).__name__}({args})"

    def __eq__(self, other):
        return isinstance(other, NoiseSchedule) and self.spec() == other.spec()

    def __hash__(self):
        return hash(tuple(sorted(self.spec().items())))


@SCHEDULES.register("ve")
class VE(NoiseSchedule):
    """EDM's variance-exploding schedule: alpha = 1, sigma = t (Karras et al. 2022)."""

    unit_alpha = True

    def __init__(self, t_min: float = 0.002, t_max: float = 80.0):
        if not 0 < t_min < t_max:
            raise ValueError(f"VE schedule needs 0 < t_min < t_max, got t_min={t_min}, t_max={t_max}")
        self.t_min, self.t_max = float(t_min), float(t_max)

    def alpha(self, t):
        t = as_tensor(t)
        return torch.ones_like(t)

    def sigma(self, t):
        return as_tensor(t)

    def lambda_(self, t):
        return -torch.log(as_tensor(t))

    def t_of_lambda(self, lam):
        return torch.exp(-as_tensor(lam))

    def spec(self):
        return {"name": "ve", "t_min": self.t_min, "t_max": self.t_max}


@SCHEDULES.register("flow")
class FlowOT(NoiseSchedule):
    """Flow matching with the optimal-transport path: alpha = 1 - t, sigma = t (Lipman et al. 2023).

    Defaults match the toy study of the INDIS paper: t_max = 80/81 (VE sigma 80), t_min = 0.002.
    With `shift` != 1, t is the unshifted time of a resolution-shifted model (module docstring).
    """

    def __init__(self, t_min: float = 0.002, t_max: float = 80.0 / 81.0, shift: float = 1.0):
        if not 0 < t_min < t_max < 1:
            raise ValueError(f"FlowOT schedule needs 0 < t_min < t_max < 1, got t_min={t_min}, t_max={t_max}")
        if not (isinstance(shift, (int, float)) and math.isfinite(shift) and shift > 0):
            raise ValueError(f"FlowOT schedule needs a finite shift > 0, got {shift!r}")
        self.t_min, self.t_max = float(t_min), float(t_max)
        self.shift = float(shift)

    def _denominator(self, t):
        return 1 + (self.shift - 1) * t

    def alpha(self, t):
        t = as_tensor(t)
        return (1 - t) if self.shift == 1 else (1 - t) / self._denominator(t)

    def sigma(self, t):
        t = as_tensor(t)
        return t if self.shift == 1 else self.shift * t / self._denominator(t)

    def lambda_(self, t):
        t = as_tensor(t)
        return torch.log(1 - t) - torch.log(t) - math.log(self.shift)

    def t_of_lambda(self, lam):
        # lambda = log((1-t)/t) - log(shift)  =>  t = sigmoid(-lambda - log(shift))
        return torch.sigmoid(-as_tensor(lam) - math.log(self.shift))

    def spec(self):
        spec = {"name": "flow", "t_min": self.t_min, "t_max": self.t_max}
        if self.shift != 1:  # plain OT keeps its old spec, so existing cache keys stay valid
            spec["shift"] = self.shift
        return spec


def flow_time(spec) -> FlowOT:
    """The shipped exact models' flow time: "flow" or {name: flow, shift: s} (a model's `time` field).

    shift = 1 is FlowOT(0.002, 80/81), VE sigma 0.002/0.998 .. 80. Another shift keeps the same VE
    noise range (the same diffusion problem; only the time axis moves, as SD3's scheduler `shift`):
    the model's time u has VE sigma s u / (1 - u), so the ends are u = sigma / (s + sigma). Uniform
    steps in u are then SD3/FLUX's shifted default schedule. Raises ValueError on a bad spec.
    """
    if spec == "flow":
        return FlowOT(0.002, 80.0 / 81.0)
    if not isinstance(spec, dict) or spec.get("name") != "flow" or set(spec) - {"name", "shift"}:
        raise ValueError(f"a flow time is 'flow' or {{name: flow, shift: <number > 0>}}, got {spec!r}")
    shift = spec.get("shift", 1.0)
    if isinstance(shift, bool) or not isinstance(shift, (int, float)) or not (math.isfinite(shift) and shift > 0):
        raise ValueError(f"time.shift must be a finite number > 0 (e.g. 3.0, SD3's), got {shift!r}")
    if float(shift) == 1.0:
        return FlowOT(0.002, 80.0 / 81.0)
    sigma_min, sigma_max = 0.002 / 0.998, 80.0
    return FlowOT(sigma_min / (shift + sigma_min), sigma_max / (shift + sigma_max), float(shift))


def _log_alpha_of_lambda(lam: torch.Tensor) -> torch.Tensor:
    """For a VP schedule: log alpha = -log(1 + e^{-2 lambda}) / 2 (exact for all lambda, no overflow)."""
    return -0.5 * torch.logaddexp(torch.zeros_like(lam), -2 * lam)


class VP(NoiseSchedule):
    """Variance-preserving schedules: alpha^2 + sigma^2 = 1. Subclasses give log alpha(t) and its inverse.

    Everything is computed from log alpha, which keeps sigma and lambda accurate at small t:
    sigma^2 = -expm1(2 log alpha), lambda = log alpha - log(sigma^2) / 2.
    """

    def log_alpha(self, t):
        raise NotImplementedError

    def t_of_log_alpha(self, log_alpha):
        raise NotImplementedError

    def _check_range(self, lo: float, hi: float):
        if not lo <= self.t_min < self.t_max <= hi:
            raise ValueError(
                f"{type(self).__name__} schedule needs {lo} <= t_min < t_max <= {hi}, "
                f"got t_min={self.t_min}, t_max={self.t_max}"
            )

    def alpha(self, t):
        return torch.exp(self.log_alpha(as_tensor(t)))

    def sigma(self, t):
        return torch.sqrt(-torch.expm1(2 * self.log_alpha(as_tensor(t))))

    def lambda_(self, t):
        log_alpha = self.log_alpha(as_tensor(t))
        return log_alpha - 0.5 * torch.log(-torch.expm1(2 * log_alpha))

    def t_of_lambda(self, lam):
        return self.t_of_log_alpha(_log_alpha_of_lambda(as_tensor(lam)))


@SCHEDULES.register("vp-linear")
class VPLinear(VP):
    """DDPM's linear schedule in continuous time (Ho et al. 2020; Song et al. 2021; DPM-Solver 'linear').

    beta(t) = beta_min + t (beta_max - beta_min), log alpha(t) = -(beta_max - beta_min) t^2 / 4 - beta_min t / 2.
    """

    def __init__(self, beta_min: float = 0.1, beta_max: float = 20.0, t_min: float = 1e-3, t_max: float = 1.0):
        if not 0 <= beta_min < beta_max:
            raise ValueError(f"vp-linear needs 0 <= beta_min < beta_max, got beta_min={beta_min}, beta_max={beta_max}")
        self.beta_min, self.beta_max = float(beta_min), float(beta_max)
        self.t_min, self.t_max = float(t_min), float(t_max)
        self._check_range(0.0, math.inf)
        if self.t_min <= 0:
            raise ValueError(f"vp-linear needs t_min > 0, got {t_min}")

    def log_alpha(self, t):
        t = as_tensor(t)
        return -0.25 * (self.beta_max - self.beta_min) * t * t - 0.5 * self.beta_min * t

    def t_of_log_alpha(self, log_alpha):
        # Solve (b1 - b0)/4 t^2 + b0/2 t - L = 0 for L = -log alpha >= 0; the positive root, written as
        # 4 L / (sqrt(b0^2 + 4 (b1 - b0) L) + b0), has no cancellation.
        four_l = -4 * as_tensor(log_alpha)
        b0, db = self.beta_min, self.beta_max - self.beta_min
        return four_l / (torch.sqrt(b0 * b0 + db * four_l) + b0)

    def spec(self):
        return {"name": "vp-linear", "beta_min": self.beta_min, "beta_max": self.beta_max,
                "t_min": self.t_min, "t_max": self.t_max}


@SCHEDULES.register("vp-cosine")
class VPCosine(VP):
    """The cosine schedule (Nichol & Dhariwal 2021) in continuous time, as DPM-Solver's 'cosine'.

    alpha(t) = cos((t + s)/(1 + s) pi/2) / cos(s/(1 + s) pi/2); t_max = 0.9946 (DPM-Solver's clipping).
    """

    def __init__(self, s: float = 0.008, t_min: float = 1e-3, t_max: float = 0.9946):
        if not s >= 0:
            raise ValueError(f"vp-cosine needs s >= 0, got s={s}")
        self.s = float(s)
        self.t_min, self.t_max = float(t_min), float(t_max)
        self._check_range(0.0, 1.0)
        if self.t_min <= 0 or self.t_max >= 1:
            raise ValueError(f"vp-cosine needs 0 < t_min < t_max < 1, got t_min={t_min}, t_max={t_max}")
        self._log_alpha_0 = math.log1p(-2 * math.sin(self.s / (1 + self.s) * math.pi / 4) ** 2)

    def log_alpha(self, t):
        # log cos(theta) = log1p(-2 sin^2(theta/2)): accurate near theta = 0, where cos(theta) ~ 1.
        half_theta = (as_tensor(t) + self.s) / (1 + self.s) * (math.pi / 4)
        return torch.log1p(-2 * torch.sin(half_theta) ** 2) - self._log_alpha_0

    def t_of_log_alpha(self, log_alpha):
        # c = cos(theta), theta = (t + s)/(1 + s) pi/2; arccos(c) = 2 asin(sqrt((1 - c)/2)), with
        # 1 - c = -expm1(log c), is accurate also for c near 1 (small t), where arccos is ill-conditioned.
        log_c = as_tensor(log_alpha) + self._log_alpha_0
        theta = 2 * torch.asin(torch.sqrt(-0.5 * torch.expm1(log_c)))
        return theta * (2 * (1 + self.s) / math.pi) - self.s

    def spec(self):
        return {"name": "vp-cosine", "s": self.s, "t_min": self.t_min, "t_max": self.t_max}


@SCHEDULES.register("vp-discrete")
class DiscreteVP(VP):
    """A discrete-time DDPM (alphas_cumprod[n], n = 0..N-1) in DPM-Solver's continuous 'discrete' time.

    Knots t_n = (n + 1)/N with log alpha = log(alphas_cumprod[n]) / 2, piecewise-linear interpolation in
    t, linear extension beyond the ends; default t range [1/N, 1]. See the module docstring.
    """

    def __init__(self, alphas_cumprod, t_min: float | None = None, t_max: float = 1.0):
        ac = torch.as_tensor(alphas_cumprod, dtype=torch.float64).flatten()
        self._init_table(ac, t_min, t_max)

    def _init_table(self, alphas_cumprod: torch.Tensor, t_min, t_max):
        ac = alphas_cumprod
        n = ac.numel()
        if n < 2 or not bool(((ac > 0) & (ac < 1)).all()) or not bool((ac[1:] < ac[:-1]).all()):
            raise ValueError("a discrete VP schedule needs >= 2 alphas_cumprod in (0, 1), strictly decreasing")
        self.num_train_timesteps = n
        self.t_min = 1.0 / n if t_min is None else float(t_min)
        self.t_max = float(t_max)
        self._check_range(0.0, math.inf)
        self.alphas_cumprod = ac
        self._knots_t = torch.arange(1, n + 1, dtype=torch.float64) / n
        self._knots_log_alpha = 0.5 * torch.log(ac)
        self._tables: dict = {}
        if not float(self.log_alpha(torch.tensor(self.t_min, dtype=torch.float64))) < 0:
            raise ValueError(f"discrete VP schedule: t_min={self.t_min} is before alpha reaches 1; use t_min >= 1/N")

    def _table(self, like: torch.Tensor):
        key = (like.dtype, like.device)
        tab = self._tables.get(key)
        if tab is None:
            kt, kl = self._knots_t, self._knots_log_alpha
            slope = (kl[1:] - kl[:-1]) / (kt[1:] - kt[:-1])  # [N-1], all < 0
            tab = tuple(v.to(dtype=like.dtype, device=like.device).contiguous()
                        for v in (kt, kl, slope, -kl))
            self._tables[key] = tab
        return tab

    def log_alpha(self, t):
        t = as_tensor(t)
        if not t.is_floating_point():
            t = t.to(torch.float64)
        kt, kl, slope, _ = self._table(t)
        # Segment k covers [kt[k], kt[k+1]]; the first and last segments extend to -inf and +inf.
        k = (torch.searchsorted(kt, t.detach().contiguous(), right=True) - 1).clamp(0, kt.numel() - 2)
        return kl[k] + (t - kt[k]) * slope[k]

    def t_of_log_alpha(self, log_alpha):
        y = as_tensor(log_alpha)
        kt, kl, slope, neg_kl = self._table(y)
        # log alpha decreases along the knots, -log alpha increases: search in -kl.
        k = (torch.searchsorted(neg_kl, (-y).detach().contiguous(), right=True) - 1).clamp(0, kt.numel() - 2)
        return kt[k] + (y - kl[k]) / slope[k]

    def step_index(self, t):
        """The (fractional) discrete training step n = t N - 1 of a continuous time t."""
        return as_tensor(t) * self.num_train_timesteps - 1

    def spec(self):
        return {"name": "vp-discrete", "alphas_cumprod": tuple(self.alphas_cumprod.tolist()),
                "t_min": self.t_min, "t_max": self.t_max}


@SCHEDULES.register("vp-scaled-linear")
class VPScaledLinear(DiscreteVP):
    """Stable Diffusion's scaled-linear discrete schedule in DPM-Solver's 'discrete' continuous time.

    betas = linspace(sqrt(beta_start), sqrt(beta_end), N)^2, alphas_cumprod = cumprod(1 - betas), in float64.
    """

    def __init__(self, beta_start: float = 0.00085, beta_end: float = 0.012, num_train_timesteps: int = 1000,
                 t_min: float | None = None, t_max: float = 1.0):
        if not 0 < beta_start < beta_end < 1:
            raise ValueError(f"vp-scaled-linear needs 0 < beta_start < beta_end < 1, got {beta_start}, {beta_end}")
        self.beta_start, self.beta_end = float(beta_start), float(beta_end)
        n = int(num_train_timesteps)
        betas = torch.linspace(math.sqrt(self.beta_start), math.sqrt(self.beta_end), n, dtype=torch.float64) ** 2
        self._init_table(torch.exp(torch.cumsum(torch.log1p(-betas), 0)), t_min, t_max)

    def spec(self):
        return {"name": "vp-scaled-linear", "beta_start": self.beta_start, "beta_end": self.beta_end,
                "num_train_timesteps": self.num_train_timesteps, "t_min": self.t_min, "t_max": self.t_max}


def convert(x: torch.Tensor, t, src: NoiseSchedule, dst: NoiseSchedule):
    """Move a state x at time t of `src` to the state and time of `dst` with the same log-SNR."""
    t = as_tensor(t, like=x)
    t_dst = dst.t_of_lambda(src.lambda_(t))
    ratio = dst.alpha(t_dst) / src.alpha(t)
    return x * append_dims(ratio, x.ndim), t_dst


def append_dims(v: torch.Tensor, ndim: int) -> torch.Tensor:
    """Reshape a [B] (or scalar) tensor so it broadcasts against a [B, ...] tensor of `ndim` dims."""
    if v.ndim == 0:
        return v
    return v.reshape(v.shape + (1,) * (ndim - v.ndim))


def make_schedule(spec) -> NoiseSchedule:
    """Build a schedule from a name or a dict {name: ..., **params}."""
    if isinstance(spec, NoiseSchedule):
        return spec
    return SCHEDULES.build(spec)


__all__ = [
    "NoiseSchedule", "VE", "FlowOT", "VP", "VPLinear", "VPCosine", "DiscreteVP", "VPScaledLinear",
    "convert", "append_dims", "make_schedule", "as_tensor", "flow_time",
]
