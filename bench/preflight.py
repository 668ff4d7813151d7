"""Checks made before a run starts: every file the grid's models need exists.

Each model lists its path parameters with `Denoiser.required_paths()` (read from its parameters,
nothing loaded). `missing_paths(cells)` collects every missing one across all models of the cells;
`check_paths(cells)` raises ONE `UserError` listing them all, so a user fixes a grid in one go
instead of discovering the files one failed cell at a time.
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


def check_paths(cells) -> None:
    missing = missing_paths(cells)
    if missing:
        raise UserError(f"{len(missing)} missing file(s) for this grid's models: " + "; ".join(missing)
                        + " -- put the files there or fix the paths in the grid (see the grid's comments)")


__all__ = ["check_paths", "missing_paths"]
