"""Where a sweep stands: done / running / queued / failed / pending for every cell (and fit) of a grid.

`python -m bench status --grid G` answers without a live launcher, from files alone:

* a cell is **done** when its row exists (`<results>/<grid>/rows/<hash>.json`), a fit when its
  `fit.json` exists;
* otherwise the latest **submission record** that holds it says which job runs it. The launcher
  (`bench.launch`) writes one record per submission, under `<results>/<grid>/jobs/<id>/`:
  `submission.json` (executor, host, log folder, and per job: its id, kind and the cells or fit it
  holds), the submitit log folder `logs/`, and `failures/<cell hash>.json` for every cell that raised
  inside a job that went on with its other cells;
* that job's state follows submitit's files (`<job>_0_result.pkl` holds ("success", value) or
  ("error", traceback); `<job>_0_log.err` the job's stderr), and, while there is no result, the
  scheduler: `squeue` for Slurm jobs (no accounting needed, unlike `sacct`, which submitit would
  use), the process table for submitit-local jobs (their job id is the controller's pid).

A job that left the queue without a result was cancelled, killed or ran out of time: its cells are
**failed**, with the last line of its stderr log. A cell no record holds is **pending**: the next
`bench run` submits it, as it does failed cells; running and queued ones it leaves alone.
"""
from __future__ import annotations

import datetime
import getpass
import json
import os
import pickle
import socket
import subprocess
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from .grid import Grid, plugin_label
from .rows import row_ok
from .store import ResultsRoot, atomic_write_json, read_json

ACTIVE = ("queued", "running")  # states of a job that may still write rows
CELL_STATES = ("done", "running", "queued", "failed", "pending", "unknown")


def jobs_dir(root: ResultsRoot, grid_name: str) -> Path:
    return root.grid_dir(grid_name) / "jobs"


@dataclass
class TaskRef:
    """One submitit job (a single job or one array task) and what it computes."""

    kind: str  # "fit" or "cells"
    job_id: str
    cells: list[str]  # cell hashes (for a fit: the hash of the cell it was planned for)
    fit: str | None = None  # the fit key's hash, for a fit job

    def to_dict(self) -> dict:
        return {"kind": self.kind, "job_id": self.job_id, "cells": list(self.cells), "fit": self.fit}


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

    def add(self, task: TaskRef) -> None:
        self.tasks.append(task)

    def save(self) -> None:
        atomic_write_json(self.path / "submission.json", {
            "id": self.id, "executor": self.executor, "created": self.created, "host": self.host,
            "user": self.user, "command": self.command, "log_folder": "logs",
            "tasks": [t.to_dict() for t in self.tasks],
        })

    @classmethod
    def load(cls, path: Path) -> "Submission":
        data = read_json(path / "submission.json")
        return cls(path=path, id=data["id"], executor=data["executor"], created=data["created"],
                   host=data.get("host", ""), user=data.get("user", ""), command=data.get("command", []),
                   tasks=[TaskRef(**t) for t in data.get("tasks", [])])

    def paths(self, job_id: str):
        """submitit's file names for a job of this submission (stdout, stderr, result pickle)."""
        from submitit.core.utils import JobPaths

        return JobPaths(self.log_folder, job_id=job_id, task_id=0)


def new_submission(root: ResultsRoot, grid_name: str, executor: str, command: list[str] | None = None) -> Submission:
    now = datetime.datetime.now(datetime.timezone.utc)
    sid = f"{now:%Y%m%d-%H%M%S}-{executor}-{uuid.uuid4().hex[:6]}"
    path = (jobs_dir(root, grid_name) / sid).absolute()
    (path / "logs").mkdir(parents=True, exist_ok=True)
    sub = Submission(path=path, id=sid, executor=executor, created=now.isoformat(timespec="microseconds"),
                     host=socket.gethostname(), user=getpass.getuser(), command=list(command or []))
    sub.save()
    return sub


def load_submissions(root: ResultsRoot, grid_name: str) -> list[Submission]:
    """Every submission record of the grid, oldest first; unreadable records are skipped."""
    subs = []
    folder = jobs_dir(root, grid_name)
    if folder.is_dir():
        for path in folder.iterdir():
            if (path / "submission.json").is_file():
                try:
                    subs.append(Submission.load(path))
                except (OSError, ValueError, KeyError, TypeError):
                    continue
    return sorted(subs, key=lambda s: (s.created, s.id))


@dataclass
class TaskState:
    state: str  # queued | running | finished | failed | unknown
    error: str | None = None  # one line: the exception, or why the job ended without a result
    log: Path | None = None  # the job's stderr log
    lost: bool = False  # left the queue without a result


def _last_line(text: str | None) -> str | None:
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    return lines[-1] if lines else None


def _log_reason(path: Path) -> str | None:
    """The most telling line of a job's stderr: Slurm's `*** ... CANCELLED ... ***`, else the last line."""
    try:
        text = path.read_text(errors="replace")[-20000:]
    except OSError:
        return None
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    for line in reversed(lines):
        if "***" in line and ("CANCELLED" in line or "TIME LIMIT" in line or "PREEMPT" in line):
            return line
    return lines[-1] if lines else None


def slurm_queue(job_ids) -> dict[str, str] | None:
    """{job id: Slurm state} of the given jobs still in the queue (array tasks one by one, as
    `123_4`), or None when `squeue` cannot be run or fails."""
    bases = sorted({str(j).split("_")[0] for j in job_ids})
    if not bases:
        return {}
    try:
        out = subprocess.run(["squeue", "--noheader", "--array", "--format=%i|%T", "--jobs", ",".join(bases)],
                             capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if out.returncode != 0:
        # Every id already purged from the controller: squeue answers "Invalid job id specified".
        return {} if "Invalid job id" in out.stderr else None
    queue = {}
    for line in out.stdout.splitlines():
        if "|" in line:
            jid, state = line.strip().split("|", 1)
            queue[jid] = state
    return queue


def _slurm_state(state: str) -> str:
    if state in ("RUNNING", "COMPLETING", "CONFIGURING", "STAGE_OUT", "SIGNALING"):
        return "running"
    return "queued"  # PENDING, REQUEUED, REQUEUE_HOLD, SUSPENDED, RESV_DEL_HOLD, ...


def _local_process_alive(pid: str) -> bool:
    """True for a live (not zombie) submitit-local controller with this pid on this host."""
    try:
        with open(f"/proc/{int(pid)}/stat") as f:
            stat = f.read()
        if stat.rsplit(")", 1)[1].split()[0] in ("Z", "X"):
            return False
        with open(f"/proc/{int(pid)}/cmdline", "rb") as f:
            return b"submitit.local._local" in f.read()
    except (OSError, ValueError, IndexError):
        return False


def _read_result(path: Path):
    try:
        with open(path, "rb") as f:
            return pickle.load(f)
    except Exception as err:  # noqa: BLE001 - a result we cannot read is reported, not raised
        return ("error", f"unreadable result pickle {path}: {type(err).__name__}: {err}")


def query_tasks(pairs, live: dict | None = None) -> dict[tuple[str, str], TaskState]:
    """The state of the given jobs, (submission, task) pairs, keyed by (submission id, job id).

    `live` maps job ids to submitit Job objects of this process (submitit-local jobs it started, so
    that their processes are polled and reaped)."""
    live = live or {}
    states: dict[tuple[str, str], TaskState] = {}
    unresolved: list[tuple[Submission, TaskRef]] = []
    for sub, task in pairs:
        paths = sub.paths(task.job_id)
        if task.job_id in live and sub.executor == "submitit-local" and not live[task.job_id].done():
            states[(sub.id, task.job_id)] = TaskState("running", log=paths.stderr)
            continue
        if paths.result_pickle.exists():
            outcome, value = _read_result(paths.result_pickle)
            if outcome == "success":
                states[(sub.id, task.job_id)] = TaskState("finished", log=paths.stderr)
            else:
                states[(sub.id, task.job_id)] = TaskState("failed", error=_last_line(str(value)), log=paths.stderr)
            continue
        unresolved.append((sub, task))
    slurm_ids = [t.job_id for s, t in unresolved if s.executor == "slurm"]
    queue = slurm_queue(slurm_ids) if slurm_ids else {}
    here = socket.gethostname()
    for sub, task in unresolved:
        paths = sub.paths(task.job_id)
        key = (sub.id, task.job_id)
        if sub.executor == "slurm":
            if queue is None:
                states[key] = TaskState("unknown", error="squeue is not available here; run status on the cluster",
                                        log=paths.stderr)
                continue
            if task.job_id in queue:
                states[key] = TaskState(_slurm_state(queue[task.job_id]), log=paths.stderr)
                continue
        elif sub.host != here:
            states[key] = TaskState("unknown", error=f"a submitit-local job of host {sub.host}", log=paths.stderr)
            continue
        elif task.job_id not in live and _local_process_alive(task.job_id):
            states[key] = TaskState("running", log=paths.stderr)
            continue
        if paths.result_pickle.exists():  # it finished between the two looks
            outcome, value = _read_result(paths.result_pickle)
            states[key] = TaskState("finished" if outcome == "success" else "failed",
                                    error=None if outcome == "success" else _last_line(str(value)), log=paths.stderr)
            continue
        reason = _log_reason(paths.stderr) if paths.stderr.exists() else None
        states[key] = TaskState(
            "failed", lost=True, log=paths.stderr,
            error="the job ended without a result (cancelled, killed or out of time)" + (f": {reason}" if reason else ""),
        )
    return states


@dataclass
class Item:
    """The status of one cell or fit."""

    kind: str  # "cell" or "fit"
    key: str  # the cell's hash or the fit key's hash
    label: str
    state: str  # done | running | queued | failed | pending | unknown
    job_id: str | None = None
    submission: str | None = None
    error: str | None = None
    log: Path | None = None

    def to_dict(self) -> dict:
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in self.__dict__.items()}


@dataclass
class SweepStatus:
    grid: str
    cells: list[Item]
    fits: list[Item]
    submissions: list[Submission]
    tasks: dict[tuple[str, str], TaskState]

    def counts(self, kind: str = "cell") -> Counter:
        return Counter(i.state for i in (self.cells if kind == "cell" else self.fits))

    def active_tasks(self) -> list[tuple[Submission, TaskRef]]:
        """Jobs that are queued or running."""
        return [(s, t) for s in self.submissions for t in s.tasks
                if self.tasks.get((s.id, t.job_id), TaskState("unknown")).state in ACTIVE]

    def to_dict(self) -> dict:
        return {"grid": self.grid, "counts": dict(self.counts()), "fit_counts": dict(self.counts("fit")),
                "cells": [i.to_dict() for i in self.cells], "fits": [i.to_dict() for i in self.fits]}


def _item_from_task(item: Item, sub: Submission, task: TaskRef, state: TaskState, failure_file: Path | None) -> Item:
    item.job_id, item.submission, item.log = task.job_id, sub.id, state.log
    if failure_file is not None and failure_file.is_file():
        try:
            failure = read_json(failure_file)
            item.state, item.error = "failed", failure.get("exception")
            item.log = Path(failure["log"]) if failure.get("log") else state.log
            return item
        except (OSError, ValueError):
            pass
    if state.state in ACTIVE or state.state == "unknown":
        item.state, item.error = state.state, state.error
    elif state.state == "failed":
        item.state, item.error = "failed", state.error
    else:  # the job finished yet this item is not done
        item.state = "failed"
        item.error = "its job finished without writing it (see the log)"
    return item


def sweep_status(grid: Grid, root="results", live: dict | None = None) -> SweepStatus:
    """The status of every cell and fit of `grid` under the results root `root`."""
    root = root if isinstance(root, ResultsRoot) else ResultsRoot(root)
    subs = load_submissions(root, grid.name)
    latest_cell: dict[str, tuple[Submission, TaskRef]] = {}
    latest_fit: dict[str, tuple[Submission, TaskRef]] = {}
    for sub in subs:  # oldest first: later records win
        for task in sub.tasks:
            if task.kind == "fit" and task.fit:
                latest_fit[task.fit] = (sub, task)
            elif task.kind == "cells":
                for h in task.cells:
                    latest_cell[h] = (sub, task)
    cells, fits, fit_seen = [], [], {}
    wanted = set()
    for cell in grid.cells:
        h = cell.hash
        if row_ok(root.row_path(grid.name, h)):
            cells.append(Item("cell", h, cell.label(), "done"))
        else:
            cells.append(Item("cell", h, cell.label(), "pending"))
            if h in latest_cell:
                wanted.add(latest_cell[h][0].id)
        fh = cell.fit_hash
        if fh and fh not in fit_seen:
            fit_seen[fh] = cell
            done = (root.fit_dir(fh) / "fit.json").exists()
            label = (f"{plugin_label(cell.model)} | {plugin_label(cell.solver)} | steps={cell.steps} | "
                     f"{plugin_label(cell.method)} | seed={cell.seed}")
            fits.append(Item("fit", fh, label, "done" if done else "pending"))
            if not done and fh in latest_fit:
                wanted.add(latest_fit[fh][0].id)
    tasks = query_tasks([(s, t) for s in subs if s.id in wanted for t in s.tasks], live)
    for item in cells:
        if item.state == "pending" and item.key in latest_cell:
            sub, task = latest_cell[item.key]
            _item_from_task(item, sub, task, tasks[(sub.id, task.job_id)], sub.failures_dir / f"{item.key}.json")
    for item in fits:
        if item.state == "pending" and item.key in latest_fit:
            sub, task = latest_fit[item.key]
            _item_from_task(item, sub, task, tasks[(sub.id, task.job_id)], None)
    return SweepStatus(grid.name, cells, fits, subs, tasks)


def summary_line(status: SweepStatus) -> str:
    counts = status.counts()
    parts = [f"{counts.get(s, 0)} {s}" for s in CELL_STATES if counts.get(s, 0) or s in ("done", "pending")]
    line = f"{status.grid}: {len(status.cells)} cells: " + ", ".join(parts)
    if status.fits:
        fc = status.counts("fit")
        line += f"; fits: {len(status.fits)}: " + ", ".join(f"{n} {s}" for s, n in sorted(fc.items()))
    return line


def format_status(status: SweepStatus, show_all: bool = False) -> str:
    """The text `bench status` prints: a summary line, then every cell not done (every cell with
    `show_all`), failures with their exception and log."""
    def rel(path: Path | None) -> str:
        if path is None:
            return "-"
        try:
            relative = os.path.relpath(path)
        except ValueError:
            return str(path)
        return str(path) if relative.startswith("..") else relative

    lines = [summary_line(status)]
    for title, items in (("fits", status.fits), ("cells", status.cells)):
        shown = [i for i in items if show_all or i.state != "done"]
        if not shown:
            continue
        lines.append(f"{title}:")
        order = {s: n for n, s in enumerate(("failed", "unknown", "running", "queued", "pending", "done"))}
        for item in sorted(shown, key=lambda i: order.get(i.state, 9)):
            job = f"  job {item.job_id}" if item.job_id else ""
            lines.append(f"  {item.state:<8} {item.key[:12]}  {item.label}{job}")
            if item.state in ("failed", "unknown"):
                if item.error:
                    lines.append(f"           error: {item.error}")
                if item.log:
                    lines.append(f"           log:   {rel(item.log)}")
    counts = status.counts()
    if counts.get("failed") or counts.get("pending"):
        lines.append("rerun the same `python -m bench run` command to submit the failed and pending cells")
    return "\n".join(lines)


def write_failure(failures_dir: Path, cell_hash: str, err: BaseException | str, traceback_text: str,
                  job_id: str | None, log: str | None) -> None:
    """Record that one cell raised (the job or local run goes on with its other cells); `err` is the
    exception or its one-line text."""
    text = err if isinstance(err, str) else f"{type(err).__name__}: {err}"
    atomic_write_json(Path(failures_dir) / f"{cell_hash}.json", {
        "cell": cell_hash, "exception": text.splitlines()[0],
        "traceback": traceback_text, "job_id": job_id, "log": log,
    })


def status_json(status: SweepStatus) -> str:
    return json.dumps(status.to_dict(), indent=1, default=str)


__all__ = ["ACTIVE", "Item", "Submission", "SweepStatus", "TaskRef", "TaskState", "format_status",
           "jobs_dir", "load_submissions", "new_submission", "query_tasks", "slurm_queue", "status_json",
           "summary_line", "sweep_status", "write_failure"]
