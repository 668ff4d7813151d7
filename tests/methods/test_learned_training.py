"""The learned methods' training skeleton (`bench.methods._learned.training.LearnedFit`) on a scripted fit,
the runner's one call for evaluation batches (`discretize_evaluation`), and the learned plugins'
class structure (no registered method has fewer parameters than a registered ancestor)."""
from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from bench import runner
from bench.discretization import Discretization, DiscretizationMethod, FitContext
from bench.registry import METHODS
from bench.schedules import FlowOT
from bench.solvers import make_solver
from bench.methods._learned.init import heuristic_timesteps
from bench.methods._learned.training import LearnedFit

STEPS = 3


class Scripted(LearnedFit):
    """A fit whose validation losses come from a script (`losses[i]` after i steps; `losses[0]` is the
    start's); its one parameter is the number of the last step taken."""

    def __init__(self, method, ctx, losses, stop_at=None, score_init=None):
        super().__init__(method, ctx)
        self.model, self.solver = ctx.model, ctx.solver
        self.losses, self.stop_at, self.steps = losses, stop_at, []
        if score_init is not None:
            self.score_init = score_init

    def score_init(self, t):
        return float(t[1])  # the heuristic with the smallest first step down from t_max

    def build(self, init_t, resume):
        self.init_t, self.value = init_t, 0

    def validate(self):
        return self.losses[self.iteration]

    def snapshot(self):
        return {"value": self.value}

    def positions(self):
        yield from range(self.iteration + 1, len(self.losses))

    def step(self, position):
        self.value = position
        self.steps.append(position)

    def after_validation(self, loss, improved):
        return self.stop_at is not None and self.iteration >= self.stop_at

    def state_dict(self, stop):
        return {"value": self.value, "iteration": self.iteration}

    def load_state_dict(self, state):
        self.value, self.iteration = state["value"], state["iteration"]

    def finish(self):
        return {"best": self.best, "init": self.init_name, "init_val_losses": self.init_scores,
                "resumed_at": self.resumed_at, "steps": self.steps}


def _setup(tmp_path=None):
    solver = make_solver("euler")
    method = SimpleNamespace(params=SimpleNamespace(init="auto"), noise_schedule=FlowOT(), steps=STEPS)
    ctx = FitContext(model=SimpleNamespace(data_shape=(2,)), schedule=FlowOT(), solver=solver, nfe=STEPS,
                     steps=STEPS, teacher=None, generator=torch.Generator(), artifact_dir=tmp_path,
                     checkpoint_seconds=0.0)
    return method, ctx


def test_the_skeleton_starts_from_the_best_heuristic_and_keeps_the_strictly_best_iterate():
    method, ctx = _setup()
    info = Scripted(method, ctx, [5.0, 4.0, 4.0, 3.0, 6.0]).run()
    candidates = heuristic_timesteps(FlowOT(), STEPS, ctx.solver, (2,))
    assert set(info["init_val_losses"]) == set(candidates)
    assert info["init"] == min(candidates, key=lambda name: float(candidates[name][1]))
    assert info["steps"] == [1, 2, 3, 4] and info["resumed_at"] == 0
    assert info["best"] == {"loss": 3.0, "value": 3}
    tie = Scripted(method, ctx, [5.0, 4.0, 4.0]).run()  # an equal loss does not replace the best
    assert tie["best"] == {"loss": 4.0, "value": 1}
    never = Scripted(method, ctx, [1.0, 2.0, 3.0]).run()  # the start stays the best
    assert never["best"] == {"loss": 1.0, "value": 0}


def test_the_skeleton_stops_when_the_method_says_so():
    method, ctx = _setup()
    assert Scripted(method, ctx, [5.0, 4.0, 3.0, 2.0, 1.0], stop_at=2).run()["steps"] == [1, 2]


class Preempted(Exception):
    pass


def test_a_resumed_skeleton_continues_after_its_checkpoint_and_ends_as_the_whole_fit(tmp_path):
    losses = [5.0, 4.0, 6.0, 3.0, 3.5, 2.0, 7.0]
    method, ctx = _setup()
    whole = Scripted(method, ctx, losses).run()

    method, ctx = _setup(tmp_path)
    save, saves = ctx.save_checkpoint, []

    def save_then_die(state):
        save(state)
        saves.append(state)
        if len(saves) == 3:
            raise Preempted

    ctx.save_checkpoint = save_then_die
    with pytest.raises(Preempted):
        Scripted(method, ctx, losses).run()
    assert [s["iteration"] for s in saves] == [1, 2, 3] and saves[-1]["best"] == {"loss": 3.0, "value": 3}

    def no_rescoring(t):
        raise AssertionError("a resumed fit takes its initialisation from the checkpoint")

    method, ctx = _setup(tmp_path)
    resumed = Scripted(method, ctx, losses, score_init=no_rescoring).run()
    assert ctx.resumes == 1 and resumed["resumed_at"] == 3 and resumed["steps"] == [4, 5, 6]
    assert resumed["best"] == whole["best"] == {"loss": 2.0, "value": 5}
    assert (resumed["init"], resumed["init_val_losses"]) == (whole["init"], whole["init_val_losses"])


# ------------------------------------------------------------------------------------------------
# The runner hands every method the evaluation batch's targets through one call.
# ------------------------------------------------------------------------------------------------

class _TargetRecorder(DiscretizationMethod):
    uses_eval_targets = True

    def __init__(self, **params):
        super().__init__(**params)
        self.seen = []

    def discretize(self, x_T, cond=None):
        raise AssertionError("the runner samples evaluation batches through discretize_evaluation")

    def discretize_evaluation(self, x_T, cond, target):
        self.seen.append(target.clone())
        return Discretization(torch.tensor([[1.0, 0.5, 0.002]], dtype=x_T.dtype)).check()


class _Zero:
    """A denoiser that predicts x0 = 0."""

    schedule = FlowOT()

    def __call__(self, x, t, cond=None):
        return torch.zeros_like(x)


def test_the_runner_passes_each_batch_its_targets_and_other_methods_ignore_them():
    solver = make_solver("euler")
    model = _Zero()
    x_T = torch.randn(5, 2, dtype=torch.float64)
    targets = torch.arange(10, dtype=torch.float64).reshape(5, 2)
    recorder = _TargetRecorder().bind(FlowOT(), 2, solver, model)
    runner.sample(model, solver, recorder, x_T, None, batch_size=2, targets=targets)
    assert [s.tolist() for s in recorder.seen] == [targets[:2].tolist(), targets[2:4].tolist(), targets[4:].tolist()]
    uniform = METHODS.create("uniform").bind(FlowOT(), 2, solver, model)
    plain, _ = runner.sample(model, solver, uniform, x_T, None, batch_size=2)
    with_targets, _ = runner.sample(model, solver, uniform, x_T, None, batch_size=2, targets=targets)
    assert torch.equal(plain, with_targets)


# ------------------------------------------------------------------------------------------------
# Class structure of the learned plugins.
# ------------------------------------------------------------------------------------------------

def test_no_registered_method_has_fewer_parameters_than_a_registered_ancestor():
    registered = {cls for _, cls in METHODS.items()}
    for name, cls in METHODS.items():
        own = set(cls.Params.model_fields)
        for ancestor in cls.__mro__[1:]:
            if ancestor in registered:
                assert set(ancestor.Params.model_fields) <= own, (name, ancestor.name)


@pytest.mark.parametrize("data_shape,factor", [((2,), 1.0), ((1, 8, 8), 10.0)])
def test_indis_lr_net_auto_is_the_rate_its_optimiser_uses(data_shape, factor):
    method = METHODS.create("indis", lr=0.003).bind(FlowOT(), STEPS)
    resolved = method.resolve(SimpleNamespace(data_shape=data_shape, schedule=FlowOT(), neural_network=False,
                                              image_shape=data_shape))
    assert resolved["lr_net"] == 0.003 / factor
    phi = method._build_phi(data_shape, 0, torch.zeros(STEPS))
    groups = torch.optim.Adam(method._param_groups(phi), lr=method.params.lr).param_groups
    assert [g["lr"] for g in groups] == [0.003, resolved["lr_net"]]
