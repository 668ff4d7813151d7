"""Result rows -> pandas -> one table per (grid, model, solver, metric), and plots.

Each table has the methods as rows and the NFEs as columns (mean over the grid's seeds; with more
than one seed a second table gives the standard deviation). Two extra rows:
  * "best heuristic": per NFE, the best value among the four closed forms the papers compare against
    (uniform, logsnr, polynomial, edm: the rows' `paper_baseline`; other heuristics such as beta,
    kl-optimal or a `manual` list are tabled but never set this bar), lowest, or highest for metrics
    where higher is better (e.g. PSNR): the bar that searched and learned methods must clear;
  * "noise floor": for distribution distances that report one (`<metric>_floor`), the same distance
    between two independent sets of true samples; a value at the floor cannot be told from exact.
A metric that names its feature network (`fid_weights`: a hash of the weights file) is tabled as
`fid [<hash>]`, so numbers from different feature networks never share a table; likewise a model
that ships weights (`model_weights_sha256` in its rows, e.g. digits-net) is labelled
`<model> [weights <hash>]`. The cost of the
methods that fit is tabled the same way (`COSTS`: fit seconds, the fit's network evaluations of
single samples, a schedule network's parameter count and per-sample cost in model evaluations, and
the evaluations a per-instance method spends inside `schedule`).
Only the current cells of each grid are tabled: `load_rows` recomputes the cell keys of the grid as
it is now (the given grid file, or the copy a run keeps in `<root>/<grid>/grid.yaml`) and reads
exactly those rows, so rows of older parameters, defaults or code versions are never averaged in. A
row that does not read cleanly is named on stderr and left out (the next `run` recomputes it).
Tables print with tabulate (`text`, `markdown`, `latex`; a cell the grid does not run shows `-`) or as
CSV (left empty); plots (metric versus NFE, one line per method) are written with matplotlib.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pandas as pd
from tabulate import tabulate

from .errors import UserError
from .studies import is_extra_row  # a study's `published (paper, table)` rows are no method

BEST_HEURISTIC = "best heuristic"
# Columns that describe a metric's feature network, the same in every cell (fd-digits' classifier
# accuracy): kept in the rows, not tabled.
DETAIL_SUFFIXES = ("_classifier_acc",)
NOISE_FLOOR = "noise floor"
FORMATS = {"text": "simple", "markdown": "github", "latex": "latex_booktabs"}


def current_grids(root, grid=None) -> list:
    """The grids to report: `grid` (a `Grid`, or the name of a grid run under `root`), else every
    grid whose run left its grid file under `root`."""
    from .grid import Grid, parse_grid, read_grid_file
    from .store import ResultsRoot

    if isinstance(grid, Grid):
        return [grid]
    results = ResultsRoot(root)
    names = [grid] if grid else sorted(p.parent.name for p in Path(root).glob("*/grid.yaml"))
    grids = []
    for name in names:
        copy = results.grid_copy_path(name)
        if copy.is_file():
            grids.append(parse_grid(read_grid_file(copy), name=name, path=copy, force=True))
    return grids


def current_rows(root="results", grid=None):
    """Yield the row (a dict) of every current cell of `grid` (or of every grid under the results
    root) that has one; a row that does not read cleanly is named on stderr and skipped."""
    from .rows import read_row
    from .store import CorruptArtifact, ResultsRoot

    results = ResultsRoot(root)
    for g in current_grids(root, grid):
        for cell in g.cells:
            path = results.row_path(g.name, cell.hash)
            if not path.exists():
                continue
            try:
                yield read_row(path)
            except (CorruptArtifact, OSError) as err:
                print(f"bench: skipping {err} (the next run recomputes it)", file=sys.stderr)


def load_rows(root="results", grid=None) -> pd.DataFrame:
    """The rows of the current cells of `grid` (or of every grid under the results root) in long
    form: one line per (cell, metric)."""
    return rows_frame(list(current_rows(root, grid)), root, grid)


def rows_frame(rows: list[dict], root="results", grid=None) -> pd.DataFrame:
    records = [record for row in rows for record in _records(row)]
    if not records:
        where = f"grid {getattr(grid, 'name', grid)!r} under {root}" if grid else str(root)
        raise UserError(f"no result rows of the current cells in {where}; run `python -m bench run --grid ...` "
                        "first or pass --results")
    return pd.DataFrame.from_records(records)


def _records(row: dict) -> list[dict]:
    """One record per metric (and per cost of a fitted method) of a row."""
    records = []
    base = {
        "grid": row["grid"], "model": _model_label(row), "solver": row["solver_label"],
        "method": row["method_label"], "nfe": row["nfe"], "seed": row["seed"],
        "heuristic": row["heuristic"], "paper_baseline": row["paper_baseline"],
        "fit_seconds": row["fit"]["fit_seconds"], "cell": row["cell"],
        # every resolved parameter, for the long-form export
        **{f"{part}_spec": json.dumps(row[part], sort_keys=True) for part in ("model", "solver", "method", "teacher")},
        "samples_eval": row["samples"]["eval"], "dtype": row["dtype"], "git_rev": row.get("git_rev"),
    }
    higher = row.get("higher_is_better", {})
    for label, value in _costs(row).items():
        records.append({**base, "metric": label, "floor": False, "value": value, "higher_is_better": False})
    metrics = row["metrics"]
    for metric, value in metrics.items():
        if isinstance(value, str) or value is None:
            continue  # tags such as `fid_weights` (the feature network's hash) label a table below
        if metric.endswith(DETAIL_SUFFIXES):
            continue
        floor = metric.endswith("_floor") and metric[: -len("_floor")] in metrics
        name = metric[: -len("_floor")] if floor else metric
        weights = metrics.get(f"{name}_weights")
        label = f"{name} [{weights}]" if isinstance(weights, str) else name
        records.append({**base, "metric": label, "floor": floor, "value": value,
                        "higher_is_better": higher.get(name, False)})
    return records


def _model_label(row: dict) -> str:
    """The model's label, with the first 12 hex digits of its weights' SHA-256 when the row has one."""
    sha = row.get("model_weights_sha256")
    return f"{row['model_label']} [weights {sha[:12]}]" if isinstance(sha, str) else row["model_label"]


# What fitting a method costs, tabled like the metrics (methods that fit or search only).
COSTS = {
    "fit_seconds": "fit seconds",
    "fit_nfe": "fit evaluations",  # network evaluations of single samples spent by the fit or search
    "phi_params": "schedule net params",  # INDIS/GOD: the prior-conditioning network's size
    "phi_cost_in_model_evals": "schedule net cost [model evals]",  # its per-sample time / one model call
}


def _costs(row: dict) -> dict:
    fit = row.get("fit") or {}
    out = {}
    if not row["heuristic"] and fit.get("fit_seconds", 0) > 0:
        out = {label: fit[key] for key, label in COSTS.items() if isinstance(fit.get(key), (int, float))}
    if row.get("schedule_nfe"):  # per-instance searches inside `schedule` (the oracle), per sample
        out["schedule evaluations"] = row["schedule_nfe"]
    return out


def tables(df: pd.DataFrame, stat: str = "mean") -> dict[tuple, pd.DataFrame]:
    """{(grid, model, solver, metric): methods x NFE table} of the seeds' mean (or std)."""
    out = {}
    for key, group in df.groupby(["grid", "model", "solver", "metric"], sort=False):
        values = group[~group["floor"]]
        table = values.pivot_table(index="method", columns="nfe", values="value", aggfunc=stat)
        heuristics = values[values["heuristic"]]["method"].unique()
        order = sorted(table.index, key=lambda m: (m not in heuristics, m))
        table = table.loc[order]
        if stat == "mean":
            higher = bool(values["higher_is_better"].iloc[0])
            baselines = values[values["paper_baseline"]]["method"].unique()
            heur = table.loc[[m for m in table.index if m in baselines]]
            if len(heur):
                table.loc[BEST_HEURISTIC] = heur.max() if higher else heur.min()
            floors = group[group["floor"]]
            if len(floors):
                table.loc[NOISE_FLOOR] = floors.groupby("nfe")["value"].mean()
        table.columns = [f"NFE={c}" for c in table.columns]
        table.index.name = "method"
        table.attrs["higher_is_better"] = bool(values["higher_is_better"].iloc[0])
        out[key] = table
    return out


def tidy(df: pd.DataFrame) -> pd.DataFrame:
    """The long form for analysis: one line per cell x metric, with every resolved parameter."""
    first = ["grid", "model", "solver", "method", "nfe", "seed", "metric", "value", "floor", "higher_is_better",
             "heuristic", "paper_baseline"]
    rest = [c for c in df.columns if c not in first]
    return df[first + rest].sort_values(["grid", "model", "solver", "metric", "method", "nfe", "seed"],
                                        kind="stable").reset_index(drop=True)


def write_tidy(df: pd.DataFrame, out_dir) -> list[Path]:
    """`results_long.csv` and `results_long.parquet` under `out_dir` (plain `pandas.read_csv` reads
    the CSV back: one header, one line per cell x metric)."""
    from .store import atomic_write_bytes

    long = tidy(df)
    csv_path = atomic_write_bytes(Path(out_dir) / "results_long.csv", long.to_csv(index=False).encode())
    paths = [csv_path]
    try:
        import io

        buffer = io.BytesIO()
        long.to_parquet(buffer, index=False)
        paths.append(atomic_write_bytes(Path(out_dir) / "results_long.parquet", buffer.getvalue()))
    except ImportError:  # pyarrow missing: the CSV carries the same content
        pass
    return paths


def arrow(higher_is_better: bool) -> str:
    return "↑" if higher_is_better else "↓"


def best_rows(table: pd.DataFrame) -> pd.DataFrame:
    """Boolean mask of the best method per NFE column (the extra rows never count)."""
    methods = table.drop(index=[r for r in table.index if r in (BEST_HEURISTIC, NOISE_FLOOR) or is_extra_row(r)])
    higher = table.attrs.get("higher_is_better", False)
    best = methods.max() if higher else methods.min()
    mask = pd.DataFrame(False, index=table.index, columns=table.columns)
    for col in table.columns:
        if pd.notna(best[col]):
            mask.loc[methods.index[methods[col] == best[col]], col] = True
    return mask


MISSING = "-"


def _cell_text(mean, std, digits: int, fmt: str, best: bool) -> str | None:
    if pd.isna(mean):
        return None
    text = f"{mean:.{digits}g}"
    if std is not None and pd.notna(std):
        text += (r" $\pm$ " if fmt == "latex" else " ± ") + f"{std:.{max(1, digits - 2)}g}"
    if best:
        text = {"markdown": f"**{text}**", "latex": rf"\textbf{{{text}}}"}.get(fmt, f"{text}*")
    return text


def render(tabs: dict[tuple, pd.DataFrame], fmt: str = "text", digits: int = 4,
           std: dict[tuple, pd.DataFrame] | None = None) -> str:
    """Tables as text, markdown, LaTeX (booktabs) or CSV. Titles carry the direction (↓ lower is
    better, ↑ higher); the best method per NFE is bold (`*` in text); with `std` (several seeds) a
    cell reads mean ± std. A cell the grid does not run is `-` (empty in CSV)."""
    if fmt not in FORMATS and fmt != "csv":
        raise UserError(f"--format must be one of text, markdown, csv, latex; got {fmt!r}")
    parts = []
    for key, table in tabs.items():
        grid, model, solver, metric = key
        title = f"{grid} | {model} | {solver} | {metric} {arrow(table.attrs.get('higher_is_better', False))}"
        if fmt == "csv":
            parts.append(f"# {title}\n" + table.to_csv(float_format=f"%.{digits}g", na_rep=""))
            continue
        spread = None if std is None else std.get(key)
        mask = best_rows(table)
        cells = pd.DataFrame(
            [[_cell_text(table.iat[i, j], None if spread is None or name not in spread.index
                         else spread.loc[name].iloc[j], digits, fmt, bool(mask.iat[i, j]))
              for j in range(table.shape[1])] for i, name in enumerate(table.index)],
            index=table.index, columns=table.columns, dtype=object)
        body = tabulate(cells, headers="keys", tablefmt=FORMATS[fmt], missingval=MISSING, disable_numparse=True)
        heading = f"### {title}" if fmt == "markdown" else f"% {title}" if fmt == "latex" else title
        parts.append(f"{heading}\n\n{body}\n")
    return "\n".join(parts)


def latex_table(table: pd.DataFrame, caption: str, digits: int = 4) -> str:
    """One table as LaTeX through pandas' Styler: booktabs rules, best per NFE in bold."""
    higher = table.attrs.get("higher_is_better", False)
    methods = [m for m in table.index if m not in (BEST_HEURISTIC, NOISE_FLOOR) and not is_extra_row(m)]
    styler = table.style.format(precision=digits, na_rep=MISSING)
    highlight = styler.highlight_max if higher else styler.highlight_min
    highlight(subset=pd.IndexSlice[methods, :], axis=0, props="textbf:--rwrap;")
    return styler.to_latex(hrules=True, caption=f"{caption} ({arrow(higher)})")
