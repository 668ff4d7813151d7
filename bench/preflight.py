"""Checks made before a run starts: every file the grid's models and metrics need exists, and every
closed-form method that can tell from the model's noise schedule and the step count alone whether a
cell can run says so (`method_problems`).

Each model lists its path parameters with `Denoiser.required_paths()` (read from its parameters,
nothing loaded); each metric that loads weights checks them with `check_ready()` (Inception for
FID/KID, torchvision's backbone for LPIPS). `missing_paths(cells)` and `metric_problems(cells)`
collect every problem across the cells; `check_paths(cells)` raises ONE `UserError` listing them
all, so a user fixes a grid in one go instead of discovering the files one failed cell at a time.
(Whether a metric suits a model at all is checked earlier, when the grid is parsed.)

A method class with a `check_cell()` method (bound to the model's schedule and the cell's steps,
nothing else: no model evaluation, no teacher) is asked once per distinct (method, model, steps);
`manual` checks its list's length and range there, so a list that does not fit a cell is one
error before the teacher runs, not a failure per cell after it.
"""
from __future__ import annotations

from pathlib import Path

from .errors import UserError
from .models import make_model
from .seeding import stable_hash


def missing_paths(cells) -> list[str]:
    """"model '<name>' <parameter>: <path>" for every required path that does not exist."""
    missing, seen = [], set()
    for cell in cells:
        key = stable_hash(cell.model)
        if key in seen:
            continue
        seen.add(key)
        model = make_model(cell.model)
        for param, path in model.required_paths().items():
            if not Path(path).expanduser().exists():
                missing.append(f"model {cell.model['name']!r} {param}: {path}")
    return missing


def metric_problems(cells) -> list[str]:
    """The metrics' own checks of the files they load (Inception, LPIPS weights), one line each."""
    from .grid import _unlabelled
    from .metrics import make_metric

    problems, seen = [], set()
    for cell in cells:
        for spec in cell.metrics:
            key = stable_hash(_unlabelled(spec))
            if key in seen:
                continue
            seen.add(key)
            check = getattr(make_metric(_unlabelled(spec)), "check_ready", None)
            if check is None:
                continue
            try:
                check()
            except UserError as err:
                problems.append(f"metric {spec['name']!r}: {err}")
    return problems


def method_problems(cells) -> list[str]:
    """"method <label> at nfe=N on model <label>: <the method's error>" for every cell whose
    method's `check_cell()` refuses it (module docstring)."""
    from .grid import _unlabelled, plugin_label
    from .registry import METHODS
    from .runner import resolved_params

    problems, seen, schedules = [], set(), {}
    for cell in cells:
        cls = METHODS.get(cell.method["name"])
        if not callable(getattr(cls, "check_cell", None)):
            continue
        spec = cell.resolved.get("method") or _unlabelled(cell.method)
        key = stable_hash([spec, _unlabelled(cell.model), cell.steps])
        if key in seen:
            continue
        seen.add(key)
        model_key = stable_hash(_unlabelled(cell.model))
        if model_key not in schedules:
            schedules[model_key] = make_model(cell.model).schedule
        try:
            cls(**resolved_params(spec, cls)).bind(schedules[model_key], cell.steps).check_cell()
        except UserError as err:
            problems.append(f"method {plugin_label(cell.method)} at nfe={cell.nfe} ({cell.steps} steps) on model "
                            f"{plugin_label(cell.model)}: {err}")
    return problems


def check_paths(cells) -> None:
    """Everything this module checks; one `UserError` for the methods' problems, else one for files."""
    problems = method_problems(cells)
    if problems:
        raise UserError(f"{len(problems)} cell(s) of this grid cannot run: " + "; ".join(problems)
                        + " -- fix these grid.methods entries (or exclude the cells) and run again")
    missing = missing_paths(cells) + metric_problems(cells)
    if missing:
        raise UserError(f"{len(missing)} missing file(s) for this grid's models: " + "; ".join(missing)
                        + " -- put the files there or fix the paths in the grid (see the grid's comments)")


__all__ = ["check_paths", "missing_paths", "method_problems"]
