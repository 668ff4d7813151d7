"""Files on disk: atomic writes and the layout of a results root.

Everything the harness writes goes through `atomic_write_*`: the content is written to a hidden
temporary file in the same directory and renamed over the target, so a reader (or a rerun after a
crash or a kill) sees either the whole file or none of it.

Layout of a results root (default `results/`):
    <root>/<grid name>/rows/<cell hash>.json   one result row per cell
    <root>/<grid name>/samples/<cell hash>.png a small grid of the cell's samples (image models)
    <root>/<grid name>/report/                 tables and plots
    <root>/cache/teachers/<key hash>.pt        teacher endpoints
    <root>/cache/fits/<fit key hash>/          fitted methods: state.pt and fit.json
    <root>/cache/fid-refs/                     FID/KID reference statistics, fd-digits classifier
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import torch


def _atomic(path: Path, write) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def atomic_write_json(path, value) -> Path:
    data = json.dumps(value, indent=1, sort_keys=True, default=str).encode()
    return _atomic(path, lambda f: f.write(data))


def atomic_write_torch(path, value) -> Path:
    return _atomic(path, lambda f: torch.save(value, f))


def atomic_write_bytes(path, data: bytes) -> Path:
    return _atomic(path, lambda f: f.write(data))


def read_json(path):
    with open(path) as f:
        return json.load(f)


def remove_stale_temporaries(directory: Path) -> int:
    """Delete temporaries left by a killed writer; returns how many were removed."""
    removed = 0
    if Path(directory).is_dir():
        for tmp in Path(directory).glob(".*.tmp"):
            tmp.unlink(missing_ok=True)
            removed += 1
    return removed


class ResultsRoot:
    def __init__(self, root="results"):
        self.root = Path(root)

    def grid_dir(self, grid_name: str) -> Path:
        return self.root / grid_name

    def rows_dir(self, grid_name: str) -> Path:
        return self.grid_dir(grid_name) / "rows"

    def row_path(self, grid_name: str, cell_hash: str) -> Path:
        return self.rows_dir(grid_name) / f"{cell_hash}.json"

    def samples_path(self, grid_name: str, cell_hash: str) -> Path:
        return self.grid_dir(grid_name) / "samples" / f"{cell_hash}.png"

    def teacher_path(self, key_hash: str) -> Path:
        return self.root / "cache" / "teachers" / f"{key_hash}.pt"

    def fit_dir(self, fit_hash: str) -> Path:
        return self.root / "cache" / "fits" / fit_hash

    def report_dir(self, grid_name: str) -> Path:
        return self.grid_dir(grid_name) / "report"
