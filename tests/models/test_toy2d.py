"""The exact 2D tree mixture `toy2d`: construction, exact posterior mean, dtypes, time conversion, gradients."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from bench.errors import UserError
from bench.models.base import make_model
from bench.models.toy2d import CHUNK, Toy2D
from bench.registry import MODELS
from bench.schedules import VE, FlowOT


@pytest.fixture(scope="module")
def model():
    return Toy2D()


@pytest.fixture(scope="module")
def data(model):
    """Exact prior samples x0 (float64), shared by the Monte-Carlo tests."""
    return model.sample_data(400_000, torch.Generator().manual_seed(0), dtype=torch.float64)


# --- construction ---------------------------------------------------------------------------------


def test_registered_and_defaults():
    m = make_model("toy2d")
    assert isinstance(m, Toy2D) and MODELS.get("toy2d") is Toy2D
    assert m.params.model_dump() == {"time": "ve", "classes": "A"} and m.params.time == "ve"
    assert m.data_shape == (2,) and m.num_classes == 0
    assert m.schedule == VE(0.002, 80.0)
    assert make_model({"name": "toy2d", "time": "flow"}).schedule == FlowOT(0.002, 80.0 / 81.0)


@pytest.mark.parametrize("classes, count", [("A", 1016), ("B", 1016), ("AB", 2032)])
def test_component_count_and_weights(classes, count):
    m = Toy2D(classes=classes)
    assert m.num_components == count
    assert m.weights.dtype == torch.float64
    assert float(m.weights.sum()) == pytest.approx(1.0, abs=1e-12)
    assert bool((m.weights > 0).all())
    # C = Q diag(l) Q^T reproduces each covariance.
    rebuilt = m.evecs @ torch.diag_embed(m.evals) @ m.evecs.transpose(-1, -2)
    torch.testing.assert_close(rebuilt, m.covs, rtol=0, atol=1e-12)


def test_classes_ab_is_the_union():
    a, b, ab = Toy2D(classes="A"), Toy2D(classes="B"), Toy2D(classes="AB")
    torch.testing.assert_close(ab.means, torch.cat([a.means, b.means]))
    # Weights are renormalised over the selection: within a class, AB keeps A's proportions.
    wa = ab.weights[:1016]
    torch.testing.assert_close(wa / wa.sum(), a.weights)
    # Class B grows the opposite way (angle 5 pi / 4): its mass lies down-left of class A's.
    assert bool((b.weights @ b.means < a.weights @ a.means).all())


def test_first_branch_follows_the_recipe(model):
    """The root branch of class A, recomputed from the specification."""
    rs = np.random.RandomState(2)
    origin, scale = np.array([0.0030, 0.0325]), np.array([1.3136, 1.3844])
    u = np.array([math.cos(math.pi / 4), math.sin(math.pi / 4)])
    length = 0.292 * (1 + 0.2 * rs.randn())
    h = 0.2 / length
    s = scale * length * 0.06
    cov = (np.outer(u, u) + (np.eye(2) - np.outer(u, u)) * h**2) * np.outer(s, s)
    for i, f in enumerate(np.linspace(0.07, 0.93, 8)):
        np.testing.assert_allclose(model.means[i].numpy(), (origin + u * length * f) * scale, rtol=0, atol=1e-15)
        np.testing.assert_allclose(model.covs[i].numpy(), cov, rtol=0, atol=1e-18)
    # The 8 root components carry weight L each, before normalisation; depth-1 ones L1 / 2.
    w = model.weights / model.weights[0]
    assert float(w[:8].max() - w[:8].min()) == 0.0
    # The second child's subtree (depth 1, sign -1) starts after the first child's 63 branches.
    tip = (origin + u * length) * scale
    for start in (8, 8 + 63 * 8):  # both depth-1 branches start at the root's tip
        d = model.means[start + 1] - model.means[start]  # step along the branch: u L (0.86/7) * scale
        back = model.means[start].numpy() - d.numpy() * 0.07 / (0.86 / 7)
        np.testing.assert_allclose(back, tip, atol=1e-12)


@pytest.mark.parametrize(
    "params, word",
    [({"time": "vp"}, "time"), ({"classes": "C"}, "classes"), ({"classes": "ab"}, "classes"), ({"sigma": 1}, "sigma")],
)
def test_bad_parameters_raise_user_error(params, word):
    with pytest.raises(UserError, match=word) as info:
        Toy2D(**params)
    assert "\n" not in str(info.value)


# --- the exact denoiser ---------------------------------------------------------------------------


def _naive_posterior_mean(m: Toy2D, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Straight from the formula with full 2x2 matrices, float64 (small batches only)."""
    eye = torch.eye(2, dtype=torch.float64)
    cov = m.covs[None] + sigma[:, None, None, None] ** 2 * eye  # [B, K, 2, 2]
    prec = torch.linalg.inv(cov)
    d = x[:, None, :] - m.means[None]
    logp = torch.log(m.weights) - 0.5 * torch.einsum("bki,bkij,bkj->bk", d, prec, d) - 0.5 * torch.logdet(cov)
    r = torch.softmax(logp, dim=-1)
    post = m.means[None] + torch.einsum("kij,bkjl,bkl->bki", m.covs, prec, d)
    return (r[..., None] * post).sum(1)


def test_matches_the_formula(model):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(100, 2, generator=g, dtype=torch.float64)
    sigma = torch.exp(torch.empty(100, dtype=torch.float64).uniform_(math.log(0.002), math.log(80), generator=g))
    ref = _naive_posterior_mean(model, x, sigma)
    torch.testing.assert_close(model(x, sigma), ref, rtol=0, atol=1e-12)  # per-row levels
    for s in (0.002, 0.1, 5.0):  # one level for all rows
        ref = _naive_posterior_mean(model, x, torch.full((100,), s, dtype=torch.float64))
        torch.testing.assert_close(model(x, torch.tensor(s, dtype=torch.float64)), ref, rtol=0, atol=1e-12)


@pytest.mark.parametrize("sigma", [0.05, 0.3, 2.0])
def test_matches_monte_carlo_posterior_mean(model, data, sigma):
    """Self-normalised importance sampling with prior samples: E[x0|x] ~ sum_i w_i x0_i / sum_i w_i,
    w_i = N(x; x0_i, sigma^2 I); compared within 5 Monte-Carlo standard errors."""
    g = torch.Generator().manual_seed(int(sigma * 1000))
    # Typical noisy points: fresh x0 plus noise, and the origin.
    x0 = model.sample_data(3, g, dtype=torch.float64)
    points = torch.cat([x0 + sigma * torch.randn(3, 2, generator=g, dtype=torch.float64), torch.zeros(1, 2, dtype=torch.float64)])
    exact = model(points, torch.tensor(sigma, dtype=torch.float64))
    for x, e in zip(points, exact):
        logw = -0.5 * ((data - x) ** 2).sum(-1) / sigma**2
        w = torch.softmax(logw, dim=0)
        est = w @ data
        ess = 1.0 / float((w**2).sum())
        stderr = torch.sqrt((w[:, None] ** 2 * (data - est) ** 2).sum(0))
        assert ess > 200, f"too few effective samples ({ess:.0f}) at x={x.tolist()}, sigma={sigma}"
        assert bool(((e - est).abs() <= 5 * stderr + 2e-4).all()), (x.tolist(), sigma, e.tolist(), est.tolist(), stderr.tolist())


def test_limits(model):
    x = torch.tensor([[0.0, 0.0], [3.0, -2.0]], dtype=torch.float64)
    # Huge noise: the mixture mean (to first order in 1/sigma^2).
    mean = model.weights @ model.means
    torch.testing.assert_close(model(x, torch.tensor(80.0, dtype=torch.float64)), mean.expand(2, 2), rtol=0, atol=2e-3)
    # Tiny noise at a component mean: (nearly) the point itself.
    x = model.means[[0, 500, 1015]]
    torch.testing.assert_close(model(x, torch.tensor(1e-4, dtype=torch.float64)), x, rtol=0, atol=1e-4)


def test_tweedie_with_log_prob(model):
    """E[x0|x] = x + sigma^2 grad log p(x; sigma)."""
    g = torch.Generator().manual_seed(2)
    x = (torch.randn(64, 2, generator=g, dtype=torch.float64) * 0.7).requires_grad_()
    for s in (0.01, 0.3, 3.0):
        sigma = torch.tensor(s, dtype=torch.float64)
        (score,) = torch.autograd.grad(model.log_prob(x, sigma).sum(), x)
        torch.testing.assert_close(model(x, sigma), x + s**2 * score, rtol=0, atol=1e-10)


def test_log_prob_is_normalised(model):
    """The noisy density integrates to 1 over a grid (sigma large enough for the grid to resolve it)."""
    n, lo, hi = 161, -1.5, 2.5
    g = torch.linspace(lo, hi, n, dtype=torch.float64)
    xy = torch.stack(torch.meshgrid(g, g, indexing="xy"), -1).reshape(-1, 2)
    mass = model.log_prob(xy, 0.1).exp().sum() * ((hi - lo) / (n - 1)) ** 2
    assert float(mass) == pytest.approx(1.0, abs=2e-3)


# --- dtypes, shapes, chunking ---------------------------------------------------------------------


def test_float32_no_nan_far_off_the_tree(model):
    x = torch.tensor([[5.0, 5.0], [-4.0, 3.0], [50.0, -50.0], [0.0, -3.0], [1e3, 1e3], [0.3, 0.9]])
    for sigma in (torch.tensor(0.002), torch.full((6,), 0.002).requires_grad_()):  # shared and per-row
        out = model(x, sigma)
        assert out.dtype == torch.float32 and bool(torch.isfinite(out).all())
        assert bool(torch.isfinite(model.log_prob(x, sigma)).all())
    flow = Toy2D(time="flow")
    out = flow(x * (1 - 0.002), torch.tensor(0.002))
    assert bool(torch.isfinite(out).all())
    # The direct float32 evaluation of the mixture weights is what underflows here:
    d2 = ((x[:1, None, :] - model.means.float()) ** 2).sum(-1)
    assert float(torch.exp(-0.5 * d2 / (model.evals.float().max() + 0.002**2)).sum()) == 0.0


def test_float32_agrees_with_float64(model):
    g = torch.Generator().manual_seed(3)
    x = model.sample_data(500, g, dtype=torch.float64) + 0.01 * torch.randn(500, 2, generator=g, dtype=torch.float64)
    for s in (0.002, 0.05, 1.0):
        ref = model(x, torch.tensor(s, dtype=torch.float64))
        out = model(x.float(), torch.tensor(s))
        assert out.dtype == torch.float32
        torch.testing.assert_close(out.double(), ref, rtol=0, atol=1e-4)


def test_shapes_and_chunking(model):
    g = torch.Generator().manual_seed(4)
    n = 2 * CHUNK + 37
    x = torch.randn(n, 2, generator=g, dtype=torch.float64)
    t = torch.rand(n, generator=g, dtype=torch.float64) + 0.01
    out = model(x, t)
    assert out.shape == (n, 2)
    torch.testing.assert_close(out[-5:], model(x[-5:], t[-5:]), rtol=0, atol=1e-14)
    # 0-dim t, [1] t, a python float and an expanded [B] t all mean one level for every row.
    t0 = torch.tensor(0.4, dtype=torch.float64)
    ref = model(x, torch.full((n,), 0.4, dtype=torch.float64))
    for t in (t0, t0.reshape(1), 0.4, t0.expand(n)):
        torch.testing.assert_close(model(x, t), ref, rtol=0, atol=1e-13)
    assert model(x, t0, cond=torch.zeros(n, dtype=torch.long)).shape == (n, 2)  # cond is ignored
    assert model(x[:0], t[:0]).shape == (0, 2)
    with pytest.raises(ValueError):
        model(x, torch.ones(n - 1, dtype=torch.float64))


def test_sample_data(model):
    g = torch.Generator().manual_seed(5)
    x = model.sample_data(200_000, g)
    assert x.shape == (200_000, 2) and x.dtype == torch.float64
    y = model.sample_data(200_000, torch.Generator().manual_seed(5), dtype=torch.float32)
    assert y.dtype == torch.float32
    torch.testing.assert_close(y, x.float(), rtol=0, atol=0)  # same seed, same samples
    mean = model.weights @ model.means
    second = torch.einsum("k,kij->ij", model.weights, model.covs + model.means[:, :, None] * model.means[:, None, :])
    cov = second - torch.outer(mean, mean)
    torch.testing.assert_close(x.mean(0), mean, rtol=0, atol=4e-3)
    torch.testing.assert_close(torch.cov(x.T), cov, rtol=0, atol=4e-3)


# --- time conversion and gradients ----------------------------------------------------------------


def test_flow_time_equals_ve_at_converted_coordinates(model):
    flow = Toy2D(time="flow")
    g = torch.Generator().manual_seed(6)
    x = torch.randn(300, 2, generator=g, dtype=torch.float64)
    t = 0.002 + (80 / 81 - 0.002) * torch.rand(300, generator=g, dtype=torch.float64)
    ref = model(x / (1 - t)[:, None], t / (1 - t))
    torch.testing.assert_close(flow(x, t), ref, rtol=0, atol=1e-12)
    t0 = torch.tensor(0.7, dtype=torch.float64)
    torch.testing.assert_close(flow(x, t0), model(x / 0.3, t0 / 0.3), rtol=0, atol=1e-12)
    # The prior: flow t_max = 80/81 is VE sigma 80.
    assert flow.schedule.prior_std() == pytest.approx(80 / 81)


@pytest.mark.parametrize("time", ["ve", "flow"])
def test_gradients_match_finite_differences(time):
    m = Toy2D(time=time)
    g = torch.Generator().manual_seed(7)
    x = (torch.randn(4, 2, generator=g, dtype=torch.float64) * 0.5 + 0.3).requires_grad_()
    lo, hi = (0.01, 3.0) if time == "ve" else (0.01, 0.7)
    t = (lo + (hi - lo) * torch.rand(4, generator=g, dtype=torch.float64)).requires_grad_()
    assert torch.autograd.gradcheck(lambda x, t: m(x, t), (x, t), eps=1e-6, atol=1e-5, rtol=1e-4)
    # One level shared by the batch (t.expand(B), as solvers pass it): the gradient reaches the source.
    t0 = torch.tensor(0.2, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, t0: m(x, t0.expand(4)), (x, t0), eps=1e-6, atol=1e-5, rtol=1e-4)
    assert torch.autograd.gradcheck(lambda x, t0: m(x, t0), (x, t0), eps=1e-6, atol=1e-5, rtol=1e-4)
    # An expanded float64 t with float32 x: one shared level, and a gradient for the source.
    t0.grad = None
    m(x.detach().float(), t0.expand(4)).sum().backward()
    assert t0.grad is not None and torch.isfinite(t0.grad)


def test_gradient_per_row_equal_values(model):
    """Rows with equal but independent times each get their own gradient."""
    x = torch.tensor([[0.1, 0.2], [0.5, 0.5], [-0.3, 0.4]], dtype=torch.float64)
    t = torch.full((3,), 0.1, dtype=torch.float64, requires_grad=True)
    out = model(x, t)
    (grad,) = torch.autograd.grad(out[1].sum(), t)
    assert grad[0] == 0 and grad[2] == 0 and grad[1] != 0
