"""Files on disk: atomic writes, locks, quarantine, and the layout of a results root.

Everything the harness writes goes through `atomic_write_*`: the content is written to a hidden
temporary file in the same directory and renamed over the target, so a reader (or a rerun after a
crash or a kill) sees either the whole file or none of it. A temporary's name carries its writer's
host and pid (`.<name>.<host>.<pid>.<random>.tmp`), so a run removes only the temporaries of dead
writers on its own host, never those of a live process. Files get the permissions of the process
umask, like any file the user creates (a results root shared by a group stays readable).

One writer per cell, fit and teacher set: `lock(path)` is a `filelock.FileLock` (an OS-level lock,
released by the kernel when its holder dies, so a killed run never leaves a stale lock).

An artifact that does not parse, or fails its checksum, is moved to `<root>/quarantine/` (keeping its
path below the root) and reported by path; the run then recomputes it.

Layout of a results root (default `results/`):
    <root>/<grid name>/rows/<cell hash>.json   one result row per cell (`bench.rows`)
    <root>/<grid name>/grid.yaml               the grid file of the latest run (report, gc)
    <root>/<grid name>/samples/<cell hash>.png a small grid of the cell's samples (image models)
    <root>/<grid name>/samples/<cell hash>.pt  its first samples and teacher endpoints (report panels)
    <root>/<grid name>/scores/<cell hash>.npz  per-sample scores of its metrics (`bench.scores`)
    <root>/<grid name>/report/                 tables and plots
    <root>/<grid name>/jobs/                   submission records and failures (`bench.status`)
    <root>/cache/teachers/<key hash>.pt        teacher endpoints
    <root>/cache/fits/<fit key hash>/          fitted methods: state.pt and fit.json
    <root>/cache/fid-refs/                     FID/KID reference statistics, fd-digits classifier
    <root>/locks/                              lock files (empty; safe to delete when nothing runs)
    <root>/quarantine/                         artifacts that did not parse, kept for inspection
"""
from __future__ import annotations

import datetime
import json
import os
import secrets
import shutil
import socket
import sys
from pathlib import Path

import torch
from filelock import FileLock, Timeout

from .errors import UserError

HOST = socket.gethostname().replace(".", "-")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


UMASK = _umask()


class CorruptArtifact(Exception):
    """A file that exists but does not parse or fails its check; `path` names it."""

    def __init__(self, path, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path = Path(path)
        self.reason = reason


def _atomic(path: Path, write) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.{HOST}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~UMASK)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
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


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_temporaries(directory: Path) -> int:
    """Delete temporaries left by dead writers of this host; returns how many were removed."""
    removed = 0
    if Path(directory).is_dir():
        for tmp in Path(directory).glob(".*.tmp"):
            parts = tmp.name.rsplit(".", 4)  # [.name, host, pid, random, tmp]
            if len(parts) == 5 and parts[1] == HOST and parts[2].isdigit() and _pid_alive(int(parts[2])):
                continue
            if len(parts) == 5 and parts[1] != HOST and parts[2].isdigit():
                continue  # another host's writer: it may be alive
            tmp.unlink(missing_ok=True)
            removed += 1
    return removed


def lock(path, timeout: float = -1) -> FileLock:
    """A lock file at `path` (created with its folder); `timeout=0` tries once, -1 waits."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return FileLock(str(path), timeout=timeout, mode=0o666 & ~UMASK)


class ResultsRoot:
    def __init__(self, root="results"):
        self.root = Path(root)

    def grid_dir(self, grid_name: str) -> Path:
        return self.root / grid_name

    def rows_dir(self, grid_name: str) -> Path:
        return self.grid_dir(grid_name) / "rows"

    def row_path(self, grid_name: str, cell_hash: str) -> Path:
        return self.rows_dir(grid_name) / f"{cell_hash}.json"

    def grid_copy_path(self, grid_name: str) -> Path:
        return self.grid_dir(grid_name) / "grid.yaml"

    def samples_path(self, grid_name: str, cell_hash: str) -> Path:
        return self.grid_dir(grid_name) / "samples" / f"{cell_hash}.png"

    def preview_path(self, grid_name: str, cell_hash: str) -> Path:
        return self.grid_dir(grid_name) / "samples" / f"{cell_hash}.pt"

    def scores_path(self, grid_name: str, cell_hash: str) -> Path:
        return self.grid_dir(grid_name) / "scores" / f"{cell_hash}.npz"

    def teacher_path(self, key_hash: str) -> Path:
        return self.root / "cache" / "teachers" / f"{key_hash}.pt"

    def fit_dir(self, fit_hash: str) -> Path:
        return self.root / "cache" / "fits" / fit_hash

    def report_dir(self, grid_name: str) -> Path:
        return self.grid_dir(grid_name) / "report"

    def lock_path(self, kind: str, key: str) -> Path:
        return self.root / "locks" / kind / f"{key}.lock"

    def cell_lock(self, grid_name: str, cell_hash: str, timeout: float = -1) -> FileLock:
        return lock(self.lock_path(f"cells-{grid_name}", cell_hash), timeout)

    def fit_lock(self, fit_hash: str, timeout: float = -1) -> FileLock:
        return lock(self.lock_path("fits", fit_hash), timeout)

    def teacher_lock(self, key_hash: str) -> FileLock:
        return lock(self.lock_path("teachers", key_hash))

    def quarantine(self, path, reason: str) -> Path | None:
        """Move a corrupt artifact (file or folder) to <root>/quarantine/, say so on stderr; returns
        where it went (None if it vanished meanwhile)."""
        path = Path(path)
        try:
            rel = path.resolve().relative_to(self.root.resolve())
        except ValueError:
            rel = Path(path.name)
        stamp = datetime.datetime.now().strftime("%Y%m%dT%H%M%S")
        target = self.root / "quarantine" / rel.parent / f"{rel.name}.{stamp}.{secrets.token_hex(2)}"
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            shutil.move(str(path), str(target))
        except FileNotFoundError:
            return None
        print(f"bench: {path} is corrupt ({reason}); moved to {target} and recomputing", file=sys.stderr)
        return target


def check_writable(root) -> None:
    """Raise one UserError unless `root` is (or can be made) a writable folder."""
    root = Path(root)
    for parent in [root, *root.parents]:
        if parent.exists():
            if not parent.is_dir():
                raise UserError(f"--results: {parent} is a file, not a folder; pass a folder for the results root")
            break
    try:
        root.mkdir(parents=True, exist_ok=True)
        probe = root / f".write-probe.{HOST}.{os.getpid()}.tmp"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as err:
        raise UserError(f"--results: cannot write to {root} ({err.strerror}); pass a writable folder") from None


__all__ = ["CorruptArtifact", "ResultsRoot", "Timeout", "atomic_write_bytes", "atomic_write_json",
           "atomic_write_torch", "check_writable", "lock", "read_json", "remove_stale_temporaries"]
