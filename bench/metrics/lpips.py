"""`lpips`: the LPIPS perceptual distance to the teacher, and an LPIPS loss for learned methods.

Follows Zhang et al., "The Unreasonable Effectiveness of Deep Features as a Perceptual Metric" (CVPR
2018) through the authors' PyPI package `lpips` (version 0.1 of the metric: the `lpips.LPIPS` module
with its calibrated linear layers, "alex" or "vgg" trunk). Nothing of the network is re-implemented
here: this module only checks the weight files, adapts the images and batches the calls.

Weights. The linear layers ship inside the `lpips` wheel (`lpips/weights/v0.1/{alex,vgg}.pth`). The
trunk is torchvision's ImageNet AlexNet / VGG16, which torchvision loads from torch.hub's checkpoint
folder, `torch.hub.get_dir()/checkpoints` (= `$TORCH_HOME/hub/checkpoints`, by default
`~/.cache/torch/hub/checkpoints`), as `alexnet-owt-7be5be79.pth` / `vgg16-397923af.pth` (the names
come from torchvision's weight enums). Nothing may be downloaded at run time, so the file is checked
*before* `lpips` is asked for the network, and a missing one is a UserError naming the file and the
folder. `pnet_rand=True` builds a randomly initialised trunk (under `torch.manual_seed(0)` in a forked
RNG, so it is reproducible and the global RNG is untouched) that needs no file: for testing the
plumbing only, its values mean nothing.

Images. Inputs are [B, C, H, W] in [-1, 1] (LPIPS's own convention), C = 1 or 3; one channel is
repeated to RGB. LPIPS was calibrated on 64x64 patches (the BAPPS 2AFC set), and AlexNet's five
feature layers need more than 8x8 pixels (its first conv has an 11x11 kernel and stride 4), so an
image whose shorter side is below 64 is upsampled bilinearly (align_corners=False, as lpips' own
`upsample`) so that its shorter side is 64 (8x8 digits: x8 to 64x64); larger images are left alone.
Bilinear rather than nearest: a nearest-neighbour blow-up adds a grid of sharp block edges that the
first conv layers respond to strongly and equally in both images, diluting the distance; bilinear
keeps the upsampled image smooth and is differentiable everywhere. Both images of a pair are
resized the same way, so identical inputs give exactly 0.

`load_lpips(net="alex", pretrained=True, device="cpu", pnet_rand=False)` returns a callable
`(x, y) -> [B]` per-sample distances, differentiable w.r.t. x (and y); the network's parameters are
frozen (requires_grad False) and in eval mode. It is built once per process per argument set.
Inputs are cast to float32 (the network's dtype); gradients flow through the cast.

Metric `lpips` (lower is better, needs the teacher): the mean over samples of LPIPS(x0, x0*) between
each sample and its teacher endpoint, both clamped to [-1, 1] first (the valid image range, as
saving an image would), computed under no_grad in batches of `batch` (default 64) on ctx.device.
Parameter `net`: "alex" (default: the authors' recommended forward metric) or "vgg". A set with a
non-finite value gives NaN.
"""
from __future__ import annotations

import functools
import math
import warnings
from pathlib import Path
from typing import ClassVar, Literal
from urllib.parse import urlparse

import torch
import torch.nn.functional as F
from pydantic import Field

from ..errors import UserError
from ..params import Params
from ..registry import METRICS
from .base import Metric, MetricContext

NETS = ("alex", "vgg")
MIN_SIDE = 64  # LPIPS was calibrated on 64x64 patches
LPIPS_VERSION = "0.1"


def _torchvision_weights(net: str):
    from torchvision import models

    if net == "alex":
        return models.AlexNet_Weights.IMAGENET1K_V1
    if net == "vgg":
        return models.VGG16_Weights.IMAGENET1K_V1
    raise UserError(f"LPIPS net must be one of {', '.join(NETS)}, got {net!r}")


def backbone_file(net: str) -> Path:
    """Where torchvision looks for the trunk's ImageNet weights (torch.hub's checkpoint folder)."""
    name = Path(urlparse(_torchvision_weights(net).url).path).name
    return Path(torch.hub.get_dir()) / "checkpoints" / name


def linear_layers_file(net: str) -> Path:
    """The calibrated linear layers shipped inside the `lpips` wheel."""
    import lpips

    return Path(lpips.__file__).resolve().parent / "weights" / f"v{LPIPS_VERSION}" / f"{net}.pth"


def check_weights(net: str, pretrained: bool = True, pnet_rand: bool = False):
    """Raise a UserError naming the missing file and its folder, before anything could download it."""
    if not pnet_rand:
        path = backbone_file(net)
        if not path.is_file():
            raise UserError(
                f"LPIPS ({net}) needs torchvision's ImageNet weights {path.name} in {path.parent} "
                f"(torch.hub's checkpoint folder, $TORCH_HOME/hub/checkpoints); copy the file there"
            )
    if pretrained:
        path = linear_layers_file(net)
        if not path.is_file():
            raise UserError(f"LPIPS ({net}) needs its linear layers {path}, which the `lpips` package ships; "
                            f"reinstall it (pip install --force-reinstall lpips)")


def prepare_images(x: torch.Tensor) -> torch.Tensor:
    """[B, 1|3, H, W] -> RGB, upsampled bilinearly so the shorter side is at least 64 (module docstring)."""
    if x.ndim != 4 or x.shape[1] not in (1, 3):
        raise ValueError(f"LPIPS needs images [B, 1 or 3, H, W], got shape {tuple(x.shape)}")
    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
    h, w = x.shape[2], x.shape[3]
    if min(h, w) < MIN_SIDE:
        scale = MIN_SIDE / min(h, w)
        x = F.interpolate(x, size=(math.ceil(h * scale - 1e-9), math.ceil(w * scale - 1e-9)), mode="bilinear",
                          align_corners=False)
    return x


class LPIPSDistance(torch.nn.Module):
    """Per-sample LPIPS distance [B] between image batches in [-1, 1]; differentiable in both inputs."""

    def __init__(self, net: str = "alex", pretrained: bool = True, device="cpu", pnet_rand: bool = False):
        super().__init__()
        if net not in NETS:
            raise UserError(f"LPIPS net must be one of {', '.join(NETS)}, got {net!r}")
        check_weights(net, pretrained, pnet_rand)
        import lpips

        with warnings.catch_warnings(), torch.random.fork_rng(devices=[]):
            warnings.simplefilter("ignore")  # torchvision's deprecation of `pretrained=`, lpips' torch.load
            torch.manual_seed(0)
            model = lpips.LPIPS(pretrained=pretrained, net=net, version=LPIPS_VERSION, pnet_rand=pnet_rand,
                                verbose=False)
        model.eval()
        for p in model.parameters():
            p.requires_grad_(False)
        self.model = model.to(torch.device(device))
        self.net = net
        self.device = torch.device(device)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if x.shape != y.shape:
            raise ValueError(f"LPIPS: the two batches differ in shape: {tuple(x.shape)} and {tuple(y.shape)}")
        x = prepare_images(x.to(self.device, torch.float32))
        y = prepare_images(y.to(self.device, torch.float32))
        return self.model(x, y).reshape(x.shape[0])


@functools.lru_cache(maxsize=8)
def _cached(net: str, pretrained: bool, device: str, pnet_rand: bool) -> LPIPSDistance:
    return LPIPSDistance(net, pretrained, device, pnet_rand)


def load_lpips(net: str = "alex", pretrained: bool = True, device="cpu", pnet_rand: bool = False) -> LPIPSDistance:
    """A callable (x, y) -> per-sample LPIPS [B] for images [B, C, H, W] in [-1, 1]; differentiable w.r.t. x."""
    return _cached(str(net), bool(pretrained), str(torch.device(device)), bool(pnet_rand))


@METRICS.register("lpips")
class LPIPS(Metric):
    higher_is_better: ClassVar[bool] = False
    needs_teacher: ClassVar[bool] = True

    class Params(Params):
        net: Literal["alex", "vgg"] = Field("alex", description="LPIPS backbone (the lpips package's default: alex)")
        batch: int = Field(64, ge=1, le=65536, description="images per LPIPS forward pass")

    def check_ready(self) -> None:
        """The weight files LPIPS loads are on this machine (the pre-run check calls this)."""
        check_weights(self.params.net)

    def compute(self, samples: torch.Tensor, ctx: MetricContext) -> dict[str, float]:
        return self.compute_per_sample(samples, ctx)[0]

    def compute_per_sample(self, samples: torch.Tensor, ctx: MetricContext):
        teacher = self.teacher_for(samples, ctx)
        if samples.ndim != 4 or samples.shape[1] not in (1, 3):
            raise UserError(f"metric 'lpips' needs images [B, 1 or 3, H, W]; the samples have shape "
                            f"{tuple(samples.shape)}: remove lpips from this model's grid")
        if samples.shape[0] == 0:
            raise ValueError("metric 'lpips' got an empty sample set")
        if not bool(torch.isfinite(samples).all()):
            return {self.name: float("nan")}, {}
        distance = load_lpips(self.params.net, device=ctx.device)
        batch = self.params.batch
        total = 0.0
        per_sample = []
        with torch.no_grad():
            for start in range(0, samples.shape[0], batch):
                x = samples[start : start + batch].clamp(-1.0, 1.0)
                y = teacher[start : start + batch].clamp(-1.0, 1.0)
                values = distance(x, y).double().reshape(-1)
                total += values.sum().item()  # the mean as it has always been summed: batch by batch
                per_sample.append(values.cpu())
        return {self.name: total / samples.shape[0]}, {self.name: torch.cat(per_sample).numpy()}


__all__ = ["LPIPS", "LPIPSDistance", "backbone_file", "check_weights", "linear_layers_file", "load_lpips",
           "prepare_images"]
