"""The `submitit-local` and `slurm` executors: a grid's missing fits and cells as submitit jobs.

They follow submitit's model: a job is a pickled callable (`bench.launch.job.FitTask` /
`CellsTask`) run by `python -m submitit.core._submit` with the launcher's interpreter
(`sys.executable`, i.e. this venv, unless `launch.python` says otherwise); results live on disk.
Fits are one job each (`map_array` over `FitTask`); cells are chunked, `cells_per_job` to an array
task (`map_array` over `CellsTask`). On a timeout or a preemption submitit calls `checkpoint()`,
which resubmits the same call (at most `max_requeues` times); a learned method's own progress is in
`FitContext.save_checkpoint`'s file in the fit directory, which the resubmitted fit finds, and a
resubmitted chunk skips the cells whose rows exist. On Slurm the cells' array waits for the fits
with `--dependency=afterany:<fit jobs>`, so `--detach` can return at once; submitit-local runs the
phases one after the other from this process and keeps at most `array_parallelism` jobs running. A
cell job never fits: a cell whose fit is missing fails with `FitMissing`, and the rerun submits the
fit again.

Slurm may count a preempted fit as ended for a moment while submitit requeues it, and start the
cells waiting on it (`afterany`) too early. So a sweep is at most two rounds: when cells failed only
because their fit was missing when they ran, the launcher waits for those fits' requeued jobs and,
when a fit is done now, submits the missing cells once more.

Every submission leaves a record in the job ledger (`bench.launch.ledger`), which is how
`bench status` tells queued, running and failed cells apart without this process, and how a rerun
leaves cells that are still queued or running alone and submits only what is missing or failed.

submitit facts this relies on: `AutoExecutor(cluster=...)` is always given the cluster (left alone
it picks Slurm whenever `srun` is on the PATH); its local executor defaults to a 2-minute timeout
and `CUDA_VISIBLE_DEVICES=""`, so both are always set; its debug executor (pdb on failure) is never
used. Job states come from submitit's result pickles and `squeue` (`bench.launch.probes`), not from
submitit's `sacct` watcher, which reports nothing on a cluster without accounting.
"""
from __future__ import annotations

import os
import sys
import time
from collections import Counter, deque
from pathlib import Path

import submitit

from .. import status as st
from ..errors import UserError
from ..grid import Cell, Grid
from ..launch_config import LaunchConfig
from ..progress import Progress
from ..store import ResultsRoot
from . import ledger, probes
from .devices import cuda_device_count, job_device, job_devices
from .job import CellsTask, FitTask, WorkerSetup, plugin_modules
from .local import SweepFailed
from .plan import Plan, start

POLL_SECONDS = float(os.environ.get("BENCH_POLL_SECONDS", "2"))
LOST_GRACE_SECONDS = 3.0  # a job that left the queue is re-checked once for a late result pickle


def make_executor(config: LaunchConfig, folder, device: str, name: str) -> submitit.AutoExecutor:
    """A submitit executor for `config.executor`, with the cluster always named explicitly."""
    cluster = {"submitit-local": "local", "slurm": "slurm"}[config.executor]
    kwargs = {f"{cluster}_max_num_timeout": config.max_requeues}
    if config.python:
        kwargs[f"{cluster}_python"] = config.python
    try:
        executor = submitit.AutoExecutor(folder=folder, cluster=cluster, **kwargs)
    except RuntimeError as err:
        if cluster == "slurm":
            raise UserError("--executor slurm: no `srun` on the PATH; run on a Slurm login node "
                            "(or start the test cluster: bash scripts/slurm-cluster.sh up)") from err
        raise
    params: dict = {"name": name, "timeout_min": config.timeout_min, "cpus_per_task": config.cpus_per_job}
    if cluster == "slurm":
        gpus = config.gpus(device)
        if config.partition:
            params["slurm_partition"] = config.partition
        if config.array_parallelism:
            params["slurm_array_parallelism"] = config.array_parallelism
        if config.sbatch:
            params["slurm_additional_parameters"] = dict(config.sbatch)
    else:  # submitit-local makes GPUs 0..n-1 visible; each job picks its own (`devices.job_devices`)
        gpus = cuda_device_count() if job_device(device) == "cuda" else 0
        if config.gpus_per_job == 0:
            gpus = 0
    if gpus:
        params["gpus_per_node"] = gpus
    if config.mem_gb:
        params["mem_gb"] = config.mem_gb
    executor.update_parameters(**params)
    return executor


def chunks(cells: list[Cell], size: int) -> list[list[Cell]]:
    return [cells[i : i + size] for i in range(0, len(cells), size)]


def _sbatch(submit, *args):
    """Submit; sbatch refusing the jobs (unknown partition, account, option) is the user's to fix."""
    try:
        return submit(*args)
    except submitit.core.utils.FailedJobError as err:
        lines = [line for line in str(err).splitlines() if line.strip()]
        reason = lines[-1] if lines else str(err)
        raise UserError(f"sbatch refused the jobs: {reason}; check --partition, --sbatch and the other "
                        "launch settings (grid launch: section)") from None


class _LocalQueue:
    """submitit-local has no job arrays: keep at most `window` of the given jobs running,
    submitting the next as one ends. Each job is recorded in the submission as it starts."""

    def __init__(self, executor, task, items: list, kind: str, sub: ledger.Submission,
                 window: int, devices: list[str], live: dict):
        self.executor, self.task, self.kind, self.sub = executor, task, kind, sub
        self.queue = deque(zip(items, devices))
        self.window, self.live = window, live
        self.jobs: list = []
        self.pairs: list[tuple[ledger.Submission, ledger.TaskRef]] = []

    def pump(self) -> None:
        running = sum(1 for job in self.jobs if not job.done())
        submitted = False
        while self.queue and running < self.window:
            item, device = self.queue.popleft()
            job = self.executor.submit(self.task, item, device)
            self.jobs.append(job)
            self.live[job.job_id] = job
            cells = [c.hash for c in item] if self.kind == "cells" else [item.hash]
            ref = ledger.TaskRef(self.kind, job.job_id, cells, item.fit_hash if self.kind == "fit" else None)
            self.sub.add(ref)
            self.pairs.append((self.sub, ref))
            running += 1
            submitted = True
        if submitted:
            self.sub.save()

    @property
    def exhausted(self) -> bool:
        return not self.queue


def _rel(path: Path) -> str:
    """`path` relative to the working directory when it lies below it, else absolute."""
    try:
        rel = os.path.relpath(path)
    except ValueError:
        return str(path)
    return str(path) if rel.startswith("..") else rel


class _Jobs:
    """A round's new submission: its ledger record, the submitit executor and the two callables."""

    def __init__(self, sweep: "SubmititSweep", todo: Plan):
        self.sub = ledger.new_submission(sweep.root, sweep.grid.name, sweep.config.executor, sweep.command)
        todo.submission = self.sub
        self.executor = make_executor(sweep.config, self.sub.log_folder, sweep.device, f"bench-{sweep.grid.name}")
        setup = WorkerSetup(threads=sweep.config.cpus_per_job, plugins=tuple(plugin_modules(todo.pending)))
        device = job_device(sweep.device)
        self.fit_task = FitTask(str(sweep.root.root), device, setup, str(self.sub.path))
        self.cells_task = CellsTask(str(sweep.root.root), device, setup, str(self.sub.path))


class SubmititSweep:
    """One `bench run` with `--executor submitit-local|slurm`: submit what is missing, wait for it
    (unless `config.detach`), and submit cells once more that ran before their requeued fit."""

    def __init__(self, grid: Grid, root, config: LaunchConfig, device: str = "cpu", quiet: bool = False,
                 command: list[str] | None = None):
        self.grid, self.given, self.config, self.device, self.quiet = grid, root, config, device, quiet
        self.command = command
        self.root = ResultsRoot(Path(root).absolute())
        self.grid_ref = str(grid.path) if grid.path else grid.name
        self.live: dict = {}  # submitit-local jobs of this process, polled (and reaped) through their Job

    def say(self, message: str) -> None:
        if not self.quiet:
            print(message, file=sys.stderr)

    def run(self) -> Plan:
        """Raises `SweepFailed` when cells failed; returns the plan of the first round."""
        first = None
        for round_ in range(2):
            todo, finished = self.submit_and_wait()
            first = first or todo
            if not finished:  # detached, or nothing to do
                return first
            final = st.sweep_status(self.grid, self.root)
            if round_ == 0 and self.fits_done_late(final):
                self.say("cells ran before their fit was done (a requeued fit): submitting them again")
                continue
            break
        self.say(st.summary_line(final))
        failed = final.counts().get("failed", 0)
        if failed:
            raise SweepFailed(f"{failed} of {len(self.grid.cells)} cells failed; `python -m bench status --grid "
                              f"{self.grid_ref}` lists them with their errors and logs; rerun the same command to "
                              "retry them")
        return first

    def fits_done_late(self, final: st.SweepStatus) -> bool:
        """True when cells failed with `FitMissing` and one of their fits is done now (after waiting
        for the fits' requeued jobs)."""
        fit_of = {cell.hash: cell.fit_hash for cell in self.grid.cells}
        early = {fit_of[item.key] for item in final.cells if item.state == "failed" and fit_of.get(item.key)
                 and (item.error or "").startswith("FitMissing")}
        if not early:
            return False
        fit_jobs = [(s, t) for s, t in final.active_tasks() if t.kind == "fit" and t.fit in early]
        if fit_jobs:  # e.g. the preempted fit, requeued: let it finish
            self.wait(lambda: fit_jobs, early, self.root.fit_done, f"{self.grid.name} fits", unit="fit")
        return any(self.root.fit_done(key) for key in early)

    def submit_and_wait(self) -> tuple[Plan, bool]:
        """One round: plan, submit, wait. Returns the plan and whether the round waited for its jobs."""
        grid, config = self.grid, self.config
        _, todo, busy = start(grid, self.given, clean=None)
        cell_chunks = chunks(todo.pending, config.cells_per_job)
        running = f", {len(todo.in_flight)} in queued or running jobs" if todo.in_flight else ""
        self.say(f"{grid.name}: {len(grid.cells)} cells, {len(todo.done)} done{running}; submitting {len(todo.fits)} "
                 f"fits and {len(todo.pending)} cells in {len(cell_chunks)} jobs ({config.executor})")
        if not todo.pending and not busy.jobs:
            return todo, False
        jobs = _Jobs(self, todo) if todo.pending else None
        try:
            if config.executor == "slurm":
                return todo, self.slurm_round(todo, cell_chunks, jobs, busy.jobs)
            self.local_round(todo, cell_chunks, jobs, busy.jobs)
        except KeyboardInterrupt:
            if config.executor == "slurm":
                print(f"bench: stopped waiting; the jobs go on: `python -m bench status --grid {self.grid_ref}`",
                      file=sys.stderr)
            raise
        return todo, True

    def watched(self, todo: Plan, active_fits) -> tuple[set[str], set[str]]:
        """The cells (and fits) whose progress a round shows: its own and those of running jobs."""
        cells = {c.hash for c in todo.pending} | {c.hash for c in todo.in_flight}
        fits = {c.fit_hash for c in todo.fits} | {t.fit for _, t in active_fits}
        return cells, fits

    def row_written(self, cell_hash: str) -> bool:
        return self.root.row_exists(self.grid.name, cell_hash)

    def slurm_round(self, todo: Plan, cell_chunks, jobs: "_Jobs | None", active) -> bool:
        """Submit the fits' array, then the cells' array depending on every fit job; wait unless
        detached. Returns whether it waited."""
        active_fits = [(s, t) for s, t in active if t.kind == "fit"]
        if jobs is not None:
            sub, executor = jobs.sub, jobs.executor
            if todo.fits:
                for job, cell in zip(_sbatch(executor.map_array, jobs.fit_task, todo.fits), todo.fits):
                    sub.add(ledger.TaskRef("fit", job.job_id, [cell.hash], cell.fit_hash))
                sub.save()
            # the fit arrays (whole arrays: they hold fits only) of this and earlier submissions;
            # afterany: a failed fit fails its cells with FitMissing instead of blocking them
            deps = sorted({t.job_id.split("_")[0] for t in sub.tasks} |
                          {t.job_id.split("_")[0] for _, t in active_fits})
            if deps:
                executor.update_parameters(slurm_dependency="afterany:" + ":".join(deps))
            for job, chunk in zip(_sbatch(executor.map_array, jobs.cells_task, cell_chunks), cell_chunks):
                sub.add(ledger.TaskRef("cells", job.job_id, [c.hash for c in chunk]))
            sub.save()
            self.say(f"submitted {len(sub.tasks)} Slurm jobs; logs in {_rel(sub.log_folder)}")
        if self.config.detach:
            self.say(f"detached; `python -m bench status --grid {self.grid_ref}` shows progress")
            return False
        new = [(jobs.sub, t) for t in jobs.sub.tasks] if jobs is not None else []
        watched_cells, _ = self.watched(todo, active_fits)
        self.wait(lambda: new + active, watched_cells, self.row_written, f"{self.grid.name}")
        return True

    def local_round(self, todo: Plan, cell_chunks, jobs: "_Jobs | None", active) -> None:
        """submitit-local: the fits, then the cells, each phase from this process, at most a window
        of jobs at a time."""
        config, device, name = self.config, self.device, self.grid.name
        active_fits = [(s, t) for s, t in active if t.kind == "fit"]
        active_cells = [(s, t) for s, t in active if t.kind == "cells"]
        watched_cells, watched_fits = self.watched(todo, active_fits)
        window = config.array_parallelism or max(1, (os.cpu_count() or 1) // config.cpus_per_job)

        def queue(task_of, items, kind):
            if not items:
                return None
            return _LocalQueue(jobs.executor, task_of(jobs), items, kind, jobs.sub, window,
                               job_devices(device, len(items)), self.live)

        if todo.fits or active_fits:
            fits = queue(lambda j: j.fit_task, todo.fits, "fit")
            fit_pairs = fits.pairs if fits else []
            self.wait(lambda: fit_pairs + active_fits, watched_fits, self.root.fit_done, f"{name} fits", fits,
                      unit="fit")
        cells = queue(lambda j: j.cells_task, cell_chunks, "cells")
        cell_pairs = cells.pairs if cells else []
        self.wait(lambda: cell_pairs + active_cells, watched_cells, self.row_written, f"{name} cells", cells)

    def wait(self, pairs, watched: set[str], is_done, desc: str, queue: _LocalQueue | None = None,
             unit: str = "cell") -> dict:
        """Poll until every job of `pairs()` has ended (and `queue`, if any, has submitted all its
        jobs); show how many of `watched` are done (`is_done(key)`). Returns the jobs' final states."""
        bar = Progress(len(watched), desc, quiet=self.quiet, unit=unit)
        seen_done, rechecked = 0, False
        final: dict = {}  # jobs known to have ended with a result are not asked about again
        try:
            while True:
                if queue is not None:
                    queue.pump()
                current = pairs()
                states = probes.query_tasks([(s, t) for s, t in current if (s.id, t.ref) not in final], self.live)
                final.update({k: v for k, v in states.items() if v.state in ("finished", "failed") and not v.lost})
                states.update({(s.id, t.ref): final[(s.id, t.ref)] for s, t in current if (s.id, t.ref) in final})
                done = sum(1 for key in watched if is_done(key))
                bar.update(done - seen_done)
                seen_done = done
                counts = Counter(s.state for s in states.values())
                jobs = ", ".join(f"{counts[k]} {k}" for k in ("running", "queued", "failed", "unknown") if counts[k])
                bar.note(f"jobs: {jobs}" if jobs else "")
                ended = all(s.state in ("finished", "failed") for s in states.values())
                if ended and (queue is None or queue.exhausted):
                    if any(s.lost for s in states.values()) and not rechecked:
                        rechecked = True  # a shared file system may show a result pickle late
                        time.sleep(LOST_GRACE_SECONDS)
                        continue
                    return states
                time.sleep(POLL_SECONDS)
        finally:
            bar.close()


def run_submitit(grid: Grid, root, config: LaunchConfig, device: str = "cpu", quiet: bool = False,
                 command: list[str] | None = None) -> Plan:
    """Submit the grid's missing fits and cells as submitit jobs and (unless `config.detach`) wait
    for them. Raises `SweepFailed` when cells failed; returns the plan it submitted."""
    return SubmititSweep(grid, root, config, device, quiet, command).run()


__all__ = ["SubmititSweep", "chunks", "make_executor", "run_submitit"]
