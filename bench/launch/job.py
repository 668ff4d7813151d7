"""What runs inside a job: arguments in, results on disk (submitit's model).

Every executor hands a worker the same things: the cell(s), the results root's path, a device and a
`WorkerSetup` (torch threads, the plugin modules to import, the launching process to watch). The
work itself is `bench.runner.fit_cell` / `run_cell`, which write their fit or row atomically under
the root; what a task returns only says how it went.

* `local_task`: one fit or cell of a local run, in this process or a joblib worker; never raises
  (its `Outcome` says done, busy, failed or root-fault).
* `FitTask` / `CellsTask`: submitit callables (`submitit.helpers.Checkpointable`: on a timeout or a
  preemption submitit calls `checkpoint()`, which resubmits the same call). A fit job runs one fit;
  a cells job (an array task) runs its cells one after the other, records each cell that raises in
  its submission's `failures/` and goes on, then raises so that submitit marks the task failed. A
  cells job never fits: a cell whose fit is missing fails with `FitMissing`.
"""
from __future__ import annotations

import importlib
import os
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import submitit

from ..grid import Cell
from ..store import ResultsRoot, is_root_fault, root_error
from . import ledger


class FitMissing(RuntimeError):
    """A cell job found no fit for its cell: the fit job failed or was cancelled."""


def plugin_modules(cells) -> list[tuple[str, str | None]]:
    """(module, folder to put on sys.path) of every plugin class the cells use, so that a job can
    import plugins registered outside bench's own packages (e.g. in a test module or a script)."""
    from ..registry import METHODS, METRICS, MODELS, SOLVERS

    modules: dict[str, str | None] = {}
    for cell in cells:
        specs = [(MODELS, cell.model), (SOLVERS, cell.solver), (METHODS, cell.method)]
        specs += [(METRICS, m) for m in cell.metrics]
        for sub, registry in (("solver", SOLVERS), ("method", METHODS)):
            spec = cell.teacher[sub]
            specs.append((registry, spec if isinstance(spec, dict) else {"name": spec}))
        for registry, spec in specs:
            name = registry.get(spec["name"]).__module__
            if name in modules or name == "__main__" or name.split(".")[0] == "bench":
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
    from ..plugins import modules as grid_plugin_modules

    for name, base in grid_plugin_modules(cells).items():  # the grid's `plugins:` list, for every worker
        modules.setdefault(name, base)
    return sorted(modules.items())


def import_plugins(modules) -> None:
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


def _set_threads(threads):
    if threads:
        import torch

        torch.set_num_threads(threads)


def limit_threads(threads) -> None:
    """A job with N CPUs runs N torch threads and N BLAS/OpenMP threads (what joblib's workers
    get from loky), so that jobs sharing a node do not oversubscribe it."""
    if not threads:
        return
    _set_threads(threads)
    from .. import runner  # noqa: F401 - loads numpy, scipy, ... before their thread pools are capped
    from ..registry import METHODS, METRICS, MODELS, SOLVERS

    for registry in (METHODS, METRICS, MODELS, SOLVERS):
        registry.names()
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return
    threadpool_limits(threads)


def watch_parent(parent_pid: int | None) -> None:
    """In a worker process: exit as soon as the launching process `parent_pid` is gone."""
    if parent_pid is None or parent_pid == os.getpid() or getattr(watch_parent, "started", False):
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
    watch_parent.started = True


@dataclass(frozen=True)
class WorkerSetup:
    """What a worker sets up before its work: torch threads (None: leave them), plugin modules to
    import, and the launching process whose end it follows (local workers only)."""

    threads: int | None = None
    plugins: tuple = ()
    parent_pid: int | None = None

    def apply(self, cap_pools: bool = False) -> None:
        watch_parent(self.parent_pid)
        if cap_pools:  # a submitit job: torch and the BLAS/OpenMP pools
            import_plugins(self.plugins)
            limit_threads(self.threads)
        else:
            _set_threads(self.threads)
            import_plugins(self.plugins)


class Outcome(NamedTuple):
    """How one local task went: "done", "busy" (another process holds it; retried at the end),
    "failed" (with the exception's line and traceback) or "root-fault" (the results root failed)."""

    kind: str
    cell: Cell
    outcome: str
    error: str | None = None
    traceback: str | None = None


def local_task(kind: str, cell: Cell, root: str, device: str, wait: bool = False,
               setup: WorkerSetup = WorkerSetup()) -> Outcome:
    """One fit (`kind` "fit") or cell ("cell") of a local run; never raises."""
    try:
        setup.apply()
        from ..runner import fit_cell, run_cell

        if kind == "fit":
            fit_cell(cell, ResultsRoot(root), device)
            return Outcome(kind, cell, "done")
        written = run_cell(cell, ResultsRoot(root), device, wait=wait)
        return Outcome(kind, cell, "done" if written is not None else "busy")
    except Exception as err:  # noqa: BLE001 - recorded by the launcher; the sweep goes on
        if is_root_fault(err, root):  # a full disk or a blocked folder fails every cell: stop the sweep
            return Outcome(kind, cell, "root-fault", str(err if not isinstance(err, OSError) else root_error(err, root)))
        return Outcome(kind, cell, "failed", f"{type(err).__name__}: {err}".splitlines()[0], traceback.format_exc())


def _job_info() -> tuple[str | None, str | None]:
    """(job id, stderr log path) of the submitit job this code runs in."""
    try:
        env = submitit.JobEnvironment()
        return env.job_id, str(env.paths.stderr)
    except Exception:  # noqa: BLE001 - outside a submitit job
        return None, None


@dataclass
class _JobTask(submitit.helpers.Checkpointable):
    """Shared set-up of a job: results root, device, worker set-up, and the ledger record's folder
    (for per-cell failure files). `checkpoint()` (inherited) resubmits the same call."""

    root: str
    device: str
    setup: WorkerSetup = field(default_factory=WorkerSetup)
    record: str | None = None

    def __post_init__(self):
        self.root = str(self.root)


class FitTask(_JobTask):
    """One fit as a job: `fit_cell` on the cell it was planned for; returns the fit key's hash."""

    def __call__(self, cell: Cell, device: str | None = None) -> str:
        self.setup.apply(cap_pools=True)
        from ..runner import fit_cell

        fit_cell(cell, ResultsRoot(self.root), device or self.device)
        print(f"fit {cell.fit_hash} done", flush=True)
        return cell.fit_hash


class CellsTask(_JobTask):
    """An array task: run its cells one after the other (each `run_cell` writes its row atomically).
    A cell that raises is recorded in the submission's `failures/` and the others still run; the
    task then raises, listing them, so submitit marks it failed."""

    def __call__(self, cells: list[Cell], device: str | None = None) -> list[str]:
        self.setup.apply(cap_pools=True)
        from ..runner import run_cell

        root = ResultsRoot(self.root)
        job_id, log = _job_info()
        failed, written = [], []
        for cell in cells:
            if root.row_readable(cell.grid, cell.hash):
                continue
            start = time.perf_counter()
            try:
                if cell.fit_hash and not root.fit_done(cell.fit_hash):
                    raise FitMissing(
                        f"the fit {cell.fit_hash[:12]} of this cell is missing: its fit job failed or was "
                        "cancelled (bench status shows it); rerunning bench run submits it again")
                written.append(str(run_cell(cell, root, device or self.device)))
                print(f"cell {cell.hash} done in {time.perf_counter() - start:.1f}s: {cell.label()}", flush=True)
            except Exception as err:  # noqa: BLE001 - recorded, then raised for the whole task below
                text = traceback.format_exc()
                print(f"cell {cell.hash} failed: {cell.label()}\n{text}", file=sys.stderr, flush=True)
                if self.record:
                    ledger.write_failure(Path(self.record) / "failures", cell.hash, err, text, job_id, log)
                failed.append((cell, err))
        if failed:
            first, err = failed[0]
            raise RuntimeError(f"{len(failed)} of {len(cells)} cells failed; first {first.hash[:12]}: "
                               f"{type(err).__name__}: {err}".splitlines()[0])
        return written


__all__ = ["CellsTask", "FitMissing", "FitTask", "Outcome", "WorkerSetup", "import_plugins", "limit_threads",
           "local_task", "plugin_modules", "watch_parent"]
