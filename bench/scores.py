"""Per-sample scores: the file beside a row that keeps every per-sample value of its metrics.

A metric that is a mean over samples (`mse`, `psnr`, `lpips`: `Metric.compute_per_sample`) hands the
runner its per-sample values; they are written to `<root>/<grid>/scores/<cell hash>.npz` (numpy's
uncompressed npz, float64, one array per metric column, in the order of the evaluation priors, so
two rows of the same model, seed and evaluation priors are paired sample by sample), with the
cell's hash stored inside under `cell`. The file's SHA-256 goes into the row (`scores_sha256`), so
the row's checksum covers it.

Reading (`row_scores`) checks, in order: the file exists, its SHA-256 is the row's, it parses as an
npz without pickles, the hash it carries is the cell it sits under (`bench.store.verify_key`), and it holds one
finite-length float64 vector per column of equal length. Any failure raises `CorruptArtifact`; the
runner then quarantines the row and the file (the next run recomputes the cell) and the report
leaves the row out, so a wrong interval is never printed. Rows written before per-sample scores
were kept have no `scores_sha256`: `row_scores` returns None and the report tables them without
intervals, saying so.
"""
from __future__ import annotations

import hashlib
import io
import zipfile
from pathlib import Path

import numpy as np

from .store import CorruptArtifact, atomic_write_bytes, verify_key

KEY = "cell"  # the array holding the cell hash the file belongs to


def encode_scores(cell_hash: str, per_sample: dict) -> bytes:
    """The npz bytes of `per_sample` ({column: vector}) with the cell's hash."""
    arrays = {f"score:{name}": np.ascontiguousarray(np.asarray(values, dtype=np.float64).reshape(-1))
              for name, values in sorted(per_sample.items())}
    lengths = {len(v) for v in arrays.values()}
    if len(lengths) > 1:
        raise ValueError(f"per-sample scores of different lengths: {sorted(lengths)}")
    buffer = io.BytesIO()
    np.savez(buffer, **{KEY: np.array(cell_hash)}, **arrays)
    return buffer.getvalue()


def write_scores(path, cell_hash: str, per_sample: dict) -> str:
    """Write the per-sample scores atomically; returns the file's SHA-256 (for the row)."""
    data = encode_scores(cell_hash, per_sample)
    atomic_write_bytes(path, data)
    return hashlib.sha256(data).hexdigest()


def read_scores(path, cell_hash: str, sha256: str) -> dict[str, np.ndarray]:
    """{column: float64 vector} of the file at `path`, checked against the row's `sha256` and the
    cell hash; `CorruptArtifact` when it is missing, altered, unreadable or another cell's."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise CorruptArtifact(path, "per-sample scores missing") from None
    if hashlib.sha256(data).hexdigest() != sha256:
        raise CorruptArtifact(path, "per-sample scores fail the row's checksum")
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            arrays = {name: npz[name] for name in npz.files}
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as err:
        raise CorruptArtifact(path, f"per-sample scores do not parse ({err})") from None
    stored = arrays.pop(KEY, None)
    verify_key(path, cell_hash, None if stored is None else str(stored))
    out = {}
    for name, values in arrays.items():
        if not name.startswith("score:") or values.dtype != np.float64 or values.ndim != 1:
            raise CorruptArtifact(path, f"unexpected array {name!r} in per-sample scores")
        out[name[len("score:"):]] = values
    if len({len(v) for v in out.values()}) > 1:
        raise CorruptArtifact(path, "per-sample scores of different lengths")
    return out


def row_scores(root, row: dict) -> dict[str, np.ndarray] | None:
    """The per-sample scores of a row (None for a row written before they were kept)."""
    from .store import ResultsRoot

    sha = row.get("scores_sha256")
    if sha is None:
        return None
    results = root if isinstance(root, ResultsRoot) else ResultsRoot(root)
    return read_scores(results.scores_path(row["grid"], row["cell"]), row["cell"], sha)


__all__ = ["encode_scores", "read_scores", "row_scores", "write_scores"]
