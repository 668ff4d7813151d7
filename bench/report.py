"""Result rows -> pandas -> one table per (grid, model, solver, metric), and plots.

Each table has the methods as rows and the NFEs as columns (mean over the grid's seeds; with more
than one seed a second table gives the standard deviation). Extra rows:
  * "best of the papers' heuristics": per NFE, the best value among the four closed forms the papers
    compare against (uniform, logsnr, polynomial, edm: the rows' `paper_baseline`; other heuristics
    such as beta, kl-optimal or a `manual` list never set this bar), lowest, or highest for metrics
    where higher is better (e.g. PSNR): the bar that searched and learned methods must clear;
  * "best closed form": per NFE, the best of every method without a fit (`heuristic`: the four, the
    menu schedulers such as kl-optimal, `manual` lists), where the table has more of them than the four;
  * "noise floor": for distribution distances that report one (`<metric>_floor`), the same distance
    between two independent sets of true samples; a value at the floor cannot be told from exact.
A metric that names its feature network (`fid_weights`: a hash of the weights file) is tabled as
`fid [<hash>]`, so numbers from different feature networks never share a table; likewise a model
that ships weights (`model_weights_sha256` in its rows, e.g. digits-net) is labelled
`<model> [weights <hash>]` (printed tables show the short name and the hash in a line under the
table: `bench.report_text`). A method label that spells out a long list (`manual`) is shortened
(`bench.report_format.short_label`). The cost of the
methods that fit is tabled the same way (`COSTS`: fit seconds, the fit's network evaluations of
single samples, a schedule network's parameter count and per-sample cost in model evaluations, and
the evaluations a per-instance method spends inside `schedule`).
Only the current cells of each grid are tabled: `load_rows` recomputes the cell keys of the grid as
it is now (the given grid file, or the copy a run keeps in `<root>/<grid>/grid.yaml`) and reads
exactly those rows, so rows of older parameters, defaults or code versions are never averaged in. A
row that does not read cleanly is named on stderr and left out (the next `run` recomputes it).
Tables print with tabulate (`text`, `markdown`: `bench.report_text`), as LaTeX (`bench.report_latex`,
the one writer of tables.tex and `--format latex`; a cell the grid does not run shows `-`) or as CSV
blocks (left empty; the CLI's `--format csv` prints the long form instead); convention footnotes come
from `bench.report_notes`; plots (metric versus NFE, one line per method) are written with matplotlib.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from .errors import UserError
from .report_format import short_label
from .studies import is_extra_row  # a study's `published (paper, table)` rows are no method

BEST_HEURISTIC = "best of the papers' heuristics"
BEST_CLOSED_FORM = "best closed form"
# Columns that describe a metric's feature network, the same in every cell (fd-digits' classifier
# accuracy): kept in the rows, not tabled.
DETAIL_SUFFIXES = ("_classifier_acc",)
NOISE_FLOOR = "noise floor"
EXTRA_ROWS = (BEST_HEURISTIC, BEST_CLOSED_FORM, NOISE_FLOOR)  # rows `tables` adds: never a method
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
    from .store import CorruptArtifact, ResultsRoot

    results = ResultsRoot(root)
    for g in current_grids(root, grid):
        for cell in g.cells:
            try:
                row = results.read_row(g.name, cell.hash)
            except (CorruptArtifact, OSError) as err:
                print(f"bench: skipping {err} (the next run recomputes it)", file=sys.stderr)
                continue
            if row is not None:
                yield row


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
        "method": short_label(row["method_label"]), "nfe": row["nfe"], "seed": row["seed"], "steps": row.get("steps"),
        "heuristic": row["heuristic"], "paper_baseline": row["paper_baseline"],
        "fit_seconds": row["fit"]["fit_seconds"], "cell": row["cell"],
        # every resolved parameter, for the long-form export
        **{f"{part}_spec": json.dumps(row[part], sort_keys=True) for part in ("model", "solver", "method", "teacher")},
        "samples_eval": row["samples"]["eval"], "dtype": row["dtype"], "git_rev": row.get("git_rev"),
        # for bench.stats: a per-instance method (no one global schedule) gets a win rate; a row
        # without `scores_sha256` predates per-sample scores
        "per_instance": row.get("schedule") is None and not row["heuristic"],
        "scores_kept": "scores_sha256" in row,
    }
    higher = row.get("higher_is_better", {})
    for label, value in _costs(row).items():
        records.append({**base, "metric": label, "floor": False, "value": value, "higher_is_better": False,
                        "column": None})
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
                        "higher_is_better": higher.get(name, False), "column": None if floor else metric})
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
            closed = table.loc[[m for m in table.index if m in heuristics]]
            if len(closed) > len(heur):  # more training-free methods than the papers' four
                table.loc[BEST_CLOSED_FORM] = closed.max() if higher else closed.min()
            floors = group[group["floor"]]
            if len(floors):
                table.loc[NOISE_FLOOR] = floors.groupby("nfe")["value"].mean()
        steps = {f"NFE={c}": _one(values[values["nfe"] == c].get("steps")) for c in table.columns}
        table.columns = [f"NFE={c}" for c in table.columns]
        table.index.name = "method"
        table.attrs["higher_is_better"] = bool(values["higher_is_better"].iloc[0])
        if stat == "mean":
            from .report_notes import notes

            spec = _one(values.get("solver_spec"))
            measured = "column" not in values or values["column"].notna().any()  # not a cost table
            table.attrs["notes"] = notes(None if spec is None or not measured else json.loads(spec), steps)
            table.attrs["extra_rows"] = {BEST_HEURISTIC: [m for m in table.index if m in baselines],
                                         BEST_CLOSED_FORM: [m for m in table.index if m in heuristics]}
        out[key] = table
    return out


def _one(column: pd.Series):
    """The column's single value, or None where it has none or several (or lacks the column)."""
    values = column.dropna().unique() if column is not None else []
    return values[0] if len(values) == 1 else None


def tidy(df: pd.DataFrame) -> pd.DataFrame:
    """The long form for analysis: one line per cell x metric, with every resolved parameter."""
    first = ["grid", "model", "solver", "method", "nfe", "seed", "metric", "value", "floor", "higher_is_better",
             "heuristic", "paper_baseline"]
    rest = [c for c in df.columns if c not in first]
    return df[first + rest].sort_values(["grid", "model", "solver", "metric", "method", "nfe", "seed"],
                                        kind="stable").reset_index(drop=True)


def write_tidy(df: pd.DataFrame, out_dir, sort: bool = True) -> list[Path]:
    """`results_long.csv` and `results_long.parquet` under `out_dir` (plain `pandas.read_csv` reads
    the CSV back: one header, one line per cell x metric). `sort=False`: `df` is already `tidy`'s."""
    from .store import atomic_write_bytes

    long = tidy(df) if sort else df
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
    methods = table.drop(index=[r for r in table.index if r in EXTRA_ROWS or is_extra_row(r)])
    higher = table.attrs.get("higher_is_better", False)
    best = methods.max() if higher else methods.min()
    mask = pd.DataFrame(False, index=table.index, columns=table.columns)
    for col in table.columns:
        if pd.notna(best[col]):
            mask.loc[methods.index[methods[col] == best[col]], col] = True
    return mask


MISSING = "-"


def render(tabs: dict[tuple, pd.DataFrame], fmt: str = "text", digits: int = 4,
           std: dict[tuple, pd.DataFrame] | None = None, summary: pd.DataFrame | None = None,
           brackets: bool = False, level: float = 0.95) -> str:
    """Tables as text, markdown, LaTeX (booktabs) or CSV blocks. Titles carry the direction (↓ lower is
    better, ↑ higher); the best method per NFE is bold (`*` in text); with `std` (several seeds) a
    cell reads mean ± std. With `summary` (`summarize`: intervals and tests of `bench.stats`) a cell
    reads mean ± half-width of its interval (`[low, high]` with `brackets`), the best set is bold,
    a method tied with the best carries †, each table is followed by one line per NFE naming its best
    set and its paired comparisons, and a legend line ends the output. Under every table a legend line
    says what its marks and extra rows mean, with the convention notes (`bench.report_notes`) and the
    weights hashes of its metric or model (`bench.report_text`). A cell the grid does not run is `-`
    (empty in CSV). LaTeX is `bench.report_latex`'s, the same text `report/tables.tex` holds."""
    if fmt not in FORMATS and fmt != "csv":
        raise UserError(f"--format must be one of text, markdown, csv, latex; got {fmt!r}")
    lookup = stats_lookup(summary)
    if fmt == "latex":
        from .report_latex import render_latex

        return render_latex(tabs, digits, std, lookup, brackets, level,
                            None if summary is None else legend(summary, level, "markdown"))
    from .report_text import render_table, table_pieces

    parts = []
    for key, table in tabs.items():
        if fmt == "csv":
            grid, model, solver, metric = key
            title = f"{grid} | {model} | {solver} | {metric} {arrow(table.attrs.get('higher_is_better', False))}"
            parts.append(f"# {title}\n" + table.to_csv(float_format=f"%.{digits}g", na_rep=""))
            continue
        spread = None if std is None else std.get(key)
        parts.append(render_table(table_pieces(key, table, fmt, digits, spread, lookup, brackets, level), fmt))
    if summary is not None and fmt != "csv":
        parts.append(legend(summary, level, fmt))
    return "\n".join(parts)


def latex_table(table: pd.DataFrame, caption: str, digits: int = 4, summary: pd.DataFrame | None = None,
                brackets: bool = False, lookup: dict | None = None) -> str:
    """One table as a LaTeX float (`bench.report_latex.latex_float`); `caption` is its key joined by
    " | " (grid | model | solver | metric)."""
    from .report_latex import latex_float

    if lookup is None and summary is not None:
        lookup = stats_lookup(summary)
    key = tuple(caption.split(" | "))
    return latex_float(key if len(key) == 4 else (caption, "", "", ""), table, digits, None,
                       lookup if len(key) == 4 else None, brackets)


# ---- Uncertainty: intervals, paired tests, the best set (computed by bench.stats) ------------------

STAT_COLUMNS = ["n", "std", "ci_low", "ci_high", "interval", "delta_vs_best_heuristic",
                "delta_vs_best_heuristic_low", "delta_vs_best_heuristic_high", "p_vs_best_heuristic",
                "delta_vs_best", "delta_vs_best_low", "delta_vs_best_high", "p_vs_best", "is_best",
                "tied_with_best", "in_best_set", "win_rate_vs_best_heuristic", "priors_to_separate", "runner_up"]
KEYS = ["grid", "model", "solver", "metric", "method", "nfe"]


def read_scores_of(rows: list[dict], root) -> tuple[list[dict], dict]:
    """(the rows whose per-sample scores read cleanly or who have none, {cell: {column: vector}}). A row
    whose scores file is missing or corrupt is named on stderr and left out (the next `run`
    quarantines and recomputes it), so no interval is ever computed from a wrong file."""
    from .scores import row_scores
    from .store import CorruptArtifact

    kept, scores = [], {}
    for row in rows:
        try:
            vectors = row_scores(root, row)
        except CorruptArtifact as err:
            print(f"bench: skipping the row of cell {row['cell']}: {err} (the next run recomputes it)",
                  file=sys.stderr)
            continue
        kept.append(row)
        if vectors is not None:
            scores[row["cell"]] = vectors
    return kept, scores


def summarize(df: pd.DataFrame, scores: dict, level: float = 0.95, n_resamples: int = 2000) -> pd.DataFrame:
    """One line per (grid, model, solver, metric, method, NFE) with its mean over seeds and the
    statistics of `bench.stats` (interval, paired differences and Holm-adjusted p-values against the
    best heuristic and the best, best set and ties, win rate, priors needed to separate the top two)."""
    from . import stats

    stats.check_settings(level, n_resamples)
    values = df[~df["floor"] & df["column"].notna()] if "column" in df else df.iloc[0:0]
    fields = ["grid", "model", "solver", "nfe", "metric", "method", "seed", "cell", "column", "value",
              "higher_is_better", "paper_baseline", "per_instance", "scores_kept"]
    grouped: dict[tuple, dict[str, dict[str, list]]] = {}  # (grid, model, solver, nfe) -> metric -> method -> lines
    for rec in values[fields].to_dict("records"):
        key = (rec["grid"], rec["model"], rec["solver"], rec["nfe"])
        grouped.setdefault(key, {}).setdefault(rec["metric"], {}).setdefault(rec["method"], []).append(rec)
    out = []
    for gkey, metrics in grouped.items():
        columns = {}
        for metric, methods in metrics.items():
            higher = bool(next(iter(methods.values()))[0]["higher_is_better"])
            entries = []
            for method, lines in methods.items():
                entries.append(stats.Entry(
                    method=method, values={r["seed"]: float(r["value"]) for r in lines},
                    scores={r["seed"]: scores.get(r["cell"], {}).get(r["column"]) for r in lines},
                    paper_baseline=bool(lines[0]["paper_baseline"]), per_instance=bool(lines[0]["per_instance"]),
                    old_rows=not all(r["scores_kept"] for r in lines),
                    unit=stats.UNITS.get(lines[0]["column"], stats.PRIORS)))
            columns[metric] = (entries, higher)
        # one paired bootstrap for every metric and method of this (grid, model, solver, NFE)
        labels, blocks = [], []
        for metric, (entries, higher) in columns.items():
            got = stats.column_vectors(entries, higher)
            if got is not None:
                labels += [(metric, *label) for label in got[0]]
                blocks.append(got[1])
        cis = {}
        if blocks and len({b.shape[1] for b in blocks}) == 1:
            low, high = stats.paired_bootstrap(np.vstack(blocks), level, n_resamples, stats.column_seed(*gkey))
            cis = {label: (float(lo), float(hi)) for label, lo, hi in zip(labels, low, high)}
        elif blocks:  # metrics over different priors: one bootstrap each
            for metric, (entries, higher) in columns.items():
                got = stats.column_vectors(entries, higher)
                if got is not None:
                    low, high = stats.paired_bootstrap(got[1], level, n_resamples, stats.column_seed(*gkey, metric))
                    cis.update({(metric, *label): (float(lo), float(hi)) for label, lo, hi in zip(got[0], low, high)})
        grid, model, solver, nfe = gkey
        for metric, (entries, higher) in columns.items():
            ci = {k[1:]: v for k, v in cis.items() if k[0] == metric}
            result = stats.column_stats(entries, higher, level, n_resamples, (*gkey, metric), ci)
            for e in entries:
                vecs = [v for v in e.scores.values() if v is not None]
                pooled = np.concatenate(vecs) if vecs else None
                out.append({"grid": grid, "model": model, "solver": solver, "metric": metric, "method": e.method,
                            "nfe": nfe, "mean": result[e.method]["mean"],
                            **{k: result[e.method].get(k) for k in STAT_COLUMNS if k not in ("n", "std")},
                            "n": None if pooled is None else len(pooled),
                            "std": None if pooled is None or len(pooled) < 2 else float(pooled.std(ddof=1))})
    frame = pd.DataFrame.from_records(out, columns=KEYS + ["mean"] + STAT_COLUMNS)
    frame.attrs["level"] = level
    return frame


def long_table(grid=None, root="results", level: float = 0.95, n_resamples: int = 2000) -> pd.DataFrame:
    """The long form (`tidy`: one line per cell x metric, every resolved parameter) with the columns of
    `summarize` merged in (`n`, `std`, `ci_low`, `ci_high`, `delta_vs_best_heuristic` and its interval,
    `p_vs_best_heuristic`, `tied_with_best`, `win_rate_vs_best_heuristic`, ...: the statistics of the
    cell's (method, column) over the grid's seeds)."""
    rows, scores = read_scores_of(list(current_rows(root, grid)), root)
    df = rows_frame(rows, root, grid)
    return with_stats(df, summarize(df, scores, level, n_resamples))


def with_stats(df: pd.DataFrame, summary: pd.DataFrame) -> pd.DataFrame:
    long = tidy(df)
    # noise-floor lines share their metric's label but not its statistics
    return long.merge(summary.drop(columns=["mean"]).assign(floor=False), on=[*KEYS, "floor"], how="left")


def stats_lookup(summary: pd.DataFrame | None) -> dict | None:
    """`summarize`'s lines as plain records grouped by table key (grid, model, solver, metric), what
    `table_stats` and `bench.report_text.table_pieces` read; None without a summary."""
    if summary is None:
        return None
    groups: dict[tuple, list[dict]] = {}
    for rec in summary.to_dict("records"):
        groups.setdefault((rec["grid"], rec["model"], rec["solver"], rec["metric"]), []).append(rec)
    return groups


def _finite(x) -> bool:
    return x is not None and isinstance(x, (int, float, np.floating)) and bool(np.isfinite(x))


def table_stats(lookup, key, table) -> dict | None:
    """The best set, ties, intervals and notes of one table, from `stats_lookup`'s records (None: no
    statistics for this table)."""
    if lookup is None or tuple(key) not in lookup:
        return None
    rows = {name: i for i, name in enumerate(table.index)}
    cols = {c: j for j, c in enumerate(table.columns)}
    best = np.zeros(table.shape, dtype=bool)
    interval, tied, by_nfe = {}, {}, {}
    for rec in lookup[tuple(key)]:
        col = f"NFE={rec['nfe']}"
        by_nfe.setdefault(rec["nfe"], []).append(rec)
        if rec["method"] not in rows or col not in cols:
            continue
        best[rows[rec["method"]], cols[col]] = bool(rec["in_best_set"])
        interval[(rec["method"], col)] = (rec["ci_low"], rec["ci_high"])
        tied[(rec["method"], col)] = rec["tied_with_best"] is True
    higher = bool(table.attrs.get("higher_is_better", False))
    notes = [_column_note(nfe, by_nfe[nfe], higher) for nfe in sorted(by_nfe)]
    return {"best_set": pd.DataFrame(best, index=table.index, columns=table.columns), "interval": interval,
            "tied": tied, "notes": notes}


def _fmt_p(p) -> str:
    """'p=0.058', 'p=1', 'p<1e-300' (a p below the smallest float), 'p=-' (no test)."""
    if not _finite(p):
        return "p=-"
    return "p=1" if p == 1 else "p<1e-300" if p == 0 else f"p={p:.2g}"


def _column_note(nfe, lines: list[dict], higher: bool) -> str:
    """One line: the column's best set, ties with their p, the best's difference from the best
    heuristic, how many methods differ significantly from it, and the power estimate."""
    best = [r for r in lines if r["is_best"] is True]
    if not best:
        return f"NFE={nfe}: no finite value"
    b = best[0]
    tied = [r for r in lines if r["tied_with_best"] is True]
    text = f"NFE={nfe}: best set {{{', '.join([b['method'], *(r['method'] for r in tied)])}}}"
    if tied:
        text += " (tied: " + ", ".join(f"{r['method']} {_fmt_p(r['p_vs_best'])}" for r in tied) + ")"
    elif len(lines) > 1 and all(r["tied_with_best"] is None for r in lines if r is not b):
        text += f" ({b['interval']}: no test)"
    d = b["delta_vs_best_heuristic"]
    if _finite(d) and d != 0:
        text += (f"; {b['method']} vs {BEST_HEURISTIC} {d:+.3g} "
                 f"[{b['delta_vs_best_heuristic_low']:.3g}, {b['delta_vs_best_heuristic_high']:.3g}] "
                 f"{_fmt_p(b['p_vs_best_heuristic'])}")
    tested = [r for r in lines if _finite(r["p_vs_best_heuristic"])]
    if tested:
        sig = [r for r in tested if r["p_vs_best_heuristic"] < 0.05]
        better = sum(1 for r in sig if (r["delta_vs_best_heuristic"] > 0) == higher)
        text += (f"; {better} of {len(tested)} significantly better than the {BEST_HEURISTIC}, "
                 f"{len(sig) - better} worse")
    if _finite(b["priors_to_separate"]):
        text += (f"; ~{int(b['priors_to_separate'])} priors would separate {b['method']} from "
                 f"{b['runner_up']} (80% power)")
    return text


def legend(summary: pd.DataFrame, level: float, fmt: str = "text") -> str:
    """The line that says what ±, bold and † mean, and which cells have no interval."""
    pct = f"{100 * level:g}%"
    bold = {"markdown": "bold", "latex": "bold"}.get(fmt, "*")
    text = (f"Legend: ± half-width of the {pct} interval (percentile bootstrap over the evaluation priors, "
            f"paired across methods; Student t over seeds when there are several); {bold}: best set (the best "
            f"mean and every method not significantly different from it: paired t test, Holm-corrected, "
            f"{100 * (1 - level):g}%); †: tied with the best; a value without ± is a single estimate")
    old = summary[summary["interval"] == "no per-sample scores (row written before they were kept)"]
    if len(old):
        text += (f"; {len(old)} entries come from rows written before per-sample scores were kept: "
                 "no interval (rerun those cells to get one)")
    return ("% " if fmt == "latex" else "") + text + ".\n"
