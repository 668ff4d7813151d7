"""Denoiser adapters. Every model is `model(x, t, cond) -> x0_hat` in its own noise schedule."""

from .base import Denoiser, make_model

__all__ = ["Denoiser", "make_model"]
