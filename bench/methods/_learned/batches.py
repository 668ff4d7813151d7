"""Training and validation batches of the learned schedules: endless seeded epochs of index batches
(whose position round-trips through a fit's checkpoint) and per-sample losses over a whole split.
"""
from __future__ import annotations

from typing import Callable

import torch


class EpochBatches:
    """Endless index batches: a fresh permutation each epoch (the last short batch dropped when n > batch).

    Its position and the generator's state round-trip through `state_dict()`, so a resumed fit
    draws exactly the batches the uninterrupted fit would have drawn."""

    def __init__(self, n: int, batch: int, generator: torch.Generator):
        self.n, self.batch, self.generator = n, min(batch, n), generator
        self.perm: torch.Tensor | None = None
        self.pos = 0

    def __iter__(self):
        return self

    def __next__(self) -> torch.Tensor:
        if self.perm is None or self.pos + self.batch > self.n:
            self.perm = torch.randperm(self.n, generator=self.generator)
            self.pos = 0
        index = self.perm[self.pos : self.pos + self.batch]
        self.pos += self.batch
        return index

    def state_dict(self) -> dict:
        return {"perm": self.perm, "pos": self.pos, "generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.perm, self.pos = state["perm"], state["pos"]
        self.generator.set_state(state["generator"])


def epoch_batches(n: int, batch: int, generator: torch.Generator) -> EpochBatches:
    return EpochBatches(n, batch, generator)


def slice_cond(cond, index):
    return None if cond is None else cond[index]


def evaluate_losses(make_disc: Callable, solver, model, x_T, cond, x0, loss_fn, batch: int = 1024) -> torch.Tensor:
    """Per-sample losses [n] of sampling every prior with `make_disc(x_T_batch, cond_batch)`, no grad."""
    out = []
    with torch.no_grad():
        for i in range(0, x_T.shape[0], batch):
            sl = slice(i, i + batch)
            xb, cb = x_T[sl], slice_cond(cond, sl)
            disc = make_disc(xb, cb)
            out.append(loss_fn(solver.sample(model, xb, disc, cb), x0[sl]).detach().to(torch.float64))
    return torch.cat(out)


__all__ = ["EpochBatches", "epoch_batches", "evaluate_losses", "slice_cond"]
