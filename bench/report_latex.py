"""`bench report`'s LaTeX: the one writer behind `report/tables.tex` and `report --format latex`.

Each table is a `table` float built by pandas' Styler (`to_latex`, booktabs rules: `\\toprule`,
`\\midrule`, `\\bottomrule`), with the cells, marks and legend of `bench.report_text.table_pieces`:
  * labels (methods, models, metrics) pass through `bench.report_format.latex_text` exactly once (the
    Styler escapes nothing itself), so `ld3(xi_window=step)` compiles and no markup is escaped twice;
  * `l` for the method column, `r` for every NFE column (numbers right-aligned);
  * a `\\caption` with the short title and the direction ($\\downarrow$ lower / $\\uparrow$ higher is
    better) and, where the metric or model carries a weights hash, that hash; a `\\label` made from the
    table's key (`bench.report_format.latex_label`, unique within the file);
  * under the tabular, inside the float: the legend line and the convention notes in `\\footnotesize`;
    the per-NFE statistics lines follow the float as `%` comments, as does the report's long legend.
The file is a fragment for `\\input{tables.tex}` in a document that loads `booktabs` (nothing else):
it compiles with pdflatex and Debian's texlive-latex-recommended (tested in the slow suite).
"""
from __future__ import annotations

import pandas as pd

from . import report_format as rf
from .report_text import MISSING_TEXT, table_pieces

HEADER = ("% Tables written by `bench report` (one code path for report/tables.tex and --format latex).\n"
          "% Use: \\input{tables.tex} in a document with \\usepackage{booktabs}. A table wider than the text\n"
          "% (many NFEs with intervals) fits with \\resizebox{\\linewidth}{!}{...} (graphicx) around its tabular,\n"
          "% or pick columns: bench report --only nfe=4,6,8 --format latex.\n")


def latex_float(key, table: pd.DataFrame, digits: int = 4, spread=None, lookup=None, brackets: bool = False,
                level: float = 0.95, labels: set | None = None) -> str:
    """One table as a LaTeX `table` float (see the module docstring); `lookup`: `report.stats_lookup`'s."""
    p = table_pieces(key, table, "latex", digits, spread, lookup, brackets, level)
    text = p.cells.fillna(MISSING_TEXT)
    text.index = [rf.latex_text(name) for name in text.index]
    text.columns = pd.Index([_header(h) for h in p.headers], name="method")
    direction = r"($\uparrow$ higher is better)" if p.higher else r"($\downarrow$ lower is better)"
    caption = ", ".join(rf.latex_text(part) for part in p.short_key) + f" {direction}{p.title_mark}"
    if p.tags:
        caption += ". " + "; ".join(rf.latex_text(t) for t in p.tags)
    styler = text.style
    latex = styler.to_latex(hrules=True, column_format="l" + "r" * text.shape[1], caption=caption,
                            label=rf.latex_label(p.short_key, labels), position_float="centering")
    below = [rf.latex_prose(p.legend), *(_footnote(f) for f in p.footnotes)]
    foot = "\\par\\smallskip\n{\\footnotesize\n" + "\\par\n".join(below) + "\\par}\n"
    latex = latex.replace("\\end{tabular}\n", "\\end{tabular}\n" + foot, 1)
    comments = "".join(f"% {line}\n" for line in p.stats_notes)
    return f"% {p.title}\n{latex}{comments}"


def _header(header: str) -> str:
    """`NFE=10$^{1}$`: the column name escaped, its note mark (already LaTeX) kept."""
    name, mark, rest = header.partition("$^{")
    return rf.latex_text(name) + (mark + rest if mark else "")


def _footnote(line: str) -> str:
    """`$^{1}$ text`: the mark kept, the text escaped."""
    mark, _, text = line.partition(" ")
    return mark + " " + rf.latex_prose(text)


def render_latex(tabs: dict, digits: int = 4, std: dict | None = None, lookup=None, brackets: bool = False,
                 level: float = 0.95, legend: str | None = None) -> str:
    """Every table of `tabs` as one LaTeX fragment (what tables.tex holds and --format latex prints)."""
    labels: set = set()
    parts = [HEADER]
    for key, table in tabs.items():
        spread = None if std is None else std.get(key)
        parts.append(latex_float(key, table, digits, spread, lookup, brackets, level, labels))
    if legend:
        parts.append("".join(f"% {line}\n" for line in legend.strip().splitlines()))
    return "\n".join(parts)


__all__ = ["render_latex", "latex_float", "HEADER"]
