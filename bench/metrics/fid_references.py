"""The store of FID/KID reference statistics: one `.npz` per (data set, resolution, Inception weights).

A reference holds clean-fid's statistics of a reference image set: the mean and covariance of its
"clean" Inception features (float64; `bench.metrics.inception`, `bench.metrics.feature_distances`)
and the features themselves (float32, for KID), with a JSON `meta` entry (dataset, source, count,
resolution, mode, weights hash and path). Its file name is its key:
    <references folder>/<dataset>_clean_<H>x<W>_inception-<first 12 hex digits of the weights' SHA-256>.npz
<H>x<W> is the resolution of the reference images, which must equal the samples'. A file named by
that scheme must hold the statistics its name says (`verify_reference_key`); one that holds another
key's is quarantined (`bench.store.ResultsRoot.quarantine`) and, for a model's own training set,
rebuilt.

The folder (`ReferenceStore`) belongs to a results root: `ResultsRoot.references_dir()` of the
runner's root (`MetricContext.results_root`) or of `bench fid-ref --results`, and of the default
root `results` where no root is given (`bench.store.ResultsRoot`). A folder given by hand (the
metric parameter `refs_dir`, `fid-ref --refs-dir`) is used as it is. The fd-digits classifier
(`bench.metrics.fd_digits`) is kept in the same folder.

A reference is built once: under the common lock (`bench.store.lock`, a `filelock.FileLock`; for a
root's folder `ResultsRoot.reference_lock`, in `<root>/locks/fid-refs/`, else beside the file), the
first writer computes it and writes it atomically, a concurrent writer waits, then finds and reads it.
References are cached per process while their file is unchanged.

The references a grid uses: the metric parameter `ref` picks one -- None (default) = the model's own
training set, built automatically on first use for models with `training_images()` (data set name:
the model's `reference_dataset`, else its name); a data set name built with `python -m bench fid-ref
--name NAME`; or a path to a `.npz`. `unused_references` tells `bench gc` which files of a root's
folder no current cell reads.
"""
from __future__ import annotations

import functools
import io
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .. import __version__
from ..errors import UserError
from ..images import to_uint8
from ..store import CorruptArtifact, ResultsRoot, atomic_write_bytes, lock, verify_key
from .feature_distances import feature_stats, frechet_distance_features, psd_sqrt
from .inception import HASH_LEN, MODE, InceptionFeatures, check_image_batch

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_FILE_RE = re.compile(rf"^(?P<dataset>.+)_{MODE}_(?P<h>\d+)x(?P<w>\d+)_inception-(?P<weights>[0-9a-f]{{{HASH_LEN}}})\.npz$")


# ---------------------------------------------------------------------------- the folder


@dataclass(frozen=True)
class ReferenceStore:
    """A folder of reference statistics; `root` is the results root it belongs to (None: a folder given by hand)."""

    folder: Path
    root: ResultsRoot | None = field(default=None, compare=False)

    @classmethod
    def of_root(cls, root=None) -> "ReferenceStore":
        """The references of a results root (a path or a `ResultsRoot`; None: the default root)."""
        results = root if isinstance(root, ResultsRoot) else ResultsRoot() if root is None else ResultsRoot(root)
        return cls(results.references_dir(), results)

    @classmethod
    def of_folder(cls, folder) -> "ReferenceStore":
        """A folder given by path; recognised as a results root's own references folder when it is one."""
        folder = Path(folder).expanduser()
        for parent in folder.parents:
            results = ResultsRoot(parent)
            if results.references_dir() == folder:
                return cls(folder, results)
        return cls(folder)

    @classmethod
    def for_metric(cls, refs_dir=None, ctx=None) -> "ReferenceStore":
        """A metric's folder: its parameter `refs_dir` if given, else its results root's (module docstring)."""
        if refs_dir:
            return cls.of_folder(refs_dir)
        return cls.of_root(getattr(ctx, "results_root", None) if ctx is not None else None)

    def path(self, dataset: str, resolution: tuple[int, int], tag: str) -> Path:
        return reference_path(self.folder, dataset, resolution, tag)

    def lock(self, path):
        """The common lock of one file of this folder (`bench.store.lock`)."""
        path = Path(path)
        if self.root is not None:
            try:
                return self.root.reference_lock(path.relative_to(self.folder).as_posix())
            except ValueError:
                pass
        return lock(path.with_name(f".{path.name}.lock"))

    def quarantine(self, path, reason: str) -> None:
        """Set a file that holds another key aside, when the folder is a results root's."""
        if self.root is not None:
            self.root.quarantine(path, reason)


def _store(refs_dir) -> ReferenceStore:
    return refs_dir if isinstance(refs_dir, ReferenceStore) else ReferenceStore.of_folder(refs_dir)


def refs_dir_for(refs_dir=None, ctx=None) -> Path:
    """The folder of reference statistics a metric with parameter `refs_dir` uses under `ctx` (module docstring)."""
    return ReferenceStore.for_metric(refs_dir, ctx).folder


# ---------------------------------------------------------------------------- one reference


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


def check_dataset_name(name: str) -> str:
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise UserError(f"reference dataset name {name!r} must be letters, digits, '.', '_' or '-' "
                        f"(starting with a letter or digit)")
    return name


def reference_path(refs_dir, dataset: str, resolution: tuple[int, int], tag: str) -> Path:
    h, w = resolution
    folder = refs_dir.folder if isinstance(refs_dir, ReferenceStore) else Path(refs_dir)
    return folder / f"{check_dataset_name(dataset)}_{MODE}_{int(h)}x{int(w)}_{tag}.npz"


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
        ReferenceStore.of_folder(path.parent).quarantine(path, err.reason)
        _REFERENCES.pop(str(path), None)
        raise UserError(f"FID reference {path} {err.reason}; rebuild it with `python -m bench fid-ref` "
                        f"(a model's own reference is rebuilt by the next run)") from None
    _REFERENCES[str(path)] = (mtime, ref)
    return ref


def verify_reference_key(path, meta: dict) -> None:
    """A reference's key is its file name (data set, mode, resolution, Inception weights): a file named
    by that scheme must hold the statistics its name says (`CorruptArtifact` if it holds another's)."""
    path = Path(path)
    if not _FILE_RE.fullmatch(path.name):
        return  # a reference file the user named: nothing to compare
    try:
        found = reference_path(path.parent, meta["dataset"], tuple(meta["resolution"]),
                               f"inception-{str(meta['weights_sha256'])[:HASH_LEN]}").name
    except (KeyError, TypeError, ValueError, UserError):
        found = None
    verify_key(path, path.name, found)


def read_meta(path) -> dict | None:
    """The `meta` entry of a reference file, or None where it does not read."""
    try:
        with np.load(path, allow_pickle=False) as data:
            return json.loads(str(data["meta"]))
    except (KeyError, ValueError, OSError):
        return None


# ---------------------------------------------------------------------------- building


def build_reference(extractor: InceptionFeatures, images, dataset: str, resolution: tuple[int, int], refs_dir,
                    source: str, total: int | None = None, force: bool = False, progress: bool | None = None) -> Path:
    """Compute and store the reference of `images` (uint8 [N, C, H, W], or an iterable of [H, W, 3] uint8
    arrays, or a callable returning either) once; returns its path (existing files are reused unless force).
    `refs_dir` is a `ReferenceStore` or a folder. Concurrent writers of one reference: one computes, the
    others wait on its lock and then reuse the file."""
    store = _store(refs_dir)
    path = store.path(dataset, resolution, extractor.tag)
    with store.lock(path):
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


def model_dataset(model) -> str:
    """The data set name of a model's own reference: its `reference_dataset` (checkpoint adapters, whose one
    model name covers many data sets), else its name."""
    return getattr(model, "reference_dataset", None) or getattr(model, "name", None) or type(model).__name__.lower()


def ensure_model_reference(model, extractor: InceptionFeatures, refs_dir, progress=None) -> Path:
    """The reference of a model's training set, built on first use."""
    dataset = model_dataset(model)
    shape = tuple(getattr(model, "data_shape", ()))
    if len(shape) != 3:
        raise UserError(f"model {dataset!r} does not produce images (data shape {shape}); FID needs images")
    resolution = shape[1:]
    store = _store(refs_dir)
    path = store.path(dataset, resolution, extractor.tag)
    if path.exists():
        try:
            load_reference(path)
            return path
        except UserError:  # another key's statistics (now quarantined) or an unreadable file: rebuild
            if path.exists():
                raise
    return build_reference(extractor, lambda: model_reference_pixels(model), dataset, resolution, store,
                           source=f"model {dataset} training_images()", progress=progress)


# ---------------------------------------------------------------------------- what gc sees


@dataclass
class UnusedReferences:
    """Files of a root's references folder that no current cell reads. `removable`: what the harness rebuilds
    by itself on first use (a model's training-set reference, the fd-digits classifier); `kept`: references
    built by `fid-ref` from the user's images, listed with their source but never removed by `bench gc`."""

    removable: list[Path] = field(default_factory=list)
    kept: list[tuple[Path, str]] = field(default_factory=list)


def _used_patterns(grids, store: ReferenceStore):
    """(set of (dataset, resolution or None, weights short hash or None) that cells read, set of explicit paths,
    whether any cell uses fd-digits in this folder); None when a model of a cell cannot be built here."""
    from ..models.base import make_model

    models: dict[str, object] = {}
    patterns, paths, fd_digits = set(), set(), False
    folder = store.folder.resolve()
    for grid in grids:
        for cell in grid.cells:
            for spec in cell.resolved.get("metrics", []):
                name = spec.get("name")
                if name not in ("fid", "fd-digits"):
                    continue
                if spec.get("refs_dir") and ReferenceStore.of_folder(spec["refs_dir"]).folder.resolve() != folder:
                    continue
                if name == "fd-digits":
                    fd_digits = True
                    continue
                ref = spec.get("ref")
                if ref and ref.endswith(".npz"):
                    paths.add(Path(ref).expanduser().resolve())
                    continue
                key = json.dumps({k: v for k, v in cell.model.items() if k != "label"}, sort_keys=True, default=str)
                if key not in models:
                    try:
                        models[key] = make_model(json.loads(key))
                    except (UserError, ValueError, OSError):
                        models[key] = None
                model = models[key]
                if model is None:
                    return None
                shape = tuple(getattr(model, "data_shape", ()))
                resolution = tuple(int(x) for x in shape[1:]) if len(shape) == 3 else None
                weights = spec.get("inception_sha256")
                patterns.add((ref or model_dataset(model), resolution, weights[:HASH_LEN] if weights else None))
    return patterns, paths, fd_digits


def unused_references(root, grids) -> UnusedReferences:
    """What of `<root>`'s references folder no current cell of `grids` (the grids run under the root) reads:
    references of other data sets, resolutions or Inception weights, and fd-digits classifiers of another
    configuration (or every one when no cell uses fd-digits). Files not named by the scheme are left alone.
    Nothing is listed when a cell's model cannot be built on this machine (its data set is then unknown)."""
    from .fd_digits import classifier_paths

    store = ReferenceStore.of_root(root)
    out = UnusedReferences()
    if not store.folder.is_dir():
        return out
    used = _used_patterns(grids, store)
    if used is None:
        return out
    patterns, paths, fd_digits = used
    for path in store.root.reference_files():
        match = _FILE_RE.fullmatch(path.name)
        if match is None or path.resolve() in paths:
            continue
        dataset, resolution = match["dataset"], (int(match["h"]), int(match["w"]))
        if any(d == dataset and r in (None, resolution) and w in (None, match["weights"]) for d, r, w in patterns):
            continue
        source = str((read_meta(path) or {}).get("source", ""))
        if source.startswith("model "):
            out.removable.append(path)
        else:
            out.kept.append((path, source or "unknown source"))
    current = {p.resolve() for p in classifier_paths(store.folder)} if fd_digits else set()
    out.removable += sorted(p for p in (store.folder / "fd-digits").glob("classifier-*")
                            if p.suffix in (".pt", ".json") and p.resolve() not in current)
    return out


__all__ = [
    "Reference", "ReferenceStore", "UnusedReferences", "build_reference", "check_dataset_name",
    "ensure_model_reference", "load_reference", "model_dataset", "model_reference_pixels", "read_meta",
    "reference_path", "refs_dir_for", "save_reference", "unused_references", "verify_reference_key",
]
