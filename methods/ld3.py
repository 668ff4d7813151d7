"""`ld3` and `ld3-hard`: LD3, "Learning to Discretize Denoising Diffusion ODEs" (Tong, Nguyen-Tang,
Le, Tran, Nguyen; ICLR 2025; reference code github.com/vinhsuhi/LD3, read for understanding only).

One global schedule per (model, solver, NFE), learned by backpropagating through the student solver
to match a teacher's endpoint from the same prior.

Parametrisation. xi [N] -> timesteps by the cumulative-softmax map of `methods._learned.TimeMap`
(strictly decreasing, exact ends, in lambda for VE models and in t otherwise: `space`); a decoupled
network-input time per step, xi_c [N] (the paper's xi_c), zero at the first step and clamped to a
half-width `xi_window` (see `_learned`): "global" (default, the reference's rule): `window` = 0.5 times
the smallest gap between adjacent raw logits (the inert first one, 0 here, included) in lambda mode,
or the smallest timestep gap in t mode, one width for every step; "step": 0.5 of each step's smaller
neighbouring gap in the map's coordinate. The schedule is Discretization(t, t_eval) (no output scale).

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
    storing its activations (on for neural-network denoisers; `methods._checkpointing`).
Departures from the reference code: validation uses the original validation priors (the reference
also moves the validation priors with the soft teacher and validates on the moved ones, and halves
the prior learning rate when none of them moves), the first patience event decays the rates (the
reference first switches from one validation batch to all, which with its settings is the same set),
and xi has N entries, not N+1 (see `_learned`).

Fit info (`fit_info()`): the initial heuristic and every heuristic's validation loss, the best
validation loss, iterations run, the loss used, r, how many training priors were moved and the
largest ||x'_T - x_T|| (on the unit-variance noise; <= r up to float32 rounding).
"""
from __future__ import annotations

import copy
from typing import Literal

import torch
from pydantic import Field

from bench.discretization import Discretization, DiscretizationMethod, FitContext
from bench.registry import METHODS
from bench.seeding import MAX_SPLIT_SIZE

from ._checkpointing import checkpointed
from ._learned import (
    TimeMap, choose_init, discretization, resolve_learned,
    epoch_batches, evaluate_losses, heuristic_timesteps, loss_for_model, slice_cond,
)
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
    bound: float = Field(0.001, ge=0, allow_inf_nan=False, description="the soft teacher's radius r (paper: 0.001)")



@METHODS.register("ld3")
class LD3(DiscretizationMethod):
    needs_fit = True
    Params = LD3Params

    def __init__(self, **params):
        super().__init__(**params)
        self.xi: torch.Tensor | None = None
        self.xi_c: torch.Tensor | None = None
        self._info: dict = {}

    # --- the schedule ------------------------------------------------------------------------

    def resolve(self, context=None) -> dict:
        return dict(self.params) if context is None else resolve_learned(self.params, context)

    def bind(self, schedule, steps, solver=None, model=None):
        super().bind(schedule, steps, solver, model)
        self.map = TimeMap(schedule, self.params["space"])
        return self

    def _disc(self, xi: torch.Tensor, xi_c: torch.Tensor | None, dtype) -> Discretization:
        u = self.map.progress(xi)
        t = self.map.time_at(u)
        t_eval = None
        if self.params["decoupled"] and xi_c is not None:
            t_eval = self.map.ld3_eval_times(u, xi_c, float(self.params["window"]), self.params["xi_window"], xi)
        return discretization(t, t_eval, dtype=dtype)

    def discretize(self, x_T: torch.Tensor, cond=None) -> Discretization:
        if self.xi is None:
            raise RuntimeError(f"method {self.name!r} is not fitted: call fit(ctx) or load_state_dict first")
        return self._disc(self.xi, self.xi_c, x_T.dtype).to(device=x_T.device)

    # --- fitting -----------------------------------------------------------------------------

    def fit(self, ctx: FitContext) -> None:
        p = self.params
        model, solver = checkpointed(ctx.model, p["grad_checkpointing"]), ctx.solver
        nfe = int(ctx.nfe)
        train, val = ctx.teacher("train", p["train"]), ctx.teacher("val", p["val"])
        dtype = train.x_T.dtype
        loss_fn, loss_used = loss_for_model(self.name, p["loss"], model, ctx.device)
        prior_std = float(self.noise_schedule.prior_std())

        def val_loss(xi, xi_c) -> float:
            disc = self._disc(xi, xi_c, dtype)
            return float(evaluate_losses(lambda xb, cb: disc, solver, model, val.x_T, val.cond, val.x0,
                                         loss_fn).mean())

        resume = ctx.load_checkpoint()
        if resume is None:  # initialisation: the heuristic with the lowest validation loss
            candidates = heuristic_timesteps(self.noise_schedule, self.steps, solver, model.data_shape)
            init_name, init_t, init_scores = choose_init(
                p["init"], candidates, lambda t: val_loss(self.map.logits_of(t), None))
            init_xi = self.map.logits_of(init_t).to(torch.float32)
        else:
            init_name, init_scores, init_xi = resume["init"], resume["init_val_losses"], resume["xi"]
        xi = torch.nn.Parameter(init_xi.clone().to(ctx.device))
        xi_c = torch.nn.Parameter(torch.zeros(self.steps, dtype=torch.float32, device=ctx.device))
        opt_xi = torch.optim.RMSprop([xi], lr=p["lr_xi"], momentum=p["momentum"])
        opt_xi_c = torch.optim.SGD([xi_c], lr=p["lr_xi_c"] / nfe)
        lr_prior = p["lr_prior"] / nfe

        # Soft teacher: x'_T on the unit-variance noise, in the ball of radius r around x_T.
        d = train.x_T[0].numel()
        radius = float(p.get("bound", 0.0)) * d / nfe**2
        origin = (train.x_T / prior_std).detach()
        latent = origin.clone()
        moved = torch.zeros(len(train), dtype=torch.bool)
        batches = epoch_batches(len(train), p["batch"], ctx.generator)
        per_round = max(len(train) // min(p["batch"], len(train)), 1)
        position = {"round": 0, "step": 0}  # the next iteration to run
        state = {"worse": 0, "min_hits": 0, "iterations": 0}
        if resume is None:
            best = {"loss": val_loss(xi.detach(), xi_c.detach()), "xi": xi.detach().clone(),
                    "xi_c": xi_c.detach().clone()}
        else:
            with torch.no_grad():
                xi_c.copy_(resume["xi_c"])
            opt_xi.load_state_dict(resume["opt_xi"])
            opt_xi_c.load_state_dict(resume["opt_xi_c"])
            latent, moved = resume["latent"].to(origin), resume["moved"]
            batches.load_state_dict(resume["batches"])
            best, state, position = resume["best"], resume["state"], resume["position"]
        resumed_at = state["iterations"]

        def checkpoint(stopped: bool):
            ctx.save_checkpoint({
                "init": init_name, "init_val_losses": init_scores, "xi": xi.detach().clone(),
                "xi_c": xi_c.detach().clone(), "opt_xi": opt_xi.state_dict(), "opt_xi_c": opt_xi_c.state_dict(),
                "latent": latent, "moved": moved, "batches": batches.state_dict(), "best": best,
                "state": dict(state), "position": dict(position, stopped=stopped)})

        def restore_best():
            with torch.no_grad():
                xi.copy_(best["xi"])
                xi_c.copy_(best["xi_c"])

        def after_iteration(phase2: bool) -> bool:
            """Validate, keep the best, apply patience and decay; True means stop."""
            loss = val_loss(xi.detach(), xi_c.detach() if phase2 else None)
            if loss < best["loss"]:
                best.update(loss=loss, xi=xi.detach().clone(), xi_c=xi_c.detach().clone())
                state["worse"] = 0
                return False
            state["worse"] += 1
            if state["worse"] < p["patience"]:
                return False
            restore_best()
            state["worse"] = 0
            for group in opt_xi.param_groups:
                group["lr"] = max(p["decay"] * group["lr"], p["min_lr_xi"])
            if phase2:
                for group in opt_xi_c.param_groups:
                    group["lr"] = max(p["decay"] * group["lr"], p["min_lr_xi_c"])
                    if group["lr"] <= p["min_lr_xi_c"]:
                        state["min_hits"] += 1
            return state["min_hits"] >= p["lr_patience"]

        stop = bool(position.get("stopped", False))
        for rnd in range(position["round"], p["rounds1"] + p["rounds2"]):
            if stop:
                break
            phase2 = rnd >= p["rounds1"] and p["decoupled"]
            if rnd > 0 and position["step"] == 0:  # a new round (not one resumed in its middle)
                restore_best()
                state["worse"] = 0
            xi_c.requires_grad_(phase2)
            for step in range(position["step"], per_round):
                idx = next(batches)
                cb, x0 = slice_cond(train.cond, idx), train.x0[idx]
                z = latent[idx].clone().requires_grad_(radius > 0)
                disc = self._disc(xi, xi_c if phase2 else None, dtype)
                losses = loss_fn(solver.sample(model, z * prior_std, disc, cb), x0)
                losses.mean().backward()
                if radius > 0:
                    with torch.no_grad():
                        z_new = project_to_ball(z - lr_prior * z.grad, origin[idx], radius)
                torch.nn.utils.clip_grad_norm_([xi], p["clip"])
                opt_xi.step()
                opt_xi.zero_grad()
                if phase2:
                    torch.nn.utils.clip_grad_norm_([xi_c], p["clip"])
                    opt_xi_c.step()
                opt_xi_c.zero_grad()
                state["iterations"] += 1
                stop = after_iteration(phase2)
                if radius > 0:
                    with torch.no_grad():
                        disc = self._disc(xi.detach(), xi_c.detach() if phase2 else None, dtype)
                        new_losses = loss_fn(solver.sample(model, z_new * prior_std, disc, cb), x0)
                        keep = new_losses < losses.detach()
                        latent[idx[keep]] = z_new[keep]
                        moved[idx[keep]] = True
                position = {"round": rnd, "step": step + 1} if step + 1 < per_round else {"round": rnd + 1, "step": 0}
                if ctx.checkpoint_due():
                    checkpoint(stop)
                if stop:
                    break

        self.xi = best["xi"].detach().cpu()
        self.xi_c = best["xi_c"].detach().cpu() if p["decoupled"] else None
        self._info = {
            "init": init_name, "init_val_losses": init_scores, "best_val_loss": best["loss"],
            "iterations": state["iterations"], "resumed_at_iteration": resumed_at, "loss": loss_used,
            "radius": radius,
            "moved_priors": int(moved.sum()), "space": self.map.space,
            # pairs per optimiser step as run: `batch`, cut to the training set when larger
            "batch": batches.batch, "train_size": len(train),
            "max_prior_shift": float((latent - origin).reshape(len(train), -1).norm(dim=1).max()),
        }

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


@METHODS.register("ld3-hard")
class LD3Hard(LD3):
    """LD3 without the soft teacher (r = 0): the ablation of the paper. It has no `bound` parameter."""

    Params = LD3HardParams


def project_to_ball(z: torch.Tensor, center: torch.Tensor, radius: float) -> torch.Tensor:
    """Project each sample of z onto the ball ||z_i - center_i|| <= radius (per-sample L2 norm)."""
    diff = z - center
    norm = diff.reshape(diff.shape[0], -1).norm(dim=1)
    factor = torch.clamp(radius / norm.clamp_min(torch.finfo(norm.dtype).tiny), max=1.0)
    return center + diff * factor.reshape((-1,) + (1,) * (z.ndim - 1))
