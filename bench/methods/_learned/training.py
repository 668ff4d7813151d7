"""The training skeleton every learned schedule runs (`ld3`, `ld3-hard`, `indis`, `god`, `oracle`).

`LearnedFit(method, ctx).run()` does, in this order, what every learned fit does:
  1. resume: the state of an interrupted fit of the same key (`FitContext.load_checkpoint`), if any;
  2. otherwise the initialisation: the closed-form heuristic with the lowest validation loss
     (`init: auto`) or the one named (`bench.methods._learned.init`), scored by the method's `score_init`;
  3. `build(init_t, resume)`: the method's parameters and optimisers, started from those timesteps (or, when
     resuming, from placeholders that `load_state_dict` overwrites);
  4. the best so far: the validation loss of the start, or the checkpoint's best;
  5. the loop over the method's `positions()`: one optimiser `step`; a validation when
     `validation_due`, keeping the best iterate (strictly lower validation loss) and handing the result
     to `after_validation` (plateau rules; True stops the fit); `after_step`; a checkpoint when one is due
     (`FitContext.checkpoint_due`) and `checkpoint_wanted`;
  6. `finish()`: the best iterate becomes the fitted method; the fit info.
A method supplies those parts (parameters, batches and the map from its parameters to a
discretization) in a subclass, which calls `prepare` for what every fit needs (the model, the
training and validation pairs, the loss; `val_loss` scores a discretization on the validation pairs).
The skeleton holds what they share: the initial heuristic and its scores, the best iterate
(`best`: {"loss", ...the method's `snapshot()`}), the number of optimiser steps taken (`iteration`)
and where the fit resumed (`resumed_at`).

A checkpoint is {"init", "init_val_losses", ...the method's `state_dict()`, "best"}; together with the
batch generator's state (`batches.EpochBatches`) it makes a resumed fit end exactly where the
uninterrupted one ends.

`seeded(generator)` runs module construction on the global RNG seeded from the cell's generator.
"""
from __future__ import annotations

import contextlib
from typing import Iterator

import torch

from bench.discretization import FitContext

from .._checkpointing import checkpointed
from .batches import evaluate_losses
from .init import best_heuristic
from .losses import loss_for_model


@contextlib.contextmanager
def seeded(generator: torch.Generator):
    """Run a block (e.g. module construction) on the global RNG seeded from `generator`, restoring
    the global RNG afterwards, so every draw of a fit comes from the cell's generator."""
    seed = int(torch.randint(0, 2**62, (1,), generator=generator))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


class LearnedFit:
    """One fit of a learned schedule; `run` is the skeleton (module docstring), subclasses the parts."""

    def __init__(self, method, ctx: FitContext):
        self.method, self.ctx = method, ctx
        self.init_name: str | None = None
        self.init_scores: dict = {}
        self.best: dict = {}
        self.iteration = 0  # optimiser steps taken
        self.resumed_at = 0

    # --- the skeleton ------------------------------------------------------------------------

    def run(self) -> dict:
        """Fit; returns the method's fit info (`finish`)."""
        ctx, method = self.ctx, self.method
        resume = ctx.load_checkpoint()
        if resume is None:
            self.init_name, init_t, self.init_scores = best_heuristic(
                method.params.init, method.noise_schedule, method.steps, self.solver, self.model.data_shape,
                self.score_init)
        else:
            self.init_name, self.init_scores, init_t = resume["init"], resume["init_val_losses"], None
        self.build(init_t, resume)
        if resume is None:
            self.best = {"loss": self.validate(), **self.snapshot()}
            self.started()
        else:
            self.load_state_dict(resume)
            self.best = resume["best"]
        self.resumed_at = self.iteration

        stop = False
        for position in self.positions():
            self.step(position)
            self.iteration += 1
            if self.validation_due(position):
                loss = self.validate()
                improved = loss < self.best["loss"]
                if improved:
                    self.best = {"loss": loss, **self.snapshot()}
                stop = self.after_validation(loss, improved)
            self.after_step(position)
            if ctx.checkpoint_due() and self.checkpoint_wanted(position, stop):
                ctx.save_checkpoint({"init": self.init_name, "init_val_losses": self.init_scores,
                                     **self.state_dict(stop), "best": self.best})
            if stop:
                break
        return self.finish()

    # --- what every learned fit prepares --------------------------------------------------------

    model = None   # the (checkpointed) model the fit samples with
    solver = None  # the student solver

    def prepare(self, n_train: int, n_val: int) -> None:
        """The model (with gradient checkpointing as `grad_checkpointing` asks), the student solver,
        the training and validation pairs (in this order: `ctx.teacher` caches them) and the loss."""
        ctx, method = self.ctx, self.method
        self.model, self.solver = checkpointed(ctx.model, method.params.grad_checkpointing), ctx.solver
        self.train, self.val = ctx.teacher("train", n_train), ctx.teacher("val", n_val)
        self.dtype = self.train.x_T.dtype
        self.loss_fn, self.loss_used = loss_for_model(method.name, method.params.loss, self.model, ctx.device)

    def val_loss(self, make_disc) -> float:
        """The mean validation loss of sampling every validation prior with `make_disc(x_T, cond)`."""
        val = self.val
        return float(evaluate_losses(make_disc, self.solver, self.model, val.x_T, val.cond, val.x0,
                                     self.loss_fn).mean())

    # --- the parts a method supplies ------------------------------------------------------------

    def score_init(self, t: torch.Tensor) -> float:
        """The validation loss of a heuristic's timesteps t [N+1] (the `init: auto` choice)."""
        raise NotImplementedError

    def build(self, init_t: torch.Tensor | None, resume: dict | None) -> None:
        """Parameters and optimisers, started from `init_t` (None when resuming from `resume`)."""
        raise NotImplementedError

    def validate(self) -> float:
        """The validation loss of the current iterate."""
        raise NotImplementedError

    def snapshot(self) -> dict:
        """What keep-best stores of the current iterate (beside its loss)."""
        raise NotImplementedError

    def started(self) -> None:
        """Called once the start is scored, in a fresh (not resumed) fit."""

    def positions(self) -> Iterator:
        """The iterations still to run (a generator may do per-epoch work between them)."""
        raise NotImplementedError

    def step(self, position) -> None:
        """One optimiser step on the next training batch."""
        raise NotImplementedError

    def validation_due(self, position) -> bool:
        return True

    def after_validation(self, loss: float, improved: bool) -> bool:
        """Plateau rules after a validation; True stops the fit."""
        return False

    def after_step(self, position) -> None:
        """Work after the step and its validation."""

    def checkpoint_wanted(self, position, stop: bool) -> bool:
        return True

    def state_dict(self, stop: bool) -> dict:
        """The method's part of a checkpoint."""
        raise NotImplementedError

    def load_state_dict(self, state: dict) -> None:
        raise NotImplementedError

    def finish(self) -> dict:
        """Make the best iterate the fitted method; return the fit info."""
        raise NotImplementedError


__all__ = ["LearnedFit", "seeded"]
