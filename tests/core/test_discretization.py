"""Core types: discretizations, baselines (endpoints, monotonicity, EDM formula), registries,
gradients of the Euler endpoint with respect to the timesteps."""
from __future__ import annotations

import math

import pytest
import torch

from bench.discretization import Discretization, DiscretizationMethod
from bench.errors import UserError
from bench.registry import METHODS, MODELS, SOLVERS, Registry
from bench.schedules import VE, FlowOT
from bench.solvers import make_solver

SCHEDULES = [VE(), FlowOT(), VE(0.01, 10.0)]
BASELINES = ["uniform", "logsnr", "polynomial", "edm"]


@pytest.mark.parametrize("schedule", SCHEDULES, ids=repr)
@pytest.mark.parametrize("name", BASELINES)
@pytest.mark.parametrize("steps", [1, 3, 10])
def test_baseline_endpoints_and_monotone(schedule, name, steps):
    method = METHODS.create(name).bind(schedule, steps)
    disc = method.discretize(torch.zeros(1, 2, dtype=torch.float64))
    t = disc.t[0]
    assert t.shape == (steps + 1,)
    assert t[0].item() == pytest.approx(schedule.t_max, rel=1e-12)
    assert t[-1].item() == pytest.approx(schedule.t_min, rel=1e-12)
    assert bool((t[1:] < t[:-1]).all())


def get_sigmas_karras(n, sigma_min, sigma_max, rho=7.0):
    """k-diffusion's formula (sampling.get_sigmas_karras), without the appended zero."""
    ramp = [i / (n - 1) for i in range(n)]
    min_inv_rho, max_inv_rho = sigma_min ** (1 / rho), sigma_max ** (1 / rho)
    return [(max_inv_rho + r * (min_inv_rho - max_inv_rho)) ** rho for r in ramp]


@pytest.mark.parametrize("steps", [3, 5, 10, 18])
def test_edm_matches_k_diffusion(steps):
    t = METHODS.create("edm").bind(VE(0.002, 80.0), steps).timesteps()
    expected = get_sigmas_karras(steps + 1, 0.002, 80.0)
    assert t.tolist() == pytest.approx(expected, rel=1e-12)


def test_edm_on_flow_matches_ve_at_equal_snr():
    t_flow = METHODS.create("edm").bind(FlowOT(), 6).timesteps()
    sigma = t_flow / (1 - t_flow)
    s = FlowOT()
    expected = get_sigmas_karras(7, s.t_min / (1 - s.t_min), s.t_max / (1 - s.t_max))
    assert sigma.tolist() == pytest.approx(expected, rel=1e-9)


def test_logsnr_is_uniform_in_lambda():
    s = FlowOT()
    t = METHODS.create("logsnr").bind(s, 7).timesteps()
    lam = s.lambda_(t)
    gaps = lam[1:] - lam[:-1]
    assert torch.allclose(gaps, gaps.mean().expand_as(gaps), rtol=1e-9)


def test_polynomial_rho_2_is_time_quadratic():
    s = VE(0.001, 1.0)
    t = METHODS.create("polynomial", rho=2).bind(s, 4).timesteps()
    expected = [s.t_min + (s.t_max - s.t_min) * ((4 - i) / 4) ** 2 for i in range(5)]
    assert t.tolist() == pytest.approx(expected)


def test_bad_method_parameter_is_a_user_error():
    with pytest.raises(UserError, match="has no parameter 'rh'"):
        METHODS.create("polynomial", rh=2)
    with pytest.raises(UserError, match="rho must be > 0"):
        METHODS.create("edm", rho=-1)


def test_discretization_shapes_and_checks():
    d = Discretization(torch.tensor([3.0, 2.0, 1.0]))
    assert d.t.shape == (1, 3) and d.steps == 2 and d.batch == 1
    with pytest.raises(ValueError, match="strictly decreasing"):
        Discretization(torch.tensor([3.0, 3.0, 1.0])).check()
    with pytest.raises(ValueError, match="t_eval"):
        Discretization(torch.tensor([3.0, 2.0, 1.0]), t_eval=torch.ones(3))
    per_sample = Discretization(torch.tensor([[3.0, 2.0, 1.0], [3.0, 1.5, 1.0]]), scale=torch.ones(2, 2))
    assert per_sample.select([1]).t.tolist() == [[3.0, 1.5, 1.0]]


def test_registry_errors_name_the_known_entries():
    with pytest.raises(UserError, match="unknown method 'nope'; known: .*uniform"):
        METHODS.get("nope")
    for registry, name in ((SOLVERS, "euler"), (SOLVERS, "ipndm"), (MODELS, "toy2d")):
        assert name in registry


def test_registry_rejects_duplicate_names():
    registry = Registry("thing")

    @registry.register("a")
    class A:
        pass

    with pytest.raises(ValueError, match="registered twice"):

        @registry.register("a")
        class B:
            pass


def test_entry_point_plugins_are_loaded(monkeypatch):
    """A third-party method announced in the `bench.methods` entry-point group registers itself."""
    from importlib import metadata

    import tests.plugins.plugin_example as example

    class FakeEntryPoint:
        def load(self):
            return example

    registry = Registry("method", entry_point_group="bench.methods")
    calls = []

    def fake_entry_points(group):
        calls.append(group)
        example.register(registry)
        return [FakeEntryPoint()]

    monkeypatch.setattr(metadata, "entry_points", fake_entry_points)
    assert "example-plugin" in registry.names()
    assert calls == ["bench.methods"]


class GaussianVE(torch.nn.Module):
    """Exact denoiser of N(mu, c^2 I) data in VE time."""

    schedule = VE()
    data_shape = (3,)
    num_classes = 0

    def __init__(self, mu=0.3, c=0.5):
        super().__init__()
        self.mu, self.c = mu, c

    def forward(self, x, t, cond=None):
        s2 = (t ** 2).reshape(-1, 1)
        return self.mu + self.c ** 2 / (self.c ** 2 + s2) * (x - self.mu)


@pytest.mark.parametrize("solver_name", ["euler", "ipndm"])
@pytest.mark.parametrize("model", [GaussianVE(), "toy2d"], ids=["gaussian", "toy2d"])
def test_endpoint_gradient_wrt_timesteps_matches_finite_differences(solver_name, model):
    if model == "toy2d":
        model = MODELS.create("toy2d", time="flow")
        t = METHODS.create("uniform").bind(model.schedule, 4).timesteps()
    else:
        t = METHODS.create("edm").bind(model.schedule, 4).timesteps()
    solver = make_solver(solver_name)
    gen = torch.Generator().manual_seed(0)
    x_T = torch.randn((5,) + tuple(model.data_shape), generator=gen, dtype=torch.float64) * model.schedule.prior_std()
    weights = torch.randn_like(x_T)

    def objective(ts):
        return (solver.sample(model, x_T, Discretization(ts[None])) * weights).sum()

    t = t.clone().requires_grad_(True)
    objective(t).backward()
    grad = t.grad
    for i in range(1, t.numel() - 1):
        h = 1e-6 * float(t[i].detach())
        plus, minus = t.detach().clone(), t.detach().clone()
        plus[i] += h
        minus[i] -= h
        fd = (objective(plus) - objective(minus)) / (2 * h)
        assert grad[i].item() == pytest.approx(fd.item(), rel=1e-4, abs=1e-6), i


def test_method_base_defaults():
    method = DiscretizationMethod().bind(VE(), 3)
    assert method.state_dict() == {} and not method.needs_fit
    assert math.isclose(method.noise_schedule.prior_std(), 80.0)


def test_a_method_written_with_the_old_schedule_hook_still_works():
    """`DiscretizationMethod.schedule(x_T, cond)` was renamed `discretize`; an old plugin warns and runs."""
    import warnings

    from bench.discretization import Discretization, DiscretizationMethod

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")

        class OldStyle(DiscretizationMethod):
            def schedule(self, x_T, cond=None):
                return Discretization(torch.tensor([[1.0, 0.5, 0.25]]))

    assert any(issubclass(w.category, DeprecationWarning) and "discretize" in str(w.message) for w in caught)
    assert OldStyle().discretize(torch.zeros(1, 2)).t.tolist() == [[1.0, 0.5, 0.25]]
