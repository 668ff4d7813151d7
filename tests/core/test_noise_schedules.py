"""Noise schedules: VP identities, exact inverses of lambda, monotonicity, and SNR-matching conversion."""
import itertools
import math

import pytest
import torch

from bench.registry import SCHEDULES
from bench.schedules import (
    VE,
    VP,
    DiscreteVP,
    FlowOT,
    VPCosine,
    VPLinear,
    VPScaledLinear,
    convert,
    make_schedule,
)

F64 = torch.float64


def all_schedules():
    return [VE(), FlowOT(), VPLinear(), VPScaledLinear(), VPCosine()]


IDS = ["ve", "flow", "vp-linear", "vp-scaled-linear", "vp-cosine"]


def time_grid(s, n=4001):
    """Many times in [t_min, t_max], both uniform and geometric, float64."""
    lin = torch.linspace(s.t_min, s.t_max, n, dtype=F64)
    geo = torch.logspace(math.log10(s.t_min), math.log10(s.t_max), n, dtype=F64)
    return torch.cat([lin, geo])


@pytest.mark.parametrize("s", all_schedules(), ids=IDS)
def test_registered_and_spec_round_trip(s):
    assert s.spec()["name"] in SCHEDULES
    assert make_schedule(s.spec()) == s
    assert make_schedule(s.spec()["name"]) == s  # the defaults
    assert hash(make_schedule(s.spec())) == hash(s)


@pytest.mark.parametrize("s", [VPLinear(), VPScaledLinear(), VPCosine()], ids=IDS[2:])
def test_vp_is_variance_preserving(s):
    t = time_grid(s)
    a, sg = s.alpha(t), s.sigma(t)
    assert torch.allclose(a * a + sg * sg, torch.ones_like(t), rtol=0, atol=1e-14)
    assert bool(((a > 0) & (a < 1) & (sg > 0) & (sg < 1)).all())
    # lambda_ is log(alpha / sigma), computed stably
    assert torch.allclose(s.lambda_(t), torch.log(a / sg), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("s", all_schedules(), ids=IDS)
def test_t_of_lambda_inverts_lambda(s):
    t = time_grid(s)
    lam = s.lambda_(t)
    assert lam.dtype == F64
    assert torch.allclose(s.t_of_lambda(lam), t, rtol=1e-12, atol=0)
    # and the other way round, on a grid of lambdas in range
    lam = torch.linspace(s.lambda_min, s.lambda_max, 4001, dtype=F64)
    assert torch.allclose(s.lambda_(s.t_of_lambda(lam)), lam, rtol=1e-11, atol=1e-11)
    # the sigma_ve view inverts too
    sv = s.sigma_ve(t)
    assert torch.allclose(s.t_of_sigma_ve(sv), t, rtol=1e-12, atol=0)


@pytest.mark.parametrize("s", all_schedules(), ids=IDS)
def test_lambda_strictly_decreasing(s):
    t = torch.linspace(s.t_min, s.t_max, 100001, dtype=F64)
    lam = s.lambda_(t)
    assert bool(torch.isfinite(lam).all())
    assert bool((lam[1:] < lam[:-1]).all())
    assert s.lambda_min < s.lambda_max
    lam = torch.linspace(s.lambda_max, s.lambda_min, 10001, dtype=F64)
    t = s.t_of_lambda(lam)
    assert bool((t[1:] > t[:-1]).all())


@pytest.mark.parametrize("s", all_schedules(), ids=IDS)
def test_differentiable_and_inverse_derivative(s):
    t = time_grid(s, 50).requires_grad_(True)
    lam = s.lambda_(t)
    (dlam,) = torch.autograd.grad(lam.sum(), t)
    assert bool((dlam < 0).all())
    lam = lam.detach().requires_grad_(True)
    (dt,) = torch.autograd.grad(s.t_of_lambda(lam).sum(), lam)
    if isinstance(s, DiscreteVP):  # piecewise linear: compare away from knots
        keep = ((t.detach() * s.num_train_timesteps) % 1 - 0.5).abs() < 0.4
        assert torch.allclose((dt * dlam)[keep], torch.ones_like(dt[keep]), rtol=1e-9)
    else:
        assert torch.allclose(dt * dlam, torch.ones_like(dt), rtol=1e-9)


def test_vp_linear_closed_form():
    s = VPLinear()
    t = time_grid(s)
    log_alpha = -(20.0 - 0.1) * t**2 / 4 - 0.1 * t / 2
    assert torch.allclose(s.alpha(t), torch.exp(log_alpha), rtol=1e-14)
    assert s.t_min == 1e-3 and s.t_max == 1.0
    # beta(t) = -2 d log alpha / dt = beta_min + t (beta_max - beta_min)
    tt = t[:100].clone().requires_grad_(True)
    (d,) = torch.autograd.grad(s.log_alpha(tt).sum(), tt)
    assert torch.allclose(-2 * d, 0.1 + tt.detach() * 19.9, rtol=1e-13)


def test_vp_cosine_closed_form():
    s = VPCosine()
    assert s.t_max == 0.9946 and s.s == 0.008
    t = time_grid(s)
    f = lambda u: torch.cos((u + 0.008) / 1.008 * math.pi / 2) ** 2  # noqa: E731
    assert torch.allclose(s.alpha(t) ** 2, f(t) / f(torch.zeros((), dtype=F64)), rtol=1e-12)
    with pytest.raises(ValueError):
        VPCosine(t_max=1.0)


def test_vp_scaled_linear_matches_discrete_table():
    s = VPScaledLinear()
    n = 1000
    betas = torch.linspace(0.00085**0.5, 0.012**0.5, n, dtype=F64) ** 2
    alphas_cumprod = torch.cumprod(1 - betas, 0)
    t_knots = torch.arange(1, n + 1, dtype=F64) / n  # DPM-Solver's 'discrete' convention t_n = (n+1)/N
    assert torch.allclose(s.alpha(t_knots) ** 2, alphas_cumprod, rtol=1e-13)
    assert s.t_min == 1 / n and s.t_max == 1.0
    # log alpha is linear between knots
    mid = (t_knots[:-1] + t_knots[1:]) / 2
    la = 0.5 * torch.log(alphas_cumprod)
    assert torch.allclose(s.log_alpha(mid), (la[:-1] + la[1:]) / 2, rtol=1e-12)
    assert torch.allclose(s.step_index(t_knots), torch.arange(n, dtype=F64), atol=1e-9)
    # the generic discrete class built from the same table is the same map
    d = DiscreteVP(alphas_cumprod)
    t = time_grid(s)
    assert torch.allclose(d.lambda_(t), s.lambda_(t), rtol=1e-14, atol=1e-14)
    assert make_schedule(d.spec()) == d


def test_discrete_extrapolation_is_monotone_and_inverted():
    s = VPScaledLinear()
    # lambdas beyond the table (VE's range reaches lambda 6.2 and -4.4; the table spans 3.5..-2.7)
    lam = torch.linspace(-8.0, 10.0, 20001, dtype=F64)
    t = s.t_of_lambda(lam)
    assert bool((t[1:] < t[:-1]).all()) and bool((t > 0).all())
    assert torch.allclose(s.lambda_(t), lam, rtol=1e-10, atol=1e-10)


def test_float32_inputs_stay_float32():
    for s in all_schedules():
        t = torch.linspace(s.t_min, s.t_max, 11, dtype=torch.float32)
        for v in (s.alpha(t), s.sigma(t), s.lambda_(t), s.t_of_lambda(s.lambda_(t))):
            assert v.dtype == torch.float32 and bool(torch.isfinite(v).all())
        assert torch.allclose(s.t_of_lambda(s.lambda_(t)), t, rtol=1e-4)


def test_ve_flow_conversion_exact_formula():
    ve, flow = VE(), FlowOT()
    t_ve = torch.logspace(math.log10(0.002), math.log10(80.0), 500, dtype=F64)
    x = torch.randn(500, 3, 4, dtype=F64, generator=torch.Generator().manual_seed(0))
    x_ot, t_ot = convert(x, t_ve, ve, flow)
    assert torch.allclose(t_ot, t_ve / (1 + t_ve), rtol=1e-14)
    assert torch.allclose(x_ot, x / (1 + t_ve)[:, None, None], rtol=1e-14)
    x_back, t_back = convert(x_ot, t_ot, flow, ve)
    assert torch.allclose(t_back, t_ve, rtol=1e-12)
    assert torch.allclose(x_back, x, rtol=1e-12)
    # VE's end points map to FlowOT's defaults
    assert math.isclose(float(convert(torch.zeros(1, dtype=F64), 80.0, ve, flow)[1]), flow.t_max, rel_tol=1e-14)


PAIRS = list(itertools.product(range(5), repeat=2))


@pytest.mark.parametrize("ia,ib", PAIRS, ids=[f"{IDS[a]}->{IDS[b]}" for a, b in PAIRS])
def test_conversion_round_trip_and_distribution(ia, ib):
    a, b = all_schedules()[ia], all_schedules()[ib]
    g = torch.Generator().manual_seed(10 * ia + ib)
    t = time_grid(a, 200)
    B = t.shape[0]
    x0 = torch.randn(B, 2, 3, dtype=F64, generator=g)
    eps = torch.randn(B, 2, 3, dtype=F64, generator=g)
    x_a = a.alpha(t)[:, None, None] * x0 + a.sigma(t)[:, None, None] * eps
    # a -> b: same log-SNR, and the state is b's noising of the same (x0, eps)
    x_b, t_b = convert(x_a, t, a, b)
    assert torch.allclose(b.lambda_(t_b), a.lambda_(t), rtol=1e-10, atol=1e-10)
    expected = b.alpha(t_b)[:, None, None] * x0 + b.sigma(t_b)[:, None, None] * eps
    assert torch.allclose(x_b, expected, rtol=1e-10, atol=1e-10)
    # b -> a: back where we started
    x_back, t_back = convert(x_b, t_b, b, a)
    assert torch.allclose(t_back, t, rtol=1e-10, atol=0)
    assert torch.allclose(x_back, x_a, rtol=1e-10, atol=1e-10)


def test_convert_scalar_time_and_gradients():
    a, b = VPCosine(), VPScaledLinear()
    x = torch.randn(4, 5, dtype=F64)
    t = torch.tensor(0.5, dtype=F64, requires_grad=True)
    x_b, t_b = convert(x, t, a, b)
    assert x_b.shape == x.shape and t_b.ndim == 0
    t_b.backward()
    assert t.grad is not None and float(t.grad) > 0


def test_vp_base_is_abstract_and_validates():
    assert issubclass(VPLinear, VP) and issubclass(VPScaledLinear, DiscreteVP)
    with pytest.raises(ValueError):
        VPLinear(t_min=0.0)
    with pytest.raises(ValueError):
        VPLinear(beta_min=20.0, beta_max=0.1)
    with pytest.raises(ValueError):
        DiscreteVP([0.9, 0.95])  # not decreasing
    with pytest.raises(ValueError):
        VPScaledLinear(t_min=1e-7)  # before the extension reaches alpha = 1
