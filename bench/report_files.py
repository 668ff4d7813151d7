"""`bench report`: print the tables and write everything a paper needs under `<root>/<grid>/report/`.

    results_long.csv / .parquet   one line per cell x metric with every resolved parameter
    tables.md                     the tables in markdown: mean (± std over seeds), best per NFE bold
    tables.tex                    the same through pandas' Styler (booktabs, best in \\textbf)
    plots/*.png|pdf               metric against NFE, one style per method (`bench.figures`)
    schedules/*.png|pdf           log(sigma) against the step, one line per method, per NFE
    samples/*.png|pdf             labelled sample panels: the teacher, then each method at each NFE
"""
from __future__ import annotations

import sys
from pathlib import Path

import torch

from . import figures
from .report import current_rows, latex_table, render, rows_frame, tables, write_tidy
from .store import ResultsRoot, atomic_write_bytes
from .studies import load_study, long_form, studies_for_grid, with_published


def print_and_write_report(root, grid=None, fmt: str = "text", digits: int = 4, write_files: bool = True,
                           studies=None) -> dict:
    """Print the tables of the current cells; with `write_files`, write the report files of each
    grid. `studies` (study files; default: the shipped studies of each grid reported) add their
    published values (`bench.studies`). Returns {grid name: [paths written]}."""
    rows = list(current_rows(root, grid))
    df = rows_frame(rows, root, grid)
    tabs = tables(df)
    # --- published values beside the measured ones (bench.studies)
    if studies is None:
        studies = [s for name in df["grid"].unique() for s in studies_for_grid(name)]
    else:
        studies = [load_study(s) if isinstance(s, (str, Path)) else s for s in studies]
    tabs = with_published(tabs, studies)
    # ---
    std = tables(df, stat="std") if df["seed"].nunique() > 1 else None
    print(render(tabs, fmt, digits, std))
    written = {}
    if not write_files:
        return written
    results = ResultsRoot(root)
    for name in df["grid"].unique():
        out = results.report_dir(name)
        grid_tabs = {k: v for k, v in tabs.items() if k[0] == name}
        grid_std = None if std is None else {k: v for k, v in std.items() if k[0] == name}
        grid_rows = [r for r in rows if r["grid"] == name]
        paths = write_tidy(long_form(df[df["grid"] == name], studies), out)
        paths.append(atomic_write_bytes(out / "tables.md", render(grid_tabs, "markdown", digits, grid_std).encode()))
        tex = "\n\n".join(latex_table(t, " | ".join(map(str, k)), digits) for k, t in grid_tabs.items())
        paths.append(atomic_write_bytes(out / "tables.tex", tex.encode()))
        paths += figures.plot_metrics(grid_tabs, grid_std, df[df["grid"] == name], out / "plots")
        paths += figures.plot_schedules(grid_rows, out / "schedules")
        previews = {}
        for row in grid_rows:
            path = results.preview_path(name, row["cell"])
            if path.exists():
                try:
                    previews[row["cell"]] = torch.load(path, map_location="cpu", weights_only=True)
                except Exception:  # noqa: BLE001 - a missing panel entry, never a failed report
                    continue
        paths += figures.sample_panel(grid_rows, previews, out / "samples")
        written[name] = paths
        print(f"report of {name}: {len(paths)} files in {out} (results_long.csv/.parquet, tables.md/.tex, "
              "plots/, schedules/, samples/)", file=sys.stderr)
    return written


__all__ = ["print_and_write_report"]
