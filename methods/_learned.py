"""Shared pieces of the learned schedules (`ld3`, `indis`, `god`, `oracle`): the cumulative-softmax
timestep map, the decoupled evaluation times, the losses, and small training-loop utilities.

Not a plugin (the leading underscore keeps the registry from importing it as one).

The cumulative-softmax map (LD3, Tong et al. 2025, Sec. 3; INDIS, Yuan et al. 2026, reuses it)
----------------------------------------------------------------------------------------------
N logits o [B, N] give N positive gaps g = softmax(o) that sum to one; their running sums are the
*progress* u_0 = 0 < u_1 < ... < u_N = 1 (u_N and u_0 are set exactly, not summed). A coordinate v
runs linearly from its value at t_max to its value at t_min, v_n = v(t_max) + (v(t_min) - v(t_max)) u_n,
and t_n = t(v_n). The coordinate (`space`) is the model's time t itself ("t") or the half log-SNR
lambda ("lambda", t = t_of_lambda(v)); "auto" takes lambda for VE models (where uniform-in-t steps
crowd at the noise end, and LD3's own EDM runs use lambda) and t otherwise (flow matching, VP:
LD3's "time" mode). The timesteps are therefore strictly decreasing for every o, with
t_0 = t_max and t_N = t_min exactly, and differentiable in o. The map is computed in float64.
Departure: LD3 writes xi in R^(N+1); its normalisation (c - c_0) / (c_N - c_0) of the running sums
c makes the first entry inert (exactly zero gradient), so we keep the N entries that matter, which is
also INDIS's o_tau in R^N. `logits_of(t)` inverts the map (log of the normalised gaps), which is how
a learned schedule starts from a heuristic.

Decoupled evaluation times
--------------------------
* LD3's xi_c (`ld3_eval_times`): the network at step n is evaluated at v_n + clamp(xi_c_n, +-m_n) in
  the map's coordinate; the first evaluation (at t_max) is never shifted ("zero at the ends"; the
  last knot t_min is never evaluated). The half-width m_n (`xi_window`, w = `window`, 0.5, the
  reference's `win_rate`; detached, as in the reference code):
  - "global" (LD3's default, the reference's `discretize_model_wrapper` in vinhsuhi/LD3 trainer.py,
    commit 9e4a66f8238a45903e54b89a1f557df1e7de8afc): one width for
    every step. In "lambda" mode it is w times the smallest gap between adjacent *raw logits*
    [xi_0, xi_1, ..., xi_N] (the reference's `(lambda1[1:] - lambda1[:-1]).abs().min()`), the inert
    first logit xi_0 included; here xi_0 is the constant 0, the mean of the zero-mean logits a fit
    starts from (in the reference it keeps its initial value, which every logit starts from). In "t"
    mode it is w times the smallest gap of the timesteps t_0 > ... > t_N themselves. Note that in
    lambda mode a gap of logits bounds a shift of lambda; a window of zero (all logits equal to xi_0,
    i.e. uniform steps in lambda) leaves every shift at zero until the logits move.
  - "step": m_n = w * min(|v_n - v_{n-1}|, |v_{n+1} - v_n|), the smaller of the step's two
    neighbouring gaps in the map's coordinate, in either mode; steps in wide regions may move further.
    With w < 1 the shifted time stays strictly between t_{n+1} and t_{n-1}, so inside (t_min, t_max].
* INDIS's delta-tau (`relative_eval_times`): *relative*. dtau_n in [-b, b] is a fraction of the
  step's own gap in the map's coordinate: u_eval_n = u_n + dtau_n (u_{n+1} - u_n), positive towards
  the data, clamped at u = 0 (t_max). Why relative, not absolute: an absolute shift of up to b = 0.05
  in flow time is 25x t_min = 0.002 and larger than the last gaps of few-step schedules, so it would
  leave (t_min, t_max] or reorder evaluations; a fraction of the local gap keeps every evaluation
  within 5% of its step's length from its knot (so evaluation times never cross, and stay inside
  (t_min, t_max]), and means the same in every schedule and coordinate.

Losses (`make_loss`)
--------------------
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

import contextlib
import math
import time
from typing import Callable

import torch

from bench.discretization import Discretization
from bench.errors import UserError
from bench.models.base import Denoiser
from bench.schedules import VE, NoiseSchedule

SPACES = ("auto", "t", "lambda")
LOSSES = ("auto", "l2", "lpips")


# ----------------------------------------------------------------------------------------------
# The cumulative-softmax timestep map.
# ----------------------------------------------------------------------------------------------

def resolve_space(space: str, schedule: NoiseSchedule) -> str:
    if space == "auto":
        return "lambda" if isinstance(schedule, VE) else "t"
    return space


class TimeMap:
    """Logits [B, N] -> strictly decreasing timesteps [B, N+1] from t_max to t_min (module docstring)."""

    def __init__(self, schedule: NoiseSchedule, space: str = "auto"):
        self.schedule = schedule
        self.space = resolve_space(space, schedule)
        self.t_max, self.t_min = float(schedule.t_max), float(schedule.t_min)
        if self.space == "lambda":
            self.v_start, self.v_end = float(schedule.lambda_min), float(schedule.lambda_max)
        else:
            self.v_start, self.v_end = self.t_max, self.t_min

    def coord(self, t: torch.Tensor) -> torch.Tensor:
        return self.schedule.lambda_(t) if self.space == "lambda" else t

    def progress(self, logits: torch.Tensor) -> torch.Tensor:
        """u [B, N+1]: 0, the running sums of softmax(logits), 1 (float64; ends exact)."""
        if logits.ndim == 1:
            logits = logits[None]
        gaps = torch.softmax(logits.to(torch.float64), dim=-1)
        inner = torch.cumsum(gaps, dim=-1)[:, :-1]
        return torch.cat([inner.new_zeros(inner.shape[0], 1), inner, inner.new_ones(inner.shape[0], 1)], dim=1)

    def value(self, u: torch.Tensor) -> torch.Tensor:
        """The map's coordinate v at progress u."""
        return self.v_start + (self.v_end - self.v_start) * u

    def time_at(self, u: torch.Tensor) -> torch.Tensor:
        """t at progress u in [0, 1]; exactly t_max at u = 0 and t_min at u = 1."""
        v = self.value(u)
        t = self.schedule.t_of_lambda(v) if self.space == "lambda" else v
        t = torch.where(u <= 0, torch.full_like(t, self.t_max), t)
        return torch.where(u >= 1, torch.full_like(t, self.t_min), t)

    def times(self, logits: torch.Tensor) -> torch.Tensor:
        return self.time_at(self.progress(logits))

    def logits_of(self, t: torch.Tensor) -> torch.Tensor:
        """The (zero-mean) logits [N] whose map is the strictly decreasing schedule t [N+1]."""
        t = torch.as_tensor(t, dtype=torch.float64).flatten()
        v = self.coord(t)
        u = (v - self.v_start) / (self.v_end - self.v_start)
        gaps = u[1:] - u[:-1]
        if not bool((gaps > 0).all()):
            raise ValueError(f"logits_of needs strictly decreasing timesteps, got {t.tolist()}")
        logits = torch.log(gaps)
        return logits - logits.mean()

    # --- decoupled evaluation times ---------------------------------------------------------

    def ld3_eval_times(self, u: torch.Tensor, xi_c: torch.Tensor, window: float, xi_window: str = "step",
                       logits: torch.Tensor | None = None) -> torch.Tensor:
        """LD3: t_eval [B, N] from the shifts xi_c [N] (or [B, N]) in the map's coordinate, clamped to the
        half-width of `xi_window` ("step" or "global", module docstring; "global" in lambda mode needs
        the logits [N] or [B, N] that made u)."""
        v = self.value(u)
        gaps = (v[:, 1:] - v[:, :-1]).abs().detach()  # [B, N]
        xi_c = xi_c.to(torch.float64)
        if xi_c.ndim == 1:
            xi_c = xi_c[None]
        if xi_window == "step":
            bound = window * torch.minimum(gaps[:, :-1], gaps[:, 1:])  # steps 1..N-1
            inner = torch.maximum(torch.minimum(xi_c[:, 1:], bound), -bound)
        elif xi_window == "global":
            if self.space == "lambda":
                if logits is None:
                    raise ValueError("ld3_eval_times: xi_window 'global' in lambda mode needs the logits")
                raw = logits.detach()
                raw = raw[None] if raw.ndim == 1 else raw
                raw = torch.cat([torch.zeros_like(raw[:, :1]), raw], dim=1)  # the inert xi_0 = 0 first
                width = (raw[:, 1:] - raw[:, :-1]).abs().amin(dim=1, keepdim=True).to(torch.float64)
            else:
                width = gaps.amin(dim=1, keepdim=True)
            bound = (window * width).expand(-1, xi_c.shape[1] - 1)
            inner = torch.clamp(xi_c[:, 1:], min=-bound, max=bound)
        else:
            raise ValueError(f"ld3_eval_times: xi_window must be 'step' or 'global', got {xi_window!r}")
        shift = torch.cat([torch.zeros_like(inner[:, :1]), inner], dim=1)
        v_eval = v[:, :-1] + shift
        t_eval = self.schedule.t_of_lambda(v_eval) if self.space == "lambda" else v_eval
        first = torch.zeros_like(t_eval, dtype=torch.bool)
        first[:, 0] = True
        return torch.where(first, torch.full_like(t_eval, self.t_max), t_eval)

    def relative_eval_times(self, u: torch.Tensor, dtau: torch.Tensor) -> torch.Tensor:
        """INDIS: t_eval [B, N] = t(u_n + dtau_n (u_{n+1} - u_n)), clamped at t_max (module docstring)."""
        u_eval = u[:, :-1] + dtau.to(torch.float64) * (u[:, 1:] - u[:, :-1])
        return self.time_at(u_eval.clamp(min=0.0))


# ----------------------------------------------------------------------------------------------
# Heuristic initialisation.
# ----------------------------------------------------------------------------------------------

from ._params import init_heuristics  # noqa: E402


def heuristic_timesteps(schedule: NoiseSchedule, steps: int, solver, data_shape) -> dict[str, torch.Tensor]:
    """{name: float64 timesteps [N+1]} of the papers' closed-form heuristics (default parameters)."""
    from bench.registry import METHODS

    out = {}
    probe = torch.zeros((1,) + tuple(data_shape), dtype=torch.float64)
    for name in init_heuristics():
        try:
            method = METHODS.create(name).bind(schedule, steps, solver)
            t = method.discretize(probe).t[0].detach().to(torch.float64).cpu()
        except (UserError, ValueError, NotImplementedError):
            continue
        if t.numel() == steps + 1 and bool((t[1:] < t[:-1]).all()):
            out[name] = t
    return out


def choose_init(init: str, candidates: dict[str, torch.Tensor], score: Callable[[torch.Tensor], float]):
    """(name, timesteps, {name: validation loss}) of the heuristic to start from.

    `init` = "auto" scores every candidate with `score` (mean validation loss) and takes the lowest."""
    if init != "auto":
        if init not in candidates:
            raise UserError(f"init heuristic {init!r} gives no valid schedule here; use init: auto")
        return init, candidates[init], {}
    scores = {name: float(score(t)) for name, t in candidates.items()}
    finite = {k: v for k, v in scores.items() if math.isfinite(v)}
    if not finite:
        raise RuntimeError(f"every heuristic schedule diverged on the validation set: {scores}")
    best = min(finite, key=finite.get)
    return best, candidates[best], scores


# ----------------------------------------------------------------------------------------------
# Losses.
# ----------------------------------------------------------------------------------------------

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


def resolve_learned(params: dict, model) -> dict:
    """The `auto` parameters every learned method shares, resolved for `model` on this machine:
    space (lambda for VE, else t), loss (lpips when the images suit it and its weights load, else
    l2) and grad_checkpointing (on for neural networks). `init: auto` stays: it is a rule (the
    heuristic with the lowest validation loss) whose choice the row's fit info records."""
    from ._checkpointing import is_network

    out = dict(params)
    out["space"] = resolve_space(params["space"], model.schedule)
    if params["loss"] == "auto":
        out["loss"] = "lpips" if _lpips_shape_ok(_loss_shape(model)) and _lpips_available() else "l2"
    if params["grad_checkpointing"] == "auto":
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


# ----------------------------------------------------------------------------------------------
# Training-loop utilities.
# ----------------------------------------------------------------------------------------------

@contextlib.contextmanager
def seeded(generator: torch.Generator):
    """Run a block (e.g. module construction) on the global RNG seeded from `generator`, restoring
    the global RNG afterwards, so every draw of a fit comes from the cell's generator."""
    seed = int(torch.randint(0, 2**62, (1,), generator=generator))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


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


def discretization(t: torch.Tensor, t_eval=None, scale=None, dtype=None) -> Discretization:
    """A checked Discretization in `dtype` (the samples' dtype)."""
    cast = (lambda v: v) if dtype is None else (lambda v: None if v is None else v.to(dtype))  # noqa: E731
    return Discretization(cast(t), cast(t_eval), cast(scale)).check()


def count_parameters(module: torch.nn.Module | None) -> int:
    return 0 if module is None else sum(p.numel() for p in module.parameters())


def seconds_per_sample(fn: Callable, n: int, repeats: int = 7) -> float:
    """The fastest of `repeats` wall times of fn() divided by n (fn processes n samples), after one
    warm-up call; the minimum, not the median, because the machine may be shared (noise only adds)."""
    with torch.no_grad():
        fn()
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
    return min(times) / max(n, 1)


__all__ = [
    "SPACES", "LOSSES", "TimeMap", "resolve_space", "make_loss", "loss_for_model", "l2_loss", "heuristic_timesteps",
    "init_heuristics", "choose_init", "seeded", "epoch_batches", "EpochBatches", "evaluate_losses", "discretization",
    "count_parameters", "seconds_per_sample", "slice_cond",
]
