"""Images from samples: 8-bit quantization and a small PNG grid of a cell's samples.

`to_uint8(samples)` maps samples in [-1, 1] to 8-bit pixels the way EDM's `generate.py` saves its
PNGs: `(x * 127.5 + 128).clip(0, 255)` truncated to uint8, i.e. round-half-up of (x + 1) * 127.5.
The `fid` metric quantizes with the same function, so the PNG a cell writes holds exactly the
pixels that FID sees (papers compute FID on saved 8-bit images). Non-finite values (a diverged
sampler) become 0 (NaN, -inf) or 255 (+inf) here; metrics check finiteness before quantizing.

`save_sample_grid(samples, path, nrow=8)` writes the first `max_images` (default 64) samples
[B, C, H, W] (C = 1 or 3) as one PNG, tiles `nrow` per row (torchvision's `make_grid`, 1 pixel of
padding), each tile enlarged by an integer factor with nearest-neighbour repetition so the pixels
stay visible: by default the smallest factor that makes a tile at least 32 pixels high (8x8 digits
x4, 32x32 images x1). Grayscale samples give a grayscale PNG. The file is encoded in memory with
Pillow and written atomically (`bench.store.atomic_write_bytes`).
"""
from __future__ import annotations

import io
import math
from pathlib import Path

import torch

from .store import atomic_write_bytes

MIN_TILE = 32  # default: enlarge tiles to at least this many pixels high


def to_uint8(samples: torch.Tensor) -> torch.Tensor:
    """Samples in [-1, 1] (any float dtype, any device) -> uint8 pixels 0..255, same shape, on the CPU."""
    x = samples.detach().to("cpu", torch.float64)
    x = torch.nan_to_num(x, nan=-1.0, posinf=1.0, neginf=-1.0)
    return (x * 127.5 + 128.0).clamp(0, 255).to(torch.uint8)


def sample_grid(samples: torch.Tensor, nrow: int = 8, scale: int | None = None, max_images: int = 64) -> torch.Tensor:
    """The grid image as uint8 [H, W] (1 channel) or [H, W, 3], on the CPU."""
    from torchvision.utils import make_grid

    if samples.ndim != 4 or samples.shape[1] not in (1, 3):
        raise ValueError(f"save_sample_grid needs images [B, 1 or 3, H, W], got shape {tuple(samples.shape)}")
    if samples.shape[0] == 0:
        raise ValueError("save_sample_grid got no samples")
    if int(nrow) < 1:
        raise ValueError(f"save_sample_grid: nrow must be >= 1, got {nrow!r}")
    pixels = to_uint8(samples[: int(max_images)])
    if scale is None:
        scale = max(1, math.ceil(MIN_TILE / pixels.shape[2]))
    scale = int(scale)
    if scale < 1:
        raise ValueError(f"save_sample_grid: scale must be >= 1, got {scale!r}")
    if scale > 1:
        pixels = pixels.repeat_interleave(scale, dim=2).repeat_interleave(scale, dim=3)
    grid = make_grid(pixels, nrow=int(nrow), padding=1, pad_value=0)  # [3, H, W]; 1 channel is repeated
    if samples.shape[1] == 1:
        return grid[0].contiguous()
    return grid.permute(1, 2, 0).contiguous()


def png_bytes(image: torch.Tensor) -> bytes:
    """Encode a uint8 [H, W] or [H, W, 3] tensor as PNG."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(image.numpy()).save(buffer, format="PNG")
    return buffer.getvalue()


def save_sample_grid(samples: torch.Tensor, path, nrow: int = 8, scale: int | None = None,
                     max_images: int = 64) -> Path:
    """Write the first `max_images` samples [B, C, H, W] in [-1, 1] as a PNG grid at `path` (atomically)."""
    return atomic_write_bytes(Path(path), png_bytes(sample_grid(samples, nrow, scale, max_images)))


__all__ = ["to_uint8", "sample_grid", "png_bytes", "save_sample_grid"]
