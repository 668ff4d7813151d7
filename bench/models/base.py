"""The denoiser interface shared by all models.

A `Denoiser` maps a noisy state x at the model's own time t (a tensor of shape [B]) and an optional
condition to the data prediction x0_hat = E[x0 | x_t] (or a network's estimate of it). It carries its
`NoiseSchedule`, the shape of one sample, and the number of classes (0: unconditional).

A model defined in one schedule is used in another through `bench.schedules.convert` (SNR matching):
the data prediction is the same at equal log-SNR, only the state is rescaled. This is how the exact
VE toy model is used in flow-matching OT time.

Two hooks for models backed by files: `decode(x)` maps a final state to the image the metrics score
(identity; latent models decode with their VAE), and `required_paths()` lists the model's path
parameters so that every missing file of a grid is reported at once, before anything is loaded.
"""
from __future__ import annotations

from typing import ClassVar

import torch

from ..plugin import Plugin
from ..registry import MODELS
from ..schedules import NoiseSchedule


class Denoiser(Plugin, torch.nn.Module):
    kind: ClassVar[str] = "model"
    schedule: NoiseSchedule
    data_shape: tuple[int, ...]
    num_classes: int = 0
    # Range of data values, used by PSNR (peak-to-peak).
    data_range: float = 2.0

    def __init__(self, **params):
        torch.nn.Module.__init__(self)
        Plugin.__init__(self, **params)

    def forward(self, x: torch.Tensor, t: torch.Tensor, cond=None) -> torch.Tensor:
        raise NotImplementedError

    def model_id(self) -> str:
        """A plain string naming this model and its parameters (for cache keys)."""
        args = ",".join(f"{k}={v}" for k, v in sorted(dict(self.params).items()))
        return f"{self.name}({args})"

    def prior(self, noise: torch.Tensor) -> torch.Tensor:
        """The initial state x_T = sigma(t_max) * noise for unit-variance noise."""
        return noise * self.schedule.prior_std()

    def decode(self, x: torch.Tensor) -> torch.Tensor:
        """Map final states to what metrics score (images in [-1, 1]); the identity except for latent
        models, which decode with their autoencoder. The runner applies it to samples and teacher
        endpoints before metrics; an LPIPS loss on latent states must apply it too."""
        return x

    @property
    def image_shape(self) -> tuple[int, ...]:
        """The shape of one `decode`d sample (latent models: the autoencoder's image shape)."""
        return tuple(self.data_shape)

    def required_paths(self) -> dict[str, str]:
        """{parameter name: path} of every file or folder the model needs, read from its parameters
        without loading anything (`bench.preflight` checks them all before a run starts)."""
        return {}

    def sample_data(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """Exact samples of the data distribution, where the model has one (toy models)."""
        raise NotImplementedError(f"model {self.name!r} has no exact data sampler")


def make_model(spec) -> Denoiser:
    """Build a model from a name or a dict {name: ..., **params} (`Registry.build`)."""
    return MODELS.build(spec)
