"""`LazyDenoiser`: a `Denoiser` whose networks are loaded on first use, on the first input's device.

A grid builds every model once just to validate its parameters, and `bench.preflight` builds them
to list their paths; neither may read gigabytes of weights. So a file-backed adapter reads only
small config files when asked for its schedule or data shape, and loads its networks the first time
it denoises or decodes, onto the device of that input (then `Module.to` moves them as usual).
The runner calls `load(device)` itself when it builds a model for a cell, so fits see the
network's parameters (gradient checkpointing's "auto" looks for them).
"""
from __future__ import annotations

import weakref

import torch

from .base import Denoiser


class LazyDenoiser(Denoiser):
    """Subclasses implement `build(device) -> {attribute: module}` and `denoise(x, t, cond)`."""

    neural_network = True  # for `bench.methods._checkpointing`, before the lazy load has filled parameters()

    def __init__(self, **params):
        super().__init__(**params)
        self._loaded = False

    def build(self, device: torch.device) -> dict[str, torch.nn.Module]:
        raise NotImplementedError

    def load(self, device=None) -> "LazyDenoiser":
        """Load the networks (once) and put them on `device`."""
        if not self._loaded:
            device = torch.device("cpu" if device is None else device)
            for name, module in self.build(device).items():
                setattr(self, name, module.to(device))
            self._loaded = True
        return self

    def denoise(self, x: torch.Tensor, t: torch.Tensor, cond=None) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor, t, cond=None) -> torch.Tensor:
        self.load(x.device)
        return self.denoise(x, batch_time(t, x), cond)


def batch_time(t, x: torch.Tensor) -> torch.Tensor:
    """t as a [B] tensor in x's dtype and device (a scalar is broadcast)."""
    t = torch.as_tensor(t, device=x.device).to(x.dtype) if not isinstance(t, torch.Tensor) else t.to(x.device, x.dtype)
    if t.numel() == 1:
        return t.reshape(()).expand(x.shape[0])
    if t.shape != (x.shape[0],):
        raise ValueError(f"t must have shape [B] = [{x.shape[0]}] or be a scalar, got {tuple(t.shape)}")
    return t


def batch_labels(cond, x: torch.Tensor, num_classes: int, model: str) -> torch.Tensor:
    """cond as a LongTensor [B] of labels in -1..num_classes-1 (-1: unconditional; None: all -1)."""
    b = x.shape[0]
    if cond is None:
        return torch.full((b,), -1, dtype=torch.long, device=x.device)
    cond = torch.as_tensor(cond, device=x.device)
    if cond.dtype.is_floating_point or cond.dtype == torch.bool:
        raise ValueError(f"{model}: cond must be integer labels, got {cond.dtype}")
    cond = cond.long().reshape(()).expand(b) if cond.numel() == 1 else cond.long()
    if cond.shape != (b,):
        raise ValueError(f"{model}: cond must have shape [B] = [{b}], got {tuple(cond.shape)}")
    check_label_range(cond, num_classes, model)
    return cond


# The label tensors last found in range, per class count (weak references). A sampling loop passes the
# same `cond` at every step; checking it once keeps the per-step host sync of `.all()` (a GPU stall) out
# of the loop. (A tensor changed in place after its check is not checked again.)
_IN_RANGE: dict[int, list] = {}
_REMEMBERED = 4


def check_label_range(cond: torch.Tensor, num_classes: int, model: str) -> None:
    """Raise a ValueError unless every label of `cond` is in -1..num_classes-1."""
    recent = _IN_RANGE.setdefault(num_classes, [])
    if any(ref() is cond for ref in recent):
        return
    if cond.numel() and not bool(((cond >= -1) & (cond < num_classes)).all()):
        raise ValueError(f"{model}: labels must be in 0..{num_classes - 1} (or -1: unconditional)")
    recent.insert(0, weakref.ref(cond))
    del recent[_REMEMBERED:]


__all__ = ["LazyDenoiser", "batch_labels", "batch_time", "check_label_range"]
