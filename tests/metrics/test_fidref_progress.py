"""`bench fid-ref` prints progress lines without a terminal, as `run` does (bench.fidref, bench.progress)."""
from __future__ import annotations

import argparse
import hashlib
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bench import fidref
from bench.metrics import fid as fidmod
from bench.metrics import fid_references, inception

REPO = Path(__file__).resolve().parents[2]


class BatchingExtractor:
    """Stands in for InceptionFeatures and batches as it does: features of `batch_size` images at a
    time, noting on stderr how many images have features whenever a batch is done."""

    def __init__(self, batch_size):
        sha = hashlib.sha256(b"batching").hexdigest()
        self.weights = inception.WeightsFile(path=Path("/fake/inception.pt"), sha256=sha, source="test")
        self.batch_size = batch_size
        self.done = 0

    @property
    def tag(self):
        return self.weights.tag

    def _batch(self, images):
        self.done += len(images)
        print(f"featurized {self.done}", file=sys.stderr)
        return np.stack([np.asarray(img, np.float64).reshape(-1)[:4] for img in images])

    def from_hwc(self, images, total=None, progress=None, desc=""):
        out, pending = [], []
        for img in images:
            pending.append(img)
            if len(pending) == self.batch_size:
                out.append(self._batch(pending))
                pending = []
        if pending:
            out.append(self._batch(pending))
        return np.concatenate(out)

    def from_uint8(self, pixels, progress=None, desc=""):
        return self.from_hwc(inception.iter_hwc(pixels), total=pixels.shape[0], progress=progress)


def parse(argv):
    parser = argparse.ArgumentParser()
    fidref.add_parser(parser.add_subparsers(dest="command"))
    return parser.parse_args(argv)


@pytest.mark.parametrize("source", ["array", "images"])
def test_progress_lines_count_images_with_features(monkeypatch, tmp_path, capsys, source):
    from PIL import Image

    extractor = BatchingExtractor(batch_size=4)
    monkeypatch.setattr(fidmod, "get_extractor", lambda path=None, device="cpu", batch_size=50: extractor)
    images = np.random.default_rng(0).integers(0, 256, size=(10, 8, 8)).astype(np.uint8)
    if source == "array":
        np.save(tmp_path / "data.npy", images)
        where = ["--array", str(tmp_path / "data.npy")]
    else:
        (tmp_path / "pngs").mkdir()
        for i, img in enumerate(images):
            Image.fromarray(img).save(tmp_path / "pngs" / f"{i:02d}.png")
        where = ["--images", str(tmp_path / "pngs"), "--name", "data"]
    args = parse(["fid-ref", *where, "--refs-dir", str(tmp_path / "refs"), "--batch", "4"])
    path = fidref.build(args)
    err = capsys.readouterr().err.splitlines()
    progress = [line for line in err if line.startswith("fid-ref data images: ")]
    assert [re.match(r"fid-ref data images: (\d+)/10 done", line).group(1) for line in progress] == ["4", "8", "10"]
    # each line comes after the batch that gave those images their features
    for line in progress:
        n = re.match(r"fid-ref data images: (\d+)/", line).group(1)
        assert err.index(f"featurized {n}") < err.index(line)
    assert fid_references.load_reference(path).n == 10
    # a reference that exists is reused: no feature work, no progress line
    fidref.build(args)
    assert not [line for line in capsys.readouterr().err.splitlines() if line.startswith("fid-ref data images")]
    # --quiet prints none
    fidref.build(parse(["fid-ref", *where, "--refs-dir", str(tmp_path / "refs"), "--batch", "4", "--quiet", "--force"]))
    assert not [line for line in capsys.readouterr().err.splitlines() if line.startswith("fid-ref")]


@pytest.mark.slow
def test_fid_ref_command_prints_progress_lines_in_a_log(tmp_path):
    """The real command with the real Inception, stderr a pipe (no terminal): progress lines with an ETA."""
    try:
        inception.inception_weights(None)
    except Exception as err:  # noqa: BLE001 - no weights file on this machine
        pytest.skip(f"no Inception weights: {err}")
    images = np.random.default_rng(0).integers(0, 256, size=(6, 8, 8)).astype(np.uint8)
    np.save(tmp_path / "six.npy", images)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-m", "bench", "fid-ref", "--array", str(tmp_path / "six.npy"),
                          "--refs-dir", str(tmp_path / "refs"), "--batch", "2"], cwd=REPO, env=env,
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    lines = [line for line in out.stderr.splitlines() if line.startswith("fid-ref six images: ")]
    assert [line.split(": ")[1].split(" ")[0] for line in lines] == ["2/6", "4/6", "6/6"]
    assert "ETA" in lines[0] and "elapsed" in lines[-1]
