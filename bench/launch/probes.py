"""Where a ledger entry's job stands: its result pickle, the Slurm queue, the process table.

* submitit writes `<job>_0_result.pkl` when a job ends: ("success", value) or ("error", traceback);
* while there is no result, a Slurm job is asked of `squeue` (no accounting needed, unlike `sacct`,
  which submitit's own watcher would use); a submitit-local job of this host of `/proc` (its job
  id is the pid of submitit's controller process, `submitit.local._local`);
* a job that left the queue without a result was cancelled, killed or ran out of time: it is
  **failed**, with the most telling line of its stderr log (Slurm's `*** ... CANCELLED ... ***`);
* an entry that records its own outcome (a local failure, `bench.launch.ledger`) is not probed.
"""
from __future__ import annotations

import pickle
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path

ACTIVE = ("queued", "running")  # states of a job that may still write rows


@dataclass
class TaskState:
    state: str  # queued | running | finished | failed | unknown
    error: str | None = None  # one line: the exception, or why the job ended without a result
    log: Path | None = None  # the job's stderr log
    lost: bool = False  # left the queue without a result


def last_line(text: str | None) -> str | None:
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    return lines[-1] if lines else None


def log_reason(path: Path) -> str | None:
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


def slurm_state(state: str) -> str:
    if state in ("RUNNING", "COMPLETING", "CONFIGURING", "STAGE_OUT", "SIGNALING"):
        return "running"
    return "queued"  # PENDING, REQUEUED, REQUEUE_HOLD, SUSPENDED, RESV_DEL_HOLD, ...


def local_process_alive(pid: str) -> bool:
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


def result_state(paths) -> TaskState | None:
    """The state a job's result pickle gives (finished, or failed with its last line), None when
    there is no result yet. A pickle that cannot be read is a failure that says so."""
    if not paths.result_pickle.exists():
        return None
    try:
        with open(paths.result_pickle, "rb") as f:
            outcome, value = pickle.load(f)
    except Exception as err:  # noqa: BLE001 - a result we cannot read is reported, not raised
        outcome, value = "error", f"unreadable result pickle {paths.result_pickle}: {type(err).__name__}: {err}"
    if outcome == "success":
        return TaskState("finished", log=paths.stderr)
    return TaskState("failed", error=last_line(str(value)), log=paths.stderr)


def query_tasks(pairs, live: dict | None = None) -> dict[tuple[str, str], TaskState]:
    """The state of the given ledger entries, (submission, task) pairs, keyed by (submission id,
    task ref).

    `live` maps job ids to submitit Job objects of this process (submitit-local jobs it started, so
    that their processes are polled and reaped)."""
    live = live or {}
    states: dict[tuple[str, str], TaskState] = {}
    unresolved = []
    for sub, task in pairs:
        key = (sub.id, task.ref)
        if task.state is not None:  # recorded by the launcher: nothing to ask
            states[key] = TaskState(task.state, error=task.error, log=Path(task.log) if task.log else None)
            continue
        paths = sub.paths(task.job_id)
        if task.job_id in live and sub.executor == "submitit-local" and not live[task.job_id].done():
            states[key] = TaskState("running", log=paths.stderr)
            continue
        state = result_state(paths)
        if state is not None:
            states[key] = state
            continue
        unresolved.append((sub, task))
    slurm_ids = [t.job_id for s, t in unresolved if s.executor == "slurm"]
    queue = slurm_queue(slurm_ids) if slurm_ids else {}
    here = socket.gethostname()
    for sub, task in unresolved:
        paths = sub.paths(task.job_id)
        key = (sub.id, task.ref)
        if sub.executor == "slurm":
            if queue is None:
                states[key] = TaskState("unknown", error="squeue is not available here; run status on the cluster",
                                        log=paths.stderr)
                continue
            if task.job_id in queue:
                states[key] = TaskState(slurm_state(queue[task.job_id]), log=paths.stderr)
                continue
        elif sub.host != here:
            states[key] = TaskState("unknown", error=f"a submitit-local job of host {sub.host}", log=paths.stderr)
            continue
        elif task.job_id not in live and local_process_alive(task.job_id):
            states[key] = TaskState("running", log=paths.stderr)
            continue
        state = result_state(paths)  # it finished between the two looks
        if state is not None:
            states[key] = state
            continue
        reason = log_reason(paths.stderr) if paths.stderr.exists() else None
        states[key] = TaskState(
            "failed", lost=True, log=paths.stderr,
            error="the job ended without a result (cancelled, killed or out of time)" + (f": {reason}" if reason else ""),
        )
    return states


__all__ = ["ACTIVE", "TaskState", "local_process_alive", "log_reason", "query_tasks", "result_state",
           "slurm_queue", "slurm_state"]
