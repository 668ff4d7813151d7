"""`<root>/<grid>/report/index.html`: one page with a grid's tables, figures, schedules and sample panels.

The page is self-contained and works offline: the tables are inline HTML (pandas' Styler over the
pieces `bench.report_text.table_pieces` builds for every format: mean ± half-width of the interval,
best set bold, † for a tie, the per-NFE statistics lines, the table's legend line, its convention
footnotes and weights tags, exactly what tables.md prints), the figures are the report's own PNG files referenced by relative
paths inside `report/` (each with a link to its PDF), styles are inline CSS, and one small inline
script does the rest, with no library and nothing fetched:
  * a method filter: a checkbox per method hides that method's table rows and its entries in the
    figures' HTML legends, and hides a figure once none of its methods is shown;
  * a page check: once the page has loaded, `#page-check` says how many images loaded
    (`naturalWidth > 0`) and how many script or resource errors the page saw (its `data-*`
    attributes carry the counts, read by the headless-browser test).
Metric and model labels are shown without their weights hash; the hash is in the lines under the
table (`table_pieces`' tags) or figure (`bench.figure_style.split_hash`). Rows a report derives (the
best of the papers' heuristics, the best closed form, the noise floor) are table rows without a
filter class and figure lines without a filter entry.
"""
from __future__ import annotations

import html
import os
from pathlib import Path

import numpy as np
import pandas as pd

from .figure_style import MethodStyles
from .report_text import MISSING_TEXT

_CSS = """
body { font-family: system-ui, sans-serif; margin: 1.5em auto; max-width: 1200px; padding: 0 1em; color: #222; }
h1 { font-size: 1.5em; } h2 { margin-top: 2em; border-bottom: 1px solid #ccc; }
h3 { font-size: 1em; margin-bottom: .3em; }
code { background: #f4f4f4; padding: 0 .2em; }
table.results { border-collapse: collapse; font-size: .85em; margin: .3em 0; }
table.results th, table.results td { border-bottom: 1px solid #ddd; padding: .2em .6em; text-align: right;
  white-space: nowrap; }
table.results th.row_heading { text-align: left; }
ul.notes { font-size: .8em; color: #555; margin-top: .2em; }
#method-filter { position: sticky; top: 0; background: #fff; border: 1px solid #ccc; padding: .4em .8em; z-index: 1; }
#method-filter label { margin-right: 1em; white-space: nowrap; font-size: .9em; }
.figures { display: flex; flex-wrap: wrap; gap: 1.2em; }
figure { margin: 0; flex: 0 1 560px; min-width: 0; }
figure.wide { flex-basis: 100%; }
figure img { width: 100%; height: auto; border: 1px solid #eee; }
figcaption { font-size: .8em; color: #444; max-width: 640px; }
ul.legend { list-style: none; padding: 0; margin: .2em 0; }
ul.legend li { display: inline-block; margin-right: .8em; }
.swatch { display: inline-block; width: 1.6em; height: 0; vertical-align: middle; margin-right: .3em; }
#page-check { font-size: .75em; color: #777; margin-top: 3em; }
"""

# Registered first, in <head>, so an image that fails to load is counted too (error events of
# elements do not bubble: the listener is on the capture phase).
_HEAD_SCRIPT = """
window.benchErrors = [];
window.addEventListener("error", function (e) {
  var t = e.target;
  window.benchErrors.push(t && t !== window && t.tagName ? t.tagName + " " + (t.src || t.href) : String(e.message));
}, true);
"""

_BODY_SCRIPT = """
(function () {
  var boxes = document.querySelectorAll("#method-filter input[data-m]");
  function apply() {
    var hidden = {};
    boxes.forEach(function (b) { if (!b.checked) hidden[b.dataset.m] = true; });
    document.querySelectorAll("table.results tbody tr").forEach(function (tr) {
      var td = tr.querySelector("td[class*='bm-']");
      var m = td && Array.prototype.filter.call(td.classList, function (c) { return c.indexOf("bm-") === 0; })[0];
      tr.hidden = !!(m && hidden[m.slice(3)]);
    });
    document.querySelectorAll("ul.legend li[data-m]").forEach(function (li) { li.hidden = !!hidden[li.dataset.m]; });
    document.querySelectorAll("figure[data-methods]").forEach(function (f) {
      var ms = f.dataset.methods.split(" ").filter(Boolean);
      f.hidden = ms.length > 0 && ms.every(function (m) { return hidden[m]; });
    });
  }
  boxes.forEach(function (b) { b.addEventListener("change", apply); });
  document.querySelectorAll("#method-filter button").forEach(function (btn) {
    btn.addEventListener("click", function () {
      boxes.forEach(function (b) { b.checked = btn.dataset.all === "1"; });
      apply();
    });
  });
  window.addEventListener("load", function () {
    var imgs = Array.prototype.slice.call(document.images);
    var ok = imgs.filter(function (i) { return i.complete && i.naturalWidth > 0; }).length;
    var el = document.getElementById("page-check");
    el.dataset.images = imgs.length;
    el.dataset.loaded = ok;
    el.dataset.errors = window.benchErrors.length;
    el.textContent = "Page check: " + ok + " of " + imgs.length + " images loaded; " +
      window.benchErrors.length + " errors" +
      (window.benchErrors.length ? " (" + window.benchErrors.join("; ") + ")" : "") + ".";
  });
})();
"""

SECTIONS = (("metric", "figures", "Figures: metric against NFE"),
            ("schedule", "schedules", "Schedules: log sigma against the step"),
            ("samples", "samples", "Sample panels: the same priors"))


def _e(text) -> str:
    return html.escape(str(text), quote=True)


def table_html(key: tuple, table: pd.DataFrame, spread, lookup, digits: int, brackets: bool,
               styles: MethodStyles, index: int, level: float = 0.95) -> str:
    """One table through pandas' Styler: the cells, title, legend line, convention footnotes, per-NFE
    statistics lines and weights tags of `bench.report_text.table_pieces` (what tables.md prints),
    the best set bold, each method's cells classed for the filter. `lookup`: `report.stats_lookup`'s."""
    from .report_text import table_pieces

    p = table_pieces(key, table, "html", digits, spread, lookup, brackets, level)
    cells = p.cells.copy()
    cells.index = [styles.display(m) for m in table.index]
    cells.columns = p.headers
    classes = pd.DataFrame([[f"bm-{_method_id(styles, m)}" if styles.is_method(m) else "" for _ in table.columns]
                            for m in table.index],
                           index=cells.index, columns=cells.columns)
    bold = np.where(p.best.to_numpy(dtype=bool), "font-weight: bold", "")
    styler = (cells.style.set_uuid(f"t{index}").format(escape="html", na_rep=MISSING_TEXT)
              .format_index(escape="html", axis=0).set_td_classes(classes).apply(lambda _: bold, axis=None))
    # a shortened label (a `manual` list) is spelled out once, above the tables
    stats = "".join(f"<li>{_e(styles.shorten(n))}</li>" for n in p.stats_notes)
    below = "".join(f"<li>{_e(styles.shorten(n))}</li>" for n in [p.legend, *p.footnotes, *p.tags])
    return (f'<h3 id="table-{index}">{_e(p.title)}</h3>\n' + styler.to_html(table_attributes='class="results"')
            + (f'<ul class="notes stats">{stats}</ul>\n' if stats else "")
            + f'<ul class="notes table-notes">{below}</ul>\n')


def _method_id(styles: MethodStyles, label: str) -> str | None:
    """The filter's id of a method ('m0', 'm1', ...: its position in the grid's method list)."""
    position = styles.position(label)
    return None if position is None else f"m{position}"


def _swatch(styles: MethodStyles, label: str) -> str:
    """A short line in the method's colour, dashed for a heuristic (as in the figures)."""
    from matplotlib.colors import to_hex

    style = styles.style(label)
    dash = "dashed" if style.get("linestyle") == "--" else "solid"
    return f'<span class="swatch" style="border-top: 3px {dash} {to_hex(style["color"])}"></span>'


def figure_html(figure, out_dir: Path, styles: MethodStyles) -> str:
    """A figure: its PNG (relative to `out_dir`), a link to its PDF, its title, notes and an HTML
    legend of its methods for the filter."""
    src = Path(os.path.relpath(figure.png, out_dir)).as_posix()
    pdf = figure.png.with_suffix(".pdf")
    link = f' <a href="{_e(Path(src).with_suffix(".pdf").as_posix())}">PDF</a>' if pdf.is_file() else ""
    title, notes = figure.title, list(figure.notes)
    ids = [i for i in (_method_id(styles, m) for m in figure.methods) if i]
    legend = "".join(f'<li data-m="{_method_id(styles, m)}" title="{_e(m)}">{_swatch(styles, m)}'
                     f"{_e(styles.display(m))}</li>" for m in figure.methods if styles.is_method(m))
    items = "".join(f"<li>{_e(n)}</li>" for n in notes)
    wide = ' class="wide"' if figure.kind == "samples" else ""
    return (f'<figure{wide} data-methods="{" ".join(ids)}"><img src="{_e(src)}" alt="{_e(title)}">'
            f'<figcaption><b>{_e(title)}</b>{link}'
            + (f'<ul class="legend">{legend}</ul>' if legend else "")
            + (f'<ul class="notes">{items}</ul>' if items else "") + "</figcaption></figure>\n")


def write_index(out_dir, grid: str, tabs: dict, std: dict | None, summary: pd.DataFrame | None, figures: list,
                styles: MethodStyles, digits: int = 4, brackets: bool = False, level: float = 0.95,
                root=None) -> Path:
    """Write `<out_dir>/index.html` for one grid: `tabs`/`std`/`summary` as `bench.report_files`
    computes them for the grid, `figures` the `bench.figures.Figure`s drawn (PNG files under
    `out_dir`). Returns its path."""
    from .report import legend, stats_lookup
    from .store import atomic_write_bytes

    out_dir = Path(out_dir)
    lookup = stats_lookup(summary)
    shown = {styles.position(m) for t in tabs.values() for m in t.index} | \
        {styles.position(m) for f in figures for m in f.methods}
    methods = [m for i, m in enumerate(styles.order) if i in shown]
    boxes = "".join(f'<label title="{_e(m)}"><input type="checkbox" checked data-m="{_method_id(styles, m)}"> '
                    f"{_swatch(styles, m)}{_e(styles.display(m))}</label>" for m in methods)
    shortened = styles.notes(methods)
    parts = [f'<fieldset id="method-filter"><legend>Methods shown</legend>{boxes}'
             '<button type="button" data-all="1">all</button> <button type="button" data-all="0">none</button>'
             + (f'<ul class="notes">{"".join(f"<li>{_e(n)}</li>" for n in shortened)}</ul>' if shortened else "")
             + "</fieldset>"]
    contents = ['<a href="#tables">Tables</a>']
    parts.append('<h2 id="tables">Tables</h2>')
    for i, (key, table) in enumerate(tabs.items()):
        parts.append(table_html(key, table, None if std is None else std.get(key), lookup, digits, brackets,
                                styles, i, level))
    if summary is not None and not summary.empty:
        parts.append(f'<p class="legend-line">{_e(legend(summary, level, "markdown").strip())}</p>')
    drawn = [f for f in figures if Path(f.png).is_file()]
    for kind, anchor, heading in SECTIONS:
        group = [f for f in drawn if f.kind == kind]
        if not group:
            continue
        contents.append(f'<a href="#{anchor}">{_e(heading.split(":")[0])}</a>')
        parts.append(f'<h2 id="{anchor}">{_e(heading)}</h2>\n<div class="figures">\n'
                     + "".join(figure_html(f, out_dir, styles) for f in group) + "</div>")
    if not drawn:
        parts.append("<p>No figures in this report (written with --no-plots, or none to draw).</p>")
    if root is None:
        command = f"python -m bench report --grid <grid file of {grid}>"
    else:
        from .store import ResultsRoot

        command = f"python -m bench report --grid {ResultsRoot(root).grid_copy_path(grid)} --results {root}"
    page = (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>bench report: {_e(grid)}</title>\n<style>{_CSS}</style>\n<script>{_HEAD_SCRIPT}</script>\n"
        "</head>\n<body>\n"
        f"<h1>bench report: {_e(grid)}</h1>\n<p>Written by <code>{_e(command)}</code>. "
        f"{' · '.join(contents)}</p>\n" + "\n".join(parts)
        + '\n<p id="page-check">Page check: not run (scripts disabled?).</p>\n'
        f"<script>{_BODY_SCRIPT}</script>\n</body>\n</html>\n")
    return atomic_write_bytes(out_dir / "index.html", page.encode())


__all__ = ["figure_html", "table_html", "write_index"]
