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
path below the root) and reported by path; the run then recomputes it. Every artifact also carries
the key it was computed for (a row its cell hash, a fit its fit key, a teacher set its key, an FID
reference its data set, resolution and weights); a reader compares it with the key its location
names (`verify_key`), so a file copied or moved under another key is quarantined and recomputed, never
taken for the other's result. `read_torch` reads a torch file and turns any failure into one
`CorruptArtifact` reason a user can act on (not torch's internals).

`ResultsRoot` is the one authority on this layout and on what is done: a row is done when it reads
cleanly with its per-sample scores (`row_done`), a fit when its `fit.json` exists (`fit_done`). No
other module builds these paths or tests for these files by name.

Faults of the results root itself (a full disk, a read-only folder, a file where a folder belongs)
are not a cell's failure: every cell would fail the same way. They raise `ResultsRootError`, a
`UserError` whose one line names the path and the cause (`root_error` maps an `OSError` to it);
the sweep stops and every row already written stays.

Layout of a results root (default `results/`):
    <root>/<grid name>/rows/<cell hash>.json   one result row per cell (`bench.rows`)
    <root>/<grid name>/grid.yaml               the grid file of the latest run (report, gc)
    <root>/<grid name>/samples/<cell hash>.png a small grid of the cell's samples (image models)
    <root>/<grid name>/samples/<cell hash>.pt  its first samples and teacher endpoints (report panels)
    <root>/<grid name>/scores/<cell hash>.npz  per-sample scores of its metrics (`bench.scores`)
    <root>/<grid name>/report/                 tables and plots
    <root>/<grid name>/jobs/                   the job ledger: submission records (`bench.launch.ledger`)
    <root>/cache/teachers/<key hash>.pt        teacher endpoints
    <root>/cache/fits/<fit key hash>/          fitted methods: state.pt, fit.json (written last: the fit
                                               is done) and, while a fit runs, checkpoint.pt
    <root>/cache/fid-refs/                     FID/KID reference statistics, fd-digits classifier
    <root>/locks/                              lock files (empty; safe to delete when nothing runs)
    <root>/quarantine/                         artifacts that did not parse, kept for inspection
"""
from __future__ import annotations

import datetime
import errno
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


def key_hash(key) -> str:
    """The SHA-256 of a key's canonical JSON (as `bench.seeding.stable_hash` hashes it)."""
    from .seeding import stable_hash

    return key if isinstance(key, str) else stable_hash(key)


def verify_key(path, expected_key, found_key) -> None:
    """Raise `CorruptArtifact` unless the key an artifact carries (`found_key`) is the one its location
    names (`expected_key`); either may be a plain-value key or its hash. Every reader of a keyed
    artifact calls this, so a file copied or moved under another key is quarantined, not used."""
    expected, found = key_hash(expected_key), None if found_key is None else key_hash(found_key)
    if found != expected:
        what = "carries no key" if found is None else f"belongs to key {found[:12]}"
        raise CorruptArtifact(path, f"{what}, not to {expected[:12]} where it sits (copied or moved here)")


def read_torch(path, map_location="cpu", weights_only: bool = True):
    """`torch.load(path)`, or `CorruptArtifact` with a reason in plain words."""
    try:
        return torch.load(path, map_location=map_location, weights_only=weights_only)
    except OSError:
        raise
    except Exception:  # noqa: BLE001 - torch raises many kinds for a file it cannot read
        raise CorruptArtifact(path, "not a torch file written by bench (truncated, edited or another format)") from None


class ResultsRootError(UserError):
    """A fault of the results root (full disk, no permission, a file where a folder belongs): one line
    with the path and the cause. The sweep stops; rows already written are kept."""


_FULL = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}


def _existing(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def root_error(err: OSError, root=None) -> ResultsRootError:
    """One line for an `OSError` met under a results root: the path, the cause and what to do."""
    path = Path(err.filename) if err.filename else (Path(root) if root is not None else Path("."))
    where = Path(root) if root is not None else path
    kept = "rows written so far are kept"
    if err.errno in _FULL:
        try:
            free = shutil.disk_usage(_existing(where.absolute())).free
            free_text = f"{free} bytes free"
        except OSError:
            free_text = "free space unknown"
        return ResultsRootError(f"results root {where} is full: {free_text}; {kept}; free space (or pass "
                                "another --results) and rerun the same command")
    if err.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return ResultsRootError(f"results root {where}: cannot write {path} ({err.strerror}); {kept}; fix the "
                                "permissions or pass another --results")
    if err.errno in (errno.EEXIST, errno.ENOTDIR):
        blocker = next((p for p in [path, *path.parents] if p.exists() and not p.is_dir()), path)
        return ResultsRootError(f"results root {where}: {blocker} is a file where bench keeps a folder; remove "
                                f"it (`rm {blocker}`) and rerun")
    return ResultsRootError(f"results root {where}: {path}: {err.strerror or err}; {kept}")


def is_root_fault(err: BaseException, root, any_cause: bool = False) -> bool:
    """True for an `OSError` on a path under `root` that every cell would meet (full disk, no
    permission, read-only file system, a file where a folder belongs); with `any_cause`, for every
    `OSError` on a path under `root` (what the CLI says in one line)."""
    if isinstance(err, ResultsRootError):
        return True
    causes = _FULL | {errno.EACCES, errno.EPERM, errno.EROFS, errno.EEXIST, errno.ENOTDIR}
    if not isinstance(err, OSError) or not (any_cause or err.errno in causes):
        return False
    if not err.filename:
        return err.errno in _FULL
    try:
        Path(err.filename).absolute().relative_to(Path(root).absolute())
    except ValueError:
        return False
    return True


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
    except OSError as err:
        tmp.unlink(missing_ok=True)
        if not err.filename:  # a failed write names no file: name the target
            raise OSError(err.errno, err.strerror or str(err), str(path)) from None
        raise
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


def _dead_writer(tmp: Path) -> bool:
    """True when a temporary's writer is gone: a dead process of this host, or a name without one."""
    parts = tmp.name.rsplit(".", 4)  # [.name, host, pid, random, tmp]
    if len(parts) == 5 and parts[2].isdigit():
        if parts[1] != HOST:
            return False  # another host's writer: it may be alive
        return not _pid_alive(int(parts[2]))
    return True


def stale_temporaries(directory) -> list[Path]:
    """Temporaries left by dead writers of this host anywhere below `directory` (rows, teacher sets,
    fits, reports, job records), outside the quarantine."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    found = []
    for tmp in directory.rglob(".*.tmp"):
        if "quarantine" in tmp.relative_to(directory).parts[:1] or not tmp.is_file():
            continue
        if _dead_writer(tmp):
            found.append(tmp)
    return sorted(found)


def remove_stale_temporaries(directory: Path) -> int:
    """Delete temporaries left by dead writers of this host below `directory`; returns how many."""
    removed = 0
    for tmp in stale_temporaries(directory):
        tmp.unlink(missing_ok=True)
        removed += 1
    return removed


def orphaned_checkpoints(root) -> list[Path]:
    """`checkpoint.pt` files of finished fits (a `fit.json` beside them): a fit killed between writing
    its result and removing its checkpoint leaves one; the finished fit supersedes it."""
    results = ResultsRoot(root)
    fits = results.fits_dir()
    if not fits.is_dir():
        return []
    return sorted(results.fit_checkpoint_path(p.name) for p in fits.iterdir()
                  if results.fit_checkpoint_path(p.name).is_file() and results.fit_done(p.name))


def lock(path, timeout: float = -1) -> FileLock:
    """A lock file at `path` (created with its folder); `timeout=0` tries once, -1 waits. A file
    where the lock's folder belongs is a `ResultsRootError` saying what to remove."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError) as err:
        root = next((p.parent for p in path.parents if p.name == "locks"), None)
        raise root_error(err, root) from None
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

    def fits_dir(self) -> Path:
        return self.root / "cache" / "fits"

    def fit_dir(self, fit_hash: str) -> Path:
        return self.fits_dir() / fit_hash

    def fit_record_path(self, fit_hash: str) -> Path:
        """`fit.json`: the fit key, the fit info and the state's SHA-256; written last."""
        return self.fit_dir(fit_hash) / "fit.json"

    def fit_state_path(self, fit_hash: str) -> Path:
        return self.fit_dir(fit_hash) / "state.pt"

    def fit_checkpoint_path(self, fit_hash: str) -> Path:
        """Where `FitContext.save_checkpoint` keeps a running fit's progress (its `artifact_dir`)."""
        return self.fit_dir(fit_hash) / "checkpoint.pt"

    def fit_done(self, fit_hash: str) -> bool:
        """True when the fit finished (its `fit.json` exists); a corrupt one is found, quarantined
        and refitted when it is loaded (`bench.runner.load_fit`)."""
        return self.fit_record_path(fit_hash).exists()

    def row_files(self, grid_name: str) -> list[Path]:
        """Every row file of the grid's folder (current cells or not)."""
        return sorted(self.rows_dir(grid_name).glob("*.json"))

    def samples_dir(self, grid_name: str) -> Path:
        return self.grid_dir(grid_name) / "samples"

    def score_files(self, grid_name: str) -> list[Path]:
        return sorted((self.grid_dir(grid_name) / "scores").glob("*.npz"))

    def row_exists(self, grid_name: str, cell_hash: str) -> bool:
        """True when the cell's row file is there (a progress count; `row_done` checks it reads)."""
        return self.row_path(grid_name, cell_hash).exists()

    def read_row(self, grid_name: str, cell_hash: str) -> dict | None:
        """The cell's row (`bench.rows.read_row`), None when it has none; a row that does not read
        raises `CorruptArtifact` (or `OSError`) and stays where it is."""
        from .rows import read_row

        path = self.row_path(grid_name, cell_hash)
        return read_row(path) if path.exists() else None

    def row_readable(self, grid_name: str, cell_hash: str) -> bool:
        """True when the cell's row exists and parses (nothing is moved)."""
        from .rows import row_ok

        return row_ok(self.row_path(grid_name, cell_hash))

    def row_done(self, cell, quarantine: bool = True) -> bool:
        """True when the cell's row reads cleanly, with its per-sample scores (`bench.scores`); a
        corrupt one is quarantined (when asked) and False. A row whose scores file is missing or
        corrupt is quarantined with the file, so the cell is recomputed."""
        from .rows import read_row
        from .scores import row_scores

        path = self.row_path(cell.grid, cell.hash)
        if not path.exists():
            return False
        try:
            row = read_row(path)
        except CorruptArtifact as err:
            if quarantine:
                self.quarantine(path, err.reason)
            return False
        except OSError:
            return False
        try:
            row_scores(self, row)
        except CorruptArtifact as err:
            if quarantine:
                self.quarantine(path, f"its {err.reason}")
                if err.path.exists():
                    self.quarantine(err.path, err.reason)
            return False
        except OSError:
            return False
        return True

    def jobs_dir(self, grid_name: str) -> Path:
        """The grid's job ledger (`bench.launch.ledger`)."""
        return self.grid_dir(grid_name) / "jobs"

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

    # FID/KID reference statistics and the fd-digits classifier (bench.metrics.fid_references).
    def references_dir(self) -> Path:
        return self.root / "cache" / "fid-refs"

    def reference_files(self) -> list[Path]:
        """The statistics files (`.npz`) of `references_dir()`, sorted."""
        return sorted(self.references_dir().glob("*.npz"))

    def reference_lock(self, name: str, timeout: float = -1) -> FileLock:
        """The lock of one file of `references_dir()`, by its path relative to that folder."""
        return lock(self.lock_path("fid-refs", name), timeout)

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
    if not str(root).strip():
        raise UserError("--results is empty; pass a folder for the results root, e.g. --results results")
    root = Path(root)
    for parent in [root, *root.parents]:
        if parent.exists():
            if not parent.is_dir():
                raise UserError(f"--results: {parent} is a file, not a folder; pass a folder for the results root")
            break
    try:
        root.mkdir(parents=True, exist_ok=True)
        probe = root / f".write-probe.{HOST}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as err:
        if err.errno in _FULL:
            raise root_error(err, root) from None
        raise UserError(f"--results: cannot write to {root} ({err.strerror}); pass a writable folder") from None


__all__ = ["CorruptArtifact", "ResultsRoot", "ResultsRootError", "Timeout", "atomic_write_bytes",
           "atomic_write_json", "atomic_write_torch", "check_writable", "is_root_fault", "key_hash", "lock",
           "orphaned_checkpoints", "read_json", "read_torch", "remove_stale_temporaries", "root_error",
           "stale_temporaries", "verify_key"]
