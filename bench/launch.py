"""Executors: run a grid's missing cells on this machine (`local`) or as submitit jobs
(`submitit-local`, `slurm`), resumably.

A sweep runs in two phases, so no two workers ever compute the same thing: first the unique fits
(one task per fit key, each also producing the teacher sets it needs), then the evaluation cells,
which load the cached fits. Cells whose row exists are skipped before anything starts, so a rerun
after a crash or a kill computes exactly the missing cells.

* `local` (`run_local`): this process, or N worker processes from joblib's loky backend with one
  torch thread each, so that N workers share N cores instead of fighting over them. With several
  visible CUDA devices and `--device cuda`, tasks take `cuda:0`, `cuda:1`, ... in turn. A failing
  fit or cell is recorded (a `local` submission record with its exception and traceback, which
  `bench status` lists) and the sweep goes on; the run ends with a summary and `SweepFailed`. A fault
  of the results root itself (full disk, no permission, a file where a folder belongs;
  `bench.store.is_root_fault`) is no cell's failure: it stops the sweep with one `ResultsRootError`
  line, and every row written before it stays. Start-up removes what dead writers left anywhere
  under the root (temporaries, checkpoints of finished fits). A cell
  another process holds (its lock) is put off to the end of the phase and then waited for, so that
  two runs on one root never compute a cell twice. Workers watch the launching process and exit
  when it is gone (a killed `bench run` leaves no worker computing).
* `submitit-local` and `slurm` (`run_submitit`) follow submitit's model: a job is a pickled
  callable run by `python -m submitit.core._submit` with the launcher's interpreter (`sys.executable`,
  i.e. this venv, unless `launch.python` says otherwise); results live on disk. Fits are one job each
  (`map_array` over `FitTask`); cells are chunked, `cells_per_job` to an array task (`map_array` over
  `CellsTask`). Both are `submitit.helpers.Checkpointable`: on a timeout or a preemption submitit
  calls `checkpoint()`, which resubmits the same call (at most `max_requeues` times); a learned
  method's own progress is in `FitContext.save_checkpoint`'s file in the fit directory, which the
  resubmitted fit finds, and a resubmitted chunk skips the cells whose rows exist. On Slurm the
  cells' array waits for the fits with `--dependency=afterany:<fit jobs>`, so `--detach` can return
  at once; submitit-local runs the phases one after the other from this process and keeps at most
  `array_parallelism` jobs running. A cell job never fits: a cell whose fit is missing fails with a
  message that says so (its fit job failed), and the rerun submits the fit again.

Every submission leaves a record under `<results>/<grid>/jobs/` (see `bench.status`), which is how
`bench status` tells queued, running and failed cells apart without this process, and how a rerun
leaves cells that are still queued or running alone and submits only what is missing or failed.

submitit facts this relies on: `AutoExecutor(cluster=...)` is always given the cluster (left alone
it picks Slurm whenever `srun` is on the PATH); its local executor defaults to a 2-minute timeout
and `CUDA_VISIBLE_DEVICES=""`, so both are always set; its debug executor (pdb on failure) is never
used. Job states come from submitit's result pickles and `squeue`, not from submitit's `sacct`
watcher, which reports nothing on a cluster without accounting.
"""
from __future__ import annotations

import importlib
import os
import sys
import time
import traceback
from collections import Counter, deque
from dataclasses import dataclass, field
from pathlib import Path

import submitit

from . import status as st
from .errors import UserError
from .grid import Cell, Grid
from .launch_config import LaunchConfig, make_launch_config
from .progress import Progress
from .rows import row_ok
from .store import (ResultsRoot, ResultsRootError, check_writable, is_root_fault, orphaned_checkpoints,
                    remove_stale_temporaries, root_error)

POLL_SECONDS = float(os.environ.get("BENCH_POLL_SECONDS", "2"))
LOST_GRACE_SECONDS = 3.0  # a job that left the queue is re-checked once for a late result pickle


class SweepFailed(UserError):
    """Some cells of a sweep failed; `bench status` lists them with their logs."""


class FitMissing(RuntimeError):
    """A cell job found no fit for its cell: the fit job failed or was cancelled."""


@dataclass
class Plan:
    pending: list[Cell]
    done: list[Cell]
    fits: list[Cell]  # one representative cell per missing fit key
    in_flight: list[Cell] = field(default_factory=list)  # queued or running in an earlier submission
    submission: st.Submission | None = None


def plan(grid: Grid, root: ResultsRoot, skip_cells=(), skip_fits=()) -> Plan:
    """What a run has to do: cells without rows and the missing fits they need, minus `skip_*`
    (hashes of cells and fits that jobs of an earlier submission are computing)."""
    skip_cells, skip_fits = set(skip_cells), set(skip_fits)
    pending, done, fits, in_flight, seen = [], [], [], [], set()
    from .runner import row_done

    for cell in grid.cells:
        if row_done(root, cell):  # a corrupt row is quarantined here and its cell planned again
            done.append(cell)
            continue
        if cell.hash in skip_cells:
            in_flight.append(cell)
            continue
        pending.append(cell)
        fit_hash = cell.fit_hash
        if (fit_hash and fit_hash not in seen and fit_hash not in skip_fits
                and not (root.fit_dir(fit_hash) / "fit.json").exists()):
            seen.add(fit_hash)
            fits.append(cell)
    return Plan(pending, done, fits, in_flight)


# ----------------------------------------------------------------------------------------------
# local: this process or joblib workers


def _set_threads(threads):
    if threads:
        import torch

        torch.set_num_threads(threads)


def _limit_threads(threads):
    """A job with N CPUs runs N torch threads and N BLAS/OpenMP threads (what joblib's workers
    get from loky), so that jobs sharing a node do not oversubscribe it."""
    if not threads:
        return
    _set_threads(threads)
    from . import runner  # noqa: F401 - loads numpy, scipy, ... before their thread pools are capped
    from .registry import METHODS, METRICS, MODELS, SOLVERS

    for registry in (METHODS, METRICS, MODELS, SOLVERS):
        registry.names()
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return
    threadpool_limits(threads)


def _watch_parent(parent_pid: int | None) -> None:
    """In a worker process: exit as soon as the launching process `parent_pid` is gone."""
    if parent_pid is None or parent_pid == os.getpid() or getattr(_watch_parent, "started", False):
        return
    import threading

    def watch():
        while True:
            try:
                os.kill(parent_pid, 0)
            except ProcessLookupError:
                os._exit(1)
            except PermissionError:
                pass
            time.sleep(0.5)

    threading.Thread(target=watch, daemon=True, name="bench-parent-watch").start()
    _watch_parent.started = True


def _local_task(kind: str, cell: Cell, root: str, device: str, threads: int | None, plugins=(),
                wait: bool = False, parent_pid: int | None = None):
    """One local fit or cell; never raises: returns (kind, cell, outcome, error, traceback) with
    outcome "done", "busy" (another process holds it; retried at the end) or "failed"."""
    _watch_parent(parent_pid)
    _set_threads(threads)
    try:
        _import_plugins(plugins)
        from .runner import fit_cell, run_cell

        if kind == "fit":
            fit_cell(cell, ResultsRoot(root), device)
            return kind, cell, "done", None, None
        written = run_cell(cell, ResultsRoot(root), device, wait=wait)
        return kind, cell, "done" if written is not None else "busy", None, None
    except Exception as err:  # noqa: BLE001 - recorded by the launcher; the sweep goes on
        if is_root_fault(err, root):  # a full disk or a blocked folder fails every cell: stop the sweep
            return kind, cell, "root-fault", str(err if not isinstance(err, OSError) else root_error(err, root)), None
        return kind, cell, "failed", f"{type(err).__name__}: {err}".splitlines()[0], traceback.format_exc()


def cuda_device_count() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def spread_devices(device: str, n_tasks: int, jobs: int, count: int | None = None) -> list[str]:
    """The device of each of `n_tasks` local tasks: with `--device cuda`, several workers and more
    than one visible CUDA device, `cuda:0`, `cuda:1`, ... in turn; otherwise `device` for all."""
    if jobs <= 1 or device != "cuda":
        return [device] * n_tasks
    count = cuda_device_count() if count is None else count
    if count <= 1:
        return [device] * n_tasks
    return [f"cuda:{i % count}" for i in range(n_tasks)]


def _in_flight(grid: Grid, root: ResultsRoot) -> tuple[set[str], set[str], list, st.SweepStatus | None]:
    """Cells and fits that jobs of earlier submissions are still computing, and those jobs."""
    if not st.jobs_dir(root, grid.name).is_dir():
        return set(), set(), [], None
    status = st.sweep_status(grid, root)
    cells = {i.key for i in status.cells if i.state in st.ACTIVE}
    fits = {i.key for i in status.fits if i.state in st.ACTIVE}
    return cells, fits, status.active_tasks(), status


def run_local(grid: Grid, root="results", device="cpu", jobs: int = 1, quiet: bool = False) -> Plan:
    """Run every missing cell of `grid` on this machine; returns the plan it ran. Raises
    `SweepFailed` after the whole sweep when some fits or cells failed."""
    check_writable(root)
    grid.save_copy(root)
    root = ResultsRoot(root)
    busy_cells, busy_fits, active, _ = _in_flight(grid, root)
    clean_root(root)
    todo = plan(grid, root, busy_cells, busy_fits)
    if not quiet:
        busy = f", {len(todo.in_flight)} left to running jobs" if todo.in_flight else ""
        print(f"{grid.name}: {len(grid.cells)} cells, {len(todo.done)} done, {len(todo.pending)} to run, "
              f"{len(todo.fits)} fits{busy}", file=sys.stderr)
        _note_other_rows(grid, root)
    failures = _LocalFailures(root, grid.name)
    for phase, cells in (("fit", todo.fits), ("cell", todo.pending)):
        busy = _run_phase(phase, cells, root, device, jobs, failures, wait=False, quiet=quiet,
                          desc=f"{grid.name} {phase}s")
        if busy:  # held by another process: wait for it, then take what it left undone
            _run_phase(phase, busy, root, device, 1, failures, wait=True, quiet=quiet,
                       desc=f"{grid.name} {phase}s (held by another run)")
    if failures.count:
        where = f" --results {root.root}" if str(root.root) != "results" else ""
        grid_ref = str(grid.path) if grid.path else grid.name
        raise SweepFailed(f"{failures.count} of {len(todo.fits) + len(todo.pending)} fits and cells failed; "
                          f"`python -m bench status --grid {grid_ref}{where}` lists them with their errors; "
                          "the others finished")
    return todo


def clean_root(root: ResultsRoot) -> None:
    """Remove what dead writers left anywhere under the root: their temporaries, and the checkpoints
    of fits that finished (`bench gc` lists the same files)."""
    remove_stale_temporaries(root.root)
    for path in orphaned_checkpoints(root.root):
        path.unlink(missing_ok=True)


def _note_other_rows(grid: Grid, root: ResultsRoot) -> None:
    """Say when the grid's folder holds rows no current cell uses (other parameters, defaults or
    versions, or an older row schema): they are kept, never tabled, and `bench gc` removes them."""
    current = {c.hash for c in grid.all_cells or grid.cells}  # cells left out by `run --only` are current
    others = sum(1 for p in root.rows_dir(grid.name).glob("*.json") if p.stem not in current)
    if others:
        print(f"{grid.name}: {others} rows of other keys (older parameters, defaults or versions) are kept but not "
              f"used; `python -m bench gc --grid ...` lists them", file=sys.stderr)


def _run_phase(phase: str, cells: list[Cell], root: ResultsRoot, device: str, jobs: int,
               failures: "_LocalFailures", wait: bool, quiet: bool, desc: str) -> list[Cell]:
    """Run one phase's tasks; record failures; return the cells another process held."""
    if not cells:
        return []

    devices = spread_devices(device, len(cells), jobs)
    if jobs <= 1:
        results = (_local_task(phase, cell, str(root.root), dev, None, wait=wait) for cell, dev in zip(cells, devices))
    else:
        from joblib import Parallel, delayed

        plugins = plugin_modules(cells)  # workers import plugins registered outside bench's packages
        results = Parallel(n_jobs=jobs, backend="loky", return_as="generator_unordered")(
            delayed(_local_task)(phase, cell, str(root.root), dev, 1, plugins, wait, os.getpid())
            for cell, dev in zip(cells, devices))
    busy = []
    progress = Progress(len(cells), desc, quiet=quiet, unit=phase)
    for kind, cell, outcome, error, text in results:
        if outcome == "root-fault":
            progress.close()
            raise ResultsRootError(error)
        if outcome == "busy":
            busy.append(cell)
        elif outcome == "failed":
            failures.record(kind, cell, error, text)
        progress.update(1, failed=outcome == "failed")
    progress.close()
    return busy


class _LocalFailures:
    """Failures of a local run, kept as a `local` submission record (created on the first one)."""

    def __init__(self, root: ResultsRoot, grid_name: str):
        self.root, self.grid_name = root, grid_name
        self.sub: st.Submission | None = None
        self.count = 0

    def record(self, kind: str, cell: Cell, error: str, text: str) -> None:
        self.count += 1
        print(f"bench: {kind} failed: {cell.label()}: {error}", file=sys.stderr)
        try:
            self._write(kind, cell, error, text)
        except OSError as err:
            raise root_error(err, self.root.root) from None

    def _write(self, kind: str, cell: Cell, error: str, text: str) -> None:
        if self.sub is None:
            self.sub = st.new_submission(self.root, self.grid_name, "local", [sys.executable, *sys.argv])
        log = self.sub.log_folder / f"{cell.hash}.log"
        log.write_text(text)
        if kind == "fit":
            self.sub.add(st.TaskRef("fit", str(os.getpid()), [cell.hash], cell.fit_hash))
        self.sub.add(st.TaskRef("cells", str(os.getpid()), [cell.hash]))
        self.sub.save()
        st.write_failure(self.sub.failures_dir, cell.hash, error, text, str(os.getpid()), str(log))


# ----------------------------------------------------------------------------------------------
# submitit jobs: what runs inside them


def plugin_modules(cells) -> list[tuple[str, str | None]]:
    """(module, folder to put on sys.path) of every plugin class the cells use, so that a job can
    import plugins registered outside bench's own packages (e.g. in a test module or a script)."""
    from .registry import METHODS, METRICS, MODELS, SOLVERS

    modules: dict[str, str | None] = {}
    for cell in cells:
        specs = [(MODELS, cell.model), (SOLVERS, cell.solver), (METHODS, cell.method)]
        specs += [(METRICS, m) for m in cell.metrics]
        for sub, registry in (("solver", SOLVERS), ("method", METHODS)):
            spec = cell.teacher[sub]
            specs.append((registry, spec if isinstance(spec, dict) else {"name": spec}))
        for registry, spec in specs:
            name = registry.get(spec["name"]).__module__
            if name in modules or name == "__main__" or name.split(".")[0] in ("bench", "baselines", "methods"):
                continue
            module = sys.modules.get(name)
            path = getattr(module, "__file__", None)
            base = None
            if path:
                parts = name.split(".")
                p = Path(path).resolve()
                depth = len(parts) if p.name == "__init__.py" else len(parts) - 1
                base = str(p.parents[depth])
            modules[name] = base
    from .plugins import modules as grid_plugin_modules

    for name, base in grid_plugin_modules(cells).items():  # the grid's `plugins:` list, for every worker
        modules.setdefault(name, base)
    return sorted(modules.items())


def _import_plugins(modules) -> None:
    for name, base in modules:
        if name in sys.modules:
            continue
        try:
            importlib.import_module(name)
        except ImportError:
            if not base:
                raise
            sys.path.append(base)
            importlib.import_module(name)


def _job_info() -> tuple[str | None, str | None]:
    """(job id, stderr log path) of the submitit job this code runs in."""
    try:
        env = submitit.JobEnvironment()
        return env.job_id, str(env.paths.stderr)
    except Exception:  # noqa: BLE001 - outside a submitit job
        return None, None


class _JobTask(submitit.helpers.Checkpointable):
    """Shared set-up of a job: torch threads, plugin modules, device. `checkpoint()` (inherited)
    resubmits the same call after a timeout or a preemption."""

    def __init__(self, root: str, device: str, threads: int | None, plugins, record: str | None = None):
        self.root = str(root)
        self.device = device
        self.threads = threads
        self.plugins = list(plugins)
        self.record = record  # the submission record's folder, for per-cell failure files

    def _prepare(self):
        _import_plugins(self.plugins)
        _limit_threads(self.threads)


class FitTask(_JobTask):
    """One fit as a job: `fit_cell` on the cell it was planned for; returns the fit key's hash."""

    def __call__(self, cell: Cell, device: str | None = None) -> str:
        self._prepare()
        from .runner import fit_cell

        fit_cell(cell, ResultsRoot(self.root), device or self.device)
        print(f"fit {cell.fit_hash} done", flush=True)
        return cell.fit_hash


class CellsTask(_JobTask):
    """An array task: run its cells one after the other (each `run_cell` writes its row atomically).
    A cell that raises is recorded in the submission's `failures/` and the others still run; the
    task then raises, listing them, so submitit marks it failed."""

    def __call__(self, cells: list[Cell], device: str | None = None) -> list[str]:
        self._prepare()
        from .runner import run_cell

        root = ResultsRoot(self.root)
        job_id, log = _job_info()
        failed, written = [], []
        for cell in cells:
            if row_ok(root.row_path(cell.grid, cell.hash)):
                continue
            start = time.perf_counter()
            try:
                if cell.fit_hash and not (root.fit_dir(cell.fit_hash) / "fit.json").exists():
                    raise FitMissing(
                        f"the fit {cell.fit_hash[:12]} of this cell is missing: its fit job failed or was "
                        "cancelled (bench status shows it); rerunning bench run submits it again")
                written.append(str(run_cell(cell, root, device or self.device)))
                print(f"cell {cell.hash} done in {time.perf_counter() - start:.1f}s: {cell.label()}", flush=True)
            except Exception as err:  # noqa: BLE001 - recorded, then raised for the whole task below
                text = traceback.format_exc()
                print(f"cell {cell.hash} failed: {cell.label()}\n{text}", file=sys.stderr, flush=True)
                if self.record:
                    st.write_failure(Path(self.record) / "failures", cell.hash, err, text, job_id, log)
                failed.append((cell, err))
        if failed:
            first, err = failed[0]
            raise RuntimeError(f"{len(failed)} of {len(cells)} cells failed; first {first.hash[:12]}: "
                               f"{type(err).__name__}: {err}".splitlines()[0])
        return written


# ----------------------------------------------------------------------------------------------
# submitit jobs: the launcher


def job_device(device: str) -> str:
    """A job sees only the GPUs it was given: `cuda:3` becomes `cuda` inside a job."""
    return device.split(":")[0]


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
    else:  # submitit-local makes GPUs 0..n-1 visible; each job picks its own (see _local_devices)
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


class _LocalQueue:
    """submitit-local has no job arrays: keep at most `window` of the given jobs running,
    submitting the next as one ends. Each job is recorded in the submission as it starts."""

    def __init__(self, executor, task: _JobTask, items: list, kind: str, sub: st.Submission,
                 window: int, devices: list[str], live: dict):
        self.executor, self.task, self.kind, self.sub = executor, task, kind, sub
        self.queue = deque(zip(items, devices))
        self.window, self.live = window, live
        self.jobs: list = []
        self.pairs: list[tuple[st.Submission, st.TaskRef]] = []

    def pump(self) -> None:
        running = sum(1 for job in self.jobs if not job.done())
        submitted = False
        while self.queue and running < self.window:
            item, device = self.queue.popleft()
            job = self.executor.submit(self.task, item, device)
            self.jobs.append(job)
            self.live[job.job_id] = job
            cells = [c.hash for c in item] if self.kind == "cells" else [item.hash]
            ref = st.TaskRef(self.kind, job.job_id, cells, item.fit_hash if self.kind == "fit" else None)
            self.sub.add(ref)
            self.pairs.append((self.sub, ref))
            running += 1
            submitted = True
        if submitted:
            self.sub.save()

    @property
    def exhausted(self) -> bool:
        return not self.queue


def _local_devices(device: str, n: int) -> list[str]:
    if job_device(device) != "cuda":
        return [device] * n
    count = max(cuda_device_count(), 1)
    return [f"cuda:{i % count}" for i in range(n)]


def _wait(pairs, watched: set[str], done_path, live: dict, quiet: bool, desc: str,
          queue: _LocalQueue | None = None, unit: str = "cell") -> dict:
    """Poll until every job of `pairs()` has ended (and `queue`, if any, has submitted all its jobs);
    show how many of `watched` are done (`done_path(key)` exists). Returns the jobs' final states."""
    bar = Progress(len(watched), desc, quiet=quiet, unit=unit)
    seen_done, rechecked = 0, False
    final: dict = {}  # jobs known to have ended with a result are not asked about again
    try:
        while True:
            if queue is not None:
                queue.pump()
            current = pairs()
            states = st.query_tasks([(s, t) for s, t in current if (s.id, t.job_id) not in final], live)
            final.update({k: v for k, v in states.items() if v.state in ("finished", "failed") and not v.lost})
            states.update({(s.id, t.job_id): final[(s.id, t.job_id)] for s, t in current
                           if (s.id, t.job_id) in final})
            done = sum(1 for key in watched if done_path(key).exists())
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


def _sbatch(submit, *args):
    """Submit; sbatch refusing the jobs (unknown partition, account, option) is the user's to fix."""
    try:
        return submit(*args)
    except submitit.core.utils.FailedJobError as err:
        lines = [line for line in str(err).splitlines() if line.strip()]
        reason = lines[-1] if lines else str(err)
        raise UserError(f"sbatch refused the jobs: {reason}; check --partition, --sbatch and the other "
                        "launch settings (grid launch: section)") from None


def run_submitit(grid: Grid, root, config: LaunchConfig, device: str = "cpu", quiet: bool = False,
                 command: list[str] | None = None, _retry: bool = True) -> Plan:
    """Submit the grid's missing fits and cells as submitit jobs and (unless `config.detach`) wait
    for them. Raises `SweepFailed` when cells failed; returns the plan it submitted.

    Cells that failed only because their fit was missing when they ran, and whose fit is done now,
    are submitted once more: Slurm may count a preempted fit as ended for a moment while submitit
    requeues it, and start the cells waiting on it (`afterany`) too early."""
    check_writable(root)
    grid.save_copy(root)
    root = ResultsRoot(Path(root).absolute())
    busy_cells, busy_fits, active, _ = _in_flight(grid, root)
    if not active:
        clean_root(root)
    todo = plan(grid, root, busy_cells, busy_fits)
    say = (lambda msg: None) if quiet else (lambda msg: print(msg, file=sys.stderr))
    cell_chunks = chunks(todo.pending, config.cells_per_job)
    busy = f", {len(todo.in_flight)} in queued or running jobs" if todo.in_flight else ""
    say(f"{grid.name}: {len(grid.cells)} cells, {len(todo.done)} done{busy}; submitting {len(todo.fits)} fits "
        f"and {len(todo.pending)} cells in {len(cell_chunks)} jobs ({config.executor})")
    if not todo.pending and not active:
        return todo

    grid_ref = str(grid.path) if grid.path else grid.name
    active_fits = [(s, t) for s, t in active if t.kind == "fit"]
    active_cells = [(s, t) for s, t in active if t.kind == "cells"]
    watched_cells = {c.hash for c in todo.pending} | {c.hash for c in todo.in_flight}
    watched_fits = {c.fit_hash for c in todo.fits} | {t.fit for _, t in active_fits}
    live: dict = {}  # submitit-local jobs of this process, polled (and reaped) through their Job
    sub = None
    if todo.pending:
        sub = st.new_submission(root, grid.name, config.executor, command)
        todo.submission = sub
        executor = make_executor(config, sub.log_folder, device, f"bench-{grid.name}")
        modules = plugin_modules(todo.pending)
        fit_task = FitTask(root.root, job_device(device), config.cpus_per_job, modules, str(sub.path))
        cells_task = CellsTask(root.root, job_device(device), config.cpus_per_job, modules, str(sub.path))

    def fit_done(key):
        return root.fit_dir(key) / "fit.json"

    def row_done(key):
        return root.row_path(grid.name, key)

    try:
        if config.executor == "slurm":
            if sub is not None:
                if todo.fits:
                    jobs = _sbatch(executor.map_array, fit_task, todo.fits)
                    for job, cell in zip(jobs, todo.fits):
                        sub.add(st.TaskRef("fit", job.job_id, [cell.hash], cell.fit_hash))
                    sub.save()
                # the fit arrays (whole arrays: they hold fits only) of this and earlier submissions;
                # afterany: a failed fit fails its cells with FitMissing instead of blocking them
                deps = sorted({t.job_id.split("_")[0] for t in sub.tasks} |
                              {t.job_id.split("_")[0] for _, t in active_fits})
                if deps:
                    executor.update_parameters(slurm_dependency="afterany:" + ":".join(deps))
                jobs = _sbatch(executor.map_array, cells_task, cell_chunks)
                for job, chunk in zip(jobs, cell_chunks):
                    sub.add(st.TaskRef("cells", job.job_id, [c.hash for c in chunk]))
                sub.save()
                say(f"submitted {len(sub.tasks)} Slurm jobs; logs in {_rel(sub.log_folder)}")
            if config.detach:
                say(f"detached; `python -m bench status --grid {grid_ref}` shows progress")
                return todo
            new = [(sub, t) for t in sub.tasks] if sub is not None else []
            _wait(lambda: new + active, watched_cells, row_done, live, quiet, f"{grid.name}")
        else:  # submitit-local: the fits, then the cells, each phase from this process
            window = config.array_parallelism or max(1, (os.cpu_count() or 1) // config.cpus_per_job)
            if todo.fits or active_fits:
                queue = None
                if todo.fits:
                    queue = _LocalQueue(executor, fit_task, todo.fits, "fit", sub, window,
                                        _local_devices(device, len(todo.fits)), live)
                fit_pairs = queue.pairs if queue else []
                _wait(lambda: fit_pairs + active_fits, watched_fits, fit_done, live, quiet,
                      f"{grid.name} fits", queue, unit="fit")
            queue = None
            if cell_chunks:
                queue = _LocalQueue(executor, cells_task, cell_chunks, "cells", sub, window,
                                    _local_devices(device, len(cell_chunks)), live)
            cell_pairs = queue.pairs if queue else []
            _wait(lambda: cell_pairs + active_cells, watched_cells, row_done, live, quiet, f"{grid.name} cells", queue)
    except KeyboardInterrupt:
        if config.executor == "slurm":
            print(f"bench: stopped waiting; the jobs go on: `python -m bench status --grid {grid_ref}`",
                  file=sys.stderr)
        raise

    final = st.sweep_status(grid, root)
    fit_of = {cell.hash: cell.fit_hash for cell in grid.cells}
    early = {fit_of[item.key] for item in final.cells if item.state == "failed" and fit_of.get(item.key)
             and (item.error or "").startswith("FitMissing")}
    if early and _retry:
        fit_jobs = [(s, t) for s, t in final.active_tasks() if t.kind == "fit" and t.fit in early]
        if fit_jobs:  # e.g. the preempted fit, requeued: let it finish
            _wait(lambda: fit_jobs, early, fit_done, live, quiet, f"{grid.name} fits", unit="fit")
        if any(fit_done(key).exists() for key in early):
            say("cells ran before their fit was done (a requeued fit): submitting them again")
            run_submitit(grid, root, config, device, quiet, command, _retry=False)
            return todo
    say(st.summary_line(final))
    failed = final.counts().get("failed", 0)
    if failed:
        raise SweepFailed(f"{failed} of {len(grid.cells)} cells failed; `python -m bench status --grid {grid_ref}` "
                          "lists them with their errors and logs; rerun the same command to retry them")
    return todo


def _rel(path: Path) -> str:
    """`path` relative to the working directory when it lies below it, else absolute."""
    try:
        rel = os.path.relpath(path)
    except ValueError:
        return str(path)
    return str(path) if rel.startswith("..") else rel


def launch(grid: Grid, root="results", config: LaunchConfig | None = None, device: str = "cpu",
           quiet: bool = False, command: list[str] | None = None) -> Plan:
    """Run the grid with the executor `config` names (default: the grid's `launch:` section)."""
    config = config or make_launch_config(grid.launch)
    try:
        if config.executor == "local":
            return run_local(grid, root=root, device=device, jobs=config.jobs, quiet=quiet)
        return run_submitit(grid, root, config, device=device, quiet=quiet, command=command)
    except OSError as err:  # the results root itself failed (full disk, permissions): one line, exit 2
        if is_root_fault(err, root, any_cause=True):
            raise root_error(err, root) from None
        raise


__all__ = ["CellsTask", "FitTask", "Plan", "SweepFailed", "launch", "make_executor", "plan", "run_local",
           "run_submitit", "spread_devices"]
