"""The FID/KID reference store under the results root (bench/metrics/fid_references.py): the common lock
with concurrent writers, what `bench gc` lists, and fd-digits on the shared Frechet maths.

No Inception weights needed: a stand-in extractor makes the features (as in tests/metrics/test_fid.py).
"""
from __future__ import annotations

import copy
import hashlib
import json
import multiprocessing
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from bench.grid import parse_grid
from bench.metrics import fd_digits, feature_distances, fid_references
from bench.metrics import fid as fidmod
from bench.metrics.fid_references import ReferenceStore, load_reference, reference_path, save_reference
from bench.metrics.inception import WeightsFile
from bench.store import ResultsRoot

FAKE_SHA = hashlib.sha256(b"fake weights").hexdigest()


class SlowExtractor:
    """Stands in for InceptionFeatures: pixels / 255 as features, logging each computation to a file."""

    def __init__(self, log: Path, delay: float = 0.0):
        self.weights = WeightsFile(path=Path("/fake/inception.pt"), sha256=FAKE_SHA, source="test")
        self.log, self.delay = log, delay

    @property
    def tag(self):
        return self.weights.tag

    def _note(self, text):
        with open(self.log, "a") as f:
            f.write(f"{text} {time.time()!r}\n")

    def from_uint8(self, pixels, progress=None, desc=""):
        self._note("compute-start")
        time.sleep(self.delay)
        feats = pixels.reshape(pixels.shape[0], -1).double().numpy() / 255.0
        self._note("compute-end")
        return feats

    def from_samples(self, samples, progress=None):
        from bench.images import to_uint8

        return self.from_uint8(to_uint8(samples), progress=progress)


def _images():
    return torch.randint(0, 256, (12, 1, 2, 2), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)


def _build_and_read(root, log, delay):
    ext = SlowExtractor(Path(log), delay)
    path = fid_references.build_reference(ext, _images, "shared", (2, 2), ReferenceStore.of_root(root),
                                          source="model shared training_images()")
    mu = load_reference(path).mu
    ext._note(f"read {float(mu.sum())!r}")


def _events(log: Path) -> list[tuple[str, float]]:
    out = []
    for line in log.read_text().splitlines():
        *what, stamp = line.split(" ")
        out.append((" ".join(what), float(stamp)))
    return out


def _wait_for(log: Path, text: str, timeout: float = 60.0):
    end = time.time() + timeout
    while time.time() < end:
        if log.exists() and text in log.read_text():
            return
        time.sleep(0.02)
    raise AssertionError(f"no {text!r} in {log} after {timeout} s")


@pytest.mark.skipif(sys.platform == "win32", reason="fork start method")
def test_concurrent_writers_of_one_reference_compute_it_once(tmp_path):
    """Two processes want the same reference: the first computes it under the common lock, the second
    waits on that lock, then finds the file and reads it without computing."""
    root, log = tmp_path / "results", tmp_path / "log"
    fork = multiprocessing.get_context("fork")
    first = fork.Process(target=_build_and_read, args=(root, log, 1.5))
    first.start()
    _wait_for(log, "compute-start")  # the first writer holds the lock now
    second = fork.Process(target=_build_and_read, args=(root, log, 0.0))
    second.start()
    first.join(60)
    second.join(60)
    assert first.exitcode == 0 and second.exitcode == 0
    events = _events(log)
    assert [e for e, _ in events].count("compute-start") == 1
    reads = [(e, t) for e, t in events if e.startswith("read")]
    assert len(reads) == 2 and reads[0][0] == reads[1][0]  # both read the same statistics
    end = next(t for e, t in events if e == "compute-end")
    assert all(t >= end for _, t in reads)  # the second one waited for the first
    # The lock is the store's common one, under the root's locks folder; the file where the root keeps references.
    path = reference_path(ResultsRoot(root).references_dir(), "shared", (2, 2), f"inception-{FAKE_SHA[:12]}")
    assert path.is_file()
    assert (root / "locks" / "fid-refs" / f"{path.name}.lock").exists()
    assert not list(path.parent.glob(".*.lock"))


def _train_slowly(log, config=fd_digits.CONFIG):
    with open(log, "a") as f:
        f.write(f"train-start {time.time()!r}\n")
    time.sleep(1.0)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        net = fd_digits.DigitsMLP(tuple(config["widths"]))
    return net, 0.5


def _ensure_classifier(root, log):
    fd_digits.train_classifier = lambda config=fd_digits.CONFIG: _train_slowly(log, config)
    weights, info = fd_digits.ensure_classifier(ReferenceStore.of_root(root))
    with open(log, "a") as f:
        f.write(f"read {info['weights_sha256']} {time.time()!r}\n")


@pytest.mark.skipif(sys.platform == "win32", reason="fork start method")
def test_concurrent_first_uses_of_fd_digits_train_once(tmp_path):
    root, log = tmp_path / "results", tmp_path / "log"
    fork = multiprocessing.get_context("fork")
    procs = [fork.Process(target=_ensure_classifier, args=(root, log)) for _ in range(2)]
    procs[0].start()
    _wait_for(log, "train-start")
    procs[1].start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0, 0]
    events = _events(log)
    assert [e for e, _ in events].count("train-start") == 1
    reads = [e for e, _ in events if e.startswith("read")]
    assert len(reads) == 2 and reads[0] == reads[1]
    weights, _ = fd_digits.classifier_paths(ResultsRoot(root).references_dir())
    assert weights.is_file() and (root / "locks" / "fid-refs" / "fd-digits" / f"{weights.name}.lock").exists()


# ---------------------------------------------------------------------------- gc


def _grid_raw(metrics):
    return {"models": [{"name": "digits"}], "solvers": ["euler"], "nfe": [3], "methods": ["uniform"], "seeds": [0],
            "metrics": metrics, "teacher": {"solver": "euler", "steps": 4, "method": "edm"},
            "samples": {"train": 4, "eval": 4, "batch": 4}}


def _reference(folder, dataset, resolution, sha, source):
    path = reference_path(folder, dataset, resolution, f"inception-{sha[:12]}")
    meta = {"dataset": dataset, "resolution": list(resolution), "weights_sha256": sha, "source": source}
    return save_reference(path, np.random.default_rng(0).normal(size=(4, 3)), meta)


def test_gc_lists_references_no_current_cell_reads(tmp_path, monkeypatch, capsys):
    from bench.__main__ import main
    from bench.gc import collect, format_garbage, remove

    fake = WeightsFile(path=Path("/fake/inception.pt"), sha256=FAKE_SHA, source="test")
    monkeypatch.setattr(fidmod, "inception_weights", lambda path=None: fake)  # what the cells resolve
    root = tmp_path / "results"
    grid = parse_grid(copy.deepcopy(_grid_raw(["fid", {"name": "fid", "ref": "mine"}, "fd-digits"])), name="g")
    grid.save_copy(root)  # a grid run under the root: its cells are current
    other = hashlib.sha256(b"other weights").hexdigest()
    folder = ResultsRoot(root).references_dir()
    used = [_reference(folder, "digits", (8, 8), FAKE_SHA, "model digits training_images()"),  # ref: None
            _reference(folder, "mine", (8, 8), FAKE_SHA, "images /data/mine (4 files)")]  # ref: mine
    stale = [_reference(folder, "digits", (8, 8), other, "model digits training_images()"),  # other weights
             _reference(folder, "digits", (16, 16), FAKE_SHA, "model digits training_images()"),  # other size
             _reference(folder, "gone", (8, 8), FAKE_SHA, "model gone training_images()")]  # no cell's data set
    kept = _reference(folder, "cifar10", (32, 32), FAKE_SHA, "images /data/cifar10 (50000 files)")
    by_hand = folder / "edm-cifar10.npz"  # not named by the store's scheme: not the store's to judge
    by_hand.write_bytes(b"x")
    current, _ = fd_digits.classifier_paths(folder)
    old = folder / "fd-digits" / "classifier-000000000000.pt"
    for path in (current, current.with_suffix(".json"), old):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")

    garbage = collect(grid, root)
    assert garbage.references == sorted(stale) + [old]
    assert garbage.kept_references == [(kept, "images /data/cifar10 (50000 files)")]
    text = format_garbage(garbage)
    assert "FID/KID references no current cell reads: 4 unused, 1 kept" in text
    assert f"  kept reference {kept} (images /data/cifar10 (50000 files))" in text
    assert all(f"  reference {p}" in text for p in garbage.references)
    remove(garbage, root)
    assert not any(p.exists() for p in [*stale, old])
    assert all(p.exists() for p in [*used, kept, by_hand, current, current.with_suffix(".json")])

    # A grid without fd-digits leaves the classifier unused; the CLI prints the same listing.
    grid2 = parse_grid(copy.deepcopy(_grid_raw(["fid", {"name": "fid", "ref": "mine"}])), name="g")
    grid2.save_copy(root)
    assert collect(grid2, root).references == sorted([current, current.with_suffix(".json")])
    path = tmp_path / "g.yaml"
    path.write_text(json.dumps({"name": "g", **_grid_raw(["fid", {"name": "fid", "ref": "mine"}])}))
    assert main(["gc", "--grid", str(path), "--results", str(root)]) == 0
    out = capsys.readouterr().out
    assert f"  reference {current}" in out and f"  kept reference {kept}" in out


def test_gc_lists_no_references_of_a_root_without_fid(tmp_path):
    from bench.gc import collect

    root = tmp_path / "results"
    grid = parse_grid(copy.deepcopy(_grid_raw(["mse"])), name="g")
    assert collect(grid, root).references == []  # no references folder at all


# ---------------------------------------------------------------------------- fd-digits


def test_fd_digits_scores_with_the_shared_frechet_maths(tmp_path, monkeypatch):
    """fd-digits is the Frechet distance of `feature_distances` on its classifier's features; it does not
    need the fid plugin module."""
    from bench.metrics import MetricContext, make_metric
    from bench.models import make_model

    monkeypatch.setattr(fd_digits, "train_classifier", lambda config=fd_digits.CONFIG: _train_slowly(tmp_path / "log"))
    model = make_model("digits")
    samples = model.sample_data(40, torch.Generator().manual_seed(0))
    ctx = MetricContext(teacher=None, model=model, generator=torch.Generator().manual_seed(1), results_root=tmp_path)
    out = make_metric("fd-digits").compute(samples, ctx)
    feats = fd_digits.load_digits_features(ReferenceStore.of_root(tmp_path))
    mu, sigma = feature_distances.feature_stats(feats.feats)  # the training set's statistics
    assert np.array_equal(mu, feats.mu) and np.array_equal(sigma, feats.sigma)
    assert out["fd-digits"] == feature_distances.frechet_distance_features(feats(samples), mu, sigma)
    assert fd_digits.classifier_paths(ResultsRoot(tmp_path).references_dir())[0].is_file()
    code = "import sys, bench.metrics.fd_digits; print('bench.metrics.fid' in sys.modules)"
    found = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                           cwd=Path(__file__).resolve().parents[2])
    assert found.stdout.strip() == "False"



def test_a_reference_written_before_the_split_is_read_and_reused(tmp_path, monkeypatch):
    """The file name (key) and `.npz` layout are those the single-module fid.py wrote: a model's reference
    already under the root (with that code's lock file beside it) is used as it is, not rebuilt."""
    import io

    from bench.metrics import MetricContext, make_metric

    class Model:
        name, data_shape = "legacy", (1, 2, 2)

        def training_images(self):  # not called: the reference exists
            raise AssertionError("the existing reference was rebuilt")

    ext = SlowExtractor(tmp_path / "log")
    monkeypatch.setattr(fidmod, "get_extractor", lambda path=None, device="cpu", batch_size=50: ext)
    folder = tmp_path / "results" / "cache" / "fid-refs"
    folder.mkdir(parents=True)
    path = folder / f"legacy_clean_2x2_inception-{FAKE_SHA[:12]}.npz"
    feats = np.random.default_rng(0).random((20, 4)).astype(np.float32)  # 4 features: SlowExtractor on 2x2 pixels
    meta = {"dataset": "legacy", "source": "model legacy training_images()", "n": 20, "resolution": [2, 2],
            "mode": "clean", "weights_sha256": FAKE_SHA}
    buffer = io.BytesIO()
    np.savez(buffer, mu=feats.astype(np.float64).mean(0), sigma=np.cov(feats.astype(np.float64), rowvar=False),
             feats=feats, meta=np.array(json.dumps(meta, sort_keys=True)))
    path.write_bytes(buffer.getvalue())
    (folder / f".{path.name}.lock").write_bytes(b"")  # the former fcntl lock file
    before = path.read_bytes()
    ctx = MetricContext(teacher=None, model=Model(), generator=torch.Generator().manual_seed(0),
                        results_root=tmp_path / "results")
    samples = torch.rand(6, 1, 2, 2, generator=torch.Generator().manual_seed(1)) * 2 - 1
    out = make_metric({"name": "fid", "kid_subsets": 3, "kid_subset_size": 5}).compute(samples, ctx)
    assert np.isfinite(out["fid"]) and out["fid_weights"] == FAKE_SHA[:12]
    assert path.read_bytes() == before
    assert [line.split()[0] for line in (tmp_path / "log").read_text().splitlines()] == ["compute-start", "compute-end"]
