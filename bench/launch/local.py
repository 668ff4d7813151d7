"""The `local` executor: a grid's missing fits and cells on this machine.

This process, or N worker processes from joblib's loky backend with one torch thread each, so that
N workers share N cores instead of fighting over them. With several visible CUDA devices and
`--device cuda`, tasks take `cuda:0`, `cuda:1`, ... in turn (`bench.launch.devices`).

A failing fit or cell is recorded in the job ledger (an entry with its exception and traceback,
which `bench status` lists) and the sweep goes on; the run ends with a summary and `SweepFailed`. A
fault of the results root itself (full disk, no permission, a file where a folder belongs;
`bench.store.is_root_fault`) is no cell's failure: it stops the sweep with one `ResultsRootError`
line, and every row written before it stays. Start-up removes what dead writers left anywhere under
the root (temporaries, checkpoints of finished fits). A cell another process holds (its lock) is
put off to the end of the phase and then waited for, so that two runs on one root never compute a
cell twice. Workers watch the launching process and exit when it is gone (a killed `bench run`
leaves no worker computing).
"""
from __future__ import annotations

import os
import sys

from ..errors import UserError
from ..grid import Cell, Grid
from ..progress import Progress
from ..store import ResultsRoot, ResultsRootError, root_error
from . import ledger
from .devices import spread_devices
from .job import Outcome, WorkerSetup, local_task, plugin_modules
from .plan import Plan, note_other_rows, start


class SweepFailed(UserError):
    """Some cells of a sweep failed; `bench status` lists them with their logs."""


class LocalExecutor:
    """Runs the tasks of a sweep on this machine and records their failures in the ledger.

    `root`: the results root; `device`: the torch device; `jobs`: worker processes (1: this one)."""

    def __init__(self, root="results", device: str = "cpu", jobs: int = 1, quiet: bool = False):
        self.given = root.root if isinstance(root, ResultsRoot) else root  # checked when a run starts
        self.root = ResultsRoot(self.given)
        self.device, self.jobs, self.quiet = device, jobs, quiet
        self.failures = 0
        self._record: ledger.Submission | None = None  # created on the first failure
        self._grid: Grid | None = None

    def run(self, grid: Grid) -> Plan:
        """Run every missing cell of `grid`; returns the plan it ran. Raises `SweepFailed` after the
        whole sweep when some fits or cells failed."""
        self._grid, self.failures, self._record = grid, 0, None
        self.root, todo, _ = start(grid, self.given, clean=True)
        if not self.quiet:
            busy = f", {len(todo.in_flight)} left to running jobs" if todo.in_flight else ""
            print(f"{grid.name}: {len(grid.cells)} cells, {len(todo.done)} done, {len(todo.pending)} to run, "
                  f"{len(todo.fits)} fits{busy}", file=sys.stderr)
            note_other_rows(grid, self.root)
        for kind, cells in (("fit", todo.fits), ("cell", todo.pending)):
            busy = self.run_phase(kind, cells, wait=False, desc=f"{grid.name} {kind}s")
            if busy:  # held by another process: wait for it, then take what it left undone
                self.run_phase(kind, busy, wait=True, desc=f"{grid.name} {kind}s (held by another run)", jobs=1)
        if self.failures:
            where = f" --results {self.root.root}" if str(self.root.root) != "results" else ""
            grid_ref = str(grid.path) if grid.path else grid.name
            raise SweepFailed(f"{self.failures} of {len(todo.fits) + len(todo.pending)} fits and cells failed; "
                              f"`python -m bench status --grid {grid_ref}{where}` lists them with their errors; "
                              "the others finished")
        return todo

    def run_phase(self, kind: str, cells: list[Cell], wait: bool, desc: str, jobs: int | None = None) -> list[Cell]:
        """Run one phase's tasks; record failures; return the cells another process held."""
        if not cells:
            return []
        jobs = self.jobs if jobs is None else jobs
        root = str(self.root.root)
        devices = spread_devices(self.device, len(cells), jobs)
        if jobs <= 1:
            outcomes = (local_task(kind, cell, root, dev, wait) for cell, dev in zip(cells, devices))
        else:
            from joblib import Parallel, delayed

            # workers import plugins registered outside bench's packages, use one thread, and
            # exit when this process is gone
            setup = WorkerSetup(threads=1, plugins=tuple(plugin_modules(cells)), parent_pid=os.getpid())
            outcomes = Parallel(n_jobs=jobs, backend="loky", return_as="generator_unordered")(
                delayed(local_task)(kind, cell, root, dev, wait, setup) for cell, dev in zip(cells, devices))
        busy = []
        progress = Progress(len(cells), desc, quiet=self.quiet, unit=kind)
        for outcome in outcomes:
            if outcome.outcome == "root-fault":
                progress.close()
                raise ResultsRootError(outcome.error)
            if outcome.outcome == "busy":
                busy.append(outcome.cell)
            elif outcome.outcome == "failed":
                self.record_failure(outcome)
            progress.update(1, failed=outcome.outcome == "failed")
        progress.close()
        return busy

    def record_failure(self, outcome: Outcome) -> None:
        """Say it on stderr and write a ledger entry (the record is created on the first failure)."""
        self.failures += 1
        cell = outcome.cell
        print(f"bench: {outcome.kind} failed: {cell.label()}: {outcome.error}", file=sys.stderr)
        try:
            if self._record is None:
                self._record = ledger.new_submission(self.root, self._grid.name, "local", [sys.executable, *sys.argv])
            kind = "fit" if outcome.kind == "fit" else "cells"
            self._record.record_failure(kind, cell.hash, cell.fit_hash, outcome.error, outcome.traceback)
        except OSError as err:
            raise root_error(err, self.root.root) from None


def run_local(grid: Grid, root="results", device="cpu", jobs: int = 1, quiet: bool = False) -> Plan:
    """Run every missing cell of `grid` on this machine; returns the plan it ran. Raises
    `SweepFailed` after the whole sweep when some fits or cells failed."""
    return LocalExecutor(root, device, jobs, quiet).run(grid)


__all__ = ["LocalExecutor", "SweepFailed", "run_local"]
