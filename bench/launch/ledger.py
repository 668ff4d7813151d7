"""The job ledger: one record per `bench run` submission, written by every executor alike.

A record lives in `<results>/<grid>/jobs/<id>/` (`ResultsRoot.jobs_dir`):

* `submission.json`: the executor, host, user, command and, per entry, its kind (`fit` or `cells`),
  the cells (for a fit: the cell it was planned for) and the fit key's hash. An entry of a submitit
  or Slurm job carries its `job_id`; `bench status` asks the job's result pickle and the scheduler
  where it stands (`bench.launch.probes`). An entry whose outcome the launcher itself saw (a local
  fit or cell that raised) carries no job id but its `state`, `error` and `log`: nothing to probe;
* `logs/`: submitit's log folder (one stdout, stderr and result pickle per job), and the traceback
  of each local failure (`<cell hash>.log`);
* `failures/<cell hash>.json`: a cell that raised inside a job that went on with its other cells.

Format: `submission.json` carries `format` (2). Records without it (format 1) read as before; in a
format-1 record of the `local` executor, whose entries named the launcher's pid as a job id, every
entry is read as the failure its `failures/` file describes. A record of a newer format is refused
with one line naming it (`LedgerError`), never misread.
"""
from __future__ import annotations

import datetime
import getpass
import socket
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import UserError
from ..store import ResultsRoot, atomic_write_json, read_json

FORMAT = 2
RECORD = "submission.json"


class LedgerError(UserError):
    """A submission record this version of bench cannot read."""


@dataclass
class TaskRef:
    """One entry of a submission: a submitit job (a single job or one array task), or a local task
    whose outcome the launcher recorded, and what it computes."""

    kind: str  # "fit" or "cells"
    job_id: str | None
    cells: list[str]  # cell hashes (for a fit: the hash of the cell it was planned for)
    fit: str | None = None  # the fit key's hash, for a fit
    state: str | None = None  # recorded outcome ("failed") of an entry without a job to ask
    error: str | None = None
    log: str | None = None

    @property
    def ref(self) -> str:
        """The entry's name within its submission: the job id, else what it computed."""
        if self.job_id is not None:
            return self.job_id
        return f"{self.kind}:{self.fit if self.kind == 'fit' else self.cells[0]}"

    def to_dict(self) -> dict:
        out = {"kind": self.kind, "job_id": self.job_id, "cells": list(self.cells), "fit": self.fit}
        if self.state is not None:
            out.update(state=self.state, error=self.error, log=self.log)
        return out


@dataclass
class Submission:
    """The on-disk record of one `bench run` submission."""

    path: Path  # the record's folder
    id: str
    executor: str
    created: str
    host: str
    user: str
    command: list[str] = field(default_factory=list)
    tasks: list[TaskRef] = field(default_factory=list)

    @property
    def log_folder(self) -> Path:
        return self.path / "logs"

    @property
    def failures_dir(self) -> Path:
        return self.path / "failures"

    def failure_path(self, cell_hash: str) -> Path:
        return self.failures_dir / f"{cell_hash}.json"

    def add(self, task: TaskRef) -> None:
        self.tasks.append(task)

    def save(self) -> None:
        atomic_write_json(self.path / RECORD, {
            "format": FORMAT, "id": self.id, "executor": self.executor, "created": self.created,
            "host": self.host, "user": self.user, "command": self.command, "log_folder": "logs",
            "tasks": [t.to_dict() for t in self.tasks],
        })

    def record_failure(self, kind: str, cell_hash: str, fit_hash: str | None, error: str, traceback_text: str) -> None:
        """Record a fit or cell that raised where the launcher saw it (a local run): its traceback
        in `logs/<cell hash>.log` and an entry with its outcome."""
        self.log_folder.mkdir(parents=True, exist_ok=True)
        log = self.log_folder / f"{cell_hash}.log"
        log.write_text(traceback_text or "")
        self.add(TaskRef(kind, None, [cell_hash], fit_hash if kind == "fit" else None,
                         state="failed", error=error.splitlines()[0] if error else error, log=str(log)))
        self.save()

    @classmethod
    def load(cls, path: Path) -> "Submission":
        data = read_json(path / RECORD)
        version = data.get("format", 1)
        if not isinstance(version, int) or version > FORMAT:
            raise LedgerError(f"{path / RECORD}: a job record of format {version!r}, newer than this bench reads "
                              f"({FORMAT}); run `bench status` with the bench that wrote it, or move the folder away")
        sub = cls(path=path, id=data["id"], executor=data["executor"], created=data["created"],
                  host=data.get("host", ""), user=data.get("user", ""), command=data.get("command", []),
                  tasks=[TaskRef(**t) for t in data.get("tasks", [])])
        if version == 1 and sub.executor == "local":
            _read_format1_local(sub)
        return sub

    def paths(self, job_id: str):
        """submitit's file names for a job of this submission (stdout, stderr, result pickle)."""
        from submitit.core.utils import JobPaths

        return JobPaths(self.log_folder, job_id=job_id, task_id=0)


def _read_format1_local(sub: Submission) -> None:
    """A format-1 `local` record named the launcher's pid as each entry's job id and kept the error
    in `failures/`: read each entry as the failure it recorded."""
    for task in sub.tasks:
        task.job_id, task.state = None, "failed"
        try:
            failure = read_json(sub.failure_path(task.cells[0]))
            task.error, task.log = failure.get("exception"), failure.get("log")
        except (OSError, ValueError, IndexError):
            task.error = "failed in a local run (no failure file)"


def new_submission(root: ResultsRoot, grid_name: str, executor: str, command: list[str] | None = None) -> Submission:
    now = datetime.datetime.now(datetime.timezone.utc)
    sid = f"{now:%Y%m%d-%H%M%S}-{executor}-{uuid.uuid4().hex[:6]}"
    path = (root.jobs_dir(grid_name) / sid).absolute()
    (path / "logs").mkdir(parents=True, exist_ok=True)
    sub = Submission(path=path, id=sid, executor=executor, created=now.isoformat(timespec="microseconds"),
                     host=socket.gethostname(), user=getpass.getuser(), command=list(command or []))
    sub.save()
    return sub


def load_submissions(root: ResultsRoot, grid_name: str) -> list[Submission]:
    """Every submission record of the grid, oldest first; unreadable records are skipped, records of
    a newer format raise `LedgerError`."""
    subs = []
    folder = root.jobs_dir(grid_name)
    if folder.is_dir():
        for path in folder.iterdir():
            if (path / RECORD).is_file():
                try:
                    subs.append(Submission.load(path))
                except (OSError, ValueError, KeyError, TypeError):
                    continue
    return sorted(subs, key=lambda s: (s.created, s.id))


def has_records(root: ResultsRoot, grid_name: str) -> bool:
    return root.jobs_dir(grid_name).is_dir()


def write_failure(failures_dir: Path, cell_hash: str, err: BaseException | str, traceback_text: str,
                  job_id: str | None, log: str | None) -> None:
    """Record that one cell raised inside a job that goes on with its other cells; `err` is the
    exception or its one-line text."""
    text = err if isinstance(err, str) else f"{type(err).__name__}: {err}"
    atomic_write_json(Path(failures_dir) / f"{cell_hash}.json", {
        "cell": cell_hash, "exception": text.splitlines()[0],
        "traceback": traceback_text, "job_id": job_id, "log": log,
    })


def read_failure(sub: Submission, cell_hash: str) -> dict | None:
    """The failure file of a cell in this submission, or None (absent or unreadable)."""
    path = sub.failure_path(cell_hash)
    if not path.is_file():
        return None
    try:
        return read_json(path)
    except (OSError, ValueError):
        return None


__all__ = ["FORMAT", "LedgerError", "Submission", "TaskRef", "has_records", "load_submissions", "new_submission",
           "read_failure", "write_failure"]
