"""Tests of the metric plugins (bench/metrics): mse, psnr, wasserstein, kl.

They use tiny fake models with an exact data sampler instead of the real toy model, and small sizes so
the whole file runs in a few seconds.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from bench.errors import UserError
from bench.metrics import Metric, MetricContext, make_metric
from bench.metrics.toy2d import w2_distance
from bench.registry import METRICS


class GaussianModel:
    """A fake 2D model whose data is N(mean, std^2 I); draws come from the given generator."""

    name = "gauss"
    data_shape = (2,)
    data_range = 2.0

    def __init__(self, mean=(0.3, 0.3), std=0.2):
        self.mean = torch.tensor(mean, dtype=torch.float64)
        self.std = std

    def sample_data(self, n, generator):
        z = torch.randn(n, 2, generator=generator, dtype=torch.float64)
        return (self.mean + self.std * z).float()


class FixedSetModel:
    """A fake model whose "data" is always a random permutation of one fixed point set."""

    name = "fixed"
    data_shape = (2,)
    data_range = 2.0

    def __init__(self, points: torch.Tensor):
        self.points = points

    def sample_data(self, n, generator):
        assert n == self.points.shape[0]
        return self.points[torch.randperm(n, generator=generator)]


class NoDataModel:
    name = "nodata"
    data_range = 2.0

    def sample_data(self, n, generator):
        raise NotImplementedError("no exact data sampler")


def ctx(model=None, teacher=None, seed=0):
    return MetricContext(
        teacher=teacher, model=model, generator=torch.Generator().manual_seed(seed), device=torch.device("cpu")
    )


# Registry and interface.


def test_registry_and_flags():
    assert {"mse", "psnr", "wasserstein", "kl"} <= set(METRICS.names())
    for name in ("mse", "psnr", "wasserstein", "kl"):
        metric = make_metric(name)
        assert isinstance(metric, Metric) and metric.kind == "metric" and metric.name == name
    assert make_metric("mse").needs_teacher and not make_metric("mse").higher_is_better
    assert make_metric("psnr").needs_teacher and make_metric("psnr").higher_is_better
    for name in ("wasserstein", "kl"):
        metric = make_metric(name)
        assert metric.needs_data_sampler and not metric.needs_teacher and not metric.higher_is_better
        assert metric.columns() == [name, f"{name}_floor"]
    assert make_metric("mse").columns() == ["mse"]


def test_make_metric_params():
    metric = make_metric({"name": "wasserstein", "n": 123})
    assert metric.spec() == {"name": "wasserstein", "n": 123}
    assert make_metric("kl").spec()["bins"] == 64
    with pytest.raises(UserError, match="no parameter"):
        make_metric({"name": "kl", "binz": 3})
    with pytest.raises(UserError, match="unknown metric"):
        make_metric("nope")
    with pytest.raises(UserError, match="n must be"):
        make_metric({"name": "wasserstein", "n": 0})
    with pytest.raises(UserError, match="low must be below high"):
        make_metric({"name": "kl", "low": 1.0, "high": 0.0})


# mse and psnr.


def test_mse_is_sum_over_dimensions_mean_over_samples():
    samples = torch.tensor([[1.0, 2.0], [0.0, 0.0]])
    teacher = torch.tensor([[0.0, 0.0], [3.0, 4.0]])
    # Per sample: 1 + 4 = 5 and 9 + 16 = 25; mean over samples 15 (a per-dimension mean would give 7.5).
    assert make_metric("mse").compute(samples, ctx(GaussianModel(), teacher)) == {"mse": 15.0}


def test_mse_images_float32():
    teacher = torch.zeros(3, 3, 4, 4)
    samples = teacher + torch.tensor([0.5, 1.0, 0.0]).view(3, 1, 1, 1)
    # 48 values per sample: 48 * 0.25 = 12, 48 * 1 = 48, 0 -> mean 20.
    out = make_metric("mse").compute(samples.float(), ctx(GaussianModel(), teacher.double()))
    assert out["mse"] == pytest.approx(20.0, rel=0, abs=1e-12)
    assert isinstance(out["mse"], float)


def test_mse_needs_a_matching_teacher():
    samples = torch.zeros(2, 2)
    with pytest.raises(ValueError, match="teacher"):
        make_metric("mse").compute(samples, ctx(GaussianModel(), None))
    with pytest.raises(ValueError, match="shape"):
        make_metric("mse").compute(samples, ctx(GaussianModel(), torch.zeros(3, 2)))


def test_psnr_known_values():
    teacher = torch.zeros(2, 1, 2, 2, dtype=torch.float64)
    samples = teacher.clone()
    samples[0] += 0.1  # per-pixel mse 0.01 -> 10 log10(4 / 0.01) = 26.0206
    samples[1] += 0.2  # per-pixel mse 0.04 -> 10 log10(4 / 0.04) = 20
    out = make_metric("psnr").compute(samples, ctx(GaussianModel(), teacher))
    expected = (10 * math.log10(400.0) + 20.0) / 2  # the mean of per-sample PSNRs
    assert out["psnr"] == pytest.approx(expected, abs=1e-9)

    model = GaussianModel()
    model.data_range = 1.0  # data in [0, 1]
    out = make_metric("psnr").compute(samples[1:], ctx(model, teacher[1:]))
    assert out["psnr"] == pytest.approx(10 * math.log10(1.0 / 0.04), abs=1e-9)


def test_psnr_cap_and_nan():
    teacher = torch.randn(4, 3, generator=torch.Generator().manual_seed(0))
    assert make_metric("psnr").compute(teacher.clone(), ctx(GaussianModel(), teacher)) == {"psnr": 100.0}
    assert make_metric({"name": "psnr", "max_db": 60.0}).compute(teacher, ctx(GaussianModel(), teacher)) == {"psnr": 60.0}
    samples = teacher.clone()
    samples[0, 0] = float("nan")
    assert math.isnan(make_metric("psnr").compute(samples, ctx(GaussianModel(), teacher))["psnr"])


# wasserstein.


def test_w2_of_identical_sets_is_zero_and_of_a_translate_is_the_shift():
    x = np.random.default_rng(0).normal(size=(200, 2))
    assert w2_distance(x, x) == 0.0
    shift = np.array([0.3, -0.4])
    assert w2_distance(x, x + shift) == pytest.approx(0.5, abs=1e-9)
    assert w2_distance(x[::-1].copy(), x + shift) == pytest.approx(0.5, abs=1e-9)


def test_wasserstein_metric_identical_and_shifted():
    points = torch.randn(300, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    model = FixedSetModel(points)
    metric = make_metric({"name": "wasserstein", "n": 300})
    out = metric.compute(points, ctx(model))
    assert out == {"wasserstein": 0.0, "wasserstein_floor": 0.0}
    out = metric.compute((points + torch.tensor([0.6, 0.8], dtype=torch.float64)).float(), ctx(model))
    assert out["wasserstein"] == pytest.approx(1.0, abs=1e-6)  # float32 input: round-off only


def test_wasserstein_floor_and_subsampling():
    model = GaussianModel(std=0.2)
    metric = make_metric({"name": "wasserstein", "n": 400})
    good = model.sample_data(1000, torch.Generator().manual_seed(5))  # more than n: subsampled
    out = metric.compute(good, ctx(model))
    assert 0.0 < out["wasserstein_floor"] < 0.1
    assert 0.0 < out["wasserstein"] < 0.1
    bad = good + torch.tensor([0.5, 0.0])
    worse = metric.compute(bad, ctx(model))
    assert worse["wasserstein"] == pytest.approx(0.5, abs=0.05)
    assert worse["wasserstein_floor"] == out["wasserstein_floor"]  # same draws, same floor
    # Fewer samples than n: all of them are used, with data sets of the same size.
    small = metric.compute(good[:50], ctx(model))
    assert small["wasserstein_floor"] > out["wasserstein_floor"]


def test_wasserstein_deterministic_and_dtype_independent():
    model = GaussianModel()
    metric = make_metric({"name": "wasserstein", "n": 200})
    samples = torch.randn(500, 2, generator=torch.Generator().manual_seed(3)) * 0.2
    a = metric.compute(samples, ctx(model, seed=7))
    b = metric.compute(samples, ctx(model, seed=7))
    c = metric.compute(samples.double(), ctx(model, seed=7))
    d = metric.compute(samples, ctx(model, seed=8))
    assert a == b == c
    assert a != d


def test_wasserstein_non_finite_samples_give_nan():
    model = GaussianModel()
    samples = model.sample_data(100, torch.Generator().manual_seed(0))
    samples[3, 1] = float("inf")
    out = make_metric({"name": "wasserstein", "n": 100}).compute(samples, ctx(model))
    assert math.isnan(out["wasserstein"]) and out["wasserstein_floor"] > 0


def test_data_metrics_need_a_data_sampler():
    samples = torch.zeros(10, 2)
    for name in ("wasserstein", "kl"):
        with pytest.raises(UserError, match="exact data"):
            make_metric(name).compute(samples, ctx(NoDataModel()))
        with pytest.raises(UserError, match="exact data"):
            make_metric(name).compute(samples, ctx(object()))


# kl.


def test_kl_of_identical_sets_is_zero():
    points = torch.rand(1000, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 2.0 - 0.8
    model = FixedSetModel(points)
    # The reference and the floor set are permutations of the generated set: same histogram.
    out = make_metric({"name": "kl", "n_ref": 1000}).compute(points, ctx(model))
    assert out["kl"] == pytest.approx(0.0, abs=1e-12)
    assert out["kl_floor"] == pytest.approx(0.0, abs=1e-12)


def test_kl_small_for_the_same_distribution_and_large_for_a_different_one():
    model = GaussianModel(mean=(0.3, 0.3), std=0.2)
    metric = make_metric({"name": "kl", "n_ref": 20000})
    same = GaussianModel(mean=(0.3, 0.3), std=0.2).sample_data(5000, torch.Generator().manual_seed(11))
    out = metric.compute(same, ctx(model))
    assert 0.0 < out["kl_floor"] < 0.05
    assert 0.0 <= out["kl"] < 0.05
    other = GaussianModel(mean=(0.6, 0.3), std=0.2).sample_data(5000, torch.Generator().manual_seed(11))
    diff = metric.compute(other, ctx(model))
    assert diff["kl"] > 0.5  # analytic KL = 0.3^2 / (2 * 0.2^2) = 1.125, blurred by the histogram
    assert diff["kl"] > 10 * diff["kl_floor"]
    # The floor depends on the generated set's size only through its size.
    assert diff["kl_floor"] == out["kl_floor"]
    # A smaller generated set has a larger floor (the estimator's positive bias).
    assert metric.compute(same[:500], ctx(model))["kl_floor"] > out["kl_floor"]


def test_kl_histogram_clips_outside_points_into_edge_cells():
    metric = make_metric({"name": "kl", "bins": 4, "smooth": 0.0, "eps": 1e-12})
    pts = torch.tensor([[100.0, 100.0], [-100.0, 0.0], [1.5, -0.9], [0.0, 0.0]])
    h = metric.histogram(pts)
    assert h.shape == (4, 4) and h.sum() == pytest.approx(1.0)
    assert h[3, 3] == pytest.approx(0.25)  # far outside, top-right corner
    assert h[0, 1] == pytest.approx(0.25)  # x clipped to the left edge; y = 0 is in cell 1 of [-0.9, 1.5]
    assert h[3, 0] == pytest.approx(0.25)  # exactly on the upper x edge -> last cell
    assert h[1, 1] == pytest.approx(0.25)
    smoothed = make_metric({"name": "kl", "bins": 8}).histogram(pts)
    assert smoothed.sum() == pytest.approx(1.0) and (smoothed > 0).all()


def test_kl_deterministic_dtypes_and_nan():
    model = GaussianModel()
    metric = make_metric({"name": "kl", "n_ref": 5000})
    samples = model.sample_data(2000, torch.Generator().manual_seed(4))
    a = metric.compute(samples, ctx(model, seed=1))
    assert a == metric.compute(samples, ctx(model, seed=1))
    assert a == metric.compute(samples.double(), ctx(model, seed=1))
    assert a != metric.compute(samples, ctx(model, seed=2))
    bad = samples.clone()
    bad[0, 0] = float("nan")
    out = metric.compute(bad, ctx(model, seed=1))
    assert math.isnan(out["kl"]) and out["kl_floor"] == a["kl_floor"]
    with pytest.raises(ValueError, match="2-D"):
        metric.compute(torch.zeros(10, 3), ctx(model))
