"""`ld3` and `ld3-hard`: LD3, "Learning to Discretize Denoising Diffusion ODEs" (Tong, Nguyen-Tang,
Le, Tran, Nguyen; ICLR 2025; reference code github.com/vinhsuhi/LD3, read for understanding only).

One global schedule per (model, solver, NFE), learned by backpropagating through the student solver
to match a teacher's endpoint from the same prior.

Parametrisation. xi [N] -> timesteps by the cumulative-softmax map of
`bench.methods._learned.time_map.TimeMap` (strictly decreasing, exact ends, in lambda for VE models and in
t otherwise: `space`); a decoupled network-input time per step, xi_c [N] (the paper's xi_c), zero at
the first step and clamped to a half-width `xi_window` (see `bench.methods._learned.time_map`): "global"
(default, the reference's rule): `window` = 0.5 times the smallest gap between adjacent raw logits
(the inert first one, 0 here, included) in lambda mode, or the smallest timestep gap in t mode, one
width for every step; "step": 0.5 of each step's smaller neighbouring gap in the map's coordinate.
The schedule is Discretization(t, t_eval) (no output scale).

Reference and variants (the project's rule, README "Defaults"):

  | reference        | vinhsuhi/LD3, trainer.py (`discretize_model_wrapper`, the training loop),    |
  |                  | commit 9e4a66f8238a45903e54b89a1f557df1e7de8afc, configs/cifar10.yml          |
  | default          | the reference's timesteps, loss, soft teacher and training recipe (below);   |
  |                  | the xi_c window of its code (`xi_window: global`)                            |
  | xi_window: step  | each step's shift bounded by half its smaller neighbouring gap in the map's  |
  |                  | coordinate: a wider window in lambda mode, where the reference's bound comes |
  |                  | from the raw logits                                                          |
  | bound: 0         | `ld3-hard`, the paper's ablation without the soft teacher                    |
  | decoupled: false | no xi_c at all                                                               |


Soft teacher. Each training prior x_T has a learnable copy x'_T, updated by SGD (lr `lr_prior`/NFE)
on the same loss and projected back into the ball ||x'_T - x_T|| <= r after every step, measured on the
unit-variance noise x_T / sigma(t_max) (before the prior's scaling), with r = `bound` * d / NFE^2 (d
the number of values in one sample; the reference's `adjust_hyper`); the student starts from x'_T and
is compared with the teacher's x0* from x_T. A moved x'_T is kept only where it lowers that sample's
loss (compared, as in the reference, with the loss before the step). `ld3-hard` is the same with
bound = 0 (no soft teacher), for the ablation.

Training recipe (paper appendix / reference defaults, configs/cifar10.yml and utils.adjust_hyper):
  * xi: RMSprop, lr `lr_xi` = 0.005, momentum 0.9;  xi_c: SGD, lr `lr_xi_c`/NFE = 0.1/NFE;
    x'_T: SGD, lr `lr_prior`/NFE = 12/NFE (the reference's 3 * 4 / steps); gradient norms clipped at
    `clip` = 1 (each of xi and xi_c).
  * `rounds1` = 2 rounds (passes over the training set) training xi only, then `rounds2` = 5 rounds
    training xi and xi_c; batch `batch` = 2.
  * Validation loss on the whole validation set after every iteration; after `patience` = 5 iterations
    without improvement the best checkpoint is restored and the learning rates decay by `decay` = 0.8
    (xi always, xi_c in phase 2) down to the floors `min_lr_xi` = 5e-5 and `min_lr_xi_c` = 1e-6;
    training stops once xi_c's rate has hit its floor `lr_patience` = 5 times; each round restarts from
    the best checkpoint, and the best validation checkpoint is the result.
  * `train` = 50 training and `val` = 50 validation pairs; initialised (`init` = "auto") from the
    closed-form heuristic with the lowest validation loss (the reference starts from uniform or a
    given prior schedule; starting from the best heuristic makes LD3 comparable with it), xi_c from 0.
  * `loss` = "auto": LPIPS for RGB/grey images when its weights load, else the per-sample mean
    squared error (the reference: LPIPS (VGG) for pixel models, L2 or L1 as options).
  * `grad_checkpointing` = "auto": recompute each network evaluation in the backward pass instead of
    storing its activations (on for neural-network denoisers; `bench.methods._checkpointing`).
Departures from the reference code: validation uses the original validation priors (the reference
also moves the validation priors with the soft teacher and validates on the moved ones, and halves
the prior learning rate when none of them moves), the first patience event decays the rates (the
reference first switches from one validation batch to all, which with its settings is the same set),
and xi has N entries, not N+1 (see `bench.methods._learned.time_map`).

Training runs the learned methods' skeleton (`bench.methods._learned.training.LearnedFit`); `LD3Fit`
supplies LD3's parts. Fit info (`fit_info()`): the initial heuristic and every heuristic's validation loss, the best
validation loss, iterations run, the loss used, r, how many training priors were moved and the
largest ||x'_T - x_T|| (on the unit-variance noise; <= r up to float32 rounding).
"""
from __future__ import annotations

import copy
from typing import Iterator, Literal

import torch
from pydantic import Field

from bench.discretization import Discretization, FitContext
from bench.registry import METHODS
from bench.seeding import MAX_SPLIT_SIZE

from ._learned.batches import epoch_batches, slice_cond
from ._learned.method import LearnedMethod
from ._learned.time_map import TimeMap, discretization
from ._learned.training import LearnedFit
from ._params import LearnedParams


class LD3HardParams(LearnedParams):
    """LD3's parameters without the soft teacher's radius (`ld3-hard`); defaults from the module docstring."""

    decoupled: bool = Field(True, description="learn the evaluation-time shift xi_c (LD3's decoupled time)")
    window: float = Field(0.5, gt=0, lt=1, description="xi_c's clamp, as a fraction of the neighbouring gaps")
    xi_window: Literal["global", "step"] = Field(
        "global", description="the gaps xi_c's clamp is taken from: global (the reference's smallest gap) or step "
                              "(each step's neighbouring gaps)")
    train: int = Field(50, ge=1, le=MAX_SPLIT_SIZE, description="training pairs (paper: 50)")
    val: int = Field(50, ge=1, le=MAX_SPLIT_SIZE, description="validation pairs (paper: 50)")
    batch: int = Field(2, ge=1, le=MAX_SPLIT_SIZE,
                       description="pairs per optimiser step (reference: 2); cut to `train` when larger "
                                   "(the row's fit info `batch` records the batch that ran)")
    rounds1: int = Field(2, ge=0, le=100_000, description="epochs of the first phase")
    rounds2: int = Field(5, ge=0, le=100_000, description="epochs of the second phase")
    lr_xi: float = Field(0.005, gt=0, allow_inf_nan=False, description="SGD learning rate of the timestep logits")
    momentum: float = Field(0.9, ge=0, lt=1, description="SGD momentum")
    lr_xi_c: float = Field(0.1, gt=0, allow_inf_nan=False, description="learning rate of xi_c")
    lr_prior: float = Field(12.0, gt=0, allow_inf_nan=False, description="learning rate of the soft teacher's x_T")
    clip: float = Field(1.0, gt=0, allow_inf_nan=False, description="gradient-norm clip")
    patience: int = Field(5, ge=1, le=100_000, description="epochs without improvement before stopping")
    decay: float = Field(0.8, gt=0, le=1, description="learning-rate decay on a plateau")
    min_lr_xi: float = Field(5e-5, gt=0, description="floor of lr_xi")
    min_lr_xi_c: float = Field(1e-6, gt=0, description="floor of lr_xi_c")
    lr_patience: int = Field(5, ge=1, le=100_000, description="plateau epochs before a decay")


class LD3Params(LD3HardParams):
    """LD3's parameters: those of `ld3-hard` and the soft teacher's radius."""

    bound: float = Field(0.001, ge=0, allow_inf_nan=False, description="the soft teacher's radius r (paper: 0.001)")


class LD3Method(LearnedMethod):
    """What `ld3` and `ld3-hard` share (everything but the soft teacher's radius); not registered."""

    needs_fit = True
    Params = LD3HardParams

    def __init__(self, **params):
        super().__init__(**params)
        self.xi: torch.Tensor | None = None
        self.xi_c: torch.Tensor | None = None
        self._info: dict = {}

    # --- the schedule ------------------------------------------------------------------------

    def _disc(self, xi: torch.Tensor, xi_c: torch.Tensor | None, dtype) -> Discretization:
        u = self.map.progress(xi)
        t = self.map.time_at(u)
        t_eval = None
        if self.params.decoupled and xi_c is not None:
            t_eval = self.map.ld3_eval_times(u, xi_c, float(self.params.window), self.params.xi_window, xi)
        return discretization(t, t_eval, dtype=dtype)

    def discretize(self, x_T: torch.Tensor, cond=None) -> Discretization:
        if self.xi is None:
            raise RuntimeError(f"method {self.name!r} is not fitted: call fit(ctx) or load_state_dict first")
        return self._disc(self.xi, self.xi_c, x_T.dtype).to(device=x_T.device)

    # --- fitting -----------------------------------------------------------------------------

    def fit(self, ctx: FitContext) -> None:
        self._info = LD3Fit(self, ctx).run()

    def soft_teacher_bound(self) -> float:
        """The soft teacher's `bound` (r = bound * d / NFE^2); 0 turns the soft teacher off."""
        return 0.0

    # --- state -------------------------------------------------------------------------------

    def fit_info(self) -> dict:
        return copy.deepcopy(self._info)

    def state_dict(self) -> dict:
        return {"xi": self.xi, "xi_c": self.xi_c, "space": self.map.space, "info": self._info}

    def load_state_dict(self, state: dict) -> None:
        if state["xi"].numel() != self.steps:
            raise ValueError(f"{self.name}: the stored schedule has {state['xi'].numel()} steps, not {self.steps}")
        self.map = TimeMap(self.noise_schedule, state["space"])
        self.xi = state["xi"].detach().cpu()
        self.xi_c = None if state["xi_c"] is None else state["xi_c"].detach().cpu()
        self._info = dict(state.get("info", {}))


@METHODS.register("ld3")
class LD3(LD3Method):
    """LD3 with the soft teacher of radius r = `bound` * d / NFE^2."""

    Params = LD3Params

    def soft_teacher_bound(self) -> float:
        return float(self.params.bound)


@METHODS.register("ld3-hard")
class LD3Hard(LD3Method):
    """LD3 without the soft teacher (r = 0): the ablation of the paper. It has no `bound` parameter."""


def project_to_ball(z: torch.Tensor, center: torch.Tensor, radius: float) -> torch.Tensor:
    """Project each sample of z onto the ball ||z_i - center_i|| <= radius (per-sample L2 norm)."""
    diff = z - center
    norm = diff.reshape(diff.shape[0], -1).norm(dim=1)
    factor = torch.clamp(radius / norm.clamp_min(torch.finfo(norm.dtype).tiny), max=1.0)
    return center + diff * factor.reshape((-1,) + (1,) * (z.ndim - 1))


class LD3Fit(LearnedFit):
    """LD3's parts of the training skeleton (`bench.methods._learned.training`): xi and xi_c with their
    optimisers, the soft teacher's moved priors, rounds of epochs in two phases, validation after
    every iteration with patience, decay and restarts from the best (module docstring)."""

    def __init__(self, method: LD3Method, ctx: FitContext):
        super().__init__(method, ctx)
        p = self.p = method.params
        self.nfe = int(ctx.nfe)
        self.prepare(p.train, p.val)
        self.prior_std = float(method.noise_schedule.prior_std())

    def _val_loss(self, xi, xi_c) -> float:
        disc = self.method._disc(xi, xi_c, self.dtype)
        return self.val_loss(lambda xb, cb: disc)

    def score_init(self, t: torch.Tensor) -> float:
        return self._val_loss(self.method.map.logits_of(t), None)

    def build(self, init_t, resume) -> None:
        p, ctx, method, train = self.p, self.ctx, self.method, self.train
        init_xi = method.map.logits_of(init_t).to(torch.float32) if resume is None else resume["xi"]
        self.xi = torch.nn.Parameter(init_xi.clone().to(ctx.device))
        self.xi_c = torch.nn.Parameter(torch.zeros(method.steps, dtype=torch.float32, device=ctx.device))
        self.opt_xi = torch.optim.RMSprop([self.xi], lr=p.lr_xi, momentum=p.momentum)
        self.opt_xi_c = torch.optim.SGD([self.xi_c], lr=p.lr_xi_c / self.nfe)
        self.lr_prior = p.lr_prior / self.nfe

        # Soft teacher: x'_T on the unit-variance noise, in the ball of radius r around x_T.
        d = train.x_T[0].numel()
        self.radius = method.soft_teacher_bound() * d / self.nfe**2
        self.origin = (train.x_T / self.prior_std).detach()
        self.latent = self.origin.clone()
        self.moved = torch.zeros(len(train), dtype=torch.bool)
        self.batches = epoch_batches(len(train), p.batch, ctx.generator)
        self.per_round = max(len(train) // min(p.batch, len(train)), 1)
        self.position = {"round": 0, "step": 0}  # the next iteration to run
        self.worse = self.min_hits = 0
        self.phase2 = True  # the start is scored with xi_c (zero); each round sets its phase

    def validate(self) -> float:
        return self._val_loss(self.xi.detach(), self.xi_c.detach() if self.phase2 else None)

    def snapshot(self) -> dict:
        return {"xi": self.xi.detach().clone(), "xi_c": self.xi_c.detach().clone()}

    def _restore_best(self) -> None:
        with torch.no_grad():
            self.xi.copy_(self.best["xi"])
            self.xi_c.copy_(self.best["xi_c"])

    def positions(self) -> Iterator[tuple[int, int]]:
        p = self.p
        if self.position.get("stopped", False):
            return
        for rnd in range(self.position["round"], p.rounds1 + p.rounds2):
            self.phase2 = rnd >= p.rounds1 and p.decoupled
            if rnd > 0 and self.position["step"] == 0:  # a new round (not one resumed in its middle)
                self._restore_best()
                self.worse = 0
            self.xi_c.requires_grad_(self.phase2)
            for step in range(self.position["step"], self.per_round):
                yield rnd, step

    def step(self, position) -> None:
        p, train, method = self.p, self.train, self.method
        xi, xi_c = self.xi, self.xi_c
        idx = next(self.batches)
        cb, x0 = slice_cond(train.cond, idx), train.x0[idx]
        z = self.latent[idx].clone().requires_grad_(self.radius > 0)
        disc = method._disc(xi, xi_c if self.phase2 else None, self.dtype)
        losses = self.loss_fn(self.solver.sample(self.model, z * self.prior_std, disc, cb), x0)
        losses.mean().backward()
        z_new = None
        if self.radius > 0:
            with torch.no_grad():
                z_new = project_to_ball(z - self.lr_prior * z.grad, self.origin[idx], self.radius)
        torch.nn.utils.clip_grad_norm_([xi], p.clip)
        self.opt_xi.step()
        self.opt_xi.zero_grad()
        if self.phase2:
            torch.nn.utils.clip_grad_norm_([xi_c], p.clip)
            self.opt_xi_c.step()
        self.opt_xi_c.zero_grad()
        self.last = (idx, cb, x0, losses, z_new)

    def after_validation(self, loss: float, improved: bool) -> bool:
        """Patience and decay; True means stop."""
        p = self.p
        if improved:
            self.worse = 0
            return False
        self.worse += 1
        if self.worse < p.patience:
            return False
        self._restore_best()
        self.worse = 0
        for group in self.opt_xi.param_groups:
            group["lr"] = max(p.decay * group["lr"], p.min_lr_xi)
        if self.phase2:
            for group in self.opt_xi_c.param_groups:
                group["lr"] = max(p.decay * group["lr"], p.min_lr_xi_c)
                if group["lr"] <= p.min_lr_xi_c:
                    self.min_hits += 1
        return self.min_hits >= p.lr_patience

    def after_step(self, position) -> None:
        """The soft teacher: keep a moved prior where it lowers that sample's loss; the next position."""
        idx, cb, x0, losses, z_new = self.last
        self.last = None
        if self.radius > 0:
            with torch.no_grad():
                disc = self.method._disc(self.xi.detach(), self.xi_c.detach() if self.phase2 else None, self.dtype)
                new_losses = self.loss_fn(self.solver.sample(self.model, z_new * self.prior_std, disc, cb), x0)
                keep = new_losses < losses.detach()
                self.latent[idx[keep]] = z_new[keep]
                self.moved[idx[keep]] = True
        rnd, step = position
        self.position = ({"round": rnd, "step": step + 1} if step + 1 < self.per_round
                         else {"round": rnd + 1, "step": 0})

    def state_dict(self, stop: bool) -> dict:
        return {
            "xi": self.xi.detach().clone(), "xi_c": self.xi_c.detach().clone(), "opt_xi": self.opt_xi.state_dict(),
            "opt_xi_c": self.opt_xi_c.state_dict(), "latent": self.latent, "moved": self.moved,
            "batches": self.batches.state_dict(),
            "state": {"worse": self.worse, "min_hits": self.min_hits, "iterations": self.iteration},
            "position": dict(self.position, stopped=stop)}

    def load_state_dict(self, state: dict) -> None:
        with torch.no_grad():
            self.xi_c.copy_(state["xi_c"])
        self.opt_xi.load_state_dict(state["opt_xi"])
        self.opt_xi_c.load_state_dict(state["opt_xi_c"])
        self.latent, self.moved = state["latent"].to(self.origin), state["moved"]
        self.batches.load_state_dict(state["batches"])
        counters = state["state"]
        self.worse, self.min_hits, self.iteration = counters["worse"], counters["min_hits"], counters["iterations"]
        self.position = state["position"]

    def finish(self) -> dict:
        method, best, train = self.method, self.best, self.train
        method.xi = best["xi"].detach().cpu()
        method.xi_c = best["xi_c"].detach().cpu() if self.p.decoupled else None
        return {
            "init": self.init_name, "init_val_losses": self.init_scores, "best_val_loss": best["loss"],
            "iterations": self.iteration, "resumed_at_iteration": self.resumed_at, "loss": self.loss_used,
            "radius": self.radius,
            "moved_priors": int(self.moved.sum()), "space": method.map.space,
            # pairs per optimiser step as run: `batch`, cut to the training set when larger
            "batch": self.batches.batch, "train_size": len(train),
            "max_prior_shift": float((self.latent - self.origin).reshape(len(train), -1).norm(dim=1).max()),
        }
