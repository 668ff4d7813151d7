"""`bench run --dry-run`: the cells, fits and teacher sets a run would compute, and their cost.

Nothing is computed, written, locked or quarantined: a cell counts as done when its row reads
cleanly (`bench.rows.row_ok`), a fit when its `fit.json` exists, a teacher set when its file exists
(`bench.store.ResultsRoot` paths, the keys the runner uses).

Cost is counted in network evaluations (denoiser calls, one per sample each; a guided model's
wrapper may call its network more than once per evaluation):
  * a cell: the solver's NFE for the cell's steps (`Solver.nfe`, what the row reports as
    `nfe_expected`) x the evaluation samples (`samples.eval`);
  * an evaluation teacher set (one per model, teacher, seed and size, shared by every cell that has
    that key): the teacher solver's NFE for `teacher.steps` x `samples.eval`;
  * a fit: what the method estimates, when its class defines `estimate_fit_nfe(cell) -> int | None`
    (network evaluations of the whole fit, its training teacher sets included); no built-in method
    defines it yet, so fits are listed with "not estimated", and the total says how many.
"""
from __future__ import annotations

from .grid import Cell, Grid, plugin_label
from .registry import METHODS, MODELS, SOLVERS
from .rows import row_ok
from .seeding import stable_hash
from .store import ResultsRoot


def _plugin(registry, spec):
    spec = spec if isinstance(spec, dict) else {"name": spec}
    return registry.get(spec["name"])(**{k: v for k, v in spec.items() if k not in ("name", "label")})


def cell_nfe(cell: Cell) -> int:
    """Network evaluations per sample of the cell's sampling."""
    return int(_plugin(SOLVERS, cell.solver).nfe(cell.steps))


def teacher_nfe(cell: Cell) -> int:
    """Network evaluations per sample of the cell's teacher solve."""
    return int(_plugin(SOLVERS, cell.teacher["solver"]).nfe(cell.teacher["steps"]))


def eval_teacher_key(cell: Cell, model) -> str:
    """The hash of the evaluation teacher set the runner uses for `cell` (`runner.cell_teacher`)."""
    from .teacher import teacher_key

    return stable_hash(teacher_key(model, cell.teacher, "eval", cell.seed, cell.samples["eval"],
                                   key_parts={"model": cell.resolved["model"], "teacher": cell.resolved["teacher"]}))


def fit_estimate(cell: Cell) -> int | None:
    estimate = getattr(_plugin(METHODS, cell.method), "estimate_fit_nfe", None)
    return None if estimate is None else estimate(cell)


def _count(n: int) -> str:
    return f"{n:,}".replace(",", "_")


def describe(grid: Grid, root, source: str = "") -> str:
    """The dry run's report (lines of text)."""
    root = ResultsRoot(root)
    cells_done = {c.hash for c in grid.cells if row_ok(root.row_path(c.grid, c.hash))}
    todo = [c for c in grid.cells if c.hash not in cells_done]

    fits: dict[str, list[Cell]] = {}
    for cell in grid.cells:
        if cell.fit_hash:
            fits.setdefault(cell.fit_hash, []).append(cell)
    fit_done = {key for key in fits if root.fit_done(key)}
    needed_fits = {c.fit_hash for c in todo if c.fit_hash and c.fit_hash not in fit_done}

    models: dict[str, object] = {}
    teachers: dict[str, list[Cell]] = {}
    for cell in todo:
        model_key = stable_hash(cell.model)
        if model_key not in models:
            models[model_key] = _plugin(MODELS, cell.model)
        teachers.setdefault(eval_teacher_key(cell, models[model_key]), []).append(cell)
    teacher_done = {key for key in teachers if root.teacher_path(key).exists()}

    lines = [f"{grid.name}{f' ({source})' if source else ''}: {len(grid.cells)} cells ({len(cells_done)} done, "
             f"{len(todo)} to run); {len(fits)} fits ({len(fit_done)} done, {len(needed_fits)} to run); "
             f"{len(teachers)} evaluation teacher sets for the cells to run ({len(teacher_done)} done, "
             f"{len(teachers) - len(teacher_done)} to compute); results root {root.root}"]

    sampling = 0
    lines.append("cells (model | solver | nfe | method | seed; cell key; network evaluations = NFE x eval samples):")
    for cell in grid.cells:
        nfe, n = cell_nfe(cell), cell.samples["eval"]
        state = "done  " if cell.hash in cells_done else "to run"
        if cell.hash not in cells_done:
            sampling += nfe * n
        lines.append(f"  {state}  {cell.label()}  {cell.hash[:12]}  {nfe} x {n} = {_count(nfe * n)}")

    fit_total, unknown = 0, 0
    if fits:
        lines.append("fits (one per fit key, shared by the cells listed; network evaluations of the whole fit):")
    for key, cells in fits.items():
        cell = cells[0]
        if key in fit_done:
            state, cost = "done  ", "cached"
        else:
            estimate = fit_estimate(cell)
            state = "to run" if key in needed_fits else "unneeded"  # every cell of this fit has its row
            if estimate is None:
                cost = f"not estimated ({cell.method['name']} gives no estimate)"
                unknown += key in needed_fits
            else:
                cost = f"about {_count(int(estimate))}"
                fit_total += int(estimate) if key in needed_fits else 0
        what = " | ".join([plugin_label(cell.model), plugin_label(cell.solver), f"steps={cell.steps}",
                           plugin_label(cell.method), f"seed={cell.seed}"])
        lines.append(f"  {state}  {what}  fit {key[:12]}  {len(cells)} cells  {cost}")

    teacher_total = 0
    if teachers:
        lines.append("evaluation teacher sets of the cells to run (network evaluations = teacher NFE x samples):")
    for key, cells in teachers.items():
        cell = cells[0]
        nfe, n = teacher_nfe(cell), cell.samples["eval"]
        state = "done  " if key in teacher_done else "to run"
        if key not in teacher_done:
            teacher_total += nfe * n
        lines.append(f"  {state}  {plugin_label(cell.model)} seed={cell.seed} eval n={n}  {key[:12]}  "
                     f"{nfe} x {n} = {_count(nfe * n)}")

    total = sampling + teacher_total + fit_total
    parts = [f"{_count(sampling)} sampling", f"{_count(teacher_total)} evaluation teacher sets"]
    if fit_total:
        parts.append(f"{_count(fit_total)} fits (estimated)")
    tail = f", plus {unknown} fits whose method gives no estimate" if unknown else ""
    lines.append(f"network evaluations still to run: {' + '.join(parts)} = {_count(total)}{tail}")
    lines.append("--dry-run: nothing was run or written")
    return "\n".join(lines)


__all__ = ["cell_nfe", "describe", "eval_teacher_key", "fit_estimate", "teacher_nfe"]
