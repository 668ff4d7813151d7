"""`indis` and `god`: INDIS, "Few-Step Diffusion Sampling Through Instance-Aware Discretizations"
(Yuan, Wang, Zhao, Fu, Lei, Zhu, Zhang; CVPR 2026, arXiv:2603.17671). No reference code is public;
this follows the paper's description; the choices it leaves open are marked "ours" below.

A prior-conditioning network phi(x_T, c) -> O in R^(3 x N) gives every prior its own discretization:
  * timesteps from o_tau through LD3's cumulative-softmax map (`methods._learned.TimeMap`: strictly
    decreasing from t_max to t_min, in lambda for VE models and in t otherwise: `space`);
  * a per-step time shift dtau_n = b tanh(o_dtau,n / 2): the network at step n is evaluated at
    tau_n + dtau_n. Chosen convention: dtau is RELATIVE, a fraction of the step's own gap in the map's
    coordinate (positive towards the data), so every evaluation stays inside its step and inside
    (t_min, t_max] (clamped at t_max); see `_learned` for why not absolute;
  * a per-step output scale gamma_n = 1 + b tanh(o_gamma,n / 2) multiplying the network's noise
    prediction (for the data-prediction denoisers here: eps = (x - alpha x0_hat) / sigma at the
    evaluation time, scaled, converted back at the state's time).
  That is exactly `Discretization(t, t_eval=tau + dtau, scale=gamma)` through
  `bench.solvers.base.predict`. b = `b` = 0.05 (paper).

Network phi (`PriorNet`). Input x_T / sigma(t_max) (unit variance). Image-shaped x_T [C, H, W] with
`svd` on: the reduced SVD of each channel, x_c = U_c diag(S_c) V_c^T; U [C, H, k], S [C, k] and
V^T [C, k, W] (k = min(H, W)), each flattened through its own Linear(., `hidden`) + ReLU, then
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
    storing its activations (on for neural-network denoisers; `methods._checkpointing`).
"""
from __future__ import annotations

import copy
import math
from typing import Annotated, Any

import torch
from pydantic import AfterValidator, Field
from torch import nn

from bench.discretization import Discretization, DiscretizationMethod, FitContext
from bench.registry import METHODS
from bench.seeding import MAX_SPLIT_SIZE

from ._checkpointing import checkpointed
from ._learned import (
    TimeMap, choose_init, count_parameters, resolve_learned,
    discretization, epoch_batches, evaluate_losses, heuristic_timesteps, loss_for_model, seconds_per_sample, seeded,
    slice_cond,
)
from ._params import LearnedParams

HEAD_INIT_SCALE = 0.01


class PriorNet(nn.Module):
    """phi(x_T, c) -> O [B, n_out, N] (see the module docstring)."""

    def __init__(self, data_shape, num_classes: int, steps: int, n_out: int, hidden: int, class_dim: int,
                 svd: bool, init_logits: torch.Tensor):
        super().__init__()
        self.data_shape = tuple(data_shape)
        self.num_classes = int(num_classes)
        self.steps, self.n_out = int(steps), int(n_out)
        self.use_svd = bool(svd) and len(self.data_shape) == 3
        if self.use_svd:
            c, h, w = self.data_shape
            k = min(h, w)
            self.feat_u = nn.Sequential(nn.Linear(c * h * k, hidden), nn.ReLU())
            self.feat_s = nn.Sequential(nn.Linear(c * k, hidden), nn.ReLU())
            self.feat_v = nn.Sequential(nn.Linear(c * k * w, hidden), nn.ReLU())
            features = 3 * hidden
        else:
            d = math.prod(self.data_shape)
            self.mlp = nn.Sequential(nn.Linear(d, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU())
            features = hidden
        if self.num_classes:
            self.embed = nn.Linear(self.num_classes, class_dim)
            features += class_dim
        self.head = nn.Linear(features, n_out * steps)
        with torch.no_grad():
            self.head.weight.mul_(HEAD_INIT_SCALE)
            bias = torch.zeros(n_out, steps)
            bias[0] = init_logits.to(torch.float32)
            self.head.bias.copy_(bias.flatten())

    def forward(self, noise: torch.Tensor, cond=None) -> torch.Tensor:
        """`noise`: x_T / sigma(t_max), [B, *data_shape]."""
        x = noise.to(torch.float32)
        b = x.shape[0]
        if self.use_svd:
            with torch.no_grad():  # x_T is an input, not learned: no gradient through the SVD
                u, s, vh = torch.linalg.svd(x, full_matrices=False)
            parts = [self.feat_u(u.reshape(b, -1)), self.feat_s(s.reshape(b, -1)), self.feat_v(vh.reshape(b, -1))]
        else:
            parts = [self.mlp(x.reshape(b, -1))]
        if self.num_classes:
            onehot = torch.zeros(b, self.num_classes, dtype=x.dtype, device=x.device)
            if cond is not None:
                # written without boolean-mask indexing (same values), so a traced export keeps the batch size free
                labels = cond if isinstance(cond, torch.Tensor) else torch.as_tensor(cond)
                labels = labels.to(x.device).reshape(-1).long()
                valid = (labels >= 0).unsqueeze(1)
                onehot = nn.functional.one_hot(labels.clamp(min=0), self.num_classes).to(x.dtype) * valid.to(x.dtype)
            parts.append(self.embed(onehot / math.sqrt(self.num_classes)))
        return self.head(torch.cat(parts, dim=1)).reshape(b, self.n_out, self.steps)


class GlobalO(nn.Module):
    """GOD: one learned O [1, n_out, N] for every input."""

    def __init__(self, steps: int, n_out: int, init_logits: torch.Tensor):
        super().__init__()
        o = torch.zeros(n_out, steps)
        o[0] = init_logits.to(torch.float32)
        self.o = nn.Parameter(o)

    def forward(self, noise: torch.Tensor, cond=None) -> torch.Tensor:
        return self.o[None]


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
    lr_net: Annotated[Any, AfterValidator(_lr_net)] = Field(
        "auto", description="the network's learning rate: auto = lr for vectors, lr / 10 for images")


@METHODS.register("indis")
class INDIS(DiscretizationMethod):
    needs_fit = True
    Params = INDISParams

    def __init__(self, **params):
        super().__init__(**params)
        self.phi: nn.Module | None = None
        self._info: dict = {}
        self._loss_fn = None

    @property
    def instance(self) -> bool:
        return bool(self.params.get("instance", False))

    @property
    def shifts(self) -> bool:
        return bool(self.params["shifts"])

    @property
    def n_out(self) -> int:
        return 3 if self.shifts else 1

    def resolve(self, context=None) -> dict:
        if context is None:
            return dict(self.params)
        out = resolve_learned(self.params, context)
        if out.get("lr_net") == "auto":  # the rule of `_param_groups`
            out["lr_net"] = self.params["lr"] / (10.0 if len(context.data_shape) == 3 else 1.0)
        return out

    def bind(self, schedule, steps, solver=None, model=None):
        super().bind(schedule, steps, solver, model)
        self.map = TimeMap(schedule, self.params["space"])
        return self

    # --- O -> discretization -----------------------------------------------------------------

    def _build_phi(self, data_shape, num_classes: int, init_logits: torch.Tensor) -> nn.Module:
        if not self.instance:
            return GlobalO(self.steps, self.n_out, init_logits)
        return PriorNet(data_shape, num_classes, self.steps, self.n_out, self.params.get("hidden", 64),
                        self.params.get("class_dim", 32), self.params.get("svd", True), init_logits)

    def _noise(self, x_T: torch.Tensor) -> torch.Tensor:
        return x_T / float(self.noise_schedule.prior_std())

    def disc_from_output(self, O: torch.Tensor, dtype=None) -> Discretization:
        """O [B, n_out, N] -> Discretization(t, t_eval = tau + dtau, scale = gamma) (B = 1: global)."""
        u = self.map.progress(O[:, 0])
        t = self.map.time_at(u)
        if not self.shifts:
            return discretization(t, dtype=dtype)
        b = float(self.params["b"])
        dtau = b * torch.tanh(O[:, 1].to(torch.float64) / 2)
        gamma = 1 + b * torch.tanh(O[:, 2].to(torch.float64) / 2)
        return discretization(t, self.map.relative_eval_times(u, dtau), gamma, dtype=dtype)

    def _disc(self, phi: nn.Module, x_T: torch.Tensor, cond, dtype=None) -> Discretization:
        return self.disc_from_output(phi(self._noise(x_T), cond), dtype or x_T.dtype)

    def discretize(self, x_T: torch.Tensor, cond=None) -> Discretization:
        if self.phi is None:
            raise RuntimeError(f"method {self.name!r} is not fitted: call fit(ctx) or load_state_dict first")
        self.phi.to(x_T.device)
        return self._disc(self.phi, x_T, cond).to(device=x_T.device)

    def export_module(self) -> torch.jit.ScriptModule:
        """phi and the map to the discretization as one self-contained TorchScript module (traced):
        f(x_T [B, *data_shape], labels [B] int64, -1 = no label) -> (t [B', N+1], t_eval [B', N],
        scale [B', N]), float64, B' = B (INDIS) or 1 (GOD: one schedule, broadcast). The same
        operations as `discretize(x_T, cond)`, so it returns that schedule exactly (in float64); without
        `shifts`, t_eval = t[:, :-1] and scale = 1 (what the solver does when they are absent). The
        schedule's constants (t range, lambda map) are baked in; load with `torch.jit.load(path)`."""
        if self.phi is None:
            raise RuntimeError(f"method {self.name!r} is not fitted")
        phi = copy.deepcopy(self.phi).cpu().eval()
        # GOD's O ignores its input: any example shape traces it
        example = torch.zeros((2,) + (tuple(getattr(phi, "data_shape", ())) or (1,)), dtype=torch.float64)
        labels = torch.tensor([0, -1], dtype=torch.long)
        with torch.no_grad():
            return torch.jit.trace(_ExportedSchedule(self, phi), (example, labels), check_trace=False)

    # --- fitting -----------------------------------------------------------------------------

    def fit(self, ctx: FitContext) -> None:
        p = self.params
        model, solver = checkpointed(ctx.model, p["grad_checkpointing"]), ctx.solver
        n_train = p["train"] if p["train"] is not None else ctx.train_size
        train, val = ctx.teacher("train", n_train), ctx.teacher("val", p["val"])
        dtype = train.x_T.dtype
        loss_fn, loss_used = loss_for_model(self.name, p["loss"], model, ctx.device)
        self._loss_fn = loss_fn

        def val_loss(make_disc) -> float:
            return float(evaluate_losses(make_disc, solver, model, val.x_T, val.cond, val.x0, loss_fn).mean())

        resume = ctx.load_checkpoint()
        if resume is None:
            candidates = heuristic_timesteps(self.noise_schedule, self.steps, solver, model.data_shape)
            init_name, init_t, init_scores = choose_init(
                p["init"], candidates,
                lambda t: val_loss(lambda xb, cb: discretization(t[None], dtype=dtype)))
            init_logits = self.map.logits_of(init_t)
        else:  # phi's weights come from the checkpoint; the head's initial bias is overwritten
            init_name, init_scores = resume["init"], resume["init_val_losses"]
            init_logits = torch.zeros(self.steps, dtype=torch.float64)

        with seeded(ctx.generator):
            phi = self._build_phi(model.data_shape, getattr(model, "num_classes", 0) or 0, init_logits)
        phi = phi.to(ctx.device)
        ema = torch.optim.swa_utils.AveragedModel(
            phi, multi_avg_fn=torch.optim.swa_utils.get_ema_multi_avg_fn(p["ema"]))
        optimizer = torch.optim.Adam(self._param_groups(phi), lr=p["lr"])
        cosine = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=p["iterations"])

        def score(net) -> float:
            net.eval()
            with torch.no_grad():
                return val_loss(lambda xb, cb: self._disc(net, xb, cb, dtype))

        batches = epoch_batches(len(train), p["batch"], ctx.generator)
        if resume is None:
            best = {"loss": score(phi), "state": copy.deepcopy(phi.state_dict()), "iteration": 0}
            history, start = [(0, best["loss"])], 1
        else:
            phi.load_state_dict(resume["phi"])
            ema.load_state_dict(resume["ema"])
            optimizer.load_state_dict(resume["optimizer"])
            cosine.load_state_dict(resume["cosine"])
            batches.load_state_dict(resume["batches"])
            best, history, start = resume["best"], resume["history"], resume["iteration"] + 1
        resumed_at = start - 1
        phi.train()
        for it in range(start, p["iterations"] + 1):
            idx = next(batches)
            xb, cb, x0 = train.x_T[idx], slice_cond(train.cond, idx), train.x0[idx]
            disc = self._disc(phi, xb, cb, dtype)
            loss = loss_fn(solver.sample(model, xb, disc, cb), x0).mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if p["clip"] is not None:
                torch.nn.utils.clip_grad_norm_(phi.parameters(), p["clip"])
            optimizer.step()
            cosine.step()
            ema.update_parameters(phi)
            if it % p["val_every"] == 0 or it == p["iterations"]:
                current = score(ema.module)
                history.append((it, current))
                if current < best["loss"]:
                    best = {"loss": current, "state": copy.deepcopy(ema.module.state_dict()), "iteration": it}
                phi.train()
            if ctx.checkpoint_due() and it < p["iterations"]:
                ctx.save_checkpoint({
                    "init": init_name, "init_val_losses": init_scores, "phi": phi.state_dict(),
                    "ema": ema.state_dict(), "optimizer": optimizer.state_dict(), "cosine": cosine.state_dict(),
                    "batches": batches.state_dict(), "best": best, "history": list(history), "iteration": it})

        phi.load_state_dict(best["state"])
        phi.eval()
        self.phi = phi.cpu()
        self._info = {
            "init": init_name, "init_val_losses": init_scores, "best_val_loss": best["loss"],
            "best_iteration": best["iteration"], "val_history": history, "resumed_at_iteration": resumed_at,
            "loss": loss_used,
            "space": self.map.space, "train_size": len(train),
            # pairs per optimiser step as run: `batch`, cut to the training set when larger
            "batch": batches.batch,
            **self._cost_info(model, train.x_T, train.cond),
        }
        self.phi.to(ctx.device)

    def _param_groups(self, phi: nn.Module) -> list[dict]:
        """The head's bias (the part of O shared by all priors) and GOD's O learn at `lr`; the
        network's weights at `lr_net` ("auto": `lr` for vector-shaped x_T, `lr` / 10 for images)."""
        if not isinstance(phi, PriorNet):
            return [{"params": list(phi.parameters())}]
        lr_net = self.params.get("lr_net", "auto")
        if lr_net == "auto":
            lr_net = self.params["lr"] / (10.0 if len(phi.data_shape) == 3 else 1.0)
        others = [p for name, p in phi.named_parameters() if name != "head.bias"]
        return [{"params": [phi.head.bias]}, {"params": others, "lr": lr_net}]

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


class _ExportedSchedule(nn.Module):
    """(x_T, labels) -> (t, t_eval, scale) of a fitted INDIS / GOD (see `INDIS.export_module`)."""

    def __init__(self, method: INDIS, phi: nn.Module):
        super().__init__()
        self.phi = phi
        self.map, self.shifts, self.b = method.map, method.shifts, float(method.params["b"])
        self.prior_std = float(method.noise_schedule.prior_std())

    def forward(self, x_T: torch.Tensor, labels: torch.Tensor):
        O = self.phi(x_T / self.prior_std, labels)
        u = self.map.progress(O[:, 0])
        t = self.map.time_at(u)
        if not self.shifts:
            return t, t[:, :-1], torch.ones_like(t[:, :-1])
        dtau = self.b * torch.tanh(O[:, 1].to(torch.float64) / 2)
        gamma = 1 + self.b * torch.tanh(O[:, 2].to(torch.float64) / 2)
        return t, self.map.relative_eval_times(u, dtau), gamma


@METHODS.register("god")
class GOD(INDIS):
    """The globally optimised discretization: INDIS with `instance` off (one schedule for all samples)."""

    Params = GODParams

