"""The per-sample losses a learned schedule is trained and validated with (`ld3`, `indis`, `god`,
`oracle`), and the resolution of the learned methods' shared `auto` parameters.

`l2`: the per-sample mean over dimensions of the squared error (LD3's `compute_distance_between_two`;
the harness's `mse` metric sums instead of averaging, which differs by the constant d). `lpips`:
`bench.metrics.lpips.load_lpips(net="alex", pretrained=True)`, imported lazily; it takes 1- or
3-channel images [B, C, H, W] in [-1, 1] (it repeats grey to RGB and upsamples small images itself).
`auto`: LPIPS for such images when its weights load, else l2 (vectors, other channel counts, or
missing weights); the loss actually used is recorded in the method's fit info. Latent models
(`loss_for_model`): LPIPS compares the decoded images (through the autoencoder, differentiably);
l2 stays on the latents.
"""
from __future__ import annotations

from typing import Callable

import torch

from bench.errors import UserError
from bench.models.base import Denoiser

from .time_map import resolve_space

LOSSES = ("auto", "l2", "lpips")


def l2_loss(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-sample mean squared error over all dimensions, [B]."""
    return (x - y).reshape(x.shape[0], -1).square().mean(dim=1)


def _lpips_shape_ok(data_shape) -> bool:
    return len(data_shape) == 3 and data_shape[0] in (1, 3)


def _load_lpips(device):
    from bench.metrics.lpips import load_lpips  # lazy: only when LPIPS is asked for

    net = load_lpips(net="alex", pretrained=True, device=str(device))
    return lambda x, y: net(x, y).reshape(-1)


def _lpips_available() -> bool:
    from bench.metrics.lpips import check_weights

    try:
        check_weights("alex")
    except (UserError, ImportError):
        return False
    return True


def _loss_shape(model) -> tuple:
    """The shape LPIPS would compare: decoded images for latent models, else the state's shape."""
    decode = getattr(model, "decode", None)
    latent = decode is not None and getattr(decode, "__func__", None) is not Denoiser.decode
    return tuple(getattr(model, "image_shape", model.data_shape)) if latent else tuple(model.data_shape)


def resolve_learned(params, model) -> dict:
    """The `auto` parameters every learned method shares, resolved for `model` on this machine:
    space (lambda for VE, else t), loss (lpips when the images suit it and its weights load, else
    l2) and grad_checkpointing (on for neural networks). `init: auto` stays: it is a rule (the
    heuristic with the lowest validation loss) whose choice the row's fit info records."""
    from .._checkpointing import is_network

    out = dict(params)
    out["space"] = resolve_space(params.space, model.schedule)
    if params.loss == "auto":
        out["loss"] = "lpips" if _lpips_shape_ok(_loss_shape(model)) and _lpips_available() else "l2"
    if params.grad_checkpointing == "auto":
        out["grad_checkpointing"] = bool(getattr(model, "neural_network", False)) or is_network(model)
    return out


def make_loss(method: str, name: str, data_shape, device) -> tuple[Callable, str]:
    """(per-sample loss fn(x, y) -> [B], the name of the loss used)."""
    if name == "l2":
        return l2_loss, "l2"
    if name == "lpips":
        if not _lpips_shape_ok(data_shape):
            raise UserError(f"method {method!r}: loss 'lpips' needs 1- or 3-channel images, got samples of "
                            f"shape {tuple(data_shape)}; use loss: l2")
        try:
            return _load_lpips(device), "lpips"
        except (ImportError, UserError) as err:
            raise UserError(f"method {method!r}: loss 'lpips' is unavailable ({err}); use loss: l2 or auto") from None
    if _lpips_shape_ok(data_shape):
        try:
            return _load_lpips(device), "lpips"
        except (UserError, ImportError):
            pass
    return l2_loss, "l2"


def loss_for_model(method: str, name: str, model, device) -> tuple[Callable, str]:
    """`make_loss` for a model's samples. For a latent model (one whose `decode` is not the
    identity), LPIPS compares the decoded images, differentiably through the decoder; l2 stays on
    the latents (the state the solver carries)."""
    decode = getattr(model, "decode", None)
    latent = decode is not None and getattr(decode, "__func__", None) is not Denoiser.decode
    loss_fn, used = make_loss(method, name, _loss_shape(model), device)
    if latent and used == "lpips":
        return (lambda x, y: loss_fn(decode(x), decode(y))), "lpips (decoded)"
    return loss_fn, used


__all__ = ["LOSSES", "l2_loss", "loss_for_model", "make_loss", "resolve_learned"]
