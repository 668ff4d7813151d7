"""Content hashes of the files a model or metric loads, so that cache keys follow the bytes, not the path.

`content_sha256(path)` is the SHA-256 of a file, or of a folder (every file below it, by relative
path and content, in sorted order). A hash is computed once per (path, size, mtime) and kept in
memory and in a small JSON file (`$BENCH_HASH_CACHE`, default `~/.cache/bench/file-hashes.json`), so
a multi-gigabyte checkpoint is read once per machine, not once per run. Overwriting a file changes its
size or mtime, so its hash is computed again; the cache never trusts a stale entry.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

_MEMORY: dict[str, str] = {}


def _cache_file() -> Path:
    return Path(os.environ.get("BENCH_HASH_CACHE") or Path.home() / ".cache" / "bench" / "file-hashes.json")


def _signature(path: Path) -> str:
    stat = path.stat()
    return f"{path}|{stat.st_size}|{stat.st_mtime_ns}"


def sha256_of_file(path) -> str:
    """SHA-256 of a file's bytes, read now (no cache)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _load_disk() -> dict:
    try:
        return json.loads(_cache_file().read_text())
    except (OSError, ValueError):
        return {}


def _store_disk(key: str, value: str) -> None:
    from .store import atomic_write_json  # store imports torch; keep this module light

    path = _cache_file()
    try:
        entries = _load_disk()
        entries[key] = value
        atomic_write_json(path, entries)
    except OSError:
        pass  # an unwritable cache costs time, never correctness


def file_sha256(path) -> str:
    """SHA-256 of one file, cached by (path, size, mtime)."""
    path = Path(path).expanduser().resolve()
    key = _signature(path)
    if key not in _MEMORY:
        disk = _load_disk().get(key)
        _MEMORY[key] = disk or sha256_of_file(path)
        if disk is None:
            _store_disk(key, _MEMORY[key])
    return _MEMORY[key]


def content_sha256(path) -> str:
    """SHA-256 of a file, or of a folder's files (relative path + file hash, sorted)."""
    path = Path(path).expanduser().resolve()
    if path.is_file():
        return file_sha256(path)
    digest = hashlib.sha256()
    for sub in sorted(p for p in path.rglob("*") if p.is_file()):
        digest.update(f"{sub.relative_to(path).as_posix()}\0{file_sha256(sub)}\n".encode())
    return digest.hexdigest()


__all__ = ["content_sha256", "file_sha256", "sha256_of_file"]
