"""The exact empirical `digits` denoiser: limits, stability, conditioning, references, gradients, sampling."""
import math

import pytest
import torch

import bench.models.digits as digits_module
from bench.discretization import Discretization
from bench.errors import UserError
from bench.models.base import make_model
from bench.registry import MODELS
from bench.schedules import VE, convert
from bench.solvers.euler import Euler

F64 = torch.float64


@pytest.fixture(scope="module")
def model():
    return make_model("digits")


@pytest.fixture(scope="module")
def data(model):
    return model.training_images(F64).reshape(-1, 64), model.training_labels()


def reference(x, sigma, X, train_labels, labels=None):
    """Direct float64 posterior mean: softmax of -||x - x_i||^2 / (2 sigma^2), other classes at -inf."""
    x = x.reshape(x.shape[0], -1).to(F64)
    sigma = torch.as_tensor(sigma, dtype=F64).expand(x.shape[0])
    d2 = ((x[:, None, :] - X[None]) ** 2).sum(-1)
    logits = -d2 / (2 * sigma[:, None] ** 2)
    if labels is not None:
        mask = (train_labels[None, :] != labels[:, None]) & (labels[:, None] >= 0)
        logits = logits.masked_fill(mask, -math.inf)
    return torch.softmax(logits, dim=1) @ X


def test_registered_with_data_set(model, data):
    X, labels = data
    assert MODELS.get("digits") is type(model)
    assert model.data_shape == (1, 8, 8) and model.num_classes == 10 and model.data_range == 2.0
    assert model.schedule == VE(0.002, 80.0)
    assert model.model_id() == "digits(time=ve)"
    assert X.shape == (1797, 64) and labels.shape == (1797,) and labels.dtype == torch.int64
    assert float(X.min()) == -1.0 and float(X.max()) == 1.0
    assert torch.bincount(labels).tolist() == [178, 182, 177, 183, 181, 182, 181, 179, 174, 180]
    assert model.training_images().shape == (1797, 1, 8, 8)
    assert model.training_images().dtype == torch.get_default_dtype()


def test_bad_parameters():
    with pytest.raises(UserError, match="time"):
        make_model({"name": "digits", "time": "nope"})
    with pytest.raises(UserError, match="parameter"):
        make_model({"name": "digits", "sigma": 1.0})


def test_bad_inputs(model):
    x = torch.zeros(3, 1, 8, 8)
    with pytest.raises(ValueError, match="shape"):
        model(torch.zeros(3, 2, 8, 8), torch.ones(3))
    with pytest.raises(ValueError, match="t must"):
        model(x, torch.ones(2))
    with pytest.raises(ValueError, match="cond"):
        model(x, torch.ones(3), torch.zeros(2, dtype=torch.long))
    with pytest.raises(ValueError, match="labels"):
        model(x, torch.ones(3), torch.tensor([0, 1, 10]))
    with pytest.raises(ValueError, match="integer"):
        model(x, torch.ones(3), torch.zeros(3))


@pytest.mark.parametrize("dtype", [torch.float32, F64])
def test_tiny_sigma_returns_nearest_training_image(model, data, dtype):
    X, _ = data
    g = torch.Generator().manual_seed(0)
    idx = torch.randint(1797, (64,), generator=g)
    x = X[idx] + 0.3 * torch.randn(64, 64, dtype=F64, generator=g)
    nearest = X[torch.cdist(x, X).argmin(1)]
    out = model(x.to(dtype).reshape(64, 1, 8, 8), torch.full((64,), 0.002, dtype=dtype))
    assert out.dtype == dtype and out.shape == (64, 1, 8, 8)
    assert torch.allclose(out.reshape(64, 64).to(F64), nearest, atol=1e-6)
    # sigma = 0 is the same limit, not 0/0
    out = model(x.to(dtype).reshape(64, 1, 8, 8), torch.zeros(64, dtype=dtype))
    assert torch.allclose(out.reshape(64, 64).to(F64), nearest, atol=1e-6)


@pytest.mark.parametrize("dtype", [torch.float32, F64])
def test_huge_sigma_returns_the_mean(model, data, dtype):
    X, labels = data
    g = torch.Generator().manual_seed(1)
    sigma = 1e5
    x = sigma * torch.randn(20, 1, 8, 8, dtype=F64, generator=g)
    out = model(x.to(dtype), torch.full((20,), sigma, dtype=dtype))
    assert torch.allclose(out.reshape(20, 64).to(F64), X.mean(0).expand(20, 64), atol=1e-3)
    cond = torch.arange(20) % 10
    out = model(x.to(dtype), torch.full((20,), sigma, dtype=dtype), cond)
    class_means = torch.stack([X[labels == c].mean(0) for c in range(10)])
    assert torch.allclose(out.reshape(20, 64).to(F64), class_means[cond], atol=1e-3)


def test_float32_finite_at_sigma_min_far_from_data(model, data):
    X, labels = data
    g = torch.Generator().manual_seed(2)
    for scale in (10.0, 80.0, 1e4):
        x = scale * torch.randn(32, 1, 8, 8, generator=g)
        t = torch.full((32,), 0.002)
        for cond in (None, torch.arange(32) % 10):
            out = model(x, t, cond)
            assert bool(torch.isfinite(out).all())
            ref = reference(x.double(), 0.002, X, labels, cond)  # one-hot: the nearest (in-class) image
            assert torch.allclose(out.reshape(32, 64).double(), ref, atol=1e-4)


def random_inputs(n, g, X):
    """States at VE levels log-uniform in [0.002, 80] around training images, and some far away."""
    sigma = torch.exp(torch.empty(n, dtype=F64).uniform_(math.log(0.002), math.log(80.0), generator=g))
    x0 = X[torch.randint(1797, (n,), generator=g)]
    x = x0 + sigma[:, None] * torch.randn(n, 64, dtype=F64, generator=g)
    x[: n // 4] = 3 * torch.randn(n // 4, 64, dtype=F64, generator=g)  # off the data manifold
    return x.reshape(n, 1, 8, 8), sigma


def test_matches_direct_float64_reference(model, data):
    X, labels = data
    g = torch.Generator().manual_seed(3)
    x, sigma = random_inputs(200, g, X)
    ref = reference(x, sigma, X, labels)
    out = model(x, sigma)
    assert out.dtype == F64
    assert torch.allclose(out.reshape(200, 64), ref, rtol=0, atol=1e-9)
    out32 = model(x.float(), sigma.float())
    assert out32.dtype == torch.float32
    # float32 follows the reference up to rounding (max ~2e-5 over 2000 such inputs)
    err = (out32.reshape(200, 64).double() - ref).abs().amax(1)
    assert float(err.median()) < 1e-6 and float(err.max()) < 1e-3
    # posterior_mean is the VE view of the same thing
    assert torch.allclose(model.posterior_mean(x, sigma), out)


def test_conditional_is_the_class_restricted_average(model, data):
    X, labels = data
    g = torch.Generator().manual_seed(4)
    x, sigma = random_inputs(200, g, X)
    cond = torch.randint(-1, 10, (200,), generator=g)  # -1: unconditional rows in the same batch
    out = model(x, sigma, cond).reshape(200, 64)
    ref = reference(x, sigma, X, labels, cond)
    assert torch.allclose(out, ref, rtol=0, atol=1e-9)
    # in the convex hull of the class: inside the class's per-pixel bounding box, and a convex
    # combination (the reference's weights vanish outside the class)
    for c in range(10):
        rows = cond == c
        lo, hi = X[labels == c].amin(0), X[labels == c].amax(0)
        assert bool(((out[rows] >= lo - 1e-12) & (out[rows] <= hi + 1e-12)).all())
    # a scalar label broadcasts
    assert torch.allclose(model(x[:5], sigma[:5], torch.tensor(3)), model(x[:5], sigma[:5], torch.full((5,), 3)))


def test_chunking_and_ordering(model, data, monkeypatch):
    X, labels = data
    g = torch.Generator().manual_seed(5)
    x, sigma = random_inputs(50, g, X)
    cond = torch.randint(0, 10, (50,), generator=g)
    full, full_c = model(x, sigma), model(x, sigma, cond)
    monkeypatch.setattr(digits_module, "CHUNK", 7)
    assert torch.allclose(model(x, sigma), full, rtol=0, atol=1e-13)
    assert torch.allclose(model(x, sigma, cond), full_c, rtol=0, atol=1e-13)
    # per-row: the same as evaluating each sample alone
    one = torch.cat([model(x[i : i + 1], sigma[i : i + 1], cond[i : i + 1]) for i in range(0, 50, 7)])
    assert torch.allclose(one, full_c[::7], rtol=0, atol=1e-13)


def test_gradients_in_t_and_x(model, data):
    X, labels = data
    g = torch.Generator().manual_seed(6)
    sigma = torch.tensor([0.3, 0.7, 1.5, 4.0, 12.0], dtype=F64)
    x = (X[torch.randint(1797, (5,), generator=g)] + sigma[:, None] * torch.randn(5, 64, dtype=F64, generator=g))
    x = x.reshape(5, 1, 8, 8)
    v = torch.randn(5, 1, 8, 8, dtype=F64, generator=g)
    for cond in (None, torch.tensor([0, 3, 5, 7, 9])):
        t = sigma.clone().requires_grad_(True)
        (model(x, t, cond) * v).sum().backward()
        h = 1e-6 * sigma
        f = lambda tt: (model(x, tt, cond) * v).reshape(5, -1).sum(1)  # noqa: E731
        fd = (f(sigma + h) - f(sigma - h)) / (2 * h)
        assert torch.allclose(t.grad, fd, rtol=1e-6, atol=1e-8)
    xs = x[:2].clone().requires_grad_(True)
    ts = sigma[:2].clone().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda a, b: model(a, b), (xs, ts))


@pytest.mark.parametrize("time", ["flow", "vp-linear", "vp-cosine", "vp-scaled-linear"])
def test_other_times_convert_to_ve(data, time):
    X, _ = data
    m, ve = make_model({"name": "digits", "time": time}), make_model("digits")
    g = torch.Generator().manual_seed(7)
    t = torch.linspace(m.schedule.t_min, m.schedule.t_max, 20, dtype=F64)
    x = torch.randn(20, 1, 8, 8, dtype=F64, generator=g) * m.schedule.sigma(t)[:, None, None, None]
    x = x + m.schedule.alpha(t)[:, None, None, None] * X[:20].reshape(20, 1, 8, 8)
    x_ve, s = convert(x, t, m.schedule, VE())
    assert torch.allclose(m(x, t), ve(x_ve, s), rtol=0, atol=1e-12)


def test_sample_data(model, data):
    X, labels = data
    a = model.sample_data(500, torch.Generator().manual_seed(8))
    b = model.sample_data(500, torch.Generator().manual_seed(8))
    assert a.shape == (500, 1, 8, 8) and a.dtype == torch.get_default_dtype() and torch.equal(a, b)
    imgs, labs = model.sample_labeled(500, torch.Generator().manual_seed(8), dtype=F64)
    assert torch.equal(imgs.float(), a)
    idx = torch.cdist(imgs.reshape(500, 64), X).argmin(1)
    assert torch.equal(X[idx].reshape(500, 1, 8, 8), imgs)  # every draw is a training image
    assert torch.equal(labels[idx], labs)  # no two training images coincide (min distance 0.66)
    assert len(set(idx.tolist())) > 400  # uniform with replacement over 1797 images
    cond = torch.arange(500) % 10
    imgs, labs = model.sample_labeled(500, torch.Generator().manual_seed(9), cond=cond, dtype=F64)
    assert torch.equal(labs, cond)
    idx = torch.cdist(imgs.reshape(500, 64), X).argmin(1)
    assert torch.equal(X[idx].reshape(500, 1, 8, 8), imgs)


@pytest.mark.parametrize("conditional", [False, True])
def test_high_nfe_euler_teacher_lands_on_training_images(model, data, conditional):
    X, labels = data
    g = torch.Generator().manual_seed(10)
    n = 24
    steps = 200
    s = model.schedule
    lam = torch.linspace(s.lambda_min, s.lambda_max, steps + 1, dtype=F64)  # logSNR-uniform
    t = s.t_of_lambda(lam)
    t[0], t[-1] = s.t_max, s.t_min
    disc = Discretization(t.float()).check()
    x_T = model.prior(torch.randn(n, 1, 8, 8, generator=g))  # 80 * noise
    cond = torch.arange(n) % 10 if conditional else None
    with torch.no_grad():
        x0 = Euler().sample(model, x_T, disc, cond)
    assert bool(torch.isfinite(x0).all())
    dist = model.nearest_distance(x0.double())
    # the last step stops at sigma = 0.002: ~0.002 * 8 away from a training image (image spacing ~ 1-10)
    assert float(dist.max()) < 0.05
    nearest = torch.cdist(x0.double().reshape(n, 64), X).argmin(1)
    if conditional:
        assert torch.equal(labels[nearest], cond)
    else:
        assert len(set(labels[nearest].tolist())) >= 5  # not collapsed onto one digit
