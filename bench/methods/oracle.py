"""`oracle`: a separate discretization overfitted to each evaluation prior -- the instance-specific
upper bound of INDIS ("Few-Step Diffusion Sampling Through Instance-Aware Discretizations", Yuan et
al., CVPR 2026, the toy study's per-instance optimum that INDIS's network amortises).

It FITS ON THE EVALUATION PRIORS THEMSELVES (`uses_eval_targets = True`): the runner calls
`discretize_evaluation(x_T, cond, target=x0*)` (as for every method) with the teacher endpoints of the
very priors being scored, and the rows are marked `uses_eval_targets`; `discretize(x_T, cond)`, which
has no targets, is refused; its numbers are a bound, not a method one could deploy. The
network evaluations it spends inside `schedule` are counted by the runner's counting model
(`schedule_nfe` in the row: about (refine_iterations + 1) * NFE per sample).

Procedure.
  1. `fit` (on the training split, like `god`): the globally optimised discretization, i.e. INDIS with
     `instance` off (same parameters and defaults as `god`: timesteps, and with `shifts` on also the
     time shifts and output scales; see `bench.methods.indis`), started from the best heuristic. With
     `init_fit` = "heuristic" instead of "god", the GOD training is skipped and the best heuristic is the
     start (cheaper, a looser bound).
  2. `discretize_evaluation(x_T, cond, target)`: every prior gets its own copy of the output O [n_out, N], started
     from the fitted global one, and `refine_iterations` = 50 Adam steps (lr `refine_lr` = 0.05) on
     its own loss against its own target (the same loss as the fit). Adam's update is per coordinate,
     so optimising the sum of the per-sample losses is exactly independent per-sample optimisation.
     The whole batch the runner passes is optimised at once (no chunking), so each call of the
     counting model covers every prior of the batch and the row's `schedule_nfe` is exactly the
     evaluations per sample; the grid's `samples.batch` bounds the memory. Each prior keeps the best iterate
     it visited (the start included), so the oracle is never worse than `god` on any prior. It runs
     under `torch.enable_grad()` (the runner samples under no_grad) with `self.model`, the counting
     model the runner binds.
`bench export` writes the fitted start (GOD's O, `export_module`) as its schedule network; the per-prior
refinement needs the model and each prior's teacher endpoint, so it is not part of the export.
Defaults `refine_iterations` = 50 and `refine_lr` = 0.05 are ours (the paper gives none): from the
fitted GOD start, the per-prior loss with shifts keeps falling over the first tens of steps at that rate
(larger rates gain little), while with timesteps only it flattens after ~20 steps, the per-prior
optimum of a few free timesteps lying little below the shared one. 50 steps cost 51 forward and 50
backward passes per prior (`schedule_nfe` in the row); `python -m bench report --grid
grids/indis-toy.yaml` prints the costs.
"""
from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field

from bench.discretization import Discretization, FitContext
from bench.errors import UserError
from bench.registry import METHODS

from ._checkpointing import checkpointed
from ._learned.batches import evaluate_losses
from ._learned.init import best_heuristic
from ._learned.losses import loss_for_model
from ._learned.prior_net import GlobalO, count_parameters
from ._learned.time_map import discretization
from .indis import GOD, GODParams


@METHODS.register("oracle")
class Oracle(GOD):
    uses_eval_targets = True

    class Params(GODParams):
        init_fit: Literal["god", "heuristic"] = Field("god", description="the shared start: a GOD fit or the best heuristic")
        refine_iterations: int = Field(50, ge=0, le=1_000_000, description="per-prior Adam steps on the evaluation target")
        refine_lr: float = Field(0.05, gt=0, allow_inf_nan=False, description="their learning rate")

    def fit(self, ctx: FitContext) -> None:
        if self.params.init_fit == "god":
            super().fit(ctx)
            return
        # Only the best heuristic as the start: no training.
        p = self.params
        model, solver = ctx.model, ctx.solver
        val = ctx.teacher("val", p.val)
        loss_fn, loss_used = loss_for_model(self.name, p.loss, model, ctx.device)
        self._loss_fn = loss_fn
        name, t, scores = best_heuristic(
            p.init, self.noise_schedule, self.steps, solver, model.data_shape,
            lambda t: float(evaluate_losses(lambda xb, cb: discretization(t[None], dtype=val.x_T.dtype), solver,
                                            model, val.x_T, val.cond, val.x0, loss_fn).mean()))
        self.phi = GlobalO(self.steps, self.n_out, self.map.logits_of(t)).eval()
        self._info = {"init": name, "init_val_losses": scores, "loss": loss_used, "space": self.map.space,
                      "phi_params": count_parameters(self.phi)}

    def discretize(self, x_T: torch.Tensor, cond=None) -> Discretization:
        raise UserError(f"method {self.name!r} tunes each schedule on the evaluation priors' teacher endpoints; "
                        "run it in a grid (the runner passes them to discretize_evaluation) instead of calling "
                        "discretize(x_T) alone")

    def discretize_evaluation(self, x_T: torch.Tensor, cond, target) -> Discretization:
        """Each prior's own discretization, refined on its teacher endpoint `target` (module docstring)."""
        if self.phi is None:
            raise RuntimeError(f"method {self.name!r} is not fitted: call fit(ctx) or load_state_dict first")
        if target is None:
            self.discretize(x_T, cond)  # refused: no targets
        if self.model is None or self.solver is None:
            raise RuntimeError(f"method {self.name!r} needs bind(..., solver, model) before discretize_evaluation()")
        loss_fn = self._loss(x_T.device)
        self.phi.to(x_T.device)
        with torch.no_grad():
            start = self.phi(self._noise(x_T[:1]), None).detach()  # [1, n_out, N]
        best = self.refine(start, x_T, cond, target, loss_fn)
        return self.disc_from_output(best, x_T.dtype).to(device=x_T.device)

    def refine(self, start: torch.Tensor, x_T, cond, target, loss_fn) -> torch.Tensor:
        """Per-sample Adam on O from `start`; returns the best O [B, n_out, N] each sample visited."""
        b = x_T.shape[0]
        with torch.enable_grad():
            o = start.expand(b, -1, -1).clone().requires_grad_(True)
            optimizer = torch.optim.Adam([o], lr=self.params.refine_lr)
            best_o = o.detach().clone()
            best_loss = torch.full((b,), float("inf"), dtype=torch.float64, device=x_T.device)
            iterations = self.params.refine_iterations
            model = checkpointed(self.model, self.params.grad_checkpointing)
            for it in range(iterations + 1):
                disc = self.disc_from_output(o, x_T.dtype)
                losses = loss_fn(self.solver.sample(model, x_T, disc, cond), target)
                with torch.no_grad():
                    better = losses.detach().to(torch.float64) < best_loss
                    best_loss = torch.where(better, losses.detach().to(torch.float64), best_loss)
                    best_o[better] = o.detach()[better]
                if it == iterations:
                    break
                optimizer.zero_grad(set_to_none=True)
                losses.sum().backward()
                optimizer.step()
        return best_o

    def _loss(self, device):
        if self._loss_fn is None:  # after load_state_dict: rebuild the loss the fit used
            used = self._info.get("loss", "l2")
            self._loss_fn, _ = loss_for_model(self.name, used.split(" ")[0], self.model, device)
        return self._loss_fn
