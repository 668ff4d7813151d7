"""`bench report`: print the tables and write everything a paper needs under `<root>/<grid>/report/`.

    results_long.csv / .parquet   one line per cell x metric with every resolved parameter and the
                                  statistics of `bench.stats` (n, std, ci_low, ci_high, deltas, p, ties)
    tables.md                     the tables in markdown: mean ± half-width of the interval, best set bold
    tables.tex                    the same as LaTeX (`bench.report_latex`: what `--format latex` prints;
                                  booktabs, best set in \\textbf; \\input it in a document with booktabs)
    plots/*.png|pdf               metric against NFE, one style per method (`bench.figures`)
    schedules/*.png|pdf           log(sigma) against the step, one line per method, per NFE
    samples/*.png|pdf             labelled sample panels: the teacher, then each method at each NFE
    index.html                    all of the above on one offline page, with a method filter (`bench.html_report`)
"""
from __future__ import annotations

import sys
from pathlib import Path

import torch

from . import figures
from .report import current_rows, read_scores_of, render, rows_frame, summarize, tables, with_stats, write_tidy
from .errors import UserError
from .stats import DEFAULT_LEVEL, DEFAULT_RESAMPLES, check_settings
from .store import ResultsRoot, atomic_write_bytes, verify_key
from .studies import load_study, long_form, studies_for_grid, with_published
from . import html_report  # report/index.html
from .figure_style import MethodStyles


def print_and_write_report(root, grid=None, fmt: str = "text", digits: int = 4, write_files: bool = True,
                           plots: bool | None = None, level: float = DEFAULT_LEVEL,
                           n_resamples: int = DEFAULT_RESAMPLES, brackets: bool = False,
                           jobs: int = 2, studies=None, out=None, only=None) -> dict:
    """Print the tables of the current cells (with intervals and tests, `bench.stats`); with
    `write_files`, write the report files of each grid (figures only with `plots`, default
    `write_files`). `studies` (study files; default: the shipped studies of each grid reported) add
    their published values (`bench.studies`). `fmt` "csv" prints the long form (what
    `results_long.csv` holds); `out` writes the output to that file instead of stdout; `only`
    (`--only KEY=V1,V2` strings, `bench.report_filter`) keeps the lines it names and then writes no
    report files (they always hold the whole grid). Returns {grid name: [paths written]}."""
    check_settings(level, n_resamples)
    plots = write_files if plots is None else plots
    rows, scores = read_scores_of(list(current_rows(root, grid)), root)
    df = rows_frame(rows, root, grid)
    if only:
        from . import report_filter

        df = report_filter.apply(df, report_filter.parse(only))
        write_files = plots = False
    tabs = tables(df)
    # --- published values beside the measured ones (bench.studies)
    if studies is None:
        studies = [s for name in df["grid"].unique() for s in studies_for_grid(name)]
    else:
        studies = [load_study(s) if isinstance(s, (str, Path)) else s for s in studies]
    tabs = with_published(tabs, studies)
    # ---
    std = tables(df, stat="std") if df["seed"].nunique() > 1 else None
    summary = summarize(df, scores, level, n_resamples)
    if fmt == "csv":  # the long form, as results_long.csv (one header: pandas.read_csv reads it)
        text = long_form(with_stats(df, summary), studies).to_csv(index=False)
    else:
        text = render(tabs, fmt, digits, std, summary, brackets, level)
    if out is not None and fmt == "markdown":  # a results file: say when, from what, at what cost
        from .report_stamp import stamp

        path = grid if isinstance(grid, (str, Path)) else getattr(grid, "path", None)
        where = f" --grid {path}" if path else ""
        text = stamp(rows, root, f"python -m bench report --results {root}{where} --format markdown --out {out}") + text
    if out is None:
        print(text, end="" if fmt in ("csv", "latex") else "\n")
    else:
        try:
            atomic_write_bytes(Path(out), text.encode())
        except OSError as err:
            raise UserError(f"--out {out}: cannot write it ({err.strerror or err}); pass a writable path") from None
        print(f"report: {fmt} written to {out}", file=sys.stderr)
    written = {}
    if not write_files:
        return written
    results = ResultsRoot(root)
    for name in df["grid"].unique():
        out = results.report_dir(name)
        grid_tabs = {k: v for k, v in tabs.items() if k[0] == name}
        grid_std = None if std is None else {k: v for k, v in std.items() if k[0] == name}
        grid_rows = [r for r in rows if r["grid"] == name]
        grid_summary = summary[summary["grid"] == name]
        long = with_stats(df[df["grid"] == name], grid_summary)
        paths = write_tidy(long_form(long, studies), out, sort=False)
        paths.append(atomic_write_bytes(out / "tables.md", render(grid_tabs, "markdown", digits, grid_std,
                                                                  grid_summary, brackets, level).encode()))
        tex = render(grid_tabs, "latex", digits, grid_std, grid_summary, brackets, level)
        paths.append(atomic_write_bytes(out / "tables.tex", tex.encode()))
        # one style and display name per method for every figure of the grid; the HTML page (bench.html_report)
        styles = MethodStyles.for_grid(root, name, grid_rows, df[df["grid"] == name])
        drawn: list[figures.Figure] = []
        if not plots:
            paths.append(html_report.write_index(out, name, grid_tabs, grid_std, grid_summary, drawn, styles, digits,
                                                 brackets, level, root))
            written[name] = paths
            print(f"report of {name}: {len(paths)} files in {out} (results_long.csv/.parquet, tables.md/.tex; "
                  "index.html; no figures: --no-plots)", file=sys.stderr)
            continue
        paths += figures.plot_metrics(grid_tabs, grid_std, df[df["grid"] == name], out / "plots",
                                      summary=grid_summary, jobs=jobs, styles=styles, catalog=drawn)
        paths += figures.plot_schedules(grid_rows, out / "schedules", jobs=jobs, styles=styles, catalog=drawn)
        previews = {}
        for row in grid_rows:
            path = results.preview_path(name, row["cell"])
            if path.exists():
                try:
                    preview = torch.load(path, map_location="cpu", weights_only=True)
                    if "cell" in preview:  # previews written before they carried their key have none
                        verify_key(path, row["cell"], preview["cell"])  # another cell's samples
                    previews[row["cell"]] = preview
                except Exception:  # noqa: BLE001 - a missing panel entry, never a failed report
                    continue
        paths += figures.sample_panel(grid_rows, previews, out / "samples", styles=styles, catalog=drawn)
        paths.append(html_report.write_index(out, name, grid_tabs, grid_std, grid_summary, drawn, styles, digits,
                                             brackets, level, root))
        written[name] = paths
        print(f"report of {name}: {len(paths)} files in {out} (results_long.csv/.parquet, tables.md/.tex, "
              "plots/, schedules/, samples/, index.html)", file=sys.stderr)
    return written


__all__ = ["print_and_write_report"]
