"""`bench report`'s text outputs: LaTeX that compiles (escaping, numbers, one writer for the file and
stdout), the long CSV on `--format csv`, `--out`, `--only`, per-table legends, the best closed form,
convention footnotes, short labels and weights hashes out of titles (issue 28 items 1, 2, 9, 10, 15, 17)."""
from __future__ import annotations

import json
import shutil
import subprocess

import numpy as np
import pandas as pd
import pytest

from bench import report
from bench.__main__ import main
from bench.errors import UserError
from bench.grid import parse_grid
from bench.launch import run_local
from bench.report_filter import apply, parse, split_values
from bench.report_files import print_and_write_report
from bench.report_format import latex_label, latex_text, number, short_label, split_tag

DPMPP3M = {"afs": False, "exact_d2": False, "final_step": "t_min", "lower_order_final": True,
           "lower_order_final_below": 10, "name": "dpmpp-3m", "version": 1}


def _frame(values: dict, solver="euler", spec=None, metric="mse", higher=False, paper=("uniform", "edm"),
           heuristics=("uniform", "edm", "kl-optimal")) -> pd.DataFrame:
    """Long-form lines as `report.rows_frame` makes them: {method: {nfe: value}}, one seed."""
    spec = spec or {"name": solver, "final_step": "t_min", "afs": False, "version": 1}
    return pd.DataFrame([{"grid": "g", "model": "m", "solver": solver, "metric": metric, "method": method,
                          "nfe": nfe, "seed": 0, "value": value, "floor": False, "higher_is_better": higher,
                          "heuristic": method in heuristics, "paper_baseline": method in paper,
                          "solver_spec": json.dumps(spec, sort_keys=True), "steps": nfe}
                         for method, by_nfe in values.items() for nfe, value in by_nfe.items()])


# ---- item 1: escaping, numbers, labels ---------------------------------------------------------

def test_latex_text_escapes_each_reserved_character_once_and_writes_symbols_as_math():
    assert latex_text("ld3(xi_window=step)") == r"ld3(xi\_window=step)"
    assert latex_text("a&b%c$d#e{f}g~h^i\\j") == (r"a\&b\%c\$d\#e\{f\}g\textasciitilde{}h\textasciicircum{}i"
                                                  r"\textbackslash{}j")
    assert latex_text("mse ↓, psnr ↑, measured − published") == r"mse $\downarrow$, psnr $\uparrow$, measured $-$ published"
    assert latex_text("a | b") == r"a \textbar{} b"


def test_numbers_integers_as_integers_large_values_readable_same_digits_everywhere():
    assert number(29100.0, 4) == number(29100.0, 4, latex=True) == "29100"
    assert number(9, 4) == "9"
    assert number(381788135.5187, 4) == "3.818e+08"
    assert number(381788135.5187, 4, latex=True) == r"$3.818\times10^{8}$"
    assert number(1.23456e-7, 3, latex=True) == r"$1.23\times10^{-7}$"
    assert number(0.037114, 4) == number(0.037114, 4, latex=True) == "0.03711"
    assert number(float("nan"), 4) is None and number(float("inf"), 4, latex=True) == r"$\infty$"


def test_labels_are_sanitised_and_unique():
    taken = set()
    assert latex_label(("pixel", "digits", "dpmpp-3m", "ld3(xi_window=step)"), taken) == \
        "tab:pixel-digits-dpmpp-3m-ld3-xi-window-step"
    assert latex_label(("pixel", "digits", "dpmpp-3m", "ld3(xi_window=step)"), taken).endswith("-2")


def test_weights_hash_and_long_lists_leave_the_labels():
    assert split_tag("fd-digits [47e2a6f5f7ac]") == ("fd-digits", "47e2a6f5f7ac")
    assert split_tag("digits-net [weights d51b50c7826d]") == ("digits-net", "weights d51b50c7826d")
    assert split_tag("schedule net cost [model evals]") == ("schedule net cost [model evals]", None)  # a unit
    short = short_label("manual(sigmas=[80, 9.7, 1.6, 0.23, 0.002])")
    assert short.startswith("manual(sigmas=[5 values, ") and "9.7" not in short
    assert short != short_label("manual(sigmas=[80, 9.7, 1.5, 0.23, 0.002])")  # two lists, two labels
    assert short_label("manual(sigmas=[80, 1, 0.002])") == "manual(sigmas=[80, 1, 0.002])"  # short lists stay


# ---- items 1, 2: one LaTeX writer ----------------------------------------------------------------

def test_latex_has_label_caption_right_aligned_numbers_one_header_row_and_no_double_escaping():
    df = _frame({"uniform": {3: 29100.0, 4: 381788135.5187}, "edm": {3: 0.5, 4: 0.25},
                 "ld3(xi_window=step)": {3: 0.03711, 4: 0.01}}, metric="fd-digits [47e2a6f5f7ac]")
    tabs = report.tables(df)
    std = {k: t.drop(index=[r for r in t.index if r in report.EXTRA_ROWS]) * 0 + 0.01 for k, t in tabs.items()}
    tex = report.render(tabs, "latex", std=std)
    assert r"\label{tab:g-m-euler-fd-digits}" in tex and r"\begin{tabular}{lrr}" in tex
    assert r"ld3(xi\_window=step)" in tex and r"\textbackslash{}" not in tex and r"\$" not in tex
    assert r"\textbf{0.01 $\pm$ 0.01}" in tex and "29100 $\\pm$" in tex and r"$3.818\times10^{8}$" in tex
    assert "↓" not in tex.replace("% g | m | euler | fd-digits ↓", "")  # only in the % comment line
    lines = tex.splitlines()
    header = lines[lines.index(r"\toprule") + 1]
    assert header.startswith("method & NFE=3 & NFE=4") and lines[lines.index(r"\toprule") + 2] == r"\midrule"
    caption = next(line for line in lines if line.startswith(r"\caption{"))
    assert "47e2a6f5f7ac" in caption and "[47e2a6f5f7ac]" not in caption  # the hash in the caption's note
    assert "47e2a6f5f7ac" not in report.render(tabs, "markdown").split("\n")[0]  # not in the title
    assert report.latex_table(tabs[("g", "m", "euler", "fd-digits [47e2a6f5f7ac]")],
                              "g | m | euler | fd-digits [47e2a6f5f7ac]") in report.render(tabs, "latex")


# ---- item 9: best of the papers' heuristics, best closed form, legend ----------------------------

def test_best_of_the_papers_heuristics_and_the_best_closed_form_with_a_legend_under_each_table():
    df = _frame({"uniform": {3: 6.88}, "edm": {3: 7.0}, "kl-optimal": {3: 2.71}, "gits": {3: 1.0}})
    (table,) = report.tables(df).values()
    assert table.loc[report.BEST_HEURISTIC, "NFE=3"] == 6.88 and report.BEST_HEURISTIC == "best of the papers' heuristics"
    assert table.loc[report.BEST_CLOSED_FORM, "NFE=3"] == 2.71
    assert report.best_rows(table).loc["gits", "NFE=3"] and not report.best_rows(table).loc[report.BEST_CLOSED_FORM].any()
    for fmt, bold in (("text", "*: best mean per NFE"), ("markdown", "bold: best mean per NFE")):
        out = report.render({("g", "m", "euler", "mse"): table}, fmt)
        legend = next(line for line in out.splitlines() if "Legend:" in line)
        assert bold in legend and "best of the papers' heuristics: per NFE, the best of edm, uniform" in legend
        assert "best closed form: per NFE, the best of every method without a fit (edm, kl-optimal, uniform)" in legend
    # a study's published rows are explained too
    table.loc["edm: published (P, Table 1)"] = 6.5
    assert "the value the paper prints" in report.render({("g", "m", "euler", "mse"): table}, "text")
    # only the four: no best-closed-form row
    (four,) = report.tables(_frame({"uniform": {3: 1.0}, "edm": {3: 2.0}})).values()
    assert report.BEST_CLOSED_FORM not in four.index


# ---- item 17: convention footnotes from the solver spec -----------------------------------------

def test_lower_order_final_threshold_gets_a_mark_and_a_note_from_the_solvers_rule():
    df = _frame({"uniform": {8: 3.3, 9: 2.6, 10: 188.2}, "edm": {8: 1.1, 9: 1.0, 10: 0.6}}, solver="dpmpp-3m",
                spec=DPMPP3M)
    tabs = report.tables(df)
    md = report.render(tabs, "markdown")
    assert "NFE=10¹" in md and "NFE=9¹" not in md
    note = next(line for line in md.splitlines() if line.startswith("¹ "))
    assert "lower_order_final_below: 10" in note and "lowered at NFE=8, NFE=9, not at NFE=10" in note
    assert "diffusers below 15 steps" in note  # the references the solver module declares
    assert r"NFE=10$^{1}$" in report.render(tabs, "latex")
    assert r"\texttt{lower\_order\_final\_below: 10}" in report.render(tabs, "latex")
    # another rule, no crossing within the table: no note
    never = _frame({"uniform": {8: 1.0, 10: 2.0}}, solver="dpmpp-3m", spec={**DPMPP3M, "lower_order_final": "k-diffusion"})
    assert "¹" not in report.render(report.tables(never), "markdown")


def test_heun_with_final_step_t_min_gets_a_note_and_final_step_zero_none():
    spec = {"name": "heun", "final_step": "t_min", "afs": False, "version": 1}
    md = report.render(report.tables(_frame({"uniform": {4: 3.8e8}}, solver="heun", spec=spec)), "markdown")
    assert md.splitlines()[0].endswith("mse ↓¹")
    assert any(line.startswith("¹ heun with `final_step: t_min`") for line in md.splitlines())
    zero = report.tables(_frame({"uniform": {4: 1.0}}, solver="heun", spec={**spec, "final_step": "zero"}))
    assert "¹" not in report.render(zero, "markdown")


# ---- item 15: --format csv, --out, --only -------------------------------------------------------

@pytest.fixture(scope="module")
def ran(tmp_path_factory):
    root = tmp_path_factory.mktemp("report-text")
    grid = parse_grid({
        "name": "tiny", "models": [{"name": "toy2d", "time": "flow"}], "solvers": ["euler"], "nfe": [3, 4],
        "methods": ["uniform", "edm", {"name": "edm", "rho": 3, "label": "edm_rho&3"}], "metrics": ["mse", "psnr"],
        "teacher": {"solver": "euler", "steps": 20, "method": "uniform", "dtype": "float64"},
        "samples": {"train": 64, "eval": 128, "batch": 64}})
    run_local(grid, root=root, quiet=True)
    return grid, root


def test_latex_on_stdout_is_the_file_and_csv_on_stdout_is_the_long_csv(ran, capsys):
    grid, root = ran
    print_and_write_report(root, grid, "latex", plots=False)
    printed = capsys.readouterr().out
    out = root / "tiny" / "report"
    assert printed == (out / "tables.tex").read_text()
    assert r"edm\_rho\&3" in printed and r"\textbackslash{}textbf" not in printed
    print_and_write_report(root, grid, "csv", plots=False)
    printed = capsys.readouterr().out
    assert printed == (out / "results_long.csv").read_text()
    back = pd.read_csv(out / "results_long.csv")
    assert len(back) == 3 * 2 * 2 and {"method", "nfe", "metric", "value", "ci_low", "ci_high"} <= set(back.columns)
    import io

    assert pd.read_csv(io.StringIO(printed)).equals(back)


def test_out_writes_the_chosen_format_and_only_filters(ran, tmp_path, capsys):
    grid, root = ran
    path = tmp_path / "sub" / "t.md"
    assert main(["report", "--results", str(root), "--no-plots", "--format", "markdown", "--out", str(path),
                 "--only", "method=edm,edm_rho&3", "--only", "nfe=4", "--only", "metric=mse"]) == 0
    captured = capsys.readouterr()
    assert captured.out == "" and str(path) in captured.err
    text = path.read_text()
    assert "| edm " in text and "edm_rho&3" in text and "uniform" not in text.split("Legend")[0]
    assert "NFE=3" not in text and "psnr" not in text
    csv = tmp_path / "long.csv"
    assert main(["report", "--results", str(root), "--no-plots", "--format", "csv", "--out", str(csv),
                 "--only", "method=uniform"]) == 0
    assert set(pd.read_csv(csv)["method"]) == {"uniform"}
    assert main(["report", "--results", str(root), "--no-plots", "--only", "method=nope"]) == 2
    assert "method=nope matches no result line; the method values are: edm, edm_rho&3, uniform" in capsys.readouterr().err
    assert main(["report", "--results", str(root), "--no-plots", "--only", "colour=red"]) == 2


def test_only_values_split_outside_brackets_and_metrics_match_without_their_hash():
    assert split_values("gits(space=model, metric=l2),edm") == ["gits(space=model, metric=l2)", "edm"]
    with pytest.raises(UserError, match="KEY=V1,V2"):
        parse(["method"])
    df = _frame({"edm": {3: 1.0}}, metric="fd-digits [47e2a6f5f7ac]")
    assert len(apply(df, parse(["metric=fd-digits"]))) == 1 and len(apply(df, parse(["nfe=3"]))) == 1


# ---- acceptance: pdflatex compiles both -----------------------------------------------------------

def _compile(tex_path, tmp_path):
    doc = tmp_path / f"{tex_path.stem}-doc.tex"
    doc.write_text("\\documentclass{article}\n\\usepackage{booktabs}\n\\begin{document}\n"
                   f"\\input{{{tex_path}}}\n\\end{{document}}\n")
    done = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", doc.name], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout[-3000:]
    assert (tmp_path / f"{doc.stem}.pdf").stat().st_size > 0


@pytest.mark.slow
def test_tables_tex_and_format_latex_compile_with_pdflatex(tmp_path, capsys):
    if shutil.which("pdflatex") is None:
        pytest.skip("pdflatex is missing: apt-get install texlive-latex-base texlive-latex-recommended "
                    "(booktabs.sty is in texlive-latex-recommended)")
    grid = parse_grid({
        "name": "tex_grid", "models": [{"name": "toy2d", "time": "flow"}], "solvers": ["euler", "dpmpp-3m", "heun"],
        "nfe": [8, 10], "seeds": [0, 1], "metrics": ["mse", "psnr"],
        "methods": ["uniform", "edm", "kl-optimal", {"name": "edm", "rho": 3, "label": "edm_rho&3 {50%} #1 ~^"},
                    {"name": "manual", "t": [0.9877, 0.5, 0.2, 0.1, 0.05, 0.02, 0.002], "interpolate": True,
                     "ends": "model"}],
        "teacher": {"solver": "euler", "steps": 20, "method": "uniform", "dtype": "float64"},
        "samples": {"train": 64, "eval": 128, "batch": 64}})
    run_local(grid, root=tmp_path / "root", quiet=True)
    print_and_write_report(tmp_path / "root", grid, "latex", plots=False)
    stdout = tmp_path / "stdout.tex"
    stdout.write_text(capsys.readouterr().out)
    tables = tmp_path / "root" / "tex_grid" / "report" / "tables.tex"
    assert stdout.read_text() == tables.read_text()
    text = tables.read_text()
    assert r"NFE=10$^{1}$" in text and "best closed form" in text and "t=[7 values" in text
    for path in (tables, stdout):
        _compile(path, tmp_path)
    assert np.isfinite(pd.read_csv(tables.parent / "results_long.csv")["value"]).all()


def test_markdown_results_file_is_stamped(tmp_path):
    """`report --format markdown --out FILE` writes a generated results file: the command that rewrites
    it, date, commit and root, and the compute the rows record per grid, above the tables."""
    from bench.report_stamp import compute_lines, stamp

    rows = [{"grid": "g", "sample_seconds": 1.5, "fit_key": "a", "fit": {"fit_seconds": 10.0}},
            {"grid": "g", "sample_seconds": 2.5, "fit_key": "a", "fit": {"fit_seconds": 10.0}},
            {"grid": "g", "sample_seconds": 1.0, "fit_key": None, "fit": None}]
    rows[0]["git_rev"] = rows[1]["git_rev"] = "a" * 40
    assert compute_lines(rows) == ["- `g`: 3 cells computed at commit aaaaaaaaaaaa, unknown; sampling 5 s, fits 10 s "
                                   "(as recorded in the rows; teacher sets not counted)"]
    text = stamp(rows, tmp_path, "python -m bench report --format markdown --out R.md")
    assert text.startswith("<!-- Generated by `python -m bench report --format markdown --out R.md`")
    assert "# Results: g" in text and f"results root `{tmp_path}`" in text and " UTC at commit " in text
