"""The network of `digits-net`: a small class-conditional U-Net for 8x8 images, wrapped in EDM's
preconditioning (Karras, Aittala, Aila, Laine 2022, "Elucidating the Design Space of Diffusion-Based
Generative Models", Table 1 and Appendix B.6; github.com/NVlabs/edm, training/networks.py `EDMPrecond`).

Preconditioning (EDM Table 1, "Ours"): for noise level sigma and data standard deviation sigma_data,
    D(x; sigma, label) = c_skip x + c_out F(c_in x; c_noise, label),
    c_skip = sigma_data^2 / (sigma^2 + sigma_data^2),  c_out = sigma sigma_data / sqrt(sigma^2 + sigma_data^2),
    c_in = 1 / sqrt(sigma^2 + sigma_data^2),            c_noise = ln(sigma) / 4.
The coefficients are computed in the dtype of x (float64 for a float64 teacher); only F, the U-Net,
runs in float32 (or under autocast, see `EDMDigitsNet.forward`), and its output is cast back.

The U-Net F (the layout of EDM's `SongUNet` / ADM's, scaled down to 8x8 images; the defaults below
are the class's, the shipped network's narrower settings are `_digits_net_train.NET_CONFIG`, which the
weights file stores):
  * noise embedding: the sinusoidal positional embedding of c_noise (EDM's `PositionalEmbedding`,
    max_positions = 10000, as EDM's SongUNet with embedding_type="positional"), then two linear
    layers with SiLU; the class embedding (a learned table of 11 rows: labels 0..9 and row 10 for
    "no label", which label -1 selects, for classifier-free guidance) is added to it.
  * `channels` = 32 at 8x8 and `channels * 2` at 4x4 (channel_mult (1, 2)), `blocks` = 2 residual
    blocks per level (ADM's/EDM's num_blocks, reduced from 4 for CPU training), a middle of two
    residual blocks around one self-attention layer at 4x4 (16 tokens; EDM attends at 16x16 of 32x32,
    i.e. at half resolution, and so does this net), and a decoder with `blocks + 1` residual blocks per
    level on the concatenated skips, as in ADM / SongUNet.
  * residual block: GroupNorm -> SiLU -> 3x3 conv -> + linear(embedding) -> GroupNorm -> SiLU ->
    dropout -> 3x3 conv (zero-initialised, as EDM's `UNetBlock` conv1 with init_zero), skip (1x1 conv
    when the width changes), sum scaled by sqrt(1/2) (EDM's skip_scale). GroupNorm with 8 groups
    (EDM uses 32 groups of 4+ channels; 8 groups keep >= 4 channels per group at width 32).
  * down-sampling: 2x2 average pooling; up-sampling: nearest-neighbour x2 (EDM's resample_filter=[1,1]
    is the same box filter). The output conv is zero-initialised (EDM's `init_zero` for the last layer),
    so the untrained D is c_skip x.
`dropout` = 0.1 (EDM's CIFAR-10 setting). `config` (a plain dict stored in the weights file) holds
every architecture setting and sigma_data, so a weights file rebuilds its own network.
"""
from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

NUM_CLASSES = 10
NULL_LABEL = NUM_CLASSES  # the class-embedding row used for label -1 ("no label")
DEFAULT_CONFIG = {"channels": 32, "blocks": 2, "emb": 128, "dropout": 0.1, "groups": 8, "sigma_data": 0.5}


def positional_embedding(c: torch.Tensor, dim: int, max_positions: int = 10000) -> torch.Tensor:
    """[cos(c f_k), sin(c f_k)] with f_k = (1 / max_positions)^(k / (dim/2)), k = 0..dim/2-1 (EDM's, endpoint=False)."""
    half = dim // 2
    freqs = (1.0 / max_positions) ** (torch.arange(half, dtype=torch.float32, device=c.device) / half)
    arg = c.to(torch.float32)[:, None] * freqs[None, :]
    return torch.cat([arg.cos(), arg.sin()], dim=1)


class ResBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, emb: int, dropout: float, groups: int):
        super().__init__()
        self.norm0 = nn.GroupNorm(groups, c_in)
        self.conv0 = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.affine = nn.Linear(emb, c_out)
        self.norm1 = nn.GroupNorm(groups, c_out)
        self.dropout = nn.Dropout(dropout)
        self.conv1 = nn.Conv2d(c_out, c_out, 3, padding=1)
        nn.init.zeros_(self.conv1.weight)
        nn.init.zeros_(self.conv1.bias)
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv0(F.silu(self.norm0(x)))
        h = h + self.affine(emb)[:, :, None, None]
        h = self.conv1(self.dropout(F.silu(self.norm1(h))))
        return (h + self.skip(x)) * math.sqrt(0.5)


class Attention(nn.Module):
    """Single-head self-attention over the pixels, residual, scaled by sqrt(1/2) (EDM's UNetBlock attention)."""

    def __init__(self, c: int, groups: int):
        super().__init__()
        self.norm = nn.GroupNorm(groups, c)
        self.qkv = nn.Conv2d(c, 3 * c, 1)
        self.proj = nn.Conv2d(c, c, 1)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(b, 3, c, h * w).unbind(1)
        a = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))
        return (x + self.proj(a.transpose(1, 2).reshape(b, c, h, w))) * math.sqrt(0.5)


class DigitsUNet(nn.Module):
    """F(x_in, c_noise, labels) -> [B, 1, 8, 8]; labels [B] in 0..9 or -1 (no label)."""

    def __init__(self, channels: int = 32, blocks: int = 2, emb: int = 128, dropout: float = 0.1, groups: int = 8):
        super().__init__()
        c1, c2 = channels, 2 * channels
        self.emb_dim = emb
        self.map = nn.Sequential(nn.Linear(emb, emb), nn.SiLU(), nn.Linear(emb, emb), nn.SiLU())
        self.label = nn.Embedding(NUM_CLASSES + 1, emb)
        self.conv_in = nn.Conv2d(1, c1, 3, padding=1)
        self.enc8 = nn.ModuleList([ResBlock(c1, c1, emb, dropout, groups) for _ in range(blocks)])
        self.enc4 = nn.ModuleList([ResBlock(c1 if i == 0 else c2, c2, emb, dropout, groups) for i in range(blocks)])
        self.mid0 = ResBlock(c2, c2, emb, dropout, groups)
        self.attn = Attention(c2, groups)
        self.mid1 = ResBlock(c2, c2, emb, dropout, groups)
        # Decoder inputs: the running width plus one skip per block (conv_in's / the pool's included).
        skips8 = [c1] * (blocks + 1)
        skips4 = [c1] + [c2] * blocks
        self.dec4 = nn.ModuleList([ResBlock(c2 + skips4[-1 - i], c2, emb, dropout, groups) for i in range(blocks + 1)])
        self.dec8 = nn.ModuleList([ResBlock((c2 if i == 0 else c1) + skips8[-1 - i], c1, emb, dropout, groups)
                                   for i in range(blocks + 1)])
        self.norm_out = nn.GroupNorm(groups, c1)
        self.conv_out = nn.Conv2d(c1, 1, 3, padding=1)
        nn.init.zeros_(self.conv_out.weight)
        nn.init.zeros_(self.conv_out.bias)

    def forward(self, x: torch.Tensor, c_noise: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        labels = torch.where(labels < 0, torch.full_like(labels, NULL_LABEL), labels)
        emb = self.map(positional_embedding(c_noise, self.emb_dim).to(x.dtype)) + self.label(labels)
        h = self.conv_in(x)
        skips = [h]
        for block in self.enc8:
            h = block(h, emb)
            skips.append(h)
        h = F.avg_pool2d(h, 2)
        skips.append(h)
        for block in self.enc4:
            h = block(h, emb)
            skips.append(h)
        h = self.mid1(self.attn(self.mid0(h, emb)), emb)
        for block in self.dec4:
            h = block(torch.cat([h, skips.pop()], dim=1), emb)
        h = F.interpolate(h, scale_factor=2, mode="nearest")
        for block in self.dec8:
            h = block(torch.cat([h, skips.pop()], dim=1), emb)
        return self.conv_out(F.silu(self.norm_out(h)))


class EDMDigitsNet(nn.Module):
    """D(x; sigma, labels) with EDM's preconditioning around a `DigitsUNet` (see the module docstring)."""

    def __init__(self, config: dict | None = None):
        super().__init__()
        self.config = {**DEFAULT_CONFIG, **(config or {})}
        cfg = self.config
        self.sigma_data = float(cfg["sigma_data"])
        self.unet = DigitsUNet(cfg["channels"], cfg["blocks"], cfg["emb"], cfg["dropout"], cfg["groups"])

    def forward(self, x: torch.Tensor, sigma: torch.Tensor, labels: torch.Tensor,
                autocast_dtype: torch.dtype | None = None) -> torch.Tensor:
        """x [B, 1, 8, 8] (any float dtype), sigma [B] > 0, labels [B] int (-1: none) -> D in x's dtype.

        The U-Net runs in float32 on `x`'s device, under `torch.autocast(device, autocast_dtype)`
        when that is given (bf16 / fp16); the preconditioning stays in x's dtype."""
        s = sigma.to(x.dtype).reshape(-1, 1, 1, 1)
        sd = self.sigma_data
        denom = s * s + sd * sd
        c_skip, c_out, c_in = sd * sd / denom, s * sd / denom.sqrt(), 1.0 / denom.sqrt()
        c_noise = sigma.to(torch.float32).clamp(min=1e-20).log() / 4  # (clamped: sigma = 0 gives D = x)
        x_in = (c_in * x).to(torch.float32)
        if autocast_dtype is None:
            out = self.unet(x_in, c_noise, labels)
        else:
            with torch.autocast(device_type=x.device.type, dtype=autocast_dtype):
                out = self.unet(x_in, c_noise, labels)
        return c_skip * x + c_out * out.to(x.dtype)


def edm_loss(net: EDMDigitsNet, x0: torch.Tensor, labels: torch.Tensor, generator: torch.Generator,
             p_mean: float = -1.2, p_std: float = 1.2) -> torch.Tensor:
    """EDM's training loss (Karras et al. 2022, Eq. 8 with Table 1's choices; EDM's `EDMLoss`):
    ln sigma ~ N(p_mean, p_std^2), weight lambda(sigma) = (sigma^2 + sigma_data^2) / (sigma sigma_data)^2,
    loss = mean over the batch of lambda(sigma) ||D(x0 + sigma n; sigma) - x0||^2 / dim. With this weight
    the effective target of F has unit variance at every sigma, so the loss starts near 1 at initialisation."""
    b = x0.shape[0]
    sigma = (torch.randn(b, generator=generator, device=x0.device) * p_std + p_mean).exp()
    noise = torch.randn(x0.shape, generator=generator, device=x0.device)
    sd = net.sigma_data
    weight = (sigma ** 2 + sd ** 2) / (sigma * sd) ** 2
    denoised = net(x0 + sigma.reshape(-1, 1, 1, 1) * noise, sigma, labels)
    per_sample = ((denoised - x0) ** 2).flatten(1).mean(1)
    return (weight * per_sample).mean()


__all__ = ["DEFAULT_CONFIG", "DigitsUNet", "EDMDigitsNet", "NULL_LABEL", "edm_loss", "positional_embedding"]
