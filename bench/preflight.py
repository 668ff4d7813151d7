"""Checks made before a run starts: every file the grid's models and metrics need exists.

Each model lists its path parameters with `Denoiser.required_paths()` (read from its parameters,
nothing loaded); each metric that loads weights checks them with `check_ready()` (Inception for
FID/KID, torchvision's backbone for LPIPS). `missing_paths(cells)` and `metric_problems(cells)`
collect every problem across the cells; `check_paths(cells)` raises ONE `UserError` listing them
all, so a user fixes a grid in one go instead of discovering the files one failed cell at a time.
(Whether a metric suits a model at all is checked earlier, when the grid is parsed.)
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


def check_paths(cells) -> None:
    missing = missing_paths(cells) + metric_problems(cells)
    if missing:
        raise UserError(f"{len(missing)} missing file(s) for this grid's models: " + "; ".join(missing)
                        + " -- put the files there or fix the paths in the grid (see the grid's comments)")


__all__ = ["check_paths", "missing_paths"]
