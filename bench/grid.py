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
    plugins: [my_plugins]         # modules imported first, in every process (bench.plugins)

Every problem is reported as one `GridError` naming the field and the fix, before anything runs:
unknown or duplicate keys (a YAML mapping that repeats a key is an error, not "the last one wins"),
an axis that lists one entry twice (the same model, solver, method, metric, NFE or seed, labels
aside: both would be one cell, so the grid would show fewer columns than it lists; refused rather
than merged, like a repeated key), an exclude rule with a value that no entry of its axis has (a
misspelt name would otherwise drop nothing), an unreadable grid file,
bad parameter values (each plugin's typed `Params`), a metric the model cannot be scored with, a
grid name that is not a plain folder name, and sizes beyond `SANE_LIMITS` unless `force` is given.

Keys. A cell's hash covers everything that determines its result row: the *resolved* specs of
model, solver, method, metrics and teacher (every default filled in, every `auto` replaced by what it
chose on this machine, each plugin's `version`, and the content hash of every file a model loads),
the NFE, seed, evaluation size and dtype, and the cell's `seed_key`. Its fit key covers the same for
the fit (cells that differ only in metrics or evaluation size share one fitted artifact).

`seed_key` is the hash of the grid entries as written (not resolved): it seeds the fit's and the
metrics' random generators. Seeds therefore do not move when a default changes (the keys do, and the
cell is recomputed with the same randomness), and two spellings of one resolved spec are two cells.
"""
from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import yaml
from pydantic import Field

from .errors import GridError, UserError
from .filehash import content_sha256
from .launch_config import parse_launch_section
from .params import Params, validate
from .registry import METHODS, METRICS, MODELS, SOLVERS
from .seeding import MAX_SPLIT_SIZE, stable_hash
from .solvers.base import StepPlan
from .spec import PluginSpec

AXES = ("models", "solvers", "nfe", "methods", "seeds")
KNOWN_KEYS = set(AXES) | {"name", "description", "metrics", "teacher", "samples", "dtype", "exclude", "launch",
                          "plugins"}
EXCLUDE_FIELDS = {"model", "solver", "nfe", "method", "seed"}
GRID_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
# Sizes past these are almost always typos (1e8 for 1e3); `bench run --force` accepts them.
SANE_LIMITS = {"nfe": 1000, "teacher.steps": 10_000}


class TeacherSection(Params):
    """`teacher:`: the high-NFE solve whose endpoints x0* are the reference (`bench.teacher`)."""

    solver: str | dict = Field("euler", description="the teacher's solver")
    steps: int = Field(100, ge=1, description="the teacher's steps")
    method: str | dict = Field("uniform", description="the teacher's closed-form schedule")
    dtype: Literal["float32", "float64"] = Field("float64", description="the teacher's precision")


class SamplesSection(Params):
    """`samples:`: how many priors fits may train on, how many are scored, and the batch size."""

    train: int = Field(1000, ge=1, le=MAX_SPLIT_SIZE, description="training priors offered to fits")
    eval: int = Field(1000, ge=1, le=MAX_SPLIT_SIZE, description="evaluation priors scored per cell")
    batch: int = Field(4096, ge=1, le=MAX_SPLIT_SIZE, description="priors per sampling batch")


@dataclass(frozen=True)
class Cell:
    grid: str
    model: dict  # the grid entries as written (labels, seeds)
    solver: dict
    plan: StepPlan  # (nfe, steps), made by the solver
    method: dict
    seed: int
    metrics: tuple
    teacher: dict
    samples: dict
    dtype: str
    needs_fit: bool = field(default=False, compare=False)
    resolved: dict = field(default_factory=dict, compare=False)  # {model, solver, method, metrics, teacher}
    plugins: tuple = field(default=(), compare=False)  # the grid's `plugins:` modules, imported by workers

    @property
    def nfe(self) -> int:
        return self.plan.nfe

    @property
    def steps(self) -> int:
        return self.plan.steps

    def seed_key(self) -> str:
        """The hash of the entries as written: it seeds the fit's and the metrics' generators."""
        return stable_hash({
            "model": _unlabelled(self.model), "solver": _unlabelled(self.solver), "steps": self.steps,
            "method": _unlabelled(self.method), "seed": self.seed, "teacher": self.teacher,
            "train": self.samples["train"], "dtype": self.dtype,
        })

    def config(self) -> dict:
        """Plain values that determine this cell's result row (resolved specs)."""
        r = self.resolved
        return {
            "model": r["model"], "solver": r["solver"], "nfe": self.nfe, "method": r["method"],
            "seed": self.seed, "metrics": list(r["metrics"]), "teacher": r["teacher"],
            "samples": {"train": self.samples["train"], "eval": self.samples["eval"]}, "dtype": self.dtype,
            "seed_key": self.seed_key(),
        }

    @property
    def hash(self) -> str:
        return stable_hash(self.config())

    def fit_key(self) -> dict | None:
        """Plain values that determine the method's fit, or None for a method without one."""
        if not self.needs_fit:
            return None
        r = self.resolved
        return {
            "model": r["model"], "solver": r["solver"], "steps": self.steps, "method": r["method"],
            "seed": self.seed, "teacher": r["teacher"], "train": self.samples["train"], "dtype": self.dtype,
            "seed_key": self.seed_key(),
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
    raw: dict | None = None  # the grid file's mapping, kept beside the rows for `report` and `gc`
    all_cells: list[Cell] | None = None  # every cell, when `cells` is a selection (`bench run --only`)

    def save_copy(self, root) -> None:
        """Keep the grid as run under `<root>/<name>/grid.yaml` (atomically)."""
        from .store import ResultsRoot, atomic_write_bytes

        if self.raw is not None:
            text = yaml.safe_dump({"name": self.name, **self.raw}, sort_keys=False)
            atomic_write_bytes(ResultsRoot(root).grid_copy_path(self.name), text.encode())


def _unlabelled(spec: dict) -> dict:
    return {k: v for k, v in spec.items() if k != "label"}


def plugin_label(spec: dict) -> str:
    """The entry's `label:`, else `name` or `name(k=v, ...)` with the parameters as written."""
    if isinstance(spec.get("label"), str):
        return spec["label"]
    params = {k: v for k, v in spec.items() if k not in ("name", "label")}
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


def _plugin(registry, spec: dict, where: str):
    """The plugin object of a spec, or one GridError naming `where`."""
    try:
        return registry.build(spec)
    except UserError as err:
        raise GridError(f"{where}: {err}") from None


def _plugin_specs(raw: dict, key: str, registry) -> list[dict]:
    specs = []
    for i, entry in enumerate(_as_list(raw, key)):
        where = f"grid.{key}[{i}]"
        entry = PluginSpec.parse(entry, where, error=GridError).as_dict()
        _plugin(registry, entry, where)
        specs.append(entry)
    return specs


def _check_unique(key: str, entries: list) -> None:
    """Refuse an axis that lists the same entry twice (labels aside): both would be one cell."""
    seen: dict[str, int] = {}
    for i, entry in enumerate(entries):
        plain = _unlabelled(entry) if isinstance(entry, dict) else entry
        text = stable_hash(plain)
        if text in seen:
            shown = plain if not isinstance(plain, dict) or len(plain) > 1 else plain["name"]
            raise GridError(f"grid.{key} lists {shown!r} twice (entries {seen[text]} and {i}"
                            f"{', labels aside' if isinstance(entry, dict) and 'label' in entry else ''}); "
                            "both would be the same cells: keep one")
        seen[text] = i


def _check_exclude_values(i: int, rule: dict, axes: dict) -> None:
    """Every value of an exclude rule must be a value of its axis (else the rule drops nothing)."""
    for field_name, values in rule.items():
        entries = axes[field_name]
        for value in values if isinstance(values, list) else [values]:
            if any(_field_matches(field_name, value, entry) for entry in entries):
                continue
            if field_name in ("model", "solver", "method"):
                listed = ", ".join(sorted({plugin_label(e) if isinstance(value, dict) else e["name"] for e in entries}))
            else:
                listed = ", ".join(str(e) for e in entries)
            raise GridError(f"grid.exclude[{i}].{field_name}: {value!r} is not a value of the grid's "
                            f"{field_name} axis ({listed}); fix the rule or remove it")


def _int_list(raw: dict, key: str, minimum: int) -> list[int]:
    values = _as_list(raw, key)
    for i, v in enumerate(values):
        if not isinstance(v, int) or isinstance(v, bool) or v < minimum:
            raise GridError(f"grid.{key}[{i}] must be an integer >= {minimum}, got {v!r}")
    return values


def _section(raw: dict, key: str, model: type[Params]) -> dict:
    value = raw.get(key) or {}
    if not isinstance(value, dict):
        raise GridError(f"grid.{key} must be a mapping, got {value!r}")
    return validate(model, value, f"grid.{key}", error=GridError, section=True).model_dump()


def _matches(rule: dict, combo: dict) -> bool:
    """A rule matches a cell when every field matches; a list value matches any of its entries."""
    return all(any(_field_matches(k, v, combo[k]) for v in (values if isinstance(values, list) else [values]))
               for k, values in rule.items())


def _field_matches(key: str, value, actual) -> bool:
    if key in ("model", "solver", "method"):
        return actual["name"] == value if isinstance(value, str) else {**value} == actual
    return actual == value


def _check_sane(what: str, value: int, force: bool) -> None:
    limit = SANE_LIMITS[what]
    if value > limit and not force:
        raise GridError(f"grid.{what} = {value} is beyond {limit}; if you mean it, pass --force")


def _model_resolved(model) -> dict:
    """The model's resolved spec: parameters, version, and the content hash of each file it loads."""
    files = {}
    for param, path in sorted(model.required_paths().items()):
        p = Path(path).expanduser()
        files[param] = content_sha256(p) if p.exists() else None  # the pre-run check reports a missing one
    return {**model.resolved_spec(), "files": files}


def _check_metric(metric, model, where: str) -> None:
    """Refuse before any compute a metric the model cannot be scored with."""
    from .models.base import Denoiser

    if getattr(metric, "needs_data_sampler", False) and type(model).sample_data is Denoiser.sample_data:
        raise GridError(f"{where}: metric {metric.name!r} compares with exact data samples, which model "
                        f"{model.name!r} cannot draw; use it with toy models only, or remove it from the grid")
    check = getattr(metric, "check_model", None)
    if check is not None:
        try:
            check(model)
        except UserError as err:
            raise GridError(f"{where}: {err}") from None


def parse_grid(raw: dict, name: str = "grid", path: Path | None = None, force: bool = False) -> Grid:
    if not isinstance(raw, dict):
        raise GridError("the grid file must be a YAML mapping with keys such as models, solvers, nfe, methods")
    unknown = sorted(set(raw) - KNOWN_KEYS)
    if unknown:
        raise GridError(f"grid.{unknown[0]} is not a known field; known: {', '.join(sorted(KNOWN_KEYS))}")
    name = raw.get("name", name)
    if not isinstance(name, str) or not GRID_NAME.fullmatch(name) or name in (".", ".."):
        raise GridError(f"grid.name must be a plain folder name (letters, digits, '.', '_', '-'; not '..'), "
                        f"got {name!r}")
    description = raw.get("description", "")
    if not isinstance(description, str) or "\n" in description.strip():
        raise GridError("grid.description must be one line of text saying what the grid studies (quote it if it "
                        "holds ': '); explain settings in comments")
    from .plugins import load as load_plugins

    plugins = load_plugins(raw)  # third-party modules register their plugins before any name is looked up

    models = _plugin_specs(raw, "models", MODELS)
    solvers = _plugin_specs(raw, "solvers", SOLVERS)
    methods = _plugin_specs(raw, "methods", METHODS)
    metrics = _plugin_specs(raw, "metrics", METRICS)
    nfes = _int_list(raw, "nfe", 1)
    for v in nfes:
        _check_sane("nfe", v, force)
    seeds = _int_list(raw, "seeds", 0) if "seeds" in raw else [0]
    for key, entries in (("models", models), ("solvers", solvers), ("methods", methods), ("metrics", metrics),
                         ("nfe", nfes), ("seeds", seeds)):
        _check_unique(key, entries)

    teacher = _section(raw, "teacher", TeacherSection)
    _check_sane("teacher.steps", teacher["steps"], force)
    teacher_parts = {}
    for sub, registry in (("solver", SOLVERS), ("method", METHODS)):
        spec = PluginSpec.parse(teacher[sub], f"grid.teacher.{sub}", error=GridError).as_dict()
        teacher_parts[sub] = _plugin(registry, spec, f"grid.teacher.{sub}")
        if sub == "method" and registry.get(spec["name"]).needs_fit:
            raise GridError(f"grid.teacher.method must be a closed-form schedule, got {spec['name']!r}")

    samples = _section(raw, "samples", SamplesSection)

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
        _check_exclude_values(i, rule, {"model": models, "solver": solvers, "nfe": nfes, "method": methods,
                                        "seed": seeds})

    launch = parse_launch_section(raw.get("launch"))

    # Resolve every plugin once per (model, spec): `auto` choices depend on the model.
    model_objs = [_plugin(MODELS, m, f"grid.models[{i}]") for i, m in enumerate(models)]
    metric_objs = [_plugin(METRICS, m, f"grid.metrics[{i}]") for i, m in enumerate(metrics)]
    resolved_models = [_model_resolved(m) for m in model_objs]
    for mi, model in enumerate(model_objs):
        for i, metric in enumerate(metric_objs):
            _check_metric(metric, model, f"grid.metrics[{i}] on grid.models[{mi}]")
    solver_objs = [_plugin(SOLVERS, s, f"grid.solvers[{i}]") for i, s in enumerate(solvers)]
    method_objs = [_plugin(METHODS, m, f"grid.methods[{i}]") for i, m in enumerate(methods)]
    resolved_teacher = {mi: {"solver": teacher_parts["solver"].resolved_spec(model),
                             "method": teacher_parts["method"].resolved_spec(model),
                             "steps": teacher["steps"], "dtype": teacher["dtype"]}
                        for mi, model in enumerate(model_objs)}

    cells = []
    for (mi, model), (si, solver), nfe, (ki, method), seed in itertools.product(
            enumerate(models), enumerate(solvers), nfes, enumerate(methods), seeds):
        combo = {"model": model, "solver": solver, "nfe": nfe, "method": method, "seed": seed}
        if any(_matches(rule, combo) for rule in excludes):
            continue
        solver_obj, model_obj = solver_objs[si], model_objs[mi]
        try:
            plan = solver_obj.plan(nfe)
        except UserError as err:
            raise GridError(
                f"grid.nfe: {err}; or drop the pair with `exclude: [{{solver: {solver['name']}, nfe: {nfe}}}]`"
            ) from None
        resolved = {
            "model": resolved_models[mi],
            "solver": solver_obj.resolved_spec(model_obj),
            "method": method_objs[ki].resolved_spec(model_obj),
            "metrics": [m.resolved_spec(model_obj) for m in metric_objs],
            "teacher": resolved_teacher[mi],
        }
        cells.append(Cell(
            grid=name, model=model, solver=solver, plan=plan, method=method, seed=seed,
            metrics=tuple(metrics), teacher=teacher, samples=samples, dtype=dtype,
            needs_fit=METHODS.get(method["name"]).needs_fit, resolved=resolved, plugins=plugins,
        ))
    if not cells:
        raise GridError("grid.exclude removes every cell; loosen the exclude rules")
    return Grid(name=name, cells=cells, launch=launch, path=path, raw=raw)


class _UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML's safe loader, except that a mapping repeating a key is an error."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise GridError(f"grid key {key!r} appears twice at line {key_node.start_mark.line + 1}; "
                                "keep one (YAML would silently use the last)")
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


# YAML 1.1 (PyYAML) reads a float only with a dot and a signed exponent, so `1e-1`, `2E5` and `1.e+3`
# would be strings; YAML 1.2's core schema (and JSON) reads them as floats, and so does a grid.
_UniqueKeyLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$"),
    list("-+0123456789."))


def load_yaml(text: str):
    """YAML text as a grid or study reads it: PyYAML's safe loader, repeated keys refused, and
    exponent floats without a dot (`1e-1`) read as numbers, as YAML 1.2 does."""
    return yaml.load(text, Loader=_UniqueKeyLoader)


def read_grid_file(path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"--grid: no grid file at {path}; see grids/ for examples")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise GridError(f"{path}: not UTF-8 text (byte {err.start}); save the grid file as UTF-8") from None
    except OSError as err:
        raise UserError(f"--grid: cannot read {path} ({err.strerror or err}); check its permissions "
                        f"(e.g. `chmod u+r {path}`)") from None
    try:
        return load_yaml(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise GridError(f"{path}: not valid YAML{where}: {getattr(err, 'problem', err)}") from None


def load_grid(path, force: bool = False) -> Grid:
    path = Path(path)
    return parse_grid(read_grid_file(path), name=path.stem, path=path, force=force)
