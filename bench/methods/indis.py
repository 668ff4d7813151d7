"""`indis` and `god`: INDIS, "Few-Step Diffusion Sampling Through Instance-Aware Discretizations"
(Yuan, Wang, Zhao, Fu, Lei, Zhu, Zhang; CVPR 2026, arXiv:2603.17671). No reference code is public;
this follows the paper's description; the choices it leaves open are marked "ours" below.

A prior-conditioning network phi(x_T, c) -> O in R^(3 x N) gives every prior its own discretization:
  * timesteps from o_tau through LD3's cumulative-softmax map (`bench.methods._learned.time_map.TimeMap`:
    strictly decreasing from t_max to t_min, in lambda for VE models and in t otherwise: `space`);
  * a per-step time shift dtau_n = b tanh(o_dtau,n / 2): the network at step n is evaluated at
    tau_n + dtau_n. Chosen convention: dtau is RELATIVE, a fraction of the step's own gap in the map's
    coordinate (positive towards the data), so every evaluation stays inside its step and inside
    (t_min, t_max] (clamped at t_max); see `bench.methods._learned.time_map` for why not absolute;
  * a per-step output scale gamma_n = 1 + b tanh(o_gamma,n / 2) multiplying the network's noise
    prediction (for the data-prediction denoisers here: eps = (x - alpha x0_hat) / sigma at the
    evaluation time, scaled, converted back at the state's time).
  That is exactly `Discretization(t, t_eval=tau + dtau, scale=gamma)` through
  `bench.solvers.base.predict`. b = `b` = 0.05 (paper).

Network phi (`bench.methods._learned.prior_net.PriorNet`). Input x_T / sigma(t_max) (unit variance).
Image-shaped x_T [C, H, W] with `svd` on: the reduced SVD of each channel, x_c = U_c diag(S_c) V_c^T;
U [C, H, k], S [C, k] and V^T [C, k, W] (k = min(H, W)), each flattened through its own Linear(., `hidden`) + ReLU, then
concatenated. Vector-shaped x_T (the 2D toy), or `svd` off (raw x_T flattened): a two-layer ReLU MLP
of width `hidden`. Class labels: one-hot scaled by 1/sqrt(num_classes) through Linear(num_classes,
`class_dim`), concatenated (a label < 0 or no label gives the zero vector). A linear head maps the
features to O. The head's weights start at 1% of PyTorch's default initialisation and its bias at
(the initial schedule's logits, 0, 0), so phi starts close to the initial heuristic with dtau = 0,
gamma = 1 while the gradient still reaches every parameter. `hidden` = 64 and `class_dim` = 32 are
ours (the paper: "a small feed-forward layer"). `fit_info()` reports phi's parameter count and its
per-sample inference time beside one model evaluation's per-sample time on the same batch.

Ablation switches (method parameters, all default on):
  * `instance` off: one learned O shared by all samples, the globally optimised discretization (GOD).
    The name `god` registers exactly this (INDIS with `instance` off); it returns one global schedule.
    `indis` and `god` share the base `ScheduleNetMethod` (GOD is not a subclass of INDIS: it has no
    network parameters); the oracle (`bench.methods.oracle`) extends `god`.
  * `shifts` off: no dtau / gamma (timesteps only, as the paper's toy experiment).
  * `svd` off: raw x_T into the MLP instead of the SVD features (images only).

Training. Pairs (x_T, c, x0*) from the cell's teacher (`ctx.teacher`; the grid's teacher spec picks
the teacher, e.g. iPNDM with 30 steps for pixel models, 100-step Euler for the toy). Adam with a
cosine learning-rate schedule (to 0 over `iterations`), batch `batch`, and an EMA of phi's weights
(decay `ema`, `torch.optim.swa_utils`), loss `loss` ("auto": LPIPS for RGB/grey images when its
weights load, else the per-sample mean squared error). AFS is a solver option (`afs: true` on the
grid's solver), which the method follows as it is. Defaults and where they come from:
  * `train` = null: the grid's `samples.train` (the paper uses 10,000 pairs; its toy study 20,000).
  * `batch` = 16 (paper); a batch larger than the training set is cut to it, and the row's fit info
    `batch` records the batch that ran.
  * `lr` = 0.003 (the paper: 0.05) for the head's bias, i.e. the part of O shared by all priors (and
    for GOD's O); `lr_net` = "auto" for the network's weights: `lr` for vector-shaped x_T, `lr` / 10
    for images (ours). `ema` = 0.99 (ours; the paper gives no decay). `iterations` = 3000 (ours; the
    paper trains for epochs). `clip` = null (no gradient clipping; the paper mentions none).
    Why these rates: at the paper's 0.05 INDIS was no better than GOD on the toy; on images the SVD
    features feed hundreds of inputs into the first layers, so one Adam step at the head's rate moves
    the outputs far more than for the 2D toy and the validation loss jumps, which a smaller rate for
    the network's weights avoids (a smaller batch, a global rate or clipping did not). An EMA of 0.999
    lags about 1000 steps behind, too long for 3000 steps. Compare the settings with
    `python benchmarks/bench_indis_fit.py [--digits] --param lr=0.05 --param ema=0.999 ...`, which
    prints the fit time and the validation and evaluation losses.
  * `val` = 1000 validation pairs, `val_every` = 500 steps (ours): the EMA weights are scored on the
    validation pairs every `val_every` steps and at the end, and the best (the initial heuristic
    included) is kept; `init` = "auto" starts from the closed-form heuristic with the lowest
    validation loss (as LD3; the same start for `god`, `indis` and `oracle`).
  * `grad_checkpointing` = "auto": recompute each network evaluation in the backward pass instead of
    storing its activations (on for neural-network denoisers; `bench.methods._checkpointing`).
The loop is the learned methods' skeleton (`bench.methods._learned.training.LearnedFit`) with
`ScheduleNetFit`'s parts; `export_module()` traces phi with the same `OutputMap` that `discretize` uses
(`bench.methods._learned.export`).
"""
from __future__ import annotations

import copy
from typing import Annotated, Iterator, Literal

import torch
from pydantic import AfterValidator, Field
from torch import nn

from bench.discretization import Discretization, FitContext
from bench.registry import METHODS
from bench.seeding import MAX_SPLIT_SIZE

from ._learned.batches import epoch_batches, slice_cond
from ._learned.export import export_schedule_net
from ._learned.method import LearnedMethod
from ._learned.prior_net import GlobalO, OutputMap, PriorNet, count_parameters, seconds_per_sample
from ._learned.time_map import TimeMap, discretization
from ._learned.training import LearnedFit, seeded
from ._params import LearnedParams, accepts


class GODParams(LearnedParams):
    """The parameters INDIS and GOD share; defaults and their sources in the module docstring."""

    shifts: bool = Field(True, description="learn time shifts and output scales beside the timesteps")
    b: float = Field(0.05, gt=0, lt=1, description="bound of the shift factors (paper: 0.05)")
    train: int | None = Field(None, ge=1, le=MAX_SPLIT_SIZE, description="training pairs (null: the grid's samples.train)")
    val: int = Field(1000, ge=1, le=MAX_SPLIT_SIZE, description="validation pairs")
    batch: int = Field(16, ge=1, le=MAX_SPLIT_SIZE, description="pairs per optimiser step")
    lr: float = Field(0.003, gt=0, allow_inf_nan=False, description="Adam learning rate")
    iterations: int = Field(3000, ge=1, le=10_000_000, description="optimiser steps")
    ema: float = Field(0.99, ge=0, lt=1, description="EMA decay of the weights")
    clip: float | None = Field(None, gt=0, description="gradient-norm clip (null: none)")
    val_every: int = Field(500, ge=1, le=10_000_000, description="steps between validations")


def _lr_net(value):
    if value == "auto" or (isinstance(value, (int, float)) and not isinstance(value, bool) and 0 < value < float("inf")):
        return value
    raise ValueError(f"must be auto or a number > 0, got {value!r}")


class INDISParams(GODParams):
    instance: bool = Field(True, description="a schedule per initial noise (INDIS) instead of one for all (GOD)")
    svd: bool = Field(True, description="condition on the SVD features of x_T (paper)")
    hidden: int = Field(64, ge=1, le=65536, description="width of the schedule network")
    class_dim: int = Field(32, ge=1, le=65536, description="class-embedding width")
    lr_net: Annotated[Literal["auto"] | float, AfterValidator(_lr_net), accepts("auto or a number > 0")] = Field(
        "auto", description="the network's learning rate: auto = lr for vectors, lr / 10 for images")


class ScheduleNetMethod(LearnedMethod):
    """What GOD, INDIS and the oracle share: a network phi(x_T, c) -> O (GOD: one global O) mapped to a
    discretization by `OutputMap`, trained by `ScheduleNetFit`. Not registered; GOD builds the global
    O, INDIS (with `instance` on) the prior-conditioned network."""

    needs_fit = True
    Params = GODParams

    def __init__(self, **params):
        super().__init__(**params)
        self.phi: nn.Module | None = None
        self._info: dict = {}
        self._loss_fn = None

    @property
    def instance(self) -> bool:
        """True when phi depends on the prior (INDIS); GOD's O is one global schedule."""
        return False

    @property
    def shifts(self) -> bool:
        return bool(self.params.shifts)

    @property
    def n_out(self) -> int:
        return 3 if self.shifts else 1

    # --- O -> discretization -----------------------------------------------------------------

    def _build_phi(self, data_shape, num_classes: int, init_logits: torch.Tensor) -> nn.Module:
        return GlobalO(self.steps, self.n_out, init_logits)

    def _param_groups(self, phi: nn.Module) -> list[dict]:
        """GOD's O learns at `lr`."""
        return [{"params": list(phi.parameters())}]

    @property
    def output_map(self) -> OutputMap:
        return OutputMap(self.map, self.shifts, self.params.b)

    def _noise(self, x_T: torch.Tensor) -> torch.Tensor:
        return x_T / float(self.noise_schedule.prior_std())

    def disc_from_output(self, O: torch.Tensor, dtype=None) -> Discretization:
        """O [B, n_out, N] -> Discretization(t, t_eval = tau + dtau, scale = gamma) (B = 1: global)."""
        t, t_eval, scale = self.output_map(O)
        return discretization(t, t_eval, scale, dtype=dtype)

    def _disc(self, phi: nn.Module, x_T: torch.Tensor, cond, dtype=None) -> Discretization:
        return self.disc_from_output(phi(self._noise(x_T), cond), dtype or x_T.dtype)

    def discretize(self, x_T: torch.Tensor, cond=None) -> Discretization:
        if self.phi is None:
            raise RuntimeError(f"method {self.name!r} is not fitted: call fit(ctx) or load_state_dict first")
        self.phi.to(x_T.device)
        return self._disc(self.phi, x_T, cond).to(device=x_T.device)

    def export_module(self) -> torch.jit.ScriptModule:
        """phi and `output_map` as one self-contained TorchScript module (`bench.methods._learned.export`):
        f(x_T, labels) -> (t, t_eval, scale), float64, the schedule `discretize(x_T, cond)` returns."""
        if self.phi is None:
            raise RuntimeError(f"method {self.name!r} is not fitted")
        return export_schedule_net(self.phi, self.output_map, float(self.noise_schedule.prior_std()))

    # --- fitting -----------------------------------------------------------------------------

    def fit(self, ctx: FitContext) -> None:
        self._info = ScheduleNetFit(self, ctx).run()

    def _cost_info(self, model, x_T, cond, n: int = 256) -> dict:
        """phi's parameter count and per-sample time, beside one model evaluation on the same batch."""
        xb, cb = x_T[:n], slice_cond(cond, slice(0, n))
        t_mid = torch.full((xb.shape[0],), float(self.noise_schedule.t_max) / 2, dtype=xb.dtype, device=xb.device)
        inner = getattr(model, "model", model)  # time the bare model, not the fit's counting wrapper
        phi_s = seconds_per_sample(lambda: self._disc(self.phi.to(xb.device), xb, cb), xb.shape[0])
        model_s = seconds_per_sample(lambda: inner(xb, t_mid, cb), xb.shape[0])
        return {"phi_params": count_parameters(self.phi), "phi_seconds_per_sample": phi_s,
                "model_eval_seconds_per_sample": model_s,
                "phi_cost_in_model_evals": phi_s / model_s if model_s > 0 else None}

    # --- state -------------------------------------------------------------------------------

    def fit_info(self) -> dict:
        """Plain values for the result row: phi's size and cost, the init, the loss used, validation."""
        return copy.deepcopy(self._info)

    def state_dict(self) -> dict:
        if self.phi is None:
            raise RuntimeError(f"method {self.name!r} is not fitted")
        phi = self.phi
        config = {"space": self.map.space, "instance": self.instance, "shifts": self.shifts,
                  "data_shape": list(getattr(phi, "data_shape", ())), "num_classes": getattr(phi, "num_classes", 0)}
        return {"config": config, "phi": {k: v.detach().cpu() for k, v in phi.state_dict().items()},
                "info": self._info}

    def load_state_dict(self, state: dict) -> None:
        config = state["config"]
        if config["instance"] != self.instance or config["shifts"] != self.shifts:
            raise ValueError(f"{self.name}: the stored fit has instance={config['instance']}, "
                             f"shifts={config['shifts']}")
        self.map = TimeMap(self.noise_schedule, config["space"])
        placeholder = torch.zeros(self.steps, dtype=torch.float64)
        with torch.random.fork_rng(devices=[]):  # the weights are overwritten: leave the global RNG alone
            phi = self._build_phi(tuple(config["data_shape"]), config["num_classes"], placeholder)
        phi.load_state_dict(state["phi"])
        phi.eval()
        self.phi = phi
        self._info = dict(state.get("info", {}))
        self._loss_fn = None


@METHODS.register("indis")
class INDIS(ScheduleNetMethod):
    """INDIS: phi conditioned on the prior (and class); with `instance` off, GOD's global O."""

    Params = INDISParams

    @property
    def instance(self) -> bool:
        return bool(self.params.instance)

    def lr_net(self, data_shape) -> float:
        """The network weights' learning rate: `lr_net`, or for "auto" `lr` for vector-shaped x_T and
        `lr` / 10 for images."""
        value = self.params.lr_net
        if value == "auto":
            return self.params.lr / (10.0 if len(data_shape) == 3 else 1.0)
        return value

    def resolve(self, context=None) -> dict:
        out = super().resolve(context)
        if context is not None and out["lr_net"] == "auto":
            out["lr_net"] = self.lr_net(context.data_shape)
        return out

    def _build_phi(self, data_shape, num_classes: int, init_logits: torch.Tensor) -> nn.Module:
        if not self.instance:
            return super()._build_phi(data_shape, num_classes, init_logits)
        p = self.params
        return PriorNet(data_shape, num_classes, self.steps, self.n_out, p.hidden, p.class_dim, p.svd,
                        init_logits)

    def _param_groups(self, phi: nn.Module) -> list[dict]:
        """The head's bias (the part of O shared by all priors) learns at `lr`, the network's weights
        at `lr_net`; without `instance`, GOD's O at `lr`."""
        if not isinstance(phi, PriorNet):
            return super()._param_groups(phi)
        others = [p for name, p in phi.named_parameters() if name != "head.bias"]
        return [{"params": [phi.head.bias]}, {"params": others, "lr": self.lr_net(phi.data_shape)}]


@METHODS.register("god")
class GOD(ScheduleNetMethod):
    """The globally optimised discretization: one schedule for all samples (INDIS with `instance` off)."""


class ScheduleNetFit(LearnedFit):
    """GOD's and INDIS's parts of the training skeleton (`bench.methods._learned.training`): phi built on
    the cell's generator, Adam with a cosine schedule and an EMA of the weights, validation of the EMA
    weights every `val_every` steps and at the end (module docstring)."""

    def __init__(self, method: ScheduleNetMethod, ctx: FitContext):
        super().__init__(method, ctx)
        p = self.p = method.params
        self.prepare(p.train if p.train is not None else ctx.train_size, p.val)
        method._loss_fn = self.loss_fn

    def score_init(self, t: torch.Tensor) -> float:
        return self.val_loss(lambda xb, cb: discretization(t[None], dtype=self.dtype))

    def build(self, init_t, resume) -> None:
        p, ctx, method, model = self.p, self.ctx, self.method, self.model
        # when resuming, phi's weights come from the checkpoint: the head's initial bias is overwritten
        init_logits = (method.map.logits_of(init_t) if resume is None
                       else torch.zeros(method.steps, dtype=torch.float64))
        with seeded(ctx.generator):
            phi = method._build_phi(model.data_shape, getattr(model, "num_classes", 0) or 0, init_logits)
        self.phi = phi = phi.to(ctx.device)
        self.ema = torch.optim.swa_utils.AveragedModel(
            phi, multi_avg_fn=torch.optim.swa_utils.get_ema_multi_avg_fn(p.ema))
        self.optimizer = torch.optim.Adam(method._param_groups(phi), lr=p.lr)
        self.cosine = torch.optim.lr_scheduler.CosineAnnealingLR(self.optimizer, T_max=p.iterations)
        self.batches = epoch_batches(len(self.train), p.batch, ctx.generator)
        self.scored = phi  # the start is phi itself; after a step, the EMA weights are validated
        self.history: list = []

    def validate(self) -> float:
        net = self.scored
        net.eval()
        with torch.no_grad():
            return self.val_loss(lambda xb, cb: self.method._disc(net, xb, cb, self.dtype))

    def snapshot(self) -> dict:
        return {"state": copy.deepcopy(self.scored.state_dict()), "iteration": self.iteration}

    def started(self) -> None:
        self.history = [(0, self.best["loss"])]

    def positions(self) -> Iterator[int]:
        self.phi.train()
        yield from range(self.iteration + 1, self.p.iterations + 1)

    def step(self, it: int) -> None:
        p, train = self.p, self.train
        idx = next(self.batches)
        xb, cb, x0 = train.x_T[idx], slice_cond(train.cond, idx), train.x0[idx]
        disc = self.method._disc(self.phi, xb, cb, self.dtype)
        loss = self.loss_fn(self.solver.sample(self.model, xb, disc, cb), x0).mean()
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if p.clip is not None:
            torch.nn.utils.clip_grad_norm_(self.phi.parameters(), p.clip)
        self.optimizer.step()
        self.cosine.step()
        self.ema.update_parameters(self.phi)
        self.scored = self.ema.module

    def validation_due(self, it: int) -> bool:
        return it % self.p.val_every == 0 or it == self.p.iterations

    def after_validation(self, loss: float, improved: bool) -> bool:
        self.history.append((self.iteration, loss))
        self.phi.train()
        return False

    def checkpoint_wanted(self, it: int, stop: bool) -> bool:
        return it < self.p.iterations

    def state_dict(self, stop: bool) -> dict:
        return {"phi": self.phi.state_dict(), "ema": self.ema.state_dict(), "optimizer": self.optimizer.state_dict(),
                "cosine": self.cosine.state_dict(), "batches": self.batches.state_dict(),
                "history": list(self.history), "iteration": self.iteration}

    def load_state_dict(self, state: dict) -> None:
        self.phi.load_state_dict(state["phi"])
        self.ema.load_state_dict(state["ema"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.cosine.load_state_dict(state["cosine"])
        self.batches.load_state_dict(state["batches"])
        self.history, self.iteration = state["history"], state["iteration"]
        self.scored = self.ema.module

    def finish(self) -> dict:
        method, best, phi = self.method, self.best, self.phi
        phi.load_state_dict(best["state"])
        phi.eval()
        method.phi = phi.cpu()
        info = {
            "init": self.init_name, "init_val_losses": self.init_scores, "best_val_loss": best["loss"],
            "best_iteration": best["iteration"], "val_history": self.history, "resumed_at_iteration": self.resumed_at,
            "loss": self.loss_used,
            "space": method.map.space, "train_size": len(self.train),
            # pairs per optimiser step as run: `batch`, cut to the training set when larger
            "batch": self.batches.batch,
            **method._cost_info(self.model, self.train.x_T, self.train.cond),
        }
        method.phi.to(self.ctx.device)
        return info
