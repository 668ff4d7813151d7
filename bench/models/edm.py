"""`edm`: the denoisers of NVlabs' EDM network pickles (Karras, Aittala, Aila, Laine 2022, "Elucidating
the Design Space of Diffusion-Based Generative Models"; github.com/NVlabs/edm), e.g.
edm-cifar10-32x32-cond-vp.pkl, edm-ffhq-64x64-uncond-vp.pkl, edm-afhqv2-64x64-uncond-vp.pkl,
edm-imagenet-64x64-cond-adm.pkl.

Parameters.
  * `pickle`: path of the network pickle (nothing is downloaded; put the file there yourself).
  * `source`: path of a local EDM source tree (the folder holding `torch_utils/`, `dnnlib/` and
    `training/`). EDM pickles store their classes by reference to `torch_utils.persistence` and
    `training.networks`, so the tree goes on `sys.path` (at the front) before unpickling. Python
    caches modules by name, so every `edm` model of one process uses the first tree it loaded.
  * `sigma_min` = 0.002, `sigma_max` = 80: the time range, clamped to the network's own
    `net.sigma_min` / `net.sigma_max` exactly as EDM's `generate.py` does (EDM's defaults).
  * `key` = "ema": the network in the pickle's dict (EDM's `generate.py` loads `['ema']`).
  * `dataset` = null: the data set's name for the FID reference (`reference_dataset`; the `fid`
    metric looks up `<dataset>_clean_<H>x<W>_...npz`, built once with `python -m bench fid-ref`).
    null takes it from EDM's file naming: edm-cifar10-32x32-cond-vp.pkl -> "cifar10-32x32" (as EDM's
    own reference files, fid-refs/cifar10-32x32.npz, are named), else the file's stem.
  * `guidance` = null: classifier-free guidance scale for conditional networks (`bench.guidance`).
    EDM's released conditional networks were trained without label dropout, so their "unconditional"
    output (zero one-hot) is not a trained unconditional model; guidance with them is an experiment,
    not a reproduction.

Loading is lazy: constructing the model (which the grid does to validate parameters) touches no
file; the pickle is read the first time the model's schedule, shape, classes or output is needed,
with `pickle.load(f)[key]` as EDM's `generate.py`, then put in eval mode with gradients off. The
network follows the device of its inputs. `required_paths()` names both paths for the pre-run check.

The network. EDM's preconditioned net is called `net(x, sigma, class_labels)` and returns the
denoised D(x; sigma) = E[x0 | x] directly, in EDM's VE coordinates: the schedule is `VE` with
t = sigma. It computes in float32 (float16 only on CUDA with `use_fp16`); the output is cast back to
x's dtype. `data_shape` = (net.img_channels, net.img_resolution, net.img_resolution), data in
[-1, 1] (`data_range` = 2), `num_classes` = net.label_dim.

Conditions: `cond` is a LongTensor [B] of class indices (what the harness's `labels_for` gives:
classes cycled, so every class gets an equal share), turned into one-hot rows [B, label_dim] here;
a label of -1 gives a zero row, which is what EDM's own `EDMPrecond` substitutes when it is called
without labels (`torch.zeros([1, label_dim])`).
"""
from __future__ import annotations

import os
import pickle
import re
import sys

import torch
from pydantic import Field

from ..errors import UserError
from ..guidance import GuidanceParam, GuidanceParams
from ..registry import MODELS
from ..schedules import VE
from .base import Denoiser

DATASET_NAME = re.compile(r"[A-Za-z0-9._-]+")
EDM_FILE = re.compile(r"(?:edm|baseline)-(.+?-\d+x\d+)(?:-|$)")  # edm-<dataset>-<HxW>-<cond>-<arch>
PICKLE_HINT = "download it from https://nvlabs-fi-cdn.nvidia.com/edm/pretrained/ (e.g. to checkpoints/edm/)"
SOURCE_HINT = "clone github.com/NVlabs/edm (e.g. to checkpoints/edm/src) and point `source` at it"


def _check_path(field: str, value, want_dir: bool) -> str:
    if not isinstance(value, (str, os.PathLike)) or not str(value):
        kind = "folder" if want_dir else "file"
        hint = SOURCE_HINT if want_dir else PICKLE_HINT
        raise UserError(f"model 'edm': {field} must be the path of a {kind}; {hint}")
    return os.fspath(value)


@MODELS.register("edm")
class EDM(GuidanceParam, Denoiser):
    """An EDM network pickle as a VE data-prediction denoiser (see the module docstring)."""

    class Params(GuidanceParams):
        pickle: str | None = Field(None, description="the network pickle (required)")
        source: str | None = Field(None, description="a local EDM source tree (required: the pickle imports it)")
        sigma_min: float = Field(0.002, gt=0, description="EDM's sigma_min (generate.py default)")
        sigma_max: float = Field(80.0, gt=0, description="EDM's sigma_max (generate.py default)")
        key: str = Field("ema", description="the network's key in the pickle")
        dataset: str | None = Field(None, description="FID reference name (default: from the pickle's file name)")

    data_range = 2.0
    neural_network = True  # for `bench.methods._checkpointing`, before the lazy load has filled parameters()

    def __init__(self, **params):
        super().__init__(**params)
        p = self.params
        _check_path("pickle", p.pickle, want_dir=False)
        _check_path("source", p.source, want_dir=True)
        if not p.sigma_min < p.sigma_max:
            raise UserError(f"model 'edm': sigma_min must be below sigma_max, got {p.sigma_min} and {p.sigma_max}")
        if p.dataset is not None and not (isinstance(p.dataset, str) and DATASET_NAME.fullmatch(p.dataset)):
            raise UserError(f"model 'edm': dataset must be a name of letters, digits, '.', '_' or '-', got {p.dataset!r}")
        _ = self.guidance  # validates the scale
        self._loaded = False

    @property
    def reference_dataset(self) -> str:
        if self.params.dataset:
            return self.params.dataset
        stem = os.path.splitext(os.path.basename(os.fspath(self.params.pickle)))[0]
        match = EDM_FILE.match(stem)
        return match.group(1) if match else stem

    def required_paths(self) -> dict[str, str]:
        return {"pickle": os.fspath(self.params.pickle), "source": os.fspath(self.params.source)}

    # ------------------------------------------------------------------ loading
    def _load(self):
        if self._loaded:
            return
        p = self.params
        path, source = os.fspath(p.pickle), os.path.abspath(os.fspath(p.source))
        if not os.path.isfile(path):
            raise UserError(f"model 'edm': pickle: no file at {path}; {PICKLE_HINT}")
        if not os.path.isdir(source):
            raise UserError(f"model 'edm': source: no folder at {source}; {SOURCE_HINT}")
        if source not in sys.path:
            sys.path.insert(0, source)
        try:
            with open(path, "rb") as f:
                data = pickle.load(f)
        except (ModuleNotFoundError, AttributeError) as err:
            raise UserError(f"model 'edm': cannot unpickle {path} ({err}); source must be the root of the EDM "
                            "source tree, the folder holding torch_utils/ and training/") from None
        if not isinstance(data, dict) or p.key not in data:
            keys = ", ".join(map(str, data)) if isinstance(data, dict) else type(data).__name__
            raise UserError(f"model 'edm': {path} holds no network {p.key!r} (it has: {keys}); set key")
        net = data[p.key]
        for attr in ("img_resolution", "img_channels", "label_dim"):
            if not hasattr(net, attr):
                raise UserError(f"model 'edm': {path}[{p.key!r}] has no {attr}; is it an EDM network pickle?")
        net.eval().requires_grad_(False)
        self.net = net  # a submodule from now on: .to(), parameters() and state_dict() see it
        self._schedule = VE(max(float(p.sigma_min), float(getattr(net, "sigma_min", 0.0))),
                            min(float(p.sigma_max), float(getattr(net, "sigma_max", float("inf")))))
        self._shape = (int(net.img_channels), int(net.img_resolution), int(net.img_resolution))
        self._classes = int(net.label_dim)
        self._loaded = True
        self.check_guidance()

    @property
    def schedule(self):
        self._load()
        return self._schedule

    @property
    def data_shape(self):
        self._load()
        return self._shape

    @property
    def num_classes(self):
        self._load()
        return self._classes

    # ------------------------------------------------------------------ the denoiser
    def _one_hot(self, cond, batch: int, device) -> torch.Tensor | None:
        if not self._classes:
            if cond is not None and bool((torch.as_tensor(cond) >= 0).any()):
                raise ValueError("edm: this network is unconditional; cond must be None (or -1)")
            return None
        if cond is None:
            return torch.zeros(batch, self._classes, device=device)
        cond = torch.as_tensor(cond, device=device).long()
        cond = cond.reshape(()).expand(batch) if cond.numel() == 1 else cond
        if cond.shape != (batch,) or not bool(((cond >= -1) & (cond < self._classes)).all()):
            raise ValueError(f"edm: cond must be labels [B] = [{batch}] in 0..{self._classes - 1} (or -1)")
        one_hot = torch.zeros(batch, self._classes, device=device)
        rows = cond >= 0
        one_hot[rows, cond[rows]] = 1.0
        return one_hot

    def denoise(self, x: torch.Tensor, t, cond=None) -> torch.Tensor:
        """D(x; sigma = t): x [B, C, H, W], t [B] or scalar, cond labels [B] or None."""
        self._load()
        if next(self.net.parameters(), x).device != x.device:
            self.net.to(x.device)
        sigma = torch.as_tensor(t, dtype=x.dtype, device=x.device)
        sigma = sigma.reshape(()).expand(x.shape[0]) if sigma.numel() == 1 else sigma.reshape(x.shape[0])
        out = self.net(x, sigma, self._one_hot(cond, x.shape[0], x.device))
        return out.to(x.dtype)

    def forward(self, x: torch.Tensor, t, cond=None) -> torch.Tensor:
        return self.guide(self.denoise, x, t, cond)


__all__ = ["EDM"]
