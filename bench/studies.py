"""Studies: a grid plus the numbers a paper published for its cells, and `bench check`.

A study file (`studies/*.yaml`) names a grid file (`grid:`, relative to the study file; grids stay in
`grids/`) and lists published values in blocks that follow the paper's table layout, so a reviewer
reads one block beside one table:

    study: indis-toy
    grid: ../grids/indis-toy.yaml
    published:
      - paper: INDIS                 # short name
        arxiv: "2603.17671"
        table: "Table 6"
        setting: "2D tree toy, flow-matching OT time, Euler; MSE to teacher samples"  # the paper's words
        model: toy2d(time=flow)      # labels of the grid's entries (a grid with one model/solver may omit them)
        solver: euler
        metric: mse                  # a metric of the grid
        nfe: [3, 4, 5]
        values:                      # grid method label -> one value per NFE (null: not published)
          uniform: [0.0588, 0.0213, 0.0238]
        tolerance: 0.002             # optional: one number, or per method (a number or one per NFE)
        tolerance_from: "..."        # required with a tolerance: the paper's spread or the arithmetic
        tolerance_covers: published  # or `both`: it also covers our estimate's error (point compared)
        samples: 50000               # optional: the paper's sample count; a row with fewer is not comparable
        differs:                     # values whose setting we cannot match: reported, never checked
          - {method: uniform, nfe: 4, note: "non-monotone in the paper: ..."}

GPU studies also list `checkpoints:` (the file a paper used, where it is published, its sha256 where
that source states one) and `fid_reference:` (what `bench fid-ref` must build); `missing(study)`
names every absent file in one message (`bench run --study` stops with it, exit 2).

Every value expands to one `PublishedValue` (its cell: model, solver, method, NFE, metric). Loading
validates them against the grid with pydantic (`bench.params`): a cell the grid does not have, a
metric it does not compute, a negative tolerance or a tolerance without `tolerance_from` is one
`UserError` naming the entry, e.g. ``studies/x.yaml published[0] (INDIS Table 6, mse): method 'gid'
is not in the grid; its methods: ...``.

`check(study, root)` compares each published value with the measured one: the interval
[`ci_low`, `ci_high`] of the report's long form when those columns are present (the per-cell
uncertainty), else the point value (mean over seeds), against published ± tolerance (the point
value also when the block's `tolerance_covers: both`, a tolerance that already holds our error). Outcomes:
pass, fail, not run (no row), not comparable (why: a stand-in model, another checkpoint than the
study's sha256, fewer samples than the paper), differs (the study's note), no tolerance.

Beside the report (`bench.report_files` calls these): `with_published` adds, under each method row
of a table that has published values, a `<method>: published (<paper>, <table>)` row and a
`<method>: measured − published` row (`is_extra_row` tells them from methods: never "best");
`long_form` appends the published values to the long CSV/parquet with `source = published` and the
citation (measured lines: `source = measured`). `bench.figures` draws them as hollow markers.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from pathlib import Path

from typing import Literal

import pandas as pd
from pydantic import Field

from .errors import UserError
from .params import Params, validate

STUDIES_DIR = Path(__file__).resolve().parent.parent / "studies"
PUBLISHED = "published"
MEASURED = "measured"
DIFFERENCE = "measured − published"
STATUSES = ("pass", "fail", "not run", "not comparable", "differs", "no tolerance")


class Differs(Params):
    """A published value whose setting the grid cannot match: reported with its note, never checked."""

    method: str | None = Field(None, description="the method label (null: every method of the block)")
    nfe: int | list[int] | None = Field(None, description="the NFE or NFEs (null: every NFE of the block)")
    note: str = Field(description="what differs, with the evidence")


class PublishedBlock(Params):
    """Published values of one (paper table, model, solver, metric), one list per method."""

    paper: str = Field(description="the paper's short name, e.g. INDIS")
    arxiv: str = Field(description="the paper's arXiv id")
    table: str = Field(description="the table, e.g. 'Table 6'")
    setting: str = Field(description="the setting in the paper's words")
    model: str | None = Field(None, description="the grid's model label (null: the grid's only model)")
    solver: str | None = Field(None, description="the grid's solver label (null: the grid's only solver)")
    metric: str = Field(description="a metric of the grid")
    nfe: list[int] = Field(min_length=1, description="the NFE of each column")
    values: dict[str, list[float | None]] = Field(min_length=1, description="method label -> value per NFE")
    tolerance: float | dict[str, float | list[float | None]] | None = Field(
        None, description="allowed |measured - published|: one number, or per method (a number or per NFE)")
    tolerance_from: str | None = Field(None, description="where the tolerance comes from")
    tolerance_covers: Literal["published", "both"] = Field(
        "published", description="published: the paper's side only (the measured interval adds ours); both: "
                                 "it also covers our estimate's error, so the point value is compared")
    samples: int | None = Field(None, ge=1, description="the paper's sample count for this metric")
    differs: list[Differs] = Field(default_factory=list, description="values whose setting we cannot match")


class Checkpoint(Params):
    """A file a GPU study's model loads."""

    model: str = Field(description="the grid's model label")
    parameter: str = Field("pickle", description="the model parameter that holds its path")
    file: str = Field(description="the file the paper used")
    url: str = Field(description="where it is published")
    sha256: str | None = Field(None, pattern=r"^[0-9a-f]{64}$", description="only where the source states one")


class FidReference(Params):
    """Reference statistics `bench fid-ref` must build before FID can be scored."""

    name: str = Field(description="the dataset name the model's FID looks up")
    images: str = Field(description="which images, and where they are published")
    command: str = Field(description="the `bench fid-ref` command")


class StudyFile(Params):
    study: str = Field(description="the study's name")
    description: str = Field("", description="one paragraph: what the study reproduces")
    grid: str = Field(description="the grid file, relative to the study file")
    published: list[PublishedBlock] = Field(default_factory=list)
    checkpoints: list[Checkpoint] = Field(default_factory=list)
    fid_reference: list[FidReference] = Field(default_factory=list)
    gpu: dict | None = Field(None, description="the GPU-hour estimate and how it was made")


@dataclass(frozen=True)
class PublishedValue:
    paper: str
    arxiv: str
    table: str
    setting: str
    model: str
    solver: str
    method: str
    nfe: int
    metric: str
    value: float
    tolerance: float | None
    tolerance_from: str | None
    samples: int | None
    differs: str | None
    where: str  # "published[0] uniform NFE=3"
    tolerance_covers: str = "published"

    @property
    def citation(self) -> str:
        return f"{self.paper} (arXiv {self.arxiv}), {self.table}"

    @property
    def cell(self) -> str:
        return f"{self.model} | {self.solver} | {self.method} | NFE={self.nfe} | {self.metric}"


@dataclass
class Study:
    name: str
    path: Path | None
    grid_raw: dict  # the grid file's mapping: values are validated against its axes without loading models
    grid_path: Path | None
    values: list[PublishedValue]
    checkpoints: list[Checkpoint] = field(default_factory=list)
    fid_reference: list[FidReference] = field(default_factory=list)
    description: str = ""
    gpu: dict | None = None
    stand_in: bool = False  # the grid's models replaced by stand-ins (`with_stand_in`)
    _grid: object = None

    @property
    def grid_name(self) -> str:
        return self.grid_raw.get("name") or (self.grid_path.stem if self.grid_path else self.name)

    @property
    def grid(self):
        """The parsed `bench.grid.Grid` (parsing resolves the plugins, which may read the model files:
        `missing` / `check_needs` first tell what is absent)."""
        if self._grid is None:
            from .grid import parse_grid

            self._grid = parse_grid(self.grid_raw, name=self.grid_name, path=self.grid_path, force=True)
        return self._grid


def _labels(specs) -> list[str]:
    from .grid import plugin_label

    labels = []
    for spec in specs:
        spec = {"name": spec} if isinstance(spec, str) else spec
        labels.append(plugin_label(spec))
    return labels


def _axis_label(value, labels: list[str], axis: str, where: str) -> str:
    if value is None:
        if len(labels) != 1:
            raise UserError(f"{where}: {axis} is required: the grid has {len(labels)} {axis}s ({', '.join(labels)})")
        return labels[0]
    if value not in labels:
        raise UserError(f"{where}: {axis} {value!r} is not in the grid; its {axis}s: {', '.join(labels)}")
    return value


def _has_cell(raw: dict, model: str, solver: str, method: str, nfe: int) -> bool:
    """Whether the grid's axes hold the cell and no `exclude` rule drops it (read from the raw grid)."""
    from .grid import _matches

    if nfe not in (raw.get("nfe") or []):
        return False
    pick = {}
    for axis, label in (("models", model), ("solvers", solver), ("methods", method)):
        specs = [{"name": s} if isinstance(s, str) else s for s in raw.get(axis) or []]
        pick[axis[:-1]] = next(s for s, lab in zip(specs, _labels(specs)) if lab == label)
    combo = {**pick, "nfe": nfe, "seed": None}
    rules = [{k: v for k, v in rule.items() if k != "seed"} for rule in raw.get("exclude") or [] if isinstance(rule, dict)]
    return not any(rule and _matches(rule, combo) for rule in rules)


def _expand(block: PublishedBlock, i: int, raw: dict, prefix: str) -> list[PublishedValue]:
    where = f"{prefix}published[{i}] ({block.paper} {block.table}, {block.metric})"
    model = _axis_label(block.model, _labels(raw.get("models", [])), "model", where)
    solver = _axis_label(block.solver, _labels(raw.get("solvers", [])), "solver", where)
    metrics = _labels(raw.get("metrics", []))
    if block.metric not in metrics:
        raise UserError(f"{where}: metric {block.metric!r} is not computed by the grid; its metrics: {', '.join(metrics)}")
    methods = _labels(raw.get("methods", []))
    if block.tolerance is not None and not block.tolerance_from:
        raise UserError(f"{where}: tolerance_from is required with a tolerance: say where the tolerance comes from")
    tolerances = block.tolerance if isinstance(block.tolerance, dict) else {}
    for method in tolerances:
        if method not in block.values:
            raise UserError(f"{where}: tolerance.{method} names a method without published values")
    for d, note in enumerate(block.differs):
        if note.method is not None and note.method not in block.values:
            raise UserError(f"{where}: differs[{d}].method {note.method!r} has no published values in this block")
        for n in ([note.nfe] if isinstance(note.nfe, int) else note.nfe or []):
            if n not in block.nfe:
                raise UserError(f"{where}: differs[{d}].nfe {n} is not a column of this block ({block.nfe})")
    out = []
    for method, row in block.values.items():
        entry = f"{where} {method}"
        if method not in methods:
            raise UserError(f"{entry}: method {method!r} is not in the grid; its methods: {', '.join(methods)}")
        if len(row) != len(block.nfe):
            raise UserError(f"{entry}: {len(row)} values for {len(block.nfe)} NFEs {block.nfe}")
        tol = tolerances.get(method, block.tolerance if not isinstance(block.tolerance, dict) else None)
        tol_row = tol if isinstance(tol, list) else [tol] * len(block.nfe)
        if len(tol_row) != len(block.nfe):
            raise UserError(f"{entry}: tolerance has {len(tol_row)} entries for {len(block.nfe)} NFEs")
        for nfe, value, t in zip(block.nfe, row, tol_row):
            if value is None:
                continue
            name = f"{entry} NFE={nfe}"
            if t is not None and not (t >= 0 and math.isfinite(t)):
                raise UserError(f"{name}: tolerance must be a number >= 0, got {t!r}")
            if not math.isfinite(value):
                raise UserError(f"{name}: the published value must be a finite number, got {value!r}")
            if not _has_cell(raw, model, solver, method, nfe):
                raise UserError(f"{name}: the grid has no cell {model} | {solver} | {method} | NFE={nfe} "
                                "(add the NFE to the grid or drop the value)")
            notes = [d.note for d in block.differs
                     if d.method in (None, method) and (d.nfe is None or nfe in ([d.nfe] if isinstance(d.nfe, int) else d.nfe))]
            out.append(PublishedValue(
                paper=block.paper, arxiv=block.arxiv, table=block.table, setting=block.setting, model=model,
                solver=solver, method=method, nfe=nfe, metric=block.metric, value=float(value),
                tolerance=None if t is None else float(t), tolerance_from=block.tolerance_from,
                samples=block.samples, differs="; ".join(notes) or None, where=name,
                tolerance_covers=block.tolerance_covers))
    return out


def parse_study(raw: dict, path: Path | None = None) -> Study:
    """A validated `Study` from a study file's mapping (`path`: where it was read, for `grid:`). The
    values are checked against the grid file's axes; nothing is loaded."""
    from .grid import read_grid_file

    prefix = f"{path} " if path else "study "
    if not isinstance(raw, dict):
        raise UserError(f"{prefix}must be a YAML mapping with keys study, grid, published")
    spec = validate(StudyFile, raw, prefix.strip())
    grid_path = Path(spec.grid)
    if not grid_path.is_absolute():
        grid_path = (path.parent if path else Path.cwd()) / grid_path
    if not grid_path.is_file():
        raise UserError(f"{prefix}grid: no grid file at {grid_path}")
    grid_raw = read_grid_file(grid_path)
    if not isinstance(grid_raw, dict):
        raise UserError(f"{grid_path}: the grid file must be a YAML mapping")
    values = [v for i, block in enumerate(spec.published) for v in _expand(block, i, grid_raw, prefix)]
    seen = {}
    for v in values:
        key = (v.paper, v.table, v.model, v.solver, v.method, v.nfe, v.metric)
        if key in seen:
            raise UserError(f"{v.where}: the same cell is already published by {seen[key]}")
        seen[key] = v.where
    models = _labels(grid_raw.get("models", []))
    for c, ckpt in enumerate(spec.checkpoints):
        if ckpt.model not in models:
            raise UserError(f"{prefix}checkpoints[{c}]: model {ckpt.model!r} is not in the grid; its models: "
                            f"{', '.join(models)}")
    return Study(name=spec.study, path=path, grid_raw=grid_raw, grid_path=grid_path.resolve(), values=values,
                 checkpoints=list(spec.checkpoints), fid_reference=list(spec.fid_reference),
                 description=spec.description, gpu=spec.gpu)


def load_study(path) -> Study:
    from .grid import read_grid_file

    path = Path(path)
    if not path.is_file():
        raise UserError(f"--study: no study file at {path}; see studies/ for the shipped ones")
    return parse_study(read_grid_file(path), path)


def studies_for_grid(grid_name: str, folder=STUDIES_DIR) -> list[Study]:
    """The shipped studies whose grid is named `grid_name` (a study file that does not load is skipped
    with a note on stderr, so a report never fails on an unrelated study)."""
    import sys

    from .grid import read_grid_file

    out = []
    for path in sorted(Path(folder).glob("*.yaml")):
        try:
            study = parse_study(read_grid_file(path), path)
            if study.grid_name == grid_name:
                out.append(study)
        except (UserError, KeyError, TypeError, OSError) as err:
            print(f"bench: study {path.name} left out: {err}", file=sys.stderr)
    return out


def with_stand_in(study: Study, models: dict[str, dict], samples: dict | None = None,
                  methods: dict[str, dict] | None = None, teacher: dict | None = None) -> Study:
    """The study with its grid's models replaced by stand-ins ({model label: spec}), optionally with
    smaller `samples`, a cheaper `teacher` and cheaper method settings ({method label: parameters
    merged into the entry}). Labels are kept, so every published value still finds its cell;
    `check` calls every value of a stand-in study "not comparable: stand-in model"."""
    raw = dict(study.grid_raw)
    labels = _labels(raw["models"])
    missing = sorted(set(labels) - set(models))
    if missing:
        raise UserError(f"with_stand_in: no stand-in for model(s) {', '.join(missing)}")
    raw["models"] = [{**models[label], "label": label} for label in labels]
    if samples is not None:
        raw["samples"] = samples
    if teacher is not None:
        raw["teacher"] = teacher
    if methods:
        entries = [{"name": m} if isinstance(m, str) else m for m in raw["methods"]]
        raw["methods"] = [{**entry, **methods[label], "label": label} if label in methods else entry
                          for entry, label in zip(entries, _labels(entries))]
    return replace(study, grid_raw=raw, stand_in=True, _grid=None)


# ------------------------------------------------------------------------------------- what a study needs
def missing(study: Study, root="results") -> list[str]:
    """One line per file the study needs that is not there: checkpoints (with where they are published),
    the model's other files, the metrics' weights and the FID reference statistics; first, a model
    adapter the harness does not have (such a study loads and lists its values but cannot run)."""
    from types import SimpleNamespace

    from .grid import plugin_label
    from .preflight import metric_problems, missing_paths
    from .registry import MODELS

    named = {(c.model, c.parameter): c for c in study.checkpoints}
    lines, stated = [], set()
    specs = [{"name": m} if isinstance(m, str) else m for m in study.grid_raw.get("models", [])]
    for spec in [s for s in specs if s.get("name") not in MODELS]:  # a study the harness cannot run yet
        label = plugin_label(spec)
        files = "; ".join(dict.fromkeys(f"{c.file}, from {c.url}" for c in study.checkpoints if c.model == label))
        lines.append(f"model {label!r}: this harness has no model adapter {spec.get('name')!r} (bench/models/; "
                     f"known: {', '.join(MODELS.names())})" + (f" to load {files}" if files else ""))
    specs = [s for s in specs if s.get("name") in MODELS]
    for spec in specs:
        label = plugin_label(spec)
        for param, value in spec.items():
            ckpt = named.get((label, param))
            if ckpt is None or f"{param}: {value}" in stated or Path(str(value)).expanduser().exists():
                continue
            stated.add(f"{param}: {value}")
            sha = f", sha256 {ckpt.sha256}" if ckpt.sha256 else ""
            lines.append(f"model {label!r} {param}: {value} ({ckpt.file}, from {ckpt.url}{sha})")
    # the models' other files (e.g. `edm`'s source tree), named once each
    # missing_paths / metric_problems read only these fields of a cell
    cells = [SimpleNamespace(model={k: v for k, v in m.items() if k != "label"},
                             metrics=tuple({"name": x} if isinstance(x, str) else x
                                           for x in study.grid_raw.get("metrics", [])))
             for m in specs]
    for line in missing_paths(cells):
        what = line.split(" ", 2)[2]
        if what not in stated:
            stated.add(what)
            lines.append(line)
    lines += metric_problems(cells)
    for ref in study.fid_reference:
        if not _fid_reference_exists(ref.name, root):
            lines.append(f"FID reference {ref.name!r}: {ref.images}; build it with `{ref.command}`")
    return lines


def _fid_reference_exists(name: str, root) -> bool:
    from types import SimpleNamespace

    from .metrics import fid_references

    folder = fid_references.refs_dir_for(None, SimpleNamespace(results_root=root))
    return any(Path(folder).glob(f"{name}_*.npz"))


def check_needs(study: Study, root="results") -> None:
    """Raise ONE `UserError` listing everything the study needs that is missing."""
    lines = missing(study, root)
    if lines:
        raise UserError(f"study {study.name} needs {len(lines)} file(s) that are not here: " + "; ".join(lines))


# ----------------------------------------------------------------------------------------- the comparison
@dataclass(frozen=True)
class CheckResult:
    value: PublishedValue
    status: str  # one of STATUSES
    measured: float | None = None
    low: float | None = None  # the measured interval (None: the point value is compared)
    high: float | None = None
    why: str = ""

    def line(self) -> str:
        v = self.value
        pub = f"published {v.value:.6g}" + (f" ± {v.tolerance:.3g}" if v.tolerance is not None else "")
        if self.measured is None:
            meas = "measured -"
        elif self.low is not None:
            meas = f"measured {self.measured:.6g} [{self.low:.6g}, {self.high:.6g}]"
        else:
            meas = f"measured {self.measured:.6g}"
        why = f" ({self.why})" if self.why else ""
        return f"{self.status:<14} {v.cell}: {meas}, {pub} [{v.paper} {v.table}]{why}"


def _measured_frame(study: Study, root) -> pd.DataFrame | None:
    """The long form of the study's grid with each cell's interval (`bench.report.long_table`)."""
    from .report import long_table

    try:
        return long_table(study.grid, root)
    except UserError:
        return None


def _metric_name(label: str) -> str:
    return label.split(" [", 1)[0]


def _select(df: pd.DataFrame | None, v: PublishedValue) -> pd.DataFrame:
    if df is None:
        return pd.DataFrame()
    hit = df[(df["method"] == v.method) & (df["nfe"] == v.nfe) & (df["solver"] == v.solver)
             & (df["metric"].map(_metric_name) == v.metric) & (df["model"].map(_metric_name) == v.model)
             & ~df["floor"].astype(bool)]
    return hit


def _checkpoint_mismatch(study: Study, v: PublishedValue, rows: pd.DataFrame) -> str | None:
    import json

    for ckpt in study.checkpoints:
        if ckpt.model != v.model or ckpt.sha256 is None:
            continue
        for spec in rows["model_spec"].unique():
            files = (json.loads(spec).get("files") or {})
            if files.get(ckpt.parameter) not in (None, ckpt.sha256):
                return f"the model file's sha256 is not the study's {ckpt.sha256[:12]}"
    return None


def check_value(study: Study, v: PublishedValue, df: pd.DataFrame | None) -> CheckResult:
    rows = _select(df, v)
    if not len(rows):
        return CheckResult(v, "not run", why="no row of this cell in the results root")
    measured = float(rows["value"].mean())
    low = high = None
    if {"ci_low", "ci_high"} <= set(rows.columns) and rows["ci_low"].notna().all() and rows["ci_high"].notna().all():
        low, high = float(rows["ci_low"].min()), float(rows["ci_high"].max())
    base = {"measured": measured, "low": low, "high": high}
    if study.stand_in:
        return CheckResult(v, "not comparable", why="stand-in model", **base)
    mismatch = _checkpoint_mismatch(study, v, rows)
    if mismatch:
        return CheckResult(v, "not comparable", why=mismatch, **base)
    if v.samples is not None and int(rows["samples_eval"].min()) < v.samples:
        return CheckResult(v, "not comparable", why=f"{int(rows['samples_eval'].min())} samples; the paper used "
                                                    f"{v.samples}", **base)
    if v.differs:
        return CheckResult(v, "differs", why=v.differs, **base)
    if v.tolerance is None:
        return CheckResult(v, "no tolerance", why="shown in the report, not checked", **base)
    lo, hi = (low, high) if low is not None and v.tolerance_covers == "published" else (measured, measured)
    ok = lo <= v.value + v.tolerance and hi >= v.value - v.tolerance
    return CheckResult(v, "pass" if ok else "fail", why=f"difference {measured - v.value:+.3g}", **base)


def check(study: Study, root="results") -> list[CheckResult]:
    df = _measured_frame(study, root)
    return [check_value(study, v, df) for v in study.values]


def format_check(study: Study, results: list[CheckResult]) -> str:
    counts = {s: sum(r.status == s for r in results) for s in STATUSES}
    summary = ", ".join(f"{n} {s}" for s, n in counts.items() if n)
    head = f"study {study.name}" + (" (stand-in models)" if study.stand_in else "")
    return "\n".join([f"{head}: {summary}", *(r.line() for r in results)])


# --------------------------------------------------------------------------------- beside the report
def published_records(study: Study) -> pd.DataFrame:
    """The published values in the report's long form: `source = published` and the citation."""
    records = [{
        "grid": study.grid_name, "model": v.model, "solver": v.solver, "method": v.method, "nfe": v.nfe,
        "seed": pd.NA, "metric": v.metric, "value": v.value, "floor": False, "higher_is_better": False,
        "heuristic": False, "paper_baseline": False, "source": PUBLISHED, "citation": v.citation,
        "setting": v.setting, "tolerance": v.tolerance, "differs": v.differs,
    } for v in study.values]
    return pd.DataFrame.from_records(records)


def long_form(measured: pd.DataFrame, studies: list[Study]) -> pd.DataFrame:
    """The measured long form with `source = measured` and the studies' published lines appended."""
    out = measured.assign(source=MEASURED, citation=None)
    extra = [published_records(s) for s in studies if s.values]
    if not extra:
        return out
    published = pd.concat(extra, ignore_index=True)
    published = published[published["grid"].isin(out["grid"].unique())]
    # integer columns stay integers (pandas' nullable Int64: a published line has no seed, no sample count)
    ints = {c: "Int64" for c in out.columns if pd.api.types.is_integer_dtype(out[c])}
    published = published.astype({c: t for c, t in ints.items() if c in published.columns})
    return pd.concat([out.astype(ints), published], ignore_index=True)


def is_extra_row(name) -> bool:
    """A table row this module adds (not a method)."""
    return isinstance(name, str) and (name.endswith(")") and ": published (" in name or name.endswith(": " + DIFFERENCE))


def published_row(method: str, paper: str, table: str) -> str:
    return f"{method}: published ({paper}, {table})"


def with_published(tabs: dict, studies: list[Study]) -> dict:
    """Tables with a `published (paper, table)` row and a `measured − published` row under each method
    that has published values (a table's key: (grid, model, solver, metric label))."""
    by_key: dict[tuple, list[PublishedValue]] = {}
    for study in studies:
        for v in study.values:
            by_key.setdefault((study.grid_name, v.model, v.solver, v.metric), []).append(v)
    out = {}
    for key, table in tabs.items():
        grid, model, solver, metric = key
        values = by_key.get((grid, _metric_name(model), solver, _metric_name(metric)))
        if not values:
            out[key] = table
            continue
        rows, published_of = [], {}
        for method in table.index:
            rows.append(table.loc[[method]])
            for (paper, tab) in dict.fromkeys((v.paper, v.table) for v in values if v.method == method):
                pub = pd.Series({f"NFE={v.nfe}": v.value for v in values
                                 if v.method == method and (v.paper, v.table) == (paper, tab)}, dtype=float)
                pub = pub.reindex(table.columns)
                name = published_row(method, paper, tab)
                published_of[name] = method
                rows.append(pd.DataFrame([pub.to_numpy()], index=[name], columns=table.columns))
                diff = table.loc[method] - pub
                rows.append(pd.DataFrame([diff.to_numpy()], index=[f"{method}: {DIFFERENCE}"], columns=table.columns))
        new = pd.concat(rows)
        new.index.name = table.index.name
        new.attrs = {**table.attrs, "published_of": published_of}
        out[key] = new
    return out


__all__ = ["CheckResult", "PublishedValue", "Study", "check", "check_needs", "format_check", "is_extra_row",
           "load_study", "long_form", "missing", "parse_study", "published_records", "studies_for_grid",
           "with_published", "with_stand_in"]
