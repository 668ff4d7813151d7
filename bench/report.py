"""Result rows -> pandas -> one table per (grid, model, solver, metric), and plots.

Each table has the methods as rows and the NFEs as columns (mean over the grid's seeds; with more
than one seed a second table gives the standard deviation). Two extra rows:
  * "best heuristic": per NFE, the best value among the closed-form heuristics (lowest, or highest
    for metrics where higher is better, e.g. PSNR), the bar that searched and learned methods must
    clear;
  * "noise floor": for distribution distances that report one (`<metric>_floor`), the same distance
    between two independent sets of true samples; a value at the floor cannot be told from exact.
A metric that names its feature network (`fid_weights`: a hash of the weights file) is tabled as
`fid [<hash>]`, so numbers from different feature networks never share a table; likewise a model
that ships weights (`model_weights_sha256` in its rows, e.g. digits-net) is labelled
`<model> [weights <hash>]`. The cost of the
methods that fit is tabled the same way (`COSTS`: fit seconds, the fit's network evaluations of
single samples, a schedule network's parameter count and per-sample cost in model evaluations, and
the evaluations a per-instance method spends inside `schedule`).
Tables print with tabulate (`text`, `markdown`, `latex`; a cell the grid does not run shows `-`) or as
CSV (left empty); plots (metric versus NFE, one line per method) are written with matplotlib.
"""
from __future__ import annotations

import glob
import json
from pathlib import Path

import pandas as pd
from tabulate import tabulate

from .errors import UserError

BEST_HEURISTIC = "best heuristic"
# Columns that describe a metric's feature network, the same in every cell (fd-digits' classifier
# accuracy): kept in the rows, not tabled.
DETAIL_SUFFIXES = ("_classifier_acc",)
NOISE_FLOOR = "noise floor"
FORMATS = {"text": "simple", "markdown": "github", "latex": "latex_booktabs"}


def load_rows(root="results", grid: str | None = None) -> pd.DataFrame:
    """All rows under the results root (or one grid's) in long form: one line per (cell, metric)."""
    pattern = str(Path(root) / (grid or "*") / "rows" / "*.json")
    records = []
    for path in sorted(glob.glob(pattern)):
        with open(path) as f:
            row = json.load(f)
        base = {
            "grid": row["grid"], "model": _model_label(row), "solver": row["solver_label"],
            "method": row["method_label"], "nfe": row["nfe"], "seed": row["seed"],
            "heuristic": row["heuristic"], "fit_seconds": row["fit"]["fit_seconds"],
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
    if not records:
        where = f"grid {grid!r} under {root}" if grid else str(root)
        raise UserError(f"no result rows in {where}; run `python -m bench run --grid ...` first or pass --results")
    return pd.DataFrame.from_records(records)


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
            heur = table.loc[[m for m in table.index if m in heuristics]]
            if len(heur):
                table.loc[BEST_HEURISTIC] = heur.max() if higher else heur.min()
            floors = group[group["floor"]]
            if len(floors):
                table.loc[NOISE_FLOOR] = floors.groupby("nfe")["value"].mean()
        table.columns = [f"NFE={c}" for c in table.columns]
        table.index.name = "method"
        out[key] = table
    return out


MISSING = "-"


def render(tabs: dict[tuple, pd.DataFrame], fmt: str = "text", digits: int = 4) -> str:
    if fmt not in FORMATS and fmt != "csv":
        raise UserError(f"--format must be one of text, markdown, csv, latex; got {fmt!r}")
    parts = []
    for (grid, model, solver, metric), table in tabs.items():
        title = f"{grid} | {model} | {solver} | {metric}"
        if fmt == "csv":
            parts.append(f"# {title}\n" + table.to_csv(float_format=f"%.{digits}g", na_rep=""))
        else:
            # cells the grid does not run (e.g. fitted methods only at some NFEs) print as a dash, not nan
            cells = table.astype(object).where(table.notna(), None)
            body = tabulate(cells, headers="keys", tablefmt=FORMATS[fmt], floatfmt=f".{digits}g",
                            missingval=MISSING)
            heading = f"### {title}" if fmt == "markdown" else f"% {title}" if fmt == "latex" else title
            parts.append(f"{heading}\n\n{body}\n")
    return "\n".join(parts)


def plot(tabs: dict[tuple, pd.DataFrame], out_dir) -> list[Path]:
    """One PNG per table: the metric against NFE, a line per method (the extra rows dashed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for (grid, model, solver, metric), table in tabs.items():
        nfes = [int(c.split("=")[1]) for c in table.columns]
        fig, ax = plt.subplots(figsize=(5, 3.5))
        for method, values in table.iterrows():
            style = "--" if method in (BEST_HEURISTIC, NOISE_FLOOR) else "-o"
            ax.plot(nfes, values.values, style, label=method, markersize=3)
        ax.set_xlabel("NFE")
        ax.set_ylabel(metric)
        if metric in ("mse", "kl", "wasserstein") and (table.values > 0).all():
            ax.set_yscale("log")
        ax.set_title(f"{model} | {solver}", fontsize=9)
        ax.legend(fontsize=7)
        fig.tight_layout()
        safe = "_".join(s.replace("/", "-").replace(" ", "") for s in (model, solver, metric))
        path = out_dir / f"{safe}.png"
        fig.savefig(path, dpi=120)
        plt.close(fig)
        paths.append(path)
    return paths
