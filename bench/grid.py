"""Grid files: YAML -> validated `Cell`s, the cartesian product of the listed axes minus `exclude`.

A grid file (see `grids/*.yaml`):

    name: toy2d                   # output folder under the results root (default: the file's stem)
    models:  [{name: toy2d, time: flow}]   # each axis entry is a name or {name: ..., **params}
    solvers: [euler]
    nfe:     [3, 4, 5]            # network evaluations; converted to steps per solver
    methods: [uniform, {name: polynomial, rho: 2}]
    seeds:   [0]                  # replication seeds: priors, teacher sets and fits depend on them
    metrics: [mse, psnr]
    teacher: {solver: euler, steps: 100, method: uniform, dtype: float64}
    samples: {train: 20000, eval: 10000, batch: 10000}
    dtype: float32                # sampling precision
    exclude: [{method: edm, nfe: 3}]   # drop every cell matching all given fields;
                                  # a list matches any entry: {method: [oss, ld3], nfe: [9, 10]}
    launch: {...}                 # executor settings (bench.launch_config)

Every problem is reported as one `GridError` naming the field and the fix. A cell's hash covers
everything that changes its result row; its fit key covers everything that changes its fit, so
cells that differ only in metrics or evaluation size share one fitted artifact.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from .errors import GridError, UserError
from .launch_config import parse_launch_section
from .registry import METHODS, METRICS, MODELS, SOLVERS
from .seeding import MAX_SPLIT_SIZE, stable_hash

AXES = ("models", "solvers", "nfe", "methods", "seeds")
KNOWN_KEYS = set(AXES) | {"name", "description", "metrics", "teacher", "samples", "dtype", "exclude", "launch"}
DEFAULT_TEACHER = {"solver": "euler", "steps": 100, "method": "uniform", "dtype": "float64"}
DEFAULT_SAMPLES = {"train": 1000, "eval": 1000, "batch": 4096}
EXCLUDE_FIELDS = {"model", "solver", "nfe", "method", "seed"}


@dataclass(frozen=True)
class Cell:
    grid: str
    model: dict
    solver: dict
    nfe: int
    steps: int
    method: dict
    seed: int
    metrics: tuple
    teacher: dict
    samples: dict
    dtype: str
    needs_fit: bool = field(default=False, compare=False)

    def config(self) -> dict:
        """Plain values that determine this cell's result row."""
        return {
            "model": self.model, "solver": self.solver, "nfe": self.nfe, "method": self.method,
            "seed": self.seed, "metrics": list(self.metrics), "teacher": self.teacher,
            "samples": {"train": self.samples["train"], "eval": self.samples["eval"]}, "dtype": self.dtype,
        }

    @property
    def hash(self) -> str:
        return stable_hash(self.config())

    def fit_key(self) -> dict | None:
        """Plain values that determine the method's fit, or None for a method without one."""
        if not self.needs_fit:
            return None
        return {
            "model": self.model, "solver": self.solver, "steps": self.steps, "method": self.method,
            "seed": self.seed, "teacher": self.teacher, "train": self.samples["train"], "dtype": self.dtype,
        }

    @property
    def fit_hash(self) -> str | None:
        key = self.fit_key()
        return None if key is None else stable_hash(key)

    def label(self) -> str:
        return (f"{plugin_label(self.model)} | {plugin_label(self.solver)} | nfe={self.nfe} | "
                f"{plugin_label(self.method)} | seed={self.seed}")


@dataclass
class Grid:
    name: str
    cells: list[Cell]
    launch: dict
    path: Path | None = None


def plugin_label(spec: dict) -> str:
    """`name` or `name(k=v, ...)` for a plugin spec with parameters."""
    params = {k: v for k, v in spec.items() if k != "name"}
    if not params:
        return spec["name"]
    return f"{spec['name']}(" + ", ".join(f"{k}={v}" for k, v in sorted(params.items())) + ")"


def _as_list(raw: dict, key: str) -> list:
    value = raw.get(key)
    if value is None:
        raise GridError(f"grid.{key} is missing; add a list, e.g. `{key}: [...]`")
    if not isinstance(value, list):
        value = [value]
    if not value:
        raise GridError(f"grid.{key} is empty; list at least one entry")
    return value


def _plugin_specs(raw: dict, key: str, registry) -> list[dict]:
    specs = []
    for i, entry in enumerate(_as_list(raw, key)):
        where = f"grid.{key}[{i}]"
        if isinstance(entry, str):
            entry = {"name": entry}
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            raise GridError(f"{where} must be a name or a mapping with a `name`, got {entry!r}")
        try:
            cls = registry.get(entry["name"])
            params = {k: v for k, v in entry.items() if k != "name"}
            cls(**params)  # validates parameter names and values
        except UserError as err:
            raise GridError(f"{where}: {err}") from None
        specs.append(dict(entry))
    return specs


def _int_list(raw: dict, key: str, minimum: int) -> list[int]:
    values = _as_list(raw, key)
    for i, v in enumerate(values):
        if not isinstance(v, int) or isinstance(v, bool) or v < minimum:
            raise GridError(f"grid.{key}[{i}] must be an integer >= {minimum}, got {v!r}")
    return values


def _section(raw: dict, key: str, defaults: dict) -> dict:
    value = raw.get(key) or {}
    if not isinstance(value, dict):
        raise GridError(f"grid.{key} must be a mapping, got {value!r}")
    unknown = sorted(set(value) - set(defaults))
    if unknown:
        raise GridError(f"grid.{key}.{unknown[0]} is not a known field; known: {', '.join(sorted(defaults))}")
    return {**defaults, **value}


def _matches(rule: dict, combo: dict) -> bool:
    """A rule matches a cell when every field matches; a list value matches any of its entries."""
    return all(any(_field_matches(k, v, combo[k]) for v in (values if isinstance(values, list) else [values]))
               for k, values in rule.items())


def _field_matches(key: str, value, actual) -> bool:
    if key in ("model", "solver", "method"):
        return actual["name"] == value if isinstance(value, str) else {**value} == actual
    return actual == value


def parse_grid(raw: dict, name: str = "grid", path: Path | None = None) -> Grid:
    if not isinstance(raw, dict):
        raise GridError("the grid file must be a YAML mapping with keys such as models, solvers, nfe, methods")
    unknown = sorted(set(raw) - KNOWN_KEYS)
    if unknown:
        raise GridError(f"grid.{unknown[0]} is not a known field; known: {', '.join(sorted(KNOWN_KEYS))}")
    name = raw.get("name", name)
    if not isinstance(name, str) or not name or "/" in name:
        raise GridError(f"grid.name must be a plain folder name, got {name!r}")

    models = _plugin_specs(raw, "models", MODELS)
    solvers = _plugin_specs(raw, "solvers", SOLVERS)
    methods = _plugin_specs(raw, "methods", METHODS)
    metrics = _plugin_specs(raw, "metrics", METRICS)
    nfes = _int_list(raw, "nfe", 1)
    seeds = _int_list(raw, "seeds", 0) if "seeds" in raw else [0]

    teacher = _section(raw, "teacher", DEFAULT_TEACHER)
    if not isinstance(teacher["steps"], int) or teacher["steps"] < 1:
        raise GridError(f"grid.teacher.steps must be a positive integer, got {teacher['steps']!r}")
    if teacher["dtype"] not in ("float32", "float64"):
        raise GridError(f"grid.teacher.dtype must be float32 or float64, got {teacher['dtype']!r}")
    for sub, registry in (("solver", SOLVERS), ("method", METHODS)):
        spec = teacher[sub] if isinstance(teacher[sub], dict) else {"name": teacher[sub]}
        try:
            registry.get(spec.get("name", "?"))(**{k: v for k, v in spec.items() if k != "name"})
        except UserError as err:
            raise GridError(f"grid.teacher.{sub}: {err}") from None
        if registry.get(spec["name"]).__dict__.get("needs_fit"):
            raise GridError(f"grid.teacher.method must be a closed-form schedule, got {spec['name']!r}")

    samples = _section(raw, "samples", DEFAULT_SAMPLES)
    for k in ("train", "eval", "batch"):
        v = samples[k]
        if not isinstance(v, int) or isinstance(v, bool) or not 1 <= v <= MAX_SPLIT_SIZE:
            raise GridError(f"grid.samples.{k} must be an integer from 1 to {MAX_SPLIT_SIZE}, got {v!r}")

    dtype = raw.get("dtype", "float32")
    if dtype not in ("float32", "float64"):
        raise GridError(f"grid.dtype must be float32 or float64, got {dtype!r}")

    excludes = raw.get("exclude") or []
    if not isinstance(excludes, list):
        raise GridError("grid.exclude must be a list of mappings such as {method: edm, nfe: 3}")
    for i, rule in enumerate(excludes):
        if not isinstance(rule, dict) or not rule:
            raise GridError(f"grid.exclude[{i}] must be a non-empty mapping such as {{method: edm, nfe: 3}}")
        bad = sorted(set(rule) - EXCLUDE_FIELDS)
        if bad:
            raise GridError(f"grid.exclude[{i}].{bad[0]} is not a grid axis; use one of {', '.join(sorted(EXCLUDE_FIELDS))}")

    launch = parse_launch_section(raw.get("launch"))

    cells = []
    for model, solver, nfe, method, seed in itertools.product(models, solvers, nfes, methods, seeds):
        combo = {"model": model, "solver": solver, "nfe": nfe, "method": method, "seed": seed}
        if any(_matches(rule, combo) for rule in excludes):
            continue
        solver_obj = SOLVERS.get(solver["name"])(**{k: v for k, v in solver.items() if k != "name"})
        try:
            steps = solver_obj.steps_for_nfe(nfe)
        except UserError as err:
            raise GridError(
                f"grid.nfe: {err}; or drop the pair with `exclude: [{{solver: {solver['name']}, nfe: {nfe}}}]`"
            ) from None
        cells.append(Cell(
            grid=name, model=model, solver=solver, nfe=nfe, steps=steps, method=method, seed=seed,
            metrics=tuple(metrics),
            teacher=teacher, samples=samples, dtype=dtype,
            needs_fit=METHODS.get(method["name"]).needs_fit,
        ))
    if not cells:
        raise GridError("grid.exclude removes every cell; loosen the exclude rules")
    return Grid(name=name, cells=cells, launch=launch, path=path)


def load_grid(path) -> Grid:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"--grid: no grid file at {path}; see grids/ for examples")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise GridError(f"{path}: not valid YAML{where}: {getattr(err, 'problem', err)}") from None
    return parse_grid(raw, name=path.stem, path=path)

