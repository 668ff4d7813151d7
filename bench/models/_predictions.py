"""Network outputs -> the data prediction x0_hat, for x_t = alpha x0 + sigma eps.

The parametrisations diffusers names in its schedulers' `prediction_type`:
  * "epsilon" (DDPM, Ho et al. 2020): out = eps,           x0 = (x - sigma out) / alpha;
  * "v_prediction" (Salimans & Ho 2022, for VP alpha^2 + sigma^2 = 1): out = v = alpha eps - sigma x0,
    x0 = alpha x - sigma v (alpha x - sigma v = (alpha^2 + sigma^2) x0 = x0);
  * "sample": out = x0;
  * "velocity" (rectified flow / flow matching, alpha = 1 - sigma, the target of diffusers'
    FlowMatch schedulers): out = u = eps - x0, x0 = x - sigma u.
The arithmetic runs in the dtype of x (alpha, sigma are cast to it), so a float64 teacher keeps its
precision around a float32 network.
"""
from __future__ import annotations

import torch

from ..schedules import append_dims

PREDICTIONS = ("epsilon", "v_prediction", "sample", "velocity")


def x0_from_output(kind: str, out: torch.Tensor, x: torch.Tensor, alpha: torch.Tensor, sigma: torch.Tensor):
    """x0_hat from a network output `out` of parametrisation `kind` at the state x; alpha, sigma [B]."""
    out = out.to(x.dtype)
    alpha = append_dims(alpha.to(x.dtype), x.ndim)
    sigma = append_dims(sigma.to(x.dtype), x.ndim)
    if kind == "epsilon":
        return (x - sigma * out) / alpha
    if kind == "v_prediction":
        return alpha * x - sigma * out
    if kind == "sample":
        return out
    if kind == "velocity":
        return x - sigma * out
    raise ValueError(f"unknown prediction type {kind!r}; known: {', '.join(PREDICTIONS)}")


__all__ = ["PREDICTIONS", "x0_from_output"]
