"""diffusers scheduler configs -> the harness's `NoiseSchedule`s, and model time -> network timestep.

DDPM-family configs (DDPMScheduler, DDIMScheduler, PNDMScheduler, ... all share these fields):
`num_train_timesteps` N and the betas, from `trained_betas` or `beta_schedule` with `beta_start`,
`beta_end`, written after diffusers' `DDPMScheduler.__init__` but in float64:
  * "linear":            betas = linspace(beta_start, beta_end, N);
  * "scaled_linear":     betas = linspace(sqrt(beta_start), sqrt(beta_end), N)^2 -> `VPScaledLinear`;
  * "squaredcos_cap_v2": betas_n = min(1 - abar((n+1)/N) / abar(n/N), 0.999) with
                         abar(s) = cos((s + 0.008) / 1.008 * pi/2)^2 (Nichol & Dhariwal's cosine).
alphas_cumprod = cumprod(1 - betas) becomes a `DiscreteVP` (DPM-Solver's discrete-time convention,
t_n = (n + 1)/N, `bench.schedules`), and the network gets the fractional step index n = t N - 1 as
its timestep (DPM-Solver's `model_wrapper` for discrete models does the same). Zero-terminal-SNR
configs (`rescale_betas_zero_snr`) have alpha = 0 at t = 1 and no finite log-SNR there: refused.

FlowMatchEulerDiscreteScheduler configs (SD3, Esser et al. 2024): `FlowOT` in the unshifted time u with
the config's `shift`, or, with `use_dynamic_shifting`, the resolution-dependent shift of diffusers'
`calculate_shift` (mu linear in the number of latent patches between (base_image_seq_len, base_shift)
and (max_image_seq_len, max_shift); shift = e^mu for `time_shift_type` "exponential", mu for
"linear"). The network gets timestep = sigma(u) N, as diffusers' flow pipelines pass it.
"""
from __future__ import annotations

import math

import torch

from ..errors import UserError
from ..schedules import DiscreteVP, FlowOT, VPScaledLinear, as_tensor

BETA_SCHEDULES = ("linear", "scaled_linear", "squaredcos_cap_v2")


def _cosine_alphas_cumprod(n: int) -> torch.Tensor:
    def abar(s):
        return math.cos((s + 0.008) / 1.008 * math.pi / 2) ** 2

    betas = torch.tensor([min(1 - abar((i + 1) / n) / abar(i / n), 0.999) for i in range(n)], dtype=torch.float64)
    return torch.cumprod(1 - betas, 0)


def vp_schedule(config: dict, model: str = "?") -> DiscreteVP:
    """The `DiscreteVP` of a DDPM-family scheduler config (see the module docstring)."""
    if config.get("rescale_betas_zero_snr"):
        raise UserError(f"model {model!r}: zero-terminal-SNR schedulers (rescale_betas_zero_snr) have no finite "
                        f"log-SNR at t = 1; they are not supported")
    n = int(config.get("num_train_timesteps", 1000))
    start, end = float(config.get("beta_start", 0.0001)), float(config.get("beta_end", 0.02))
    if config.get("trained_betas") is not None:
        betas = torch.as_tensor(config["trained_betas"], dtype=torch.float64)
        return DiscreteVP(torch.cumprod(1 - betas, 0))
    kind = config.get("beta_schedule", "linear")
    if kind == "scaled_linear":
        return VPScaledLinear(start, end, n)
    if kind == "linear":
        return DiscreteVP(torch.cumprod(1 - torch.linspace(start, end, n, dtype=torch.float64), 0))
    if kind == "squaredcos_cap_v2":
        return DiscreteVP(_cosine_alphas_cumprod(n))
    raise UserError(f"model {model!r}: scheduler beta_schedule {kind!r} is not supported; "
                    f"supported: {', '.join(BETA_SCHEDULES)} or trained_betas")


def vp_timestep(schedule: DiscreteVP, t: torch.Tensor) -> torch.Tensor:
    """The network's (fractional) training step n = t N - 1."""
    return schedule.step_index(t)


def flow_shift(config: dict, image_seq_len: int) -> float:
    """The time shift of a FlowMatchEulerDiscreteScheduler config at a latent of `image_seq_len` patches."""
    if not config.get("use_dynamic_shifting"):
        return float(config.get("shift", 1.0))
    base_len, max_len = config.get("base_image_seq_len", 256), config.get("max_image_seq_len", 4096)
    base_shift, max_shift = config.get("base_shift", 0.5), config.get("max_shift", 1.15)
    slope = (max_shift - base_shift) / (max_len - base_len)
    mu = base_shift + slope * (image_seq_len - base_len)
    return math.exp(mu) if config.get("time_shift_type", "exponential") == "exponential" else float(mu)


def flow_schedule(config: dict, image_seq_len: int, t_min: float | None, t_max: float | None) -> FlowOT:
    """`FlowOT` with the config's shift; t range [1/N, 1 - 1/N] unless given (t = 1 has lambda = -inf)."""
    n = int(config.get("num_train_timesteps", 1000))
    lo = 1.0 / n if t_min is None else float(t_min)
    hi = 1.0 - 1.0 / n if t_max is None else float(t_max)
    return FlowOT(lo, hi, flow_shift(config, image_seq_len))


def flow_timestep(schedule: FlowOT, t: torch.Tensor, num_train_timesteps: int) -> torch.Tensor:
    return schedule.sigma(as_tensor(t)) * num_train_timesteps


__all__ = ["BETA_SCHEDULES", "flow_schedule", "flow_shift", "flow_timestep", "vp_schedule", "vp_timestep"]
