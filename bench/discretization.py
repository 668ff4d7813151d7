"""Discretizations, the plugin interface of discretization methods, and the context they fit in.

* `Discretization`: timesteps `t` of shape [B, N+1], strictly decreasing from t_max to t_min, in the
  model's own time (B = 1 for a global schedule; it broadcasts over the batch). Optional per-step
  `t_eval` [B, N] is the time fed to the network at step n instead of t[:, n] (LD3's decoupled xi_c,
  INDIS's tau + delta-tau); optional `scale` [B, N] multiplies the network's noise prediction
  eps = (x - alpha x0_hat) / sigma at step n (INDIS's gamma). N is the number of solver steps; the
  NFE follows from the solver.
* `DiscretizationMethod`: a plugin with `fit(ctx)` and `discretize(x_T, cond)`. Closed-form heuristics
  have an empty `fit`; searched and learned methods set `needs_fit = True`, do their work in `fit`,
  and round-trip it through `state_dict()` / `load_state_dict()` so the runner can cache it.
* `FitContext`: everything `fit` may use, handed over by the runner.
"""
from __future__ import annotations

import os
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar

import torch

from .errors import UserError
from .plugin import Plugin
from .schedules import NoiseSchedule


@dataclass
class Discretization:
    t: torch.Tensor
    t_eval: torch.Tensor | None = None
    scale: torch.Tensor | None = None

    def __post_init__(self):
        if self.t.ndim == 1:
            self.t = self.t[None]
        if self.t.ndim != 2 or self.t.shape[1] < 2:
            raise ValueError(f"Discretization.t must have shape [B, N+1] with N >= 1, got {tuple(self.t.shape)}")
        for name in ("t_eval", "scale"):
            value = getattr(self, name)
            if value is None:
                continue
            if value.ndim == 1:
                value = value[None]
                setattr(self, name, value)
            if value.ndim != 2 or value.shape[1] != self.steps:
                raise ValueError(
                    f"Discretization.{name} must have shape [B, {self.steps}], got {tuple(value.shape)}"
                )

    @property
    def steps(self) -> int:
        return self.t.shape[1] - 1

    @property
    def batch(self) -> int:
        return self.t.shape[0]

    def check(self) -> "Discretization":
        """Raise if the timesteps are not strictly decreasing; return self."""
        if not bool((self.t[:, 1:] < self.t[:, :-1]).all()):
            raise ValueError(f"timesteps must be strictly decreasing, got {self.t[0].tolist()}")
        return self

    def to(self, device=None, dtype=None) -> "Discretization":
        move = lambda v: None if v is None else v.to(device=device, dtype=dtype)  # noqa: E731
        return Discretization(move(self.t), move(self.t_eval), move(self.scale))

    def detach(self) -> "Discretization":
        det = lambda v: None if v is None else v.detach()  # noqa: E731
        return Discretization(det(self.t), det(self.t_eval), det(self.scale))

    def select(self, index) -> "Discretization":
        """The rows `index` of a per-sample discretization (a global one is returned as it is)."""
        if self.batch == 1:
            return self
        sel = lambda v: None if v is None else v[index]  # noqa: E731
        return Discretization(sel(self.t), sel(self.t_eval), sel(self.scale))

    def step(self, n: int):
        """(t_n, t_{n+1}, t_eval_n or None, scale_n or None), each of shape [B]."""
        t_eval = None if self.t_eval is None else self.t_eval[:, n]
        scale = None if self.scale is None else self.scale[:, n]
        return self.t[:, n], self.t[:, n + 1], t_eval, scale

    def to_dict(self) -> dict:
        """Plain lists, for result rows and `show-schedule`."""
        out = {"t": self.t.detach().cpu().double().tolist()}
        for name in ("t_eval", "scale"):
            value = getattr(self, name)
            if value is not None:
                out[name] = value.detach().cpu().double().tolist()
        return out


@dataclass
class FitContext:
    """What a method's `fit` receives from the runner.

    `teacher(split, n)` returns a `TeacherSet` of n pairs (x_T, cond, x0*) for split "train" or
    "val", generated once by the cell's teacher solver and cached on disk; methods that need no
    teacher never call it; `train_size` is the grid's number of training priors (`samples.train`),
    the default size of a method's training set. `generator` is seeded from the cell, and every random draw of `fit` must
    come from it. `count_nfe(k)` records network evaluations the fit spends, counted in single
    samples (a call on a batch of B rows counts B); the row reports it as `fit_nfe`. A fit that does
    not count gets the rows its calls of `ctx.model` evaluated.

    Resuming: a long fit calls `save_checkpoint(state)` now and then (when
    `checkpoint_due()`: every `checkpoint_seconds`, from the environment variable
    BENCH_CHECKPOINT_SECONDS, default 60; 0 = at every call) and starts with `load_checkpoint()`,
    which returns the last saved state of an interrupted fit of the same fit key, or None. The file
    also carries the fit's seconds and network evaluations so far, so a resumed fit's row reports the
    cost of the whole fit (`fit_seconds`, `fit_nfe`), not just of its last attempt; work done after
    the last checkpoint of a killed attempt is redone and counted once.
    """

    model: Any
    schedule: NoiseSchedule
    solver: Any
    nfe: int
    steps: int
    teacher: Callable[[str, int], Any]
    generator: torch.Generator
    train_size: int = 1000
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    progress: Callable[..., Any] | None = None
    artifact_dir: Path | None = None
    # where save_checkpoint writes (the runner passes `ResultsRoot.fit_checkpoint_path`); default:
    # checkpoint.pt in artifact_dir
    checkpoint_path: Path | None = None
    fit_nfe: int = 0
    checkpoint_seconds: float = field(default_factory=lambda: _env_seconds("BENCH_CHECKPOINT_SECONDS", 60.0))
    # Cost of the earlier attempts of a resumed fit (from its checkpoint) and the resume count.
    resumed_seconds: float = 0.0
    resumed_nfe: int = 0
    resumes: int = 0
    # Called with (path, reason) for a checkpoint that does not load (the runner moves it aside).
    quarantine: Callable[[Path, str], Any] | None = None
    _started: float = field(default_factory=time.perf_counter, repr=False)
    _last_save: float = field(default_factory=time.perf_counter, repr=False)

    @property
    def plan(self):
        """The cell's step plan (`bench.solvers.base.StepPlan`): `nfe` evaluations as `steps` steps."""
        from .solvers.base import StepPlan

        return StepPlan(int(self.nfe), int(self.steps))

    def count_nfe(self, k: int) -> None:
        self.fit_nfe += int(k)

    def attempt_nfe(self) -> int:
        """Network evaluations of this attempt: the counted ones, else the rows `ctx.model` evaluated."""
        return self.fit_nfe or int(getattr(self.model, "rows", 0))

    def total_seconds(self) -> float:
        return self.resumed_seconds + time.perf_counter() - self._started

    def total_nfe(self) -> int:
        return self.resumed_nfe + self.attempt_nfe()

    def checkpoint_due(self) -> bool:
        """True when `checkpoint_seconds` have passed since the last save (or the start)."""
        return self.artifact_dir is not None and time.perf_counter() - self._last_save >= self.checkpoint_seconds

    def save_checkpoint(self, state: dict) -> None:
        """Save a long fit's progress (optimiser state, step, ...) so that a preempted or timed-out
        job resumes it; written atomically to `artifact_dir/checkpoint.pt` as {"state": state,
        "fit_seconds", "fit_nfe", "resumes"}. A no-op without a dir."""
        if self.artifact_dir is not None:
            from .store import atomic_write_torch

            payload = {"state": state, "fit_seconds": self.total_seconds(), "fit_nfe": self.total_nfe(),
                       "resumes": self.resumes, "fit_key": Path(self.artifact_dir).name}
            atomic_write_torch(self._checkpoint_file(), payload)
        self._last_save = time.perf_counter()

    def _checkpoint_file(self) -> Path:
        return Path(self.checkpoint_path) if self.checkpoint_path else Path(self.artifact_dir) / "checkpoint.pt"

    def load_checkpoint(self) -> dict | None:
        """The state last given to `save_checkpoint` by an interrupted fit of the same key, or None.
        Loading it adds the interrupted attempts' seconds and evaluations to this fit's totals."""
        if self.artifact_dir is None:
            return None
        path = self._checkpoint_file()
        if not path.exists():
            return None
        from .store import CorruptArtifact, read_torch, verify_key

        try:
            payload = read_torch(path, map_location=self.device, weights_only=False)
            if not isinstance(payload, dict) or not {"state", "fit_seconds", "fit_nfe", "resumes"} <= set(payload):
                raise CorruptArtifact(path, "not a checkpoint of this harness")
            verify_key(path, Path(self.artifact_dir).name, payload.get("fit_key"))  # another fit's checkpoint
        except Exception as err:  # noqa: BLE001 - any unreadable checkpoint is set aside and the fit starts over
            reason = err.reason if isinstance(err, CorruptArtifact) else (
                str(err).splitlines()[0] if str(err) else type(err).__name__)
            if self.quarantine is not None:
                self.quarantine(path, reason)
            else:
                path.unlink(missing_ok=True)
            return None
        self.resumed_seconds = float(payload["fit_seconds"])
        self.resumed_nfe = int(payload["fit_nfe"])
        self.resumes = int(payload["resumes"]) + 1
        self._started = self._last_save = time.perf_counter()
        self.fit_nfe = 0
        if hasattr(self.model, "rows"):
            self.model.rows = 0
        return payload["state"]


def _env_seconds(name: str, default: float) -> float:
    value = os.environ.get(name)
    if value is None:
        return default
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if not seconds >= 0:
        raise UserError(f"{name} must be a number of seconds >= 0 (e.g. 60), got {value!r}")
    return seconds


class DiscretizationMethod(Plugin):
    """Base class of discretization methods.

    Lifecycle: the runner constructs the method from the grid's parameters, calls `bind(schedule,
    steps, solver, model)`, then either `fit(ctx)` or, when a cached fit exists, `load_state_dict(state)`,
    then `discretize(x_T, cond)` for every evaluation batch.
    """

    kind: ClassVar[str] = "method"
    needs_fit: ClassVar[bool] = False
    # True for methods that tune on the evaluation priors' own teacher endpoints (the oracle): they
    # override `discretize_evaluation`, and the runner marks their rows `uses_eval_targets`.
    uses_eval_targets: ClassVar[bool] = False
    # Heuristics are closed-form, training-free schedules (the `heuristic` row field).
    heuristic: ClassVar[bool] = False
    # The four closed forms the papers compare against (uniform, logsnr, polynomial, edm): the
    # report's "best heuristic" row and the learned methods' `init: auto` pick among these only, so
    # practitioners' heuristics (beta, kl-optimal, ...) and `manual` lists never move that bar.
    paper_baseline: ClassVar[bool] = False

    noise_schedule: NoiseSchedule
    steps: int

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        # A plugin written before the rename (its hook was `schedule(x_T, cond)`, easily confused with
        # the model's noise schedule) keeps working, with a warning.
        if "schedule" in cls.__dict__ and "discretize" not in cls.__dict__:
            warnings.warn(f"{cls.__module__}.{cls.__name__}: the hook `schedule(x_T, cond)` is now called "
                          f"`discretize(x_T, cond)`; rename it", DeprecationWarning, stacklevel=2)
            cls.discretize = cls.__dict__["schedule"]

    def bind(self, schedule: NoiseSchedule, steps: int, solver=None, model=None) -> "DiscretizationMethod":
        """Attach what every method may need: the schedule, the step count, the student solver and
        the model (for methods that evaluate it inside `discretize`, e.g. per-instance searches; the
        runner passes a counting wrapper and reports those evaluations separately)."""
        self.noise_schedule = schedule
        self.steps = int(steps)
        self.solver = solver
        self.model = model
        return self

    def fit(self, ctx: FitContext) -> None:
        """Do the search or training. Heuristics have nothing to fit."""

    def discretize(self, x_T: torch.Tensor, cond=None) -> Discretization:
        raise NotImplementedError

    def discretize_evaluation(self, x_T: torch.Tensor, cond, target) -> Discretization:
        """The discretization the runner samples an evaluation batch with; `target` holds the batch's
        teacher endpoints. It is `discretize(x_T, cond)`: only a method that declares
        `uses_eval_targets` (the oracle, an upper bound) overrides it to tune on them."""
        return self.discretize(x_T, cond)

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass

    def fit_info(self) -> dict:
        """Plain JSON values about the fit for the result row (e.g. a schedule network's parameter
        count and per-sample cost, the initialisation, the best validation loss); {} by default."""
        return {}


class HeuristicMethod(DiscretizationMethod):
    """A closed-form global schedule: subclasses implement `timesteps()` -> float64 tensor [N+1]."""

    heuristic = True

    def timesteps(self) -> torch.Tensor:
        raise NotImplementedError

    def discretize(self, x_T: torch.Tensor, cond=None) -> Discretization:
        t = self.timesteps().to(device=x_T.device, dtype=x_T.dtype)
        return Discretization(t[None]).check()


class FittedGlobalMethod(DiscretizationMethod):
    """A method whose `fit` finds one global schedule, kept as the float64 times `self.t` [N+1] (DMN,
    GITS, OSS-ave): `discretize` returns it for every batch; `state_dict` must include it."""

    needs_fit = True
    t: torch.Tensor | None = None

    def discretize(self, x_T: torch.Tensor, cond=None) -> Discretization:
        if self.t is None:
            raise RuntimeError(f"method {self.name!r} is not fitted: call fit(ctx) or load_state_dict() first")
        return Discretization(self.t.to(device=x_T.device, dtype=x_T.dtype)[None]).check()


__all__ = ["Discretization", "DiscretizationMethod", "FittedGlobalMethod", "HeuristicMethod", "FitContext"]
