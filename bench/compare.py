"""`bench compare ROOT_A ROOT_B [--grid G] [--rtol R] [--atol A]`: the same cells in two results roots.

Two roots of the same grids (two commits, two machines, CPU against GPU) hold rows under the same
cell keys whenever the cells are the same (`bench.grid.Cell.hash`). This module reads every row of
both roots through `bench.rows.read_row`, matches them by grid and cell key, and compares each
metric of the rows' `metrics`:

  * two numbers agree when `math.isclose(a, b, rel_tol=rtol, abs_tol=atol)`, i.e.
    |a - b| <= max(rtol * max(|a|, |b|), atol); the defaults (rtol 1e-9, atol 0) are
    `math.isclose`'s. Two NaNs agree, as do two infinities of one sign; anything else that is not
    equal (a missing metric, a number against None) disagrees;
  * one line per cell with a metric past tolerance, naming each metric with both values and their
    absolute and relative difference; cells found in one root only are listed, and so are rows that
    do not read (`CorruptArtifact`: they cannot be compared, so they count as past tolerance);
  * a summary line. Exit status (`bench compare`): 1 when a cell is past tolerance or a row does not
    read, 0 otherwise, 2 on bad input (a root that is not a folder, roots that share no cell, a
    bad --grid or tolerance).

With --grid, only that grid's current cells are compared (the grid file's cells, `--grid`'s plugins
imported), so rows of older keys are left out; without it, every grid folder of either root.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from .errors import UserError
from .rows import read_row
from .store import CorruptArtifact, ResultsRoot

DEFAULT_RTOL = 1e-9  # math.isclose's rel_tol
DEFAULT_ATOL = 0.0  # math.isclose's abs_tol


class _Missing:
    def __repr__(self):
        return "missing"


MISSING = _Missing()  # a metric one row has and the other has not


@dataclass
class CellDiff:
    grid: str
    cell: str
    label: str
    metrics: list[tuple[str, object, object]]  # (metric, value in A, value in B) past tolerance


@dataclass
class Comparison:
    rtol: float
    atol: float
    compared: int = 0
    diffs: list[CellDiff] = field(default_factory=list)
    only_a: list[tuple[str, str, str]] = field(default_factory=list)  # (grid, cell, label)
    only_b: list[tuple[str, str, str]] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)  # "A: <error>"

    @property
    def failed(self) -> bool:
        return bool(self.diffs or self.unreadable)


def agree(a, b, rtol: float, atol: float) -> bool:
    """Whether two metric values agree within the tolerances (rules in the module docstring)."""
    if isinstance(a, bool) or isinstance(b, bool) or not isinstance(a, (int, float)) or not isinstance(b, (int, float)):
        return a == b
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    return math.isclose(a, b, rel_tol=rtol, abs_tol=atol)


def _label(row: dict) -> str:
    return f"{row['model_label']} | {row['solver_label']} | nfe={row['nfe']} | {row['method_label']} | seed={row['seed']}"


def _grid_names(root: Path) -> list[str]:
    return sorted(p.parent.name for p in root.glob("*/rows") if p.is_dir())


def _rows(root: ResultsRoot, grid: str, keys, side: str, result: Comparison) -> dict[str, dict]:
    """{cell key: row} of the readable rows of `grid` under `root` (all of them when `keys` is None)."""
    paths = root.row_files(grid) if keys is None else [root.row_path(grid, k) for k in keys]
    rows = {}
    for path in paths:
        if not path.is_file():
            continue
        try:
            rows[path.stem] = read_row(path)
        except (CorruptArtifact, OSError) as err:
            result.unreadable.append(f"{side}: {err}")
    return rows


def compare_roots(root_a, root_b, grid=None, rtol: float = DEFAULT_RTOL, atol: float = DEFAULT_ATOL) -> Comparison:
    """Compare the rows of two results roots (`grid`: a `Grid`, to compare only its current cells)."""
    for name, value in (("--rtol", rtol), ("--atol", atol)):
        if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
            raise UserError(f"{name} must be a finite number >= 0, got {value!r}")
    roots = []
    for side, root in (("ROOT_A", root_a), ("ROOT_B", root_b)):
        if not Path(root).is_dir():
            raise UserError(f"{side}: {root} is not a folder; pass two results roots (folders given as --results to run)")
        roots.append(ResultsRoot(root))
    a, b = roots
    result = Comparison(rtol=rtol, atol=atol)
    if grid is not None:
        plans = [(grid.name, [c.hash for c in grid.cells])]
    else:
        plans = [(name, None) for name in sorted(set(_grid_names(a.root)) | set(_grid_names(b.root)))]
    for name, keys in plans:
        rows_a = _rows(a, name, keys, "A", result)
        rows_b = _rows(b, name, keys, "B", result)
        for key in sorted(rows_a.keys() - rows_b.keys()):
            result.only_a.append((name, key, _label(rows_a[key])))
        for key in sorted(rows_b.keys() - rows_a.keys()):
            result.only_b.append((name, key, _label(rows_b[key])))
        for key in sorted(rows_a.keys() & rows_b.keys()):
            ma, mb = rows_a[key]["metrics"], rows_b[key]["metrics"]
            result.compared += 1
            past = [(m, ma.get(m, MISSING), mb.get(m, MISSING)) for m in sorted(set(ma) | set(mb))
                    if m not in ma or m not in mb or not agree(ma[m], mb[m], rtol, atol)]
            if past:
                result.diffs.append(CellDiff(name, key, _label(rows_a[key]), past))
    if not result.compared and not result.unreadable:
        where = f" of grid {grid.name!r}" if grid is not None else ""
        raise UserError(f"{a.root} and {b.root} share no cell{where} ({len(result.only_a)} rows only in A, "
                        f"{len(result.only_b)} only in B); pass two results roots of the same grids")
    return result


def _number(v) -> str:
    return f"{v:.10g}" if isinstance(v, float) else repr(v)


def _difference(a, b) -> str:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool) and not isinstance(b, bool):
        d = abs(a - b)
        scale = max(abs(a), abs(b))
        rel = f", rel {d / scale:.3g}" if scale and math.isfinite(d) else ""
        return f" (diff {d:.3g}{rel})"
    return ""


def format_comparison(result: Comparison, root_a, root_b) -> str:
    lines = [f"A = {root_a}, B = {root_b}; rtol {result.rtol:g}, atol {result.atol:g}"]
    for d in result.diffs:
        parts = "; ".join(f"{m} {_number(a)} vs {_number(b)}{_difference(a, b)}" for m, a, b in d.metrics)
        lines.append(f"past tolerance: {d.grid}: {d.label} [{d.cell}]: {parts}")
    for side, cells in (("A", result.only_a), ("B", result.only_b)):
        for grid, cell, label in cells:
            lines.append(f"only in {side}: {grid}: {label} [{cell}]")
    for text in result.unreadable:
        lines.append(f"unreadable row in {text}")
    worst = None
    for d in result.diffs:
        for m, a, b in d.metrics:
            if isinstance(a, (int, float)) and isinstance(b, (int, float)) and max(abs(a), abs(b)) > 0:
                rel = abs(a - b) / max(abs(a), abs(b))
                if math.isfinite(rel) and (worst is None or rel > worst[0]):
                    worst = (rel, m, d.label)
    summary = (f"summary: {result.compared} cells in both roots, {len(result.diffs)} past tolerance, "
               f"{len(result.only_a)} only in A, {len(result.only_b)} only in B, {len(result.unreadable)} unreadable")
    if worst:
        summary += f"; largest relative difference {worst[0]:.3g} ({worst[1]}, {worst[2]})"
    lines.append(summary)
    return "\n".join(lines)


__all__ = ["Comparison", "DEFAULT_ATOL", "DEFAULT_RTOL", "agree", "compare_roots", "format_comparison"]
