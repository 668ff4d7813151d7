"""A grid's `plugins:` list: modules of third-party plugins, imported before the grid's names resolve.

    plugins: [my_plugins, lab.solvers.midpoint]   # importable module names (PYTHONPATH or installed)

Importing such a module registers what it defines (`@METHODS.register(...)`, `@SOLVERS.register(...)`,
models, metrics, noise schedules), exactly as a built-in module does. `bench.grid.parse_grid` imports
the list before it looks up a single name, so every command that reads the grid (`run`, `status`,
`report`, `check`, `export`, `gc`, and the grid copy a run keeps beside its rows) finds the plugins.
Each cell carries the list (`Cell.plugins`); `modules(cells)` gives the worker processes of
`--jobs N` and the submitit / Slurm jobs the same modules with the folder each was found in, and
they import them (`bench.launch`) before they resolve a cell, so a plugin reaches every worker.

Installed packages can instead declare entry points (`bench.registry.ENTRY_POINT_GROUPS`), which every
process loads on its own. A plugin defined in a notebook or in the script that calls `bench` lives
in `__main__`, which no other process can import: move it into a module and list it here.

A module that cannot be imported is one `GridError` naming `grid.plugins[i]` and the fix.
"""
from __future__ import annotations

import importlib
import re
import sys
from pathlib import Path

from .errors import GridError, UserError

# A dotted Python module name (PEP 8 identifiers; what `importlib.import_module` accepts without a package).
MODULE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")


def plugin_names(raw: dict) -> tuple[str, ...]:
    """The grid's `plugins:` list, checked: a list of dotted module names (a single name is accepted)."""
    value = raw.get("plugins")
    if value is None:
        return ()
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list):
        raise GridError(f"grid.plugins must be a list of module names, e.g. `plugins: [my_plugins]`, got {value!r}")
    for i, name in enumerate(value):
        if not isinstance(name, str) or not MODULE_NAME.fullmatch(name):
            raise GridError(f"grid.plugins[{i}] must be an importable module name such as my_plugins or "
                            f"lab.solvers, got {name!r}")
    return tuple(value)


def import_plugins(names, where: str = "grid.plugins") -> None:
    """Import each module of `names`; a failure is one GridError naming `where[i]` and the fix."""
    for i, name in enumerate(names):
        if name in sys.modules:
            continue
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as err:
            if err.name and (name == err.name or name.startswith(err.name + ".")):
                raise GridError(f"{where}[{i}]: no module named {name!r} on the Python path; install its package, "
                                "add its folder to PYTHONPATH, or remove it from the list") from None
            raise GridError(f"{where}[{i}]: importing {name!r} failed: {err}; install what it imports") from None
        except UserError as err:
            raise GridError(f"{where}[{i}]: importing {name!r} failed: {err}") from None
        except Exception as err:  # noqa: BLE001 - a plugin's own error: one line naming the module
            text = str(err).splitlines()[0] if str(err) else ""
            raise GridError(f"{where}[{i}]: importing {name!r} raised {type(err).__name__}: {text}; "
                            f"fix the module (`python -c 'import {name}'` shows the traceback)") from None


def load(names) -> tuple[str, ...]:
    """Check and import a grid's plugin modules (`names`: the grid file's mapping, or a list)."""
    names = plugin_names(names) if isinstance(names, dict) else tuple(names)
    if names:
        from .registry import METHODS, METRICS, MODELS, SCHEDULES, SOLVERS

        for registry in (SCHEDULES, MODELS, SOLVERS, METHODS, METRICS):
            registry.names()  # built-ins first, so a plugin reusing a built-in name fails on its own import
    import_plugins(names)
    return names


def modules(cells) -> dict[str, str | None]:
    """{module: the folder to put on sys.path to import it (None: importable as is)} for the plugin
    modules the cells list, for workers to import (`bench.launch._import_plugins`)."""
    found: dict[str, str | None] = {}
    for cell in cells:
        for name in getattr(cell, "plugins", ()):
            if name in found:
                continue
            module = sys.modules.get(name)
            path = getattr(module, "__file__", None)
            base = None
            if path:
                p = Path(path).resolve()
                depth = name.count(".") + (1 if p.name == "__init__.py" else 0)
                base = str(p.parents[depth])
            found[name] = base
    return found


__all__ = ["MODULE_NAME", "import_plugins", "load", "modules", "plugin_names"]
