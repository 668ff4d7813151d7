"""The plan of a sweep: which cells have no row yet and which fits they need, minus what jobs of an
earlier submission are computing.

A sweep runs in two phases, so no two workers ever compute the same thing: first the unique fits
(one task per fit key, each also producing the teacher sets it needs), then the evaluation cells,
which load the cached fits. Cells whose row is done (`ResultsRoot.row_done`; a corrupt row is
quarantined and its cell planned again) are skipped before anything starts, so a rerun after a
crash or a kill computes exactly the missing cells.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass, field

from .. import status as st
from ..grid import Cell, Grid
from ..store import ResultsRoot, check_writable, orphaned_checkpoints, remove_stale_temporaries
from . import ledger


@dataclass
class Plan:
    pending: list[Cell]
    done: list[Cell]
    fits: list[Cell]  # one representative cell per missing fit key
    in_flight: list[Cell] = field(default_factory=list)  # queued or running in an earlier submission
    submission: ledger.Submission | None = None


def plan(grid: Grid, root: ResultsRoot, skip_cells=(), skip_fits=()) -> Plan:
    """What a run has to do: cells without rows and the missing fits they need, minus `skip_*`
    (hashes of cells and fits that jobs of an earlier submission are computing)."""
    skip_cells, skip_fits = set(skip_cells), set(skip_fits)
    pending, done, fits, in_flight, seen = [], [], [], [], set()
    for cell in grid.cells:
        if root.row_done(cell):
            done.append(cell)
            continue
        if cell.hash in skip_cells:
            in_flight.append(cell)
            continue
        pending.append(cell)
        fit_hash = cell.fit_hash
        if fit_hash and fit_hash not in seen and fit_hash not in skip_fits and not root.fit_done(fit_hash):
            seen.add(fit_hash)
            fits.append(cell)
    return Plan(pending, done, fits, in_flight)


@dataclass
class InFlight:
    """Cells and fits that jobs of earlier submissions are still computing, and those jobs."""

    cells: set[str] = field(default_factory=set)
    fits: set[str] = field(default_factory=set)
    jobs: list = field(default_factory=list)  # (submission, task) pairs


def in_flight(grid: Grid, root: ResultsRoot) -> InFlight:
    if not ledger.has_records(root, grid.name):
        return InFlight()
    status = st.sweep_status(grid, root)
    return InFlight({i.key for i in status.cells if i.state in st.ACTIVE},
                    {i.key for i in status.fits if i.state in st.ACTIVE}, status.active_tasks())


def clean_root(root: ResultsRoot) -> None:
    """Remove what dead writers left anywhere under the root: their temporaries, and the checkpoints
    of fits that finished (`bench gc` lists the same files)."""
    remove_stale_temporaries(root.root)
    for path in orphaned_checkpoints(root.root):
        path.unlink(missing_ok=True)


def start(grid: Grid, root, clean: bool | None = None) -> tuple[ResultsRoot, Plan, InFlight]:
    """What every executor does first: check the root, keep the grid's copy, find the jobs still
    running, clean up after dead writers (`clean`: True always, None only when no job of an earlier
    submission runs), and plan."""
    check_writable(root)
    grid.save_copy(root)
    root = root if isinstance(root, ResultsRoot) else ResultsRoot(root)
    busy = in_flight(grid, root)
    if clean or (clean is None and not busy.jobs):
        clean_root(root)
    return root, plan(grid, root, busy.cells, busy.fits), busy


def note_other_rows(grid: Grid, root: ResultsRoot) -> None:
    """Say when the grid's folder holds rows no current cell uses (other parameters, defaults or
    versions, or an older row schema): they are kept, never tabled, and `bench gc` removes them."""
    current = {c.hash for c in grid.all_cells or grid.cells}  # cells left out by `run --only` are current
    others = sum(1 for p in root.row_files(grid.name) if p.stem not in current)
    if others:
        print(f"{grid.name}: {others} rows of other keys (older parameters, defaults or versions) are kept but not "
              f"used; `python -m bench gc --grid ...` lists them", file=sys.stderr)


__all__ = ["InFlight", "Plan", "clean_root", "in_flight", "note_other_rows", "plan", "start"]
