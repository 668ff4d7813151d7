"""`digits-net`: a small trained U-Net denoiser of scikit-learn's 8x8 digits (EDM preconditioning).

The exact `digits` model is the posterior mean of 1797 images: its ODE ends on training images. This
model is a network trained on the same images (`bench.models._digits_net_train`, EDM's recipe of
Karras et al. 2022; the architecture and preconditioning are in `bench.models._digits_unet`), so it
generalises and is smooth in x and sigma, the regime of the papers' networks, at a size that samples
and fits on a CPU. Retrain it with `scripts/train_digits_net.py` (fixed seed, deterministic).

Same data interface as `digits` (this class extends `Digits`, so data scaling x / 8 - 1 to [-1, 1],
`data_shape` (1, 8, 8), `data_range` 2, `num_classes` 10, labels -1 = unconditional, the `time`
parameter, `guidance`, and the accessors `training_images()`, `sample_labeled()`, `sample_data()`,
`nearest_distance()` are the same); only the denoiser differs. `reference_dataset` = "digits", so the
`fid` metric scores it against the digits reference statistics (`python -m bench fid-ref --model digits`).

Parameters (defaults and where they come from):
  * `time` = "ve": as `digits` -- "ve" is EDM's VE(0.002, 80), t = sigma, the network's native
    coordinates (EDM's sigma range); "flow", "vp-linear", "vp-cosine", "vp-scaled-linear" move (x, t)
    to VE by SNR matching (`bench.schedules.convert`), the data prediction is returned unchanged.
  * `guidance` = null: classifier-free guidance scale (`bench.guidance`); the network was trained with
    label dropout, so its label -1 output is a trained unconditional model.
  * `dtype` = "fp32": the precision of the network call -- "fp32", or "bf16" / "fp16" under
    `torch.autocast` on the input's device (mixed precision, as diffusers / EDM run their networks).
    Only the U-Net runs under autocast; EDM's preconditioning (c_skip, c_out, c_in) and the solver
    state stay in the dtype the caller uses (float64 teachers stay float64 outside the network) and
    the network's output is cast back to it. The row records it with the other model parameters.
  * `weights` = null: the weights file shipped in the package, `bench/models/weights/digits_net.pt`,
    whose SHA-256 must equal `WEIGHTS_SHA256` (a mismatch is an error: the file was edited or
    half-copied; retrain or restore it); or a path to a file written by `scripts/train_digits_net.py`
    (its SHA-256 is part of `model_id()`, so teacher caches never mix two files).

The weights file is a dict {"config": network config incl. sigma_data, "train": training settings,
"torch": version, "state_dict": EMA weights (float32)}; it is read once per process per file.
Quality (fd-digits of 100-step teacher samples against the data's own floor, a sample panel) is
measured by `scripts/check_digits_net.py`.
"""
from __future__ import annotations

import functools
import hashlib
import pickle
from pathlib import Path

from typing import Literal

import torch
from pydantic import Field

from ..errors import UserError
from ..registry import MODELS
from ._digits_unet import EDMDigitsNet
from .digits import Digits

WEIGHTS_PATH = Path(__file__).resolve().parent / "weights" / "digits_net.pt"
WEIGHTS_SHA256 = "d51b50c7826d8fed4df17e4f9293fc4aed64cf96f5bcc95bdaf93b31dd62dbf4"
DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@functools.lru_cache(maxsize=4)
def _load_file(path: str, sha256: str) -> dict:
    """The weights file's content (read once per process per (path, hash))."""
    return torch.load(path, map_location="cpu", weights_only=True)


def load_weights(path: Path | None = None) -> tuple[EDMDigitsNet, str]:
    """(the EDM-preconditioned network in eval mode with gradients off, the file's SHA-256).

    `path` None: the shipped file, checked against `WEIGHTS_SHA256`."""
    shipped = path is None
    path = WEIGHTS_PATH if shipped else Path(path).expanduser()
    if not path.is_file():
        fix = "reinstall the package or retrain with scripts/train_digits_net.py --overwrite-shipped" if shipped else \
            "train one with `scripts/train_digits_net.py --out PATH` or remove the parameter"
        raise UserError(f"model 'digits-net': weights file {path} not found; {fix}")
    sha = _sha256(path)
    if shipped and sha != WEIGHTS_SHA256:
        raise UserError(f"model 'digits-net': {path} has SHA-256 {sha[:12]}..., expected {WEIGHTS_SHA256[:12]}... "
                        "(file edited or half-copied); restore it (git checkout) or retrain it with "
                        "scripts/train_digits_net.py --overwrite-shipped and update WEIGHTS_SHA256 in bench/models/digits_net.py")
    try:
        content = _load_file(str(path), sha)
        net = EDMDigitsNet(content["config"])
        net.load_state_dict(content["state_dict"])
    except (KeyError, RuntimeError, TypeError, ValueError, pickle.UnpicklingError) as err:
        raise UserError(f"model 'digits-net': {path} is not a digits-net weights file ({err}); "
                        "write one with scripts/train_digits_net.py") from None
    return net.eval().requires_grad_(False), sha


@MODELS.register("digits-net")
class DigitsNet(Digits):
    """The trained U-Net denoiser of the 8x8 digits; class-conditional, VE time by default."""

    class Params(Digits.Params):
        dtype: Literal["fp32", "bf16", "fp16"] = Field("fp32", description="the network's precision (autocast)")
        weights: str | None = Field(None, description="a weights file (null: the shipped one, hash-checked)")

    reference_dataset = "digits"
    neural_network = True

    def __init__(self, **params):
        super().__init__(**params)
        self.net, self.weights_sha256 = load_weights(self.params.weights)
        self.autocast_dtype = DTYPES[self.params.dtype]

    def resolve(self, context=None) -> dict:
        """The parameters and the content hash of the weights, shipped or given."""
        return {**dict(self.params), "weights_sha256": self.weights_sha256}

    def required_paths(self) -> dict[str, str]:
        return {} if self.params.weights is None else {"weights": self.params.weights}

    def model_id(self) -> str:
        base = super().model_id()
        return base if self.params.weights is None else f"{base}@{self.weights_sha256[:12]}"

    def _network(self, x: torch.Tensor, sigma: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        if labels is None:
            labels = torch.full((x.shape[0],), -1, dtype=torch.long, device=x.device)
        return self.net(x, sigma, labels, autocast_dtype=self.autocast_dtype)

    def denoise(self, x: torch.Tensor, t, cond=None) -> torch.Tensor:
        """The network's x0_hat(x_t = x (, label)) in the model's time; x [B, 1, 8, 8], t [B] or scalar."""
        xs = self._flat(x).reshape(x.shape[0], *self.data_shape)
        t = self._sigma_batch(t, x)
        labels = self._labels(cond, x.shape[0], x.device)
        if self.params.time != "ve":
            xs, t = self._to_ve(xs, t)
        return self._network(xs, t, labels).reshape(x.shape)

    def _to_ve(self, x: torch.Tensor, t: torch.Tensor):
        from ..schedules import convert

        xf, sigma = convert(x.reshape(x.shape[0], -1), t, self.schedule, self._ve)
        return xf.reshape(x.shape), sigma

    def posterior_mean(self, x: torch.Tensor, sigma, cond=None) -> torch.Tensor:
        """The network's estimate of E[x0 | x0 + sigma * noise = x], in VE coordinates whatever the time."""
        xs = self._flat(x).reshape(x.shape[0], *self.data_shape)
        labels = self._labels(cond, x.shape[0], x.device)
        return self._network(xs, self._sigma_batch(sigma, x), labels).reshape(x.shape)


__all__ = ["DTYPES", "DigitsNet", "WEIGHTS_PATH", "WEIGHTS_SHA256", "load_weights"]
