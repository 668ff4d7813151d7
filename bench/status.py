"""Where a sweep stands: done / running / queued / failed / pending for every cell (and fit) of a grid.

`python -m bench status --grid G` answers without a live launcher, from files alone. This module
is a view: it joins the results root's answer to "done" (`ResultsRoot.row_readable`, `fit_done`)
with the job ledger (`bench.launch.ledger`: the latest submission that holds a cell or fit) and the
probes of its job (`bench.launch.probes`: result pickle, `squeue`, `/proc`), and formats the result.

* a cell is **done** when its row reads, a fit when its `fit.json` exists;
* otherwise the latest ledger entry that holds it says where it stands: a cell that raised inside a
  job (its `failures/` file) or in a local run is **failed** with its exception; a job still queued
  or running makes it **queued** / **running**; a job that ended without writing it makes it
  **failed** (with the last line of its stderr log when it left the queue without a result);
* a cell no entry holds is **pending**: the next `bench run` submits it, as it does failed cells;
  running and queued ones it leaves alone.
"""
from __future__ import annotations

import json
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from .grid import Grid, plugin_label
from .launch import ledger, probes
from .launch.ledger import Submission, TaskRef
from .launch.probes import ACTIVE, TaskState
from .store import ResultsRoot

CELL_STATES = ("done", "running", "queued", "failed", "pending", "unknown")


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
                if self.tasks.get((s.id, t.ref), TaskState("unknown")).state in ACTIVE]

    def to_dict(self) -> dict:
        return {"grid": self.grid, "counts": dict(self.counts()), "fit_counts": dict(self.counts("fit")),
                "cells": [i.to_dict() for i in self.cells], "fits": [i.to_dict() for i in self.fits]}


def _item_from_task(item: Item, sub: Submission, task: TaskRef, state: TaskState) -> Item:
    item.job_id, item.submission, item.log = task.job_id, sub.id, state.log
    failure = ledger.read_failure(sub, item.key) if item.kind == "cell" else None
    if failure is not None:
        item.state, item.error = "failed", failure.get("exception")
        item.log = Path(failure["log"]) if failure.get("log") else state.log
        return item
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
    subs = ledger.load_submissions(root, grid.name)
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
        if root.row_readable(grid.name, h):
            cells.append(Item("cell", h, cell.label(), "done"))
        else:
            cells.append(Item("cell", h, cell.label(), "pending"))
            if h in latest_cell:
                wanted.add(latest_cell[h][0].id)
        fh = cell.fit_hash
        if fh and fh not in fit_seen:
            fit_seen[fh] = cell
            done = root.fit_done(fh)
            label = (f"{plugin_label(cell.model)} | {plugin_label(cell.solver)} | steps={cell.steps} | "
                     f"{plugin_label(cell.method)} | seed={cell.seed}")
            fits.append(Item("fit", fh, label, "done" if done else "pending"))
            if not done and fh in latest_fit:
                wanted.add(latest_fit[fh][0].id)
    tasks = probes.query_tasks([(s, t) for s in subs if s.id in wanted for t in s.tasks], live)
    for items, latest in ((cells, latest_cell), (fits, latest_fit)):
        for item in items:
            if item.state == "pending" and item.key in latest:
                sub, task = latest[item.key]
                _item_from_task(item, sub, task, tasks[(sub.id, task.ref)])
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


def status_json(status: SweepStatus) -> str:
    return json.dumps(status.to_dict(), indent=1, default=str)


__all__ = ["ACTIVE", "CELL_STATES", "Item", "SweepStatus", "format_status", "status_json", "summary_line",
           "sweep_status"]
