"""`diffusers-ldm`: a latent diffusion model (Rombach et al. 2022) saved by diffusers: a `UNet2DModel`
denoising in the latent space of an autoencoder (`AutoencoderKL` in `vae/`, or `VQModel` in `vqvae/`
as diffusers' `LDMPipeline`, e.g. the LSUN-Bedroom / CelebA-HQ LDMs).

Sampling, schedules and the data prediction are those of `diffusers-unet` (the parent class), in
latent space: `data_shape` is the latent shape (the UNet's in_channels, sample_size). The harness
samples latents; `decode(z)` turns final latents into images in [-1, 1] as diffusers' pipelines do,
vae.decode(z / scaling_factor + shift_factor).sample with both factors from the autoencoder's config
(shift_factor absent = 0). The runner decodes samples and teacher endpoints before scoring them.

Parameter `path`: the pipeline folder (`unet/`, `vae/` or `vqvae/`, `scheduler/`).
"""
from __future__ import annotations

from functools import cached_property

import torch

from ..registry import MODELS
from ._hf import CONFIG, LatentImages, component_dir, load_frozen, offline_imports, read_json
from .diffusers_unet import DiffusersUNet

AUTOENCODERS = {"vae": "AutoencoderKL", "vqvae": "VQModel"}


@MODELS.register("diffusers-ldm")
class DiffusersLDM(LatentImages, DiffusersUNet):
    """A diffusers latent UNet + autoencoder: denoises latents, decodes them to images for the metrics."""

    unet_root_ok = False
    what = "a diffusers pipeline folder with unet/, vae/ (or vqvae/) and scheduler/ (save_pretrained)"

    @cached_property
    def vae_dir(self):
        return component_dir(self.name, "path", self.path, tuple(AUTOENCODERS), "autoencoder")

    @cached_property
    def vae_config(self) -> dict:
        return read_json(self.name, "path", self.vae_dir / CONFIG)

    def build(self, device) -> dict[str, torch.nn.Module]:
        modules = super().build(device)
        cls = getattr(offline_imports(), AUTOENCODERS[self.vae_dir.name])
        modules["vae"] = load_frozen(self.name, "path", cls, self.vae_dir)
        return modules


__all__ = ["DiffusersLDM"]
