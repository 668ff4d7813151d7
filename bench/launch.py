"""Executors: run a grid's cells on this machine, sequentially or in worker processes.

A sweep runs in two phases, so no two workers ever compute the same thing: first the unique fits
(one task per fit key, each also producing the teacher sets it needs), then the evaluation cells,
which load the cached fits. Cells whose row exists are skipped before anything starts, so a rerun
after a crash or a kill computes exactly the missing cells. Worker processes come from joblib's
loky backend, one torch thread each so that N workers share N cores instead of fighting over them.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass

from .grid import Cell, Grid
from .store import ResultsRoot, remove_stale_temporaries


@dataclass
class Plan:
    pending: list[Cell]
    done: list[Cell]
    fits: list[Cell]  # one representative cell per missing fit key


def plan(grid: Grid, root: ResultsRoot) -> Plan:
    pending, done, fits, seen = [], [], [], set()
    for cell in grid.cells:
        if root.row_path(grid.name, cell.hash).exists():
            done.append(cell)
            continue
        pending.append(cell)
        fit_hash = cell.fit_hash
        if fit_hash and fit_hash not in seen and not (root.fit_dir(fit_hash) / "fit.json").exists():
            seen.add(fit_hash)
            fits.append(cell)
    return Plan(pending, done, fits)


def _fit_task(cell: Cell, root: str, device: str, threads: int | None):
    _set_threads(threads)
    from .runner import fit_cell

    fit_cell(cell, ResultsRoot(root), device)


def _cell_task(cell: Cell, root: str, device: str, threads: int | None):
    _set_threads(threads)
    from .runner import run_cell

    return str(run_cell(cell, ResultsRoot(root), device))


def _set_threads(threads):
    if threads:
        import torch

        torch.set_num_threads(threads)


def run_local(grid: Grid, root="results", device="cpu", jobs: int = 1, quiet: bool = False) -> Plan:
    """Run every missing cell of `grid` on this machine; returns the plan it ran."""
    root = ResultsRoot(root)
    remove_stale_temporaries(root.rows_dir(grid.name))
    todo = plan(grid, root)
    show = not quiet and sys.stderr.isatty()
    if not quiet:
        print(f"{grid.name}: {len(grid.cells)} cells, {len(todo.done)} done, {len(todo.pending)} to run, "
              f"{len(todo.fits)} fits", file=sys.stderr)
    phases = [("fit", _fit_task, todo.fits), ("cells", _cell_task, todo.pending)]
    for phase, task, cells in phases:
        if not cells:
            continue
        if jobs <= 1:
            iterator = (task(cell, str(root.root), device, None) for cell in cells)
        else:
            from joblib import Parallel, delayed

            iterator = Parallel(n_jobs=jobs, backend="loky", return_as="generator_unordered")(
                delayed(task)(cell, str(root.root), device, 1) for cell in cells
            )
        _drain(iterator, total=len(cells), desc=f"{grid.name} {phase}", show=show)
    return todo


def _drain(iterator, total: int, desc: str, show: bool):
    from tqdm import tqdm

    for _ in tqdm(iterator, total=total, desc=desc, disable=not show, leave=False):
        pass
