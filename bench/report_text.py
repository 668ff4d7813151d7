"""What one table of `bench report` says, in any format: its cells, title, marks, legend and notes.

`table_pieces(key, table, fmt, ...)` builds, for one (grid, model, solver, metric) table of
`bench.report.tables`, everything the text, markdown, LaTeX and HTML writers print, so that they
differ in syntax only (it is the one entry point of every renderer; `pieces` does the work once the
table's statistics are looked up):
  * the cells: mean (± half-width of the interval, or ± the std over seeds without `summary`),
    `bench.report_format.number` for every value, the best set bold (`*` in text; in `html` the
    cells carry no markup and `Pieces.best` is the mask the page styles bold), † on ties;
  * the title, `grid | model | solver | metric ↓`, with short names: a weights hash of the metric or
    of the model goes into a `tags` line (`fd-digits: feature network weights 47e2a6f5f7ac`);
  * the convention notes of `bench.report_notes` (a superscript mark on the columns they concern,
    or on the title), from the solver spec and step counts `tables` keeps in the table's attrs;
  * one legend line that explains exactly the marks and extra rows this table shows.
`render_table` writes text (tabulate `simple`) and markdown (`github`); `bench.report_latex` writes
LaTeX and `bench.html_report` HTML from the same pieces. Numbers are right-aligned in every format.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import pandas as pd
from tabulate import tabulate

from . import report_format as rf
from .report import MISSING as MISSING_TEXT
from .report_notes import MARKS
from .studies import DIFFERENCE, is_extra_row

TABULATE = {"text": "simple", "markdown": "github"}
UP, DOWN = "↑", "↓"


@dataclass
class Pieces:
    title: str                      # grid | model | solver | metric (short names, direction arrow)
    cells: pd.DataFrame             # strings (None: not run), with the format's bold / dagger markup
    headers: list[str]              # column headers with their note marks
    legend: str                     # one line: what bold, *, †, ±, the extra rows and `-` mean here
    footnotes: list[str] = field(default_factory=list)  # "¹ text", one per convention note
    tags: list[str] = field(default_factory=list)       # "fd-digits: feature network weights ..."
    stats_notes: list[str] = field(default_factory=list)  # the per-NFE lines of `bench.stats`
    title_mark: str = ""
    short_key: tuple = ()             # (grid, model, solver, metric) without weights hashes
    higher: bool = False
    best: pd.DataFrame | None = None  # the cells shown bold (the best set, or the best mean)


def _mark(i: int, fmt: str) -> str:
    return f"$^{{{i + 1}}}$" if fmt == "latex" else MARKS[i]


def _finite(x) -> bool:
    try:
        return x is not None and math.isfinite(x)
    except TypeError:
        return False


def cell_text(mean, std, digits: int, fmt: str, best: bool, interval=None, brackets: bool = False,
              tied: bool = False) -> str | None:
    """One cell: the mean, ± half-width of its interval (`[low, high]` with `brackets`) or ± the std
    over seeds, † when tied with the best, bold markup of `fmt` when `best` (none in `html`)."""
    if pd.isna(mean):
        return None
    latex = fmt == "latex"
    text = rf.number(mean, digits, latex)
    if interval is not None and _finite(interval[0]) and _finite(interval[1]):
        low, high = interval
        if brackets:
            text += f" [{rf.number(low, digits, latex)}, {rf.number(high, digits, latex)}]"
        else:
            text += (r" $\pm$ " if latex else " ± ") + rf.number((high - low) / 2, 2, latex)
    elif std is not None and pd.notna(std):
        text += (r" $\pm$ " if latex else " ± ") + rf.number(std, max(1, digits - 2), latex)
    if tied:
        text += r"$^\dagger$" if latex else "†"
    if best and fmt != "html":
        text = {"markdown": f"**{text}**", "latex": rf"\textbf{{{text}}}"}.get(fmt, f"{text}*")
    return text


def table_pieces(key, table: pd.DataFrame, fmt: str, digits: int = 4, spread: pd.DataFrame | None = None,
                 lookup: dict | None = None, brackets: bool = False, level: float = 0.95) -> Pieces:
    """What every renderer prints for one table of `bench.report.tables`: `lookup` is
    `bench.report.stats_lookup(summary)` (None without statistics), `spread` the table of stds over
    seeds, `fmt` one of text, markdown, latex, html."""
    from .report import table_stats

    return pieces(key, table, fmt, digits, spread, table_stats(lookup, key, table), brackets, level)


def pieces(key, table: pd.DataFrame, fmt: str, digits: int = 4, spread: pd.DataFrame | None = None,
           stats: dict | None = None, brackets: bool = False, level: float = 0.95) -> Pieces:
    """Everything one table prints (see the module docstring); `stats` from `report.table_stats`."""
    from .report import BEST_CLOSED_FORM, BEST_HEURISTIC, NOISE_FLOOR, best_rows

    grid, model, solver, metric = key
    higher = bool(table.attrs.get("higher_is_better", False))
    model_name, model_tag = rf.split_tag(model)
    metric_name, metric_tag = rf.split_tag(metric)
    title = f"{grid} | {model_name} | {solver} | {metric_name} {UP if higher else DOWN}"
    mask = best_rows(table)
    if stats is not None:
        mask = stats["best_set"].reindex(index=table.index, columns=table.columns, fill_value=False)
    tied_any = False
    interval_any = False
    cells = []
    for i, name in enumerate(table.index):
        line = []
        for j, col in enumerate(table.columns):
            interval = None if stats is None else stats["interval"].get((name, col))
            tied = False if stats is None else bool(stats["tied"].get((name, col)))
            std = None if spread is None or name not in spread.index or col not in spread.columns \
                else spread.loc[name, col]
            text = cell_text(table.iat[i, j], std, digits, fmt, bool(mask.iat[i, j]), interval, brackets, tied)
            tied_any |= tied and text is not None
            interval_any |= text is not None and interval is not None and all(map(_finite, interval))
            line.append(text)
        cells.append(line)
    cells = pd.DataFrame(cells, index=table.index, columns=table.columns, dtype=object)
    # convention notes: marks on the columns (or the title) they concern
    headers = list(map(str, table.columns))
    footnotes, title_mark = [], ""
    for i, note in enumerate(table.attrs.get("notes", [])):
        mark = _mark(i, fmt)
        if note.columns:
            headers = [h + mark if c in note.columns else h for h, c in zip(headers, table.columns)]
        else:
            title_mark += mark
        footnotes.append(f"{mark} {note.text}")
    tags = []
    if metric_tag:
        tags.append(rf.tag_note(metric_name, metric_tag))
    if model_tag:
        tags.append(rf.tag_note(model_name, model_tag))
    # the legend: only what this table shows
    bold = {"markdown": "bold", "latex": "bold", "html": "bold"}.get(fmt, "*")
    parts = [f"{DOWN if not higher else UP} {'higher' if higher else 'lower'} is better"]
    if stats is not None:
        parts.append(f"{bold}: best set per NFE (the best mean and every method not significantly different "
                     "from it: paired t test, Holm-corrected)")
        if tied_any:
            parts.append("†: tied with the best (in the best set, mean not the best)")
        if interval_any:
            parts.append(f"[low, high]: the {100 * level:g}% interval" if brackets
                         else f"±: half-width of the {100 * level:g}% interval")
    else:
        parts.append(f"{bold}: best mean per NFE")
        if spread is not None:
            parts.append("±: standard deviation over seeds")
    extra = table.attrs.get("extra_rows", {})
    if BEST_HEURISTIC in table.index:
        parts.append(f"{BEST_HEURISTIC}: per NFE, the best of {', '.join(extra.get(BEST_HEURISTIC, [])) or 'them'}")
    if BEST_CLOSED_FORM in table.index:
        parts.append(f"{BEST_CLOSED_FORM}: per NFE, the best of every method without a fit "
                     f"({', '.join(extra.get(BEST_CLOSED_FORM, []))})")
    if NOISE_FLOOR in table.index:
        parts.append(f"{NOISE_FLOOR}: the same distance between two independent sets of true samples")
    if any(is_extra_row(r) for r in table.index):
        parts.append(f"<method>: published (paper, table): the value the paper prints; <method>: {DIFFERENCE}: "
                     "the difference (never in the best set)")
    if cells.isna().to_numpy().any():
        parts.append(f"{MISSING_TEXT}: not run by the grid")
    legend = "Legend: " + "; ".join(parts) + "."
    return Pieces(title=title + title_mark, cells=cells, headers=headers, legend=legend, footnotes=footnotes,
                  tags=tags, stats_notes=[] if stats is None else list(stats["notes"]), title_mark=title_mark,
                  short_key=(grid, model_name, solver, metric_name), higher=higher, best=mask)



def render_table(p: Pieces, fmt: str) -> str:
    """One table in text or markdown: title, the table, the per-NFE lines, legend, notes, tags."""
    body = tabulate(p.cells, headers=["method", *p.headers], tablefmt=TABULATE[fmt], missingval=MISSING_TEXT,
                    disable_numparse=True, colalign=["left"] + ["right"] * len(p.headers))
    lines = [f"### {p.title}" if fmt == "markdown" else p.title, "", body]
    after = [*p.stats_notes, p.legend, *p.footnotes, *p.tags]
    if fmt == "markdown":
        lines += [""] + [f"- {n}" for n in p.stats_notes] + ([""] if p.stats_notes else []) \
            + [f"{line}  " for line in [p.legend, *p.footnotes, *p.tags]]
    else:
        lines += [f"  {line}" for line in after]
    return "\n".join(lines) + "\n"


__all__ = ["Pieces", "cell_text", "pieces", "render_table", "table_pieces", "MISSING_TEXT"]
