"""Conformance of every registered solver to the step API (`bench/solvers/base.py`).

Parametrised over the `SOLVERS` registry at collection time, so a new solver is tested without
editing a list: `tests/plugins/solver_example.py` registers `test-midpoint` outside `bench/solvers/`, and it
is checked here like the built-in ones. For each solver, with its default parameters:
  * the network is called exactly `nfe(steps)` times (with and without AFS, for every `final_step`);
  * the observed order -- the log-log slope of the median endpoint error on toy2d (VE time, float64,
    EDM steps rho = 7) against a 1000-step UniPC-3 reference without final-order lowering (order 4:
    its own error is ~1e-9, far below the errors fitted) -- is within 0.3 of the declared `order`.
    The slope is taken between N and 2N steps, N = 400 for declared orders <= 2 and N = 200 above:
    there every solver is in its asymptotic regime (at fewer steps warm-up, lowered final steps and
    toy2d's fine structure still bend the curve) and its error stays far above the reference's;
  * a per-sample discretization ([B, N+1] t, t_eval, scale) whose rows are equal gives the samples
    of the global one ([1, N+1]) to float64 round-off;
  * gradients reach every interior timestep, every t_eval and every scale, and agree with a central
    finite difference along a random direction;
  * reruns are bitwise identical; the callback sees every step; a state taken from the callback
    resumes through `step` to the same sample;
  * the searches' candidate steps (OSS) resume the solver at any node and reproduce its own run;
  * the learned methods' evaluation-time rule (LD3, INDIS, GOD: `t_eval`, `scale`) is `Denoise`'s:
    every evaluation of a step goes through `denoise.at_node` or `denoise.inside`, never the raw call;
    each node 0..N-1 is evaluated exactly once at its node (with t_eval[:, n] and scale[:, n], what
    the network is then fed), and every other evaluation is inside its own step (plain time,
    scale[:, n]).
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from bench.discretization import Discretization
from bench.registry import MODELS, SOLVERS
from bench.solvers import make_solver
from bench.solvers.base import FINAL_STEPS, Denoise

from ..plugins.solver_example import Midpoint  # noqa: F401  (registers `test-midpoint`)

F64 = torch.float64
NAMES = SOLVERS.names()
# Variants whose declared order differs from the default's, checked by the order test as well.
ORDER_VARIANTS = [
    {"name": "dpmpp-3m", "exact_d2": True},
    {"name": "unipc-bh1", "lower_order_final": False},
    {"name": "unipc-bh2", "order": 2, "lower_order_final": False},
    {"name": "ipndm-v", "variant": "exact"},
    {"name": "ipndm-v", "max_order": 3},
]


def spec_id(spec):
    return spec if isinstance(spec, str) else "-".join(f"{v}" for v in spec.values())


@pytest.fixture(scope="module")
def toy():
    return MODELS.create("toy2d")


def edm_steps(schedule, n, rho=7.0):
    u = torch.linspace(0, 1, n + 1, dtype=F64)
    s_max, s_min = schedule.t_max ** (1 / rho), schedule.t_min ** (1 / rho)
    t = (s_max + u * (s_min - s_max)) ** rho
    t[0], t[-1] = schedule.t_max, schedule.t_min
    return t


def priors(schedule, n, seed=0):
    return torch.randn(n, 2, generator=torch.Generator().manual_seed(seed), dtype=F64) * schedule.prior_std()


class Counting:
    def __init__(self, model):
        self.model, self.schedule, self.calls = model, model.schedule, 0

    def __call__(self, x, t, cond=None):
        self.calls += 1
        return self.model(x, t, cond)


@pytest.mark.parametrize("final_step", FINAL_STEPS)
@pytest.mark.parametrize("afs", [False, True], ids=["plain", "afs"])
@pytest.mark.parametrize("name", NAMES)
def test_nfe_counted_equals_declared(toy, name, afs, final_step):
    solver = make_solver({"name": name, "afs": afs, "final_step": final_step})
    x_T = priors(toy.schedule, 3)
    for steps in (1, 2, 3, 5, 11):
        counting = Counting(toy)
        solver.sample(counting, x_T, Discretization(edm_steps(toy.schedule, steps)[None]))
        assert counting.calls == solver.nfe(steps), steps
        if solver.nfe(steps) >= 1:
            assert solver.steps_for_nfe(solver.nfe(steps)) == steps


@pytest.fixture(scope="module")
def reference(toy):
    x_T = priors(toy.schedule, 32, seed=1)
    ref = make_solver({"name": "unipc-bh1", "lower_order_final": False})
    return x_T, ref.sample(toy, x_T, Discretization(edm_steps(toy.schedule, 1000)[None]))


@pytest.mark.parametrize("spec", NAMES + ORDER_VARIANTS, ids=spec_id)
def test_observed_order_is_the_declared_order(toy, reference, spec):
    solver = make_solver(spec)
    x_T, ref = reference
    steps = (200, 400) if solver.order >= 3 else (400, 800)
    errors = []
    for n in steps:
        out = solver.sample(toy, x_T, Discretization(edm_steps(toy.schedule, n)[None]))
        errors.append(float((out - ref).norm(dim=1).median()))
    slope = np.log(errors[0] / errors[1]) / np.log(steps[1] / steps[0])
    assert abs(slope - solver.order) <= 0.3, (solver.order, slope, errors)


def per_step_inputs(schedule, steps, rows, seed=3):
    gen = torch.Generator().manual_seed(seed)
    t = edm_steps(schedule, steps)
    t_eval = torch.minimum(t[:-1] * (1 + 0.05 * torch.rand(steps, generator=gen, dtype=F64)),
                           torch.tensor(schedule.t_max, dtype=F64))
    scale = 1 + 0.03 * torch.randn(steps, generator=gen, dtype=F64)
    return t, t_eval, scale


@pytest.mark.parametrize("name", NAMES)
def test_per_sample_equals_global_when_equal(toy, name):
    solver = make_solver({"name": name})
    x_T = priors(toy.schedule, 4)
    t, t_eval, scale = per_step_inputs(toy.schedule, 6, 4)
    for args in ((t,), (t, t_eval, scale)):
        glob = solver.sample(toy, x_T, Discretization(*[a[None] for a in args]))
        rows = solver.sample(toy, x_T, Discretization(*[a[None].repeat(4, 1) for a in args]))
        torch.testing.assert_close(rows, glob, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("afs", [False, True], ids=["plain", "afs"])
@pytest.mark.parametrize("name", NAMES)
def test_gradients_reach_the_timesteps(toy, name, afs):
    solver = make_solver({"name": name, "afs": afs})
    x_T = priors(toy.schedule, 3)
    t, t_eval, scale = per_step_inputs(toy.schedule, 5, 3)
    weights = torch.randn(3, 2, generator=torch.Generator().manual_seed(7), dtype=F64)

    def loss(interior, t_eval, scale):
        ts = torch.cat([t[:1], interior, t[-1:]])
        return (solver.sample(toy, x_T, Discretization(ts[None], t_eval[None], scale[None])) * weights).sum()

    inputs = [v.clone().requires_grad_(True) for v in (t[1:-1], t_eval, scale)]
    grads = torch.autograd.grad(loss(*inputs), inputs, allow_unused=True)
    interior_grad, t_eval_grad, scale_grad = grads
    assert interior_grad is not None and bool((interior_grad != 0).all()), interior_grad
    # AFS's analytic first evaluation ignores t_eval[0] (its eps does not depend on the input time)
    assert t_eval_grad is not None and bool((t_eval_grad[1 if afs else 0:] != 0).all()), t_eval_grad
    assert scale_grad is not None and bool((scale_grad != 0).all()), scale_grad
    # central difference along a random direction
    gen = torch.Generator().manual_seed(11)
    directions = [torch.randn(v.shape, generator=gen, dtype=F64) * v.detach() * 1e-3 for v in inputs]
    eps = 1e-4
    with torch.no_grad():
        plus = loss(*[v + eps * d for v, d in zip(inputs, directions)])
        minus = loss(*[v - eps * d for v, d in zip(inputs, directions)])
    numeric = float(plus - minus) / (2 * eps)
    analytic = float(sum((g * d).sum() for g, d in zip(grads, directions)))
    assert abs(numeric - analytic) <= 1e-6 * max(1.0, abs(analytic)), (numeric, analytic)


@pytest.mark.parametrize("name", NAMES)
def test_reruns_are_identical_and_steps_resume(toy, name):
    solver = make_solver({"name": name})
    x_T = priors(toy.schedule, 4)
    t, t_eval, scale = per_step_inputs(toy.schedule, 6, 4)
    disc = Discretization(t[None], t_eval[None], scale[None])
    seen = []
    first = solver.trajectory(toy, x_T, disc, callback=seen.append)
    second = solver.trajectory(toy, x_T, disc)
    assert all(torch.equal(a, b) for a, b in zip(first, second))
    assert [info["n"] for info in seen] == list(range(6))
    assert all(torch.equal(info["x"], x) for info, x in zip(seen, first[1:]))
    assert sum(len(info["evaluations"]) for info in seen) == solver.nfe(6)
    # resume from the state after step 2, stepping by hand
    state = seen[2]["state"]
    for n in range(3, 6):
        state = solver.step(state, n, disc, Denoise(toy, disc=disc))
    assert torch.equal(state.x, first[-1])


@pytest.mark.parametrize("name", NAMES)
def test_searches_resume_the_solver_at_any_node(toy, name):
    """OSS's candidate steps (bench/methods/search/student_step.py: the state resumed at node i, stepped to
    several candidate nodes at once, candidate-major rows) reproduce the solver's own run along a path,
    and never evaluate more rows than one run per candidate would."""
    from bench.methods.search.student_step import StudentSteps

    solver = make_solver({"name": name})
    nodes = edm_steps(toy.schedule, 9)
    path = [0, 2, 5, 7, 9]
    x_T = priors(toy.schedule, 3)
    direct = solver.trajectory(toy, x_T, Discretization(nodes[path][None]))
    student = StudentSteps(solver, toy, nodes, len(path) - 1, x_T, teacher=torch.zeros(10, 3, 2, dtype=F64))
    state = student.init_state()
    for k, (i, j) in enumerate(zip(path[:-1], path[1:])):
        candidates = student.advance(state, k, i, torch.arange(j, min(j + 2, 10)))
        torch.testing.assert_close(candidates["x"][0], direct[k + 1], rtol=1e-12, atol=1e-12)
        state = {key: v[0] for key, v in candidates.items()}
    assert 3 * solver.nfe(len(path) - 1) <= student.rows <= 2 * 3 * solver.nfe(len(path) - 1)


class RuleDenoise(Denoise):
    """`Denoise` that records through which door of the evaluation-time rule each evaluation came."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.doors, self._door = [], None

    def at_node(self, x, n):
        self._door = ("node", n)
        try:
            return super().at_node(x, n)
        finally:
            self._door = None

    def inside(self, x, t, n):
        self._door = ("inside", n)
        try:
            return super().inside(x, t, n)
        finally:
            self._door = None

    def __call__(self, x, t, t_eval=None, scale=None):
        self.doors.append((self._door, t, t_eval, scale))
        return super().__call__(x, t, t_eval, scale)


class FedTimes:
    """The toy network, recording the time it is fed."""

    def __init__(self, model):
        self.model, self.schedule, self.fed = model, model.schedule, []

    def __call__(self, x, t, cond=None):
        self.fed.append(t)
        return self.model(x, t, cond)


@pytest.mark.parametrize("afs", [False, True])
@pytest.mark.parametrize("name", NAMES)
def test_the_evaluation_time_rule_is_the_denoisers(toy, name, afs):
    solver = make_solver({"name": name, "afs": afs})
    steps = 5
    t, t_eval, scale = per_step_inputs(toy.schedule, steps, 1)
    disc = Discretization(t[None], t_eval[None], scale[None])
    x_T = priors(toy.schedule, 3)
    net = FedTimes(toy)
    state, at_nodes = solver.init_state(x_T, disc), []
    for n in range(steps):
        denoise = RuleDenoise(net, analytic_first=afs and n == 0, disc=disc)
        fed_before = len(net.fed)
        state = solver.advance(state, n, disc, denoise)
        fed = iter(net.fed[fed_before:])
        for i, (door, t_state, te, sc) in enumerate(denoise.doors):
            assert door is not None, f"step {n} evaluated the denoiser without at_node / inside"
            kind, k = door
            analytic = afs and n == 0 and i == 0  # AFS's first evaluation is analytic: no network call
            if kind == "node":
                assert k in (n, n + 1), (n, door)
                at_nodes.append(k)
                assert torch.equal(t_state, disc.t[:, k]) and torch.equal(te, disc.t_eval[:, k])
                assert torch.equal(sc, disc.scale[:, k])
                if not analytic:
                    assert torch.equal(next(fed), disc.t_eval[:, k].expand(3))  # the network sees t_eval
            else:
                assert k == n and te is None and torch.equal(sc, disc.scale[:, n]), (n, door)
                if not analytic:
                    assert torch.equal(next(fed), t_state.expand(3))  # the plain time
    assert sorted(at_nodes) == list(range(steps)), at_nodes
    assert torch.equal(state.x, solver.sample(toy, x_T, disc))  # the same as the sampling loop
