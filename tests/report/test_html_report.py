"""Figures and the HTML report (issue 28 items 8 and 10, and report/index.html): one style per method
across every figure of a grid's report, derived rows styled apart from each other and from methods,
file names that are shell-safe slugs without weights hashes, `manual` lists shown by a short name,
and an offline page that holds every table and figure (opened in headless chromium in the slow suite)."""
from __future__ import annotations

import html
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest

import bench.report
from bench import figures
from bench.figure_style import REFERENCE_STYLES, MethodStyles, _has_long_list, slug, split_hash, stem, unique_stems
from bench.grid import parse_grid
from bench.launch import run_local
from bench.report import BEST_HEURISTIC, NOISE_FLOOR
from bench.report_files import print_and_write_report

MANUAL_A = [80.0, 12.0, 3.0, 0.9, 0.28, 0.07, 0.002]
MANUAL_B = [80.0, 20.0, 5.0, 0.9, 0.2, 0.05, 0.002]
GRID = {
    "name": "htmlrep", "models": ["digits"], "solvers": ["euler"], "nfe": [3, 4],
    "methods": ["uniform", "edm", "kl-optimal",
                {"name": "manual", "sigmas": MANUAL_A, "interpolate": True},
                {"name": "manual", "sigmas": MANUAL_B, "interpolate": True}],
    "seeds": [0], "metrics": ["mse", "fd-digits"],
    "teacher": {"solver": "euler", "steps": 8, "method": "edm"},
    "samples": {"train": 8, "eval": 16, "batch": 16},
}
SAFE_NAME = re.compile(r"[a-z0-9][a-z0-9._-]*\.(png|pdf)")


@pytest.fixture(scope="module")
def ran(tmp_path_factory):
    """The grid run once; each test writes its own report from these rows."""
    root = tmp_path_factory.mktemp("htmlrep")
    grid = parse_grid(GRID)
    run_local(grid, root, quiet=True)
    return root, grid


@pytest.fixture(scope="module")
def report(ran):
    """A report in which `edm` has no global schedule (as a per-instance method's rows have none), so
    the schedule plots show a subset of the methods the metric plots show; every figure's data kept."""
    root, grid = ran
    drawn = []
    original_draw_all = figures._draw_all
    import bench.report_files as report_files

    original_rows = report_files.current_rows

    def capture(specs, draw, out_dir, jobs):
        drawn.extend((Path(out_dir).name, stem_, data) for stem_, data in specs)
        return original_draw_all(specs, draw, out_dir, jobs)

    def rows_with_per_instance_edm(*args, **kwargs):
        for row in original_rows(*args, **kwargs):
            yield {**row, "schedule": None} if row["method_label"] == "edm" else row

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(figures, "_draw_all", capture)
        mp.setattr(report_files, "current_rows", rows_with_per_instance_edm)
        written = print_and_write_report(root, grid, "text", jobs=1)
    return root, written[grid.name], drawn


def _styles_by_label(drawn):
    """{label: {(colour, marker, linestyle, linewidth)}} over every metric and schedule figure."""
    seen: dict[str, set] = {}
    for _, _, data in drawn:
        for line in data["lines"]:
            label, style = line[0], line[-1]
            if "published" in label:
                continue
            seen.setdefault(label, set()).add((tuple(style["color"]) if not isinstance(style["color"], str)
                                               else style["color"], style.get("marker"), style["linestyle"],
                                               style["linewidth"]))
    return seen


def test_each_method_keeps_one_style_across_figures_with_different_method_subsets(report):
    _, _, drawn = report
    schedules = [d for folder, _, d in drawn if folder == "schedules"]
    metrics = [d for folder, _, d in drawn if folder == "plots"]
    assert schedules and metrics
    in_schedules = {line[0] for d in schedules for line in d["lines"]}
    in_metrics = {line[0] for d in metrics for line in d["lines"]}
    assert "edm" in in_metrics and "edm" not in in_schedules  # the subsets differ
    seen = _styles_by_label(drawn)
    assert all(len(styles) == 1 for styles in seen.values()), seen
    derived = {BEST_HEURISTIC, NOISE_FLOOR, *getattr(bench.report, "EXTRA_ROWS", ())}
    methods = {m: next(iter(s)) for m, s in seen.items() if m not in derived}
    assert len({s[:2] for s in methods.values()}) == len(methods)  # (colour, marker) distinct per method
    assert len(methods) == 5 and {"uniform", "edm", "kl-optimal"} <= set(methods)
    # the two `manual` lists have short names in every legend (no list of 7 numbers spelled out)
    assert sum(m.startswith("manual") for m in methods) == 2 and not any(_has_long_list(m) for m in seen)


def test_style_comes_from_the_grid_order_not_from_the_methods_in_a_figure():
    order = ["uniform", "edm", "gits", "ld3"]
    everything = MethodStyles(order, {"uniform", "edm"}, order)
    subset = MethodStyles(["gits", "ld3"], {"uniform", "edm"}, order)
    assert subset.style("ld3") == everything.style("ld3") and subset.style("gits") == everything.style("gits")
    assert everything.style("uniform")["linestyle"] == "--" and everything.style("gits")["linestyle"] == "-"
    # without a grid order: the labels' sorted order, whatever order they come in
    assert MethodStyles(["b", "a"]).style("a") == MethodStyles(["a", "b"]).style("a")


def test_best_heuristic_and_noise_floor_are_drawn_apart_from_each_other_and_behind_the_methods():
    styles = MethodStyles(["uniform", "edm"], {"uniform", "edm"})
    best, floor, method = styles.style(BEST_HEURISTIC), styles.style(NOISE_FLOOR), styles.style("edm")
    assert (best["linestyle"], best["linewidth"], best["color"]) != (floor["linestyle"], floor["linewidth"],
                                                                   floor["color"])
    # the best heuristic coincides with one heuristic's line: a translucent band under it, so the
    # heuristic's own line (drawn on top, narrower) stays visible
    assert best["zorder"] < method["zorder"] and best["alpha"] < 1 and best["linewidth"] > method["linewidth"]
    assert floor["zorder"] < method["zorder"]
    palette = {tuple(styles.style(m)["color"]) for m in ("uniform", "edm")}
    assert not palette & {best["color"], floor["color"]} and all(isinstance(s["color"], str)
                                                                   for s in REFERENCE_STYLES.values())
    # the best closed form: a band of its own, apart from the best heuristic's and from the floor
    closed = styles.style(bench.report.BEST_CLOSED_FORM)
    assert closed["zorder"] < method["zorder"] and closed["color"] not in palette | {best["color"], floor["color"]}
    assert not styles.is_method(bench.report.BEST_CLOSED_FORM)
    # a derived row of another kind (not a method of the grid) is a band too, never a method's colour
    other = styles.style("best of all closed forms")
    assert other["zorder"] < method["zorder"] and other["color"] not in palette


def test_file_names_are_safe_slugs_without_weights_hashes(report):
    root, written, _ = report
    rows = list((root / "htmlrep" / "rows").glob("*.json"))
    import json

    hashes = {v for p in rows for k, v in json.loads(p.read_text())["metrics"].items()
              if k.endswith("_weights") and isinstance(v, str)}
    assert hashes  # fd-digits names its feature network
    figs = [p for p in written if p.suffix in (".png", ".pdf")]
    assert figs and all(SAFE_NAME.fullmatch(p.name) for p in figs), [p.name for p in figs]
    assert not any(h[:8] in p.name for p in figs for h in hashes)
    assert len({p.name.lower() for p in figs}) == len({p for p in figs})
    names = {p.name for p in figs}
    assert {"digits_euler_fd-digits.png", "digits_euler_mse.png", "samples_digits_euler.png"} <= names


def test_slugs_and_unique_stems():
    assert slug("fd-digits [47e2a6f5f7ac]") == "fd-digits"
    assert slug("digits-net [weights d51b50c7826d]") == "digits-net"
    assert slug("dpmpp(order=3, lower_order_final=True)") == "dpmpp-order-3-lower_order_final-true"
    assert slug("a b|c/d") == "a-b-c-d" and slug("((()))") == "x"
    assert split_hash("fd-digits [47e2a6f5f7ac]") == ("fd-digits", "fd-digits: feature network weights "
                                                     "47e2a6f5f7ac (first hex digits of its SHA-256)")
    assert split_hash("digits-net [weights d51b50c7826d]")[1] == \
        "digits-net: weights d51b50c7826d (first hex digits of the weights file's SHA-256)"
    assert split_hash("my [label]") == ("my [label]", None)  # a user's brackets are no hash
    keys = {("m", "fd-digits [aaaaaaaaaaaa]"): stem("m", "fd-digits [aaaaaaaaaaaa]"),
            ("m", "fd-digits [bbbbbbbbbbbb]"): stem("m", "fd-digits [bbbbbbbbbbbb]"),
            ("m", "EDM"): stem("m", "EDM"), ("m", "edm"): stem("m", "edm")}
    stems = unique_stems(keys)
    assert len(set(stems.values())) == 4
    assert stems[("m", "fd-digits [aaaaaaaaaaaa]")] == "m_fd-digits"
    assert stems[("m", "fd-digits [bbbbbbbbbbbb]")] == "m_fd-digits-2"


def test_manual_lists_get_short_names_and_their_lists_go_to_a_note():
    a = "manual(interpolate=True, sigmas=[80.0, 9.0, 1.0, 0.2, 0.002])"
    b = "manual(sigmas=[80.0, 10.0, 3.0, 0.3, 0.002])"
    styles = MethodStyles([a, b, "edm", "manual-1"], order=["edm", a, b])
    assert styles.display(a) == "manual-1'" and styles.display(b) == "manual-2"  # a user's `manual-1` keeps its name
    assert styles.display("manual-1") == "manual-1"
    assert MethodStyles([a, "edm"]).display(a) == "manual"
    assert MethodStyles(["manual(sigmas=[80.0, 1.0, 0.002])"]).display("manual(sigmas=[80.0, 1.0, 0.002])") == \
        "manual(sigmas=[80.0, 1.0, 0.002])"  # a short list stays as it is
    assert styles.notes([b]) == [f"manual-2 = {b}"]
    assert styles.shorten(f"best set {{{a}, edm}}") == "best set {manual-1', edm}"


def test_methods_are_keyed_by_the_tables_labels():
    """Where the tables label a method otherwise than its rows (`aliases`), either label finds one style."""
    full, short = "manual(sigmas=[80.0, 9.0, 1.0, 0.2, 0.002])", "manual(sigmas=[5 values, 3f2a1c])"
    styles = MethodStyles([full, "edm"], {full, "edm"}, ["edm", full], aliases={full: short})
    assert styles.style(full) == styles.style(short) and styles.is_method(short)
    assert styles.display(full) == short and styles.position(full) == 1 and styles.order == ["edm", short]


class _Refs(HTMLParser):
    def __init__(self):
        super().__init__()
        self.refs, self.tags = [], []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        for name, value in attrs:
            if name in ("src", "href") and value is not None:
                self.refs.append((tag, value))


def test_html_report_holds_every_table_and_figure_and_only_local_references(report):
    root, written, _ = report
    out = root / "htmlrep" / "report"
    page = out / "index.html"
    assert page in written
    text = page.read_text()
    parser = _Refs()
    parser.feed(text)
    for tag, ref in parser.refs:
        if ref.startswith("#") or ref.startswith("data:"):
            continue
        assert not re.match(r"^[a-z]+:", ref) and not ref.startswith("/"), ref  # no network, no absolute path
        assert (out / ref).is_file(), ref
    images = {ref for tag, ref in parser.refs if tag == "img"}
    pngs = {p.relative_to(out).as_posix() for p in written if p.suffix == ".png"}
    assert images == pngs and len(pngs) >= 3
    assert {p.split("/")[0] for p in pngs} == {"plots", "schedules", "samples"}
    tables_md = (out / "tables.md").read_text()
    assert text.count('<table id="T_t') == tables_md.count("### ")
    for title in re.findall(r"^### (.*)$", tables_md, flags=re.M):
        assert re.sub(r" \[[0-9a-f]{12}\]", "", title) in text.replace("&amp;", "&")
    assert "±" in text and "font-weight: bold" in text
    assert text.count('type="checkbox"') == 5 and "<script" in text
    boxes = re.findall(r'<input type="checkbox" checked data-m="m\d+"> <span[^>]*></span>([^<]*)</label>', text)
    assert len(boxes) == 5 and not any(_has_long_list(b) for b in boxes)  # short names for the manual lists
    if "sigmas=[80.0, 12.0, 3.0" in tables_md:  # the tables spell the list out: the page says which is which
        assert "manual-1 = manual(interpolate=True, sigmas=[80.0, 12.0" in text


def test_html_report_without_plots_has_the_tables(ran, tmp_path):
    root, grid = ran
    root = shutil.copytree(root, tmp_path / "copy")
    written = print_and_write_report(root, grid, "text", plots=False)
    page = root / "htmlrep" / "report" / "index.html"
    assert page in written[grid.name]
    text = page.read_text()
    assert "<img" not in text and "--no-plots" in text and text.count('<table id="T_t') >= 2


# ---- in a real browser --------------------------------------------------------------------------------

def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def _browse(tmp_path, url: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
         f"--user-data-dir={tmp_path / 'profile'}", "--enable-logging=stderr", "--v=0",
         "--virtual-time-budget=10000", *args, url],
        capture_output=True, text=True, timeout=180, check=False)


def _page_check(dom: str) -> dict:
    match = re.search(r'<p id="page-check"([^>]*)>', dom)
    assert match, dom[-2000:]
    return dict(re.findall(r'data-([a-z-]+)="([^"]*)"', match.group(1)))


# Appended to a copy of the page: uncheck the first method and record what the filter hid.
_FILTER_PROBE = """<script>
window.addEventListener("load", function () {
  var box = document.querySelector('#method-filter input[data-m="m0"]');
  box.checked = false;
  box.dispatchEvent(new Event("change"));
  var rows = document.querySelectorAll("table.results tbody tr");
  var hidden = Array.prototype.filter.call(rows, function (r) { return r.hidden; });
  var legend = document.querySelectorAll('ul.legend li[data-m="m0"]');
  document.body.setAttribute("data-probe", hidden.length + "/" + rows.length + " " +
    Array.prototype.filter.call(legend, function (l) { return l.hidden; }).length + "/" + legend.length);
});
</script></body>"""


@pytest.mark.slow
def test_html_report_renders_in_headless_chromium(report, tmp_path):
    if _chromium() is None:
        pytest.skip("chromium is not installed (Debian: apt-get install chromium; .ci/run installs it)")
    root, written, _ = report
    out = root / "htmlrep" / "report"
    page = out / "index.html"
    n_images = sum(1 for p in written if p.suffix == ".png")
    done = _browse(tmp_path, page.as_uri(), "--dump-dom")
    assert done.returncode == 0, done.stderr[-2000:]
    console = [line for line in done.stderr.splitlines() if ":CONSOLE" in line]
    assert not console, console  # the page logs nothing: any console line is an error or a warning
    check = _page_check(done.stdout)
    assert check == {"images": str(n_images), "loaded": str(n_images), "errors": "0"}, check
    shot = tmp_path / "report.png"
    done = _browse(tmp_path, page.as_uri(), "--hide-scrollbars", "--window-size=1280,2000", f"--screenshot={shot}")
    assert done.returncode == 0 and shot.is_file() and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert shot.stat().st_size > 10_000

    # the filter hides the first method's rows (one per table) and its legend entries
    probe, broken = out / "probe.html", out / "broken.html"
    try:
        _probe_filter_and_a_broken_page(tmp_path, page, probe, broken)
    finally:
        probe.unlink(missing_ok=True)
        broken.unlink(missing_ok=True)


def _probe_filter_and_a_broken_page(tmp_path, page, probe, broken):
    probe.write_text(page.read_text().replace("</body>", _FILTER_PROBE))
    done = _browse(tmp_path, probe.as_uri(), "--dump-dom")
    tables = done.stdout.count('<table id="T_t')
    match = re.search(r'data-probe="(\d+)/(\d+) (\d+)/(\d+)"', done.stdout)
    assert match, done.stdout[-2000:]
    hidden_rows, _, hidden_legend, legend = map(int, match.groups())
    assert hidden_rows == tables and legend > 0 and hidden_legend == legend

    # the check can fail: a page with a missing image and a script error says so
    broken.write_text(page.read_text().replace("</body>",
                                               '<img src="plots/missing.png"><script>nope();</script></body>'))
    done = _browse(tmp_path, broken.as_uri(), "--dump-dom")
    check = _page_check(done.stdout)
    assert int(check["loaded"]) == int(check["images"]) - 1 and int(check["errors"]) >= 2
    assert any(":CONSOLE" in line for line in done.stderr.splitlines())


def test_metric_figure_styles_published_and_derived_rows(tmp_path, monkeypatch):
    """A study's published values take their method's colour as hollow markers; a derived row the
    figures do not know (not a method of the grid) is drawn as a band, never with a method's style."""
    import numpy as np
    import pandas as pd

    from bench.studies import published_row

    published = published_row("edm", "LD3", "Table 2")
    table = pd.DataFrame({"NFE=3": [2.0, 3.0, 2.5, 2.0, 1.9, 0.5], "NFE=4": [1.5, 2.0, 1.4, 1.5, 1.4, 0.5]},
                         index=["edm", "uniform", published, BEST_HEURISTIC, "best of all closed forms", NOISE_FLOOR])
    table.attrs = {"higher_is_better": False, "published_of": {published: "edm"}}
    df = pd.DataFrame({"method": ["edm", "uniform"], "heuristic": [True, True]})
    styles = MethodStyles(["uniform", "edm"], {"uniform", "edm"}, ["uniform", "edm"])
    seen, catalog = [], []
    original = figures._draw_all
    monkeypatch.setattr(figures, "_draw_all", lambda specs, *a: seen.extend(specs) or original(specs, *a))
    key = ("g", "digits-net [weights d51b50c7826d]", "euler", "fd-digits [47e2a6f5f7ac]")
    paths = figures.plot_metrics({key: table}, None, df, tmp_path, styles=styles, catalog=catalog)
    assert {p.name for p in paths} == {"digits-net_euler_fd-digits.png", "digits-net_euler_fd-digits.pdf"}
    (stem_, data), = seen
    lines = {line[0]: line[-1] for line in data["lines"]}
    assert lines["edm: published (LD3, Table 2)"]["color"] == styles.style("edm")["color"]
    assert lines["edm: published (LD3, Table 2)"]["markerfacecolor"] == "none"
    assert lines["best of all closed forms"]["zorder"] < lines["edm"]["zorder"]
    assert lines["best of all closed forms"]["color"] not in {styles.style(m)["color"] for m in ("edm", "uniform")}
    assert data["metric"] == "fd-digits" and data["model"] == "digits-net"
    assert any("47e2a6f5f7ac" in n for n in data["notes"]) and any("d51b50c7826d" in n for n in data["notes"])
    from bench.report_text import table_pieces

    tags = table_pieces(key, table, "markdown").tags  # the lines under the table: the same words
    assert len(tags) == 2 and set(tags) <= set(data["notes"])
    (figure,) = catalog
    assert figure.title == "digits-net | euler | fd-digits ↓" and figure.methods == ["edm", "uniform"]
    assert np.isfinite(np.array(data["lines"][0][1])).all()


# ---- one code path for a table's pieces in every format ------------------------------------------

def test_html_tables_carry_the_legend_footnotes_and_tags_of_the_text_formats():
    """The HTML table is built from `report_text.table_pieces` like text, markdown and LaTeX: the same
    legend line, the convention footnote (its mark on the column), the weights tag, the derived rows."""
    import html as html_lib
    import json

    import pandas as pd

    from bench import html_report, report

    spec = {"afs": False, "exact_d2": False, "final_step": "t_min", "lower_order_final": True,
            "lower_order_final_below": 10, "name": "dpmpp-3m", "version": 1}
    values = {"uniform": {8: 3.3, 9: 2.6, 10: 188.2}, "edm": {8: 1.1, 9: 1.0, 10: 0.6},
              "kl-optimal": {8: 1.0, 9: 0.9, 10: 0.7}, "gits": {8: 0.9, 9: 0.8, 10: 0.5}}
    df = pd.DataFrame([{"grid": "g", "model": "m", "solver": "dpmpp-3m", "metric": "fd-digits [47e2a6f5f7ac]",
                        "method": m, "nfe": n, "seed": 0, "value": v, "floor": False, "higher_is_better": False,
                        "heuristic": m != "gits", "paper_baseline": m in ("uniform", "edm"),
                        "solver_spec": json.dumps(spec, sort_keys=True), "steps": n}
                       for m, by in values.items() for n, v in by.items()])
    tabs = report.tables(df)
    ((key, table),) = tabs.items()
    md = report.render(tabs, "markdown").splitlines()
    legend = next(line for line in md if line.startswith("Legend:")).strip()
    footnote = next(line for line in md if line.startswith("¹ ")).strip()
    tag = next(line for line in md if "feature network weights 47e2a6f5f7ac" in line).strip()
    styles = MethodStyles(list(values), {"uniform", "edm", "kl-optimal"}, list(values))
    page = html_lib.unescape(html_report.table_html(key, table, None, None, 4, False, styles, 0))
    for line in (legend, footnote, tag):
        assert f"<li>{line}</li>" in page, line
    assert "NFE=10¹" in page and "NFE=9¹" not in page and "fd-digits ↓" in page and "47e2a6f5f7ac</h3>" not in page
    for derived in (report.BEST_HEURISTIC, report.BEST_CLOSED_FORM):
        row = re.search(rf'<th[^>]*>{re.escape(derived)}</th>(.*?)</tr>', page, flags=re.S)
        assert row and "bm-" not in row.group(1)  # a derived row: no filter class
    # the best mean per NFE is bold (no text marks in HTML), the same cells as markdown's bold
    bold_md = {line.split("|")[1].strip() for line in md if "**" in line}
    assert bold_md == {"gits"} and "*" not in re.sub(r"<[^>]+>", "", page.split("<ul")[0])
    (selectors,) = re.findall(r"(#[^{}>]*)\{\s*font-weight: bold;\s*\}", page)
    row = re.search(r'id="T_t0_level0_row(\d+)"[^>]*>gits</th>', page).group(1)
    assert {s.strip() for s in selectors.split(",")} == {f"#T_t0_row{row}_col{c}" for c in range(3)}
    assert len(re.findall(r'class="data row\d+ col\d+ bm-m3"', page)) == 3  # gits' cells carry its filter class


def test_best_closed_form_is_a_derived_row_in_every_figure_and_in_the_html(report):
    root, written, drawn = report
    metric_figures = [d for folder, _, d in drawn if folder == "plots"]
    assert metric_figures
    for data in metric_figures:
        lines = {line[0]: line[-1] for line in data["lines"]}
        assert bench.report.BEST_CLOSED_FORM in lines  # five closed forms in the grid, more than the papers' two
        assert lines[bench.report.BEST_CLOSED_FORM] == REFERENCE_STYLES[bench.report.BEST_CLOSED_FORM]
        assert lines[bench.report.BEST_CLOSED_FORM]["zorder"] < min(s["zorder"] for label, s in lines.items()
                                                                     if label not in REFERENCE_STYLES)
    text = (root / "htmlrep" / "report" / "index.html").read_text()
    rows = re.findall(rf'<th[^>]*>{re.escape(bench.report.BEST_CLOSED_FORM)}</th>(.*?)</tr>', text, flags=re.S)
    assert len(rows) == text.count('<table id="T_t') and not any("bm-" in r for r in rows)
    assert f'title="{bench.report.BEST_CLOSED_FORM}"' not in text  # in no figure legend of the filter
    assert "best closed form: per NFE, the best of every method without a fit" in text


def test_figures_html_and_tables_name_manual_lists_alike(report):
    """A `manual` list reads the same in tables.md, in every figure's legend and in the page's filter."""
    root, _, drawn = report
    out = root / "htmlrep" / "report"
    derived = set(bench.report.EXTRA_ROWS)
    in_tables = {line.split("|")[1].strip().strip("*") for line in (out / "tables.md").read_text().splitlines()
                 if line.startswith("| ") and not line.startswith("| method")} - derived
    manual = {m for m in in_tables if m.startswith("manual")}
    assert len(manual) == 2 and all(" values, " in m for m in manual)  # short labels: count and hash
    for folder, _, data in drawn:
        labels = {line[0] for line in data["lines"]} - derived
        if folder == "plots":
            assert labels == in_tables
        elif folder == "schedules":
            assert labels <= in_tables and manual <= labels
    text = (out / "index.html").read_text()
    boxes = re.findall(r'<input type="checkbox" checked data-m="m\d+"> <span[^>]*></span>([^<]*)</label>', text)
    assert set(map(html.unescape, boxes)) == in_tables
