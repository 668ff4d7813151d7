"""`bench run --set KEY=YAML --only FIELD=v1,v2`: change a grid from the command line.

`--set KEY=YAML` replaces one field of the grid file before it is parsed, so the result goes through
the same validation (`bench.grid.parse_grid`) as a file that says the same: `--set nfe=[4,6]`,
`--set methods=[edm,{name: polynomial, rho: 2}]`, `--set samples.eval=256` (a dotted key sets one
field of a mapping section). The value is read as a grid reads YAML (`bench.grid.load_yaml`, so
`1e-1` is a number). Cell keys hash the parsed entries, never the file, so the cells of
`run --grid G --set nfe=[4,6]` are the cells (and rows) of a grid file G with `nfe: [4, 6]`; the
grid copy kept beside the rows (`<results>/<grid>/grid.yaml`, which `report` reads) is the grid as
run, overrides included.

`--only FIELD=v1,v2` (FIELD: model, solver, method, nfe or seed) runs only the grid's cells whose
FIELD is one of the values: an entry's name or its label as the report prints it (`plugin_label`,
e.g. `polynomial(rho=2)`), or the number. Several `--only` flags must all hold. Commas inside
brackets belong to the label, and so do commas between pieces that together are one label. A value that no entry of that axis has is an error (as a misspelt
`exclude` rule is), as is a selection that leaves no cell. `--only` selects cells to run now; it
does not change the grid (its copy, `report`, `status`).

Every problem is one `UserError`/`GridError` naming the flag and the field.
"""
from __future__ import annotations

from dataclasses import replace

from .errors import GridError, UserError
from .grid import EXCLUDE_FIELDS, KNOWN_KEYS, Grid, load_yaml, parse_grid, plugin_label, read_grid_file


def parse_set(item: str) -> tuple[list[str], object]:
    """`KEY=YAML` -> (key path, value)."""
    if "=" not in item:
        raise UserError(f"--set expects KEY=YAML, e.g. --set nfe=[4,6], got {item!r}")
    key, text = item.split("=", 1)
    path = key.strip().split(".")
    if not all(path):
        raise UserError(f"--set {item}: {key!r} is not a grid field; e.g. nfe, methods or samples.eval")
    if path[0] not in KNOWN_KEYS:
        raise GridError(f"--set {item}: grid.{path[0]} is not a known field; known: {', '.join(sorted(KNOWN_KEYS))}")
    try:
        value = load_yaml(text)
    except Exception as err:  # noqa: BLE001 - yaml.YAMLError or a repeated key (GridError): one line
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise UserError(f"--set {item}: the value is not valid YAML ({problem}); e.g. --set nfe=[4,6]") from None
    return path, value


def apply_sets(raw: dict, items) -> dict:
    """A copy of the grid mapping `raw` with each `--set` item applied, in order."""
    raw = dict(raw)
    for item in items or []:
        path, value = parse_set(item)
        target = raw
        for i, part in enumerate(path[:-1]):
            section = target.get(part)
            if section is None:
                section = {}
            if not isinstance(section, dict):
                raise GridError(f"--set {item}: grid.{'.'.join(path[:i + 1])} is not a mapping, so it has no "
                                f"field {path[i + 1]!r}")
            target[part] = section = dict(section)
            target = section
        target[path[-1]] = value
    return raw


def split_values(text: str) -> list[str]:
    """Split at commas outside (), [] and {}: `ld3(a=1, b=2),edm` -> ['ld3(a=1, b=2)', 'edm']."""
    values, depth, current = [], 0, ""
    for ch in text:
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth = max(0, depth - 1)
        if ch == "," and depth == 0:
            values.append(current)
            current = ""
        else:
            current += ch
    values.append(current)
    return [v.strip() for v in values]


def _join_known(pieces: list[str], known) -> list[str]:
    """Rejoin neighbouring pieces whose text with their commas is one known label (`poly, rho 2`)."""
    values, i = [], 0
    while i < len(pieces):
        j = next((j for j in range(len(pieces), i + 1, -1) if ", ".join(pieces[i:j]) in known
                  or ",".join(pieces[i:j]) in known), i + 1)
        joined = ", ".join(pieces[i:j])
        values.append(joined if joined in known else ",".join(pieces[i:j]))
        i = j
    return values


def parse_only(item: str, known=()) -> tuple[str, list[str]]:
    """`FIELD=v1,v2` -> (field, values); the whole text is one value when it is one of `known`."""
    if "=" not in item:
        raise UserError(f"--only expects FIELD=v1,v2, e.g. --only method=edm,ld3, got {item!r}")
    key, text = item.split("=", 1)
    key = key.strip()
    if key not in EXCLUDE_FIELDS:
        raise UserError(f"--only {item}: {key!r} is not a grid axis; use one of {', '.join(sorted(EXCLUDE_FIELDS))}")
    values = _join_known(split_values(text), known)
    if not all(values):
        raise UserError(f"--only {item}: an empty value; list values separated by commas, e.g. {key}=a,b")
    return key, values


def _names(cell, key: str) -> set[str]:
    """The spellings of a cell's value on axis `key` that `--only` accepts."""
    value = getattr(cell, key)
    if key in ("nfe", "seed"):
        return {str(value)}
    return {value["name"], plugin_label(value)}


def select_cells(grid: Grid, items) -> Grid:
    """The grid restricted to the cells every `--only` item accepts (`grid.all_cells` keeps them all)."""
    if not items:
        return grid
    cells = grid.cells
    for item in items:
        key = parse_only(item)[0]
        known = {name for cell in grid.cells for name in _names(cell, key)}
        key, values = parse_only(item, known)
        for value in values:
            if value not in known:
                shown = sorted({getattr(c, key) if key in ("nfe", "seed") else plugin_label(getattr(c, key))
                                for c in grid.cells}, key=str)
                raise UserError(f"--only {item}: {value!r} is not a value of the grid's {key} axis "
                                f"({', '.join(map(str, shown))})")
        cells = [c for c in cells if _names(c, key) & set(values)]
    if not cells:
        raise UserError(f"--only {' '.join(items)}: no cell of the grid matches all of them")
    return replace(grid, cells=cells, all_cells=grid.all_cells or grid.cells)


def load_grid_for_run(path, sets=None, only=None, force: bool = False) -> Grid:
    """The grid file at `path` with `--set` items applied, restricted to the `--only` cells."""
    from pathlib import Path

    path = Path(path)
    raw = read_grid_file(path)
    if sets:
        if not isinstance(raw, dict):
            raise GridError("the grid file must be a YAML mapping with keys such as models, solvers, nfe, methods")
        raw = apply_sets(raw, sets)
        keys = {parse_set(item)[0][0] for item in sets}
        try:
            grid = parse_grid(raw, name=path.stem, path=path, force=force)
        except GridError as err:
            if any(f"grid.{key}" in str(err) for key in keys):
                raise GridError(f"--set: {err}") from None
            raise
    else:
        grid = parse_grid(raw, name=path.stem, path=path, force=force)
    return select_cells(grid, only)


__all__ = ["apply_sets", "load_grid_for_run", "parse_only", "parse_set", "select_cells", "split_values"]
