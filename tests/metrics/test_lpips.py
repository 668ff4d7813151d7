"""Tests of LPIPS (bench/metrics/lpips.py): the loss function and the `lpips` metric.

Offline: the network is built with a randomly initialised trunk (`pnet_rand=True`, no torchvision
download) and lpips' own linear layers, which ship inside the lpips wheel; that tests the plumbing
(shapes, channels, upsampling, gradients, batching, errors), not the values of the real metric. A
test with the real ImageNet trunk runs only when torchvision's weight file is in torch.hub's cache.
"""
from __future__ import annotations

import pytest
import torch

from bench.errors import UserError
from bench.metrics import MetricContext, make_metric
from bench.metrics import lpips as lp


def images(n=4, c=1, h=8, w=8, seed=0):
    return torch.rand(n, c, h, w, generator=torch.Generator().manual_seed(seed)) * 2 - 1


@pytest.fixture(scope="module")
def alex_rand():
    return lp.load_lpips("alex", pnet_rand=True)


def test_loss_shapes_zero_and_gradient(alex_rand):
    x = images().requires_grad_(True)
    y = images(seed=1)
    d = alex_rand(x, y)
    assert d.shape == (4,) and bool((d > 0).all()) and bool(torch.isfinite(d).all())
    d.sum().backward()
    assert x.grad is not None and bool(torch.isfinite(x.grad).all()) and x.grad.abs().sum() > 0
    assert torch.equal(alex_rand(y, y), torch.zeros(4))
    assert not any(p.requires_grad for p in alex_rand.parameters())  # frozen network


def test_one_channel_is_repeated_and_dtypes_are_cast(alex_rand):
    x, y = images(), images(seed=1)
    gray = alex_rand(x, y)
    rgb = alex_rand(x.expand(-1, 3, -1, -1), y.expand(-1, 3, -1, -1))
    assert torch.allclose(gray, rgb)
    assert torch.allclose(alex_rand(x.double(), y.double()), gray)


def test_random_trunk_is_reproducible(alex_rand):
    other = lp.LPIPSDistance("alex", pnet_rand=True)  # a fresh build, not the cached one
    x, y = images(), images(seed=1)
    assert torch.equal(other(x, y), alex_rand(x, y))
    assert lp.load_lpips("alex", pnet_rand=True) is alex_rand  # cached per process


def test_small_images_are_upsampled_bilinearly_to_64():
    assert lp.prepare_images(images(h=8, w=8)).shape == (4, 3, 64, 64)
    assert lp.prepare_images(images(c=3, h=8, w=16)).shape == (4, 3, 64, 128)
    big = images(c=3, h=64, w=96)
    assert lp.prepare_images(big) is big
    # Bilinear: a constant image stays constant; the upsampled image is smooth (no 8x8 blocks).
    const = torch.full((1, 1, 8, 8), 0.25)
    assert torch.allclose(lp.prepare_images(const), torch.full((1, 3, 64, 64), 0.25))
    up = lp.prepare_images(images(n=1))
    assert up[0, 0, 0, 0] != up[0, 0, 0, 3] or up[0, 0, 0, 4] != up[0, 0, 0, 7]
    with pytest.raises(ValueError):
        lp.prepare_images(torch.zeros(4, 2))


def test_missing_backbone_gives_the_promised_message(monkeypatch, tmp_path):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    import lpips

    def no_download(*args, **kwargs):
        raise AssertionError("lpips.LPIPS must not be reached: it would try to download")

    monkeypatch.setattr(lpips, "LPIPS", no_download)
    for net, name in (("alex", "alexnet-owt-7be5be79.pth"), ("vgg", "vgg16-397923af.pth")):
        with pytest.raises(UserError) as err:
            lp.LPIPSDistance(net)
        assert name in str(err.value) and str(tmp_path / "hub" / "checkpoints") in str(err.value)
    with pytest.raises(UserError, match="net"):
        lp.LPIPSDistance("squeeze")


def test_linear_layers_ship_with_lpips():
    for net in lp.NETS:
        assert lp.linear_layers_file(net).is_file()


def test_lpips_metric(monkeypatch, alex_rand):
    seen = []

    def fake_load(net="alex", pretrained=True, device="cpu", pnet_rand=False):
        seen.append(net)
        return alex_rand

    monkeypatch.setattr(lp, "load_lpips", fake_load)
    metric = make_metric({"name": "lpips", "batch": 3})
    assert metric.needs_teacher and not metric.higher_is_better
    x, teacher = images(n=7), images(n=7, seed=1)
    ctx = MetricContext(teacher=teacher, model=None, generator=torch.Generator().manual_seed(0))
    out = metric.compute(x, ctx)
    assert set(out) == {"lpips"} and seen == ["alex"]
    with torch.no_grad():
        expected = alex_rand(x, teacher).double().mean().item()
    assert out["lpips"] == pytest.approx(expected, rel=1e-5)
    # Samples are clamped to [-1, 1] before scoring.
    with torch.no_grad():
        clamped = alex_rand((x * 3).clamp(-1, 1), teacher).double().mean().item()
    assert metric.compute(x * 3, ctx)["lpips"] == pytest.approx(clamped, rel=1e-5)
    bad = x.clone()
    bad[0, 0, 0, 0] = float("inf")
    assert torch.isnan(torch.tensor(metric.compute(bad, ctx)["lpips"]))
    with pytest.raises(UserError):
        make_metric({"name": "lpips", "net": "squeeze"})
    toy = MetricContext(teacher=torch.zeros(5, 2), model=None, generator=torch.Generator())
    with pytest.raises(UserError, match="images"):
        metric.compute(torch.zeros(5, 2), toy)


@pytest.mark.slow
def test_vgg_with_random_trunk():
    fn = lp.load_lpips("vgg", pnet_rand=True)
    x = images(c=3).requires_grad_(True)
    d = fn(x, images(c=3, seed=1))
    d.sum().backward()
    assert d.shape == (4,) and bool((d > 0).all()) and x.grad.abs().sum() > 0


@pytest.mark.skipif(not lp.backbone_file("alex").is_file(), reason="torchvision's AlexNet weights are not cached")
def test_real_alexnet_matches_lpips_directly():
    import lpips

    ours = lp.load_lpips("alex")
    theirs = lpips.LPIPS(net="alex", verbose=False)
    x, y = images(c=3, h=64, w=64), images(c=3, h=64, w=64, seed=1)
    with torch.no_grad():
        assert torch.allclose(ours(x, y), theirs(x, y).reshape(-1), atol=1e-6)
