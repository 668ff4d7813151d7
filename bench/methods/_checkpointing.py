"""Gradient checkpointing for the learned methods' backpropagation through the solver.

Backpropagating through an N-step solver keeps every network evaluation's activations alive until
the backward pass, so the memory of a fit grows linearly in the NFE; for a UNet that is the whole
cost. `checkpointed(model, mode)` wraps the denoiser so that each evaluation runs under
`torch.utils.checkpoint.checkpoint(..., use_reentrant=False)` (PyTorch's activation checkpointing;
Chen et al. 2016, "Training Deep Nets with Sublinear Memory Cost"): the forward pass keeps only the
evaluation's inputs (the solver states x_t, the times and the condition), and the backward pass
recomputes the network from them. Memory then stays flat in the NFE (one evaluation's activations at
a time, plus the states) at the price of one extra forward evaluation per evaluation. The gradients
are the same (recomputation is deterministic; the RNG state is preserved for dropout).

Method parameter `grad_checkpointing` (ld3, ld3-hard, indis, god, oracle): true, false or "auto" (the
default). "auto" turns it on for denoisers that are neural networks -- that have parameters -- and
off for the exact, parameter-free denoisers (toy2d, digits), whose evaluations hold no activations
worth recomputing (the data-size rule was rejected: an exact model's memory does not depend on it,
and a small-image UNet is still expensive).

Counting. The recomputation runs the wrapped model again, so a counting wrapper inside it counts
both passes: with checkpointing on, a fit's `fit_nfe` (and the oracle's `schedule_nfe`) include the
recomputed forward evaluations, the real forward work spent.

Not to be confused with a fit's own checkpoints (`FitContext.save_checkpoint`), which let a
preempted fit resume.

Only evaluations under autograd are checkpointed; under `torch.no_grad()` (validation, sampling) the
model is called as it is.
"""
from __future__ import annotations

import torch
from torch.utils.checkpoint import checkpoint


def is_network(model) -> bool:
    """True for a denoiser with parameters (a neural network), False for the exact ones."""
    params = getattr(model, "parameters", None)
    return callable(params) and any(True for _ in params())


def wants_checkpointing(model, mode) -> bool:
    return is_network(model) if mode == "auto" else bool(mode)


class Checkpointed:
    """A denoiser whose evaluations under autograd are recomputed in the backward pass."""

    def __init__(self, model):
        # Not called `model`: attribute look-ups fall through to the wrapped model, so code that
        # unwraps a counting model with `getattr(m, "model", m)` still reaches the bare network.
        self._inner = model
        self.schedule = model.schedule

    def __call__(self, x, t, cond=None):
        if torch.is_grad_enabled():
            return checkpoint(self._inner, x, t, cond, use_reentrant=False)
        return self._inner(x, t, cond)

    def __getattr__(self, name):
        if name == "_inner":
            raise AttributeError(name)
        return getattr(self._inner, name)


def checkpointed(model, mode="auto"):
    """`model` wrapped in `Checkpointed` when `mode` (auto / true / false) asks for it, else itself."""
    return Checkpointed(model) if wants_checkpointing(model, mode) else model


__all__ = ["Checkpointed", "checkpointed", "wants_checkpointing", "is_network"]
