"""Studies (`bench.studies`): the published-values format, its validation, `bench check`, the report's
published rows, and the list of every published value in the repo with its source."""
from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest
import yaml

from bench import report
from bench.__main__ import main
from bench.errors import UserError
from bench.studies import (
    DIFFERENCE, STUDIES_DIR, check_value, format_check, is_extra_row, load_study, long_form,
    published_records, with_published,
)

PAPERS = Path(__file__).resolve().parents[3] / "shared" / "papers"
PAPER_TEXT = {"INDIS": "indis-few-step-instance-aware-discretizations.txt", "LD3": "ld3-learning-to-discretize.txt",
              "OSS": "oss-optimal-stepsize-distillation.txt"}

GRID = {
    "name": "mini", "models": [{"name": "toy2d", "time": "flow"}], "solvers": ["euler"], "nfe": [3, 4],
    "methods": ["uniform", {"name": "god", "shifts": False}], "metrics": ["mse", "kl"],
    "samples": {"train": 8, "eval": 8, "batch": 8},
}


def _block(**over):
    block = {"paper": "P", "arxiv": "0000.00000", "table": "Table 1", "setting": "the paper's words",
             "metric": "mse", "nfe": [3, 4], "values": {"uniform": [0.05, 0.02], "god(shifts=False)": [0.02, None]},
             "tolerance": 0.01, "tolerance_from": "the arithmetic"}
    block.update(over)
    return block


@pytest.fixture
def study_file(tmp_path):
    def write(*blocks, grid=GRID, **extra):
        (tmp_path / "grids").mkdir(exist_ok=True)
        (tmp_path / "grids" / "mini.yaml").write_text(yaml.safe_dump(grid))
        path = tmp_path / "study.yaml"
        path.write_text(yaml.safe_dump({"study": "mini", "grid": "grids/mini.yaml", "published": list(blocks), **extra},
                                        sort_keys=False))
        return path

    return write


def test_a_study_expands_to_one_value_per_published_cell(study_file):
    study = load_study(study_file(_block()))
    assert [(v.method, v.nfe, v.value, v.tolerance) for v in study.values] == [
        ("uniform", 3, 0.05, 0.01), ("uniform", 4, 0.02, 0.01), ("god(shifts=False)", 3, 0.02, 0.01)]
    v = study.values[0]
    assert (v.model, v.solver, v.metric) == ("toy2d(time=flow)", "euler", "mse")
    assert v.citation == "P (arXiv 0000.00000), Table 1"


@pytest.mark.parametrize("block, message", [
    (_block(nfe=[3, 5]), r"published\[0\] \(P Table 1, mse\) uniform NFE=5: the grid has no cell"),
    (_block(values={"gid": [1.0, 2.0]}), r"published\[0\] \(P Table 1, mse\) gid: method 'gid' is not in the grid"),
    (_block(metric="fid"), r"published\[0\] \(P Table 1, fid\): metric 'fid' is not computed by the grid"),
    (_block(tolerance=-0.1), r"published\[0\] \(P Table 1, mse\) uniform NFE=3: tolerance must be a number >= 0"),
    (_block(tolerance={"uniform": [0.1, -1.0]}), r"uniform NFE=4: tolerance must be a number >= 0"),
    (_block(tolerance_from=None), r"tolerance_from is required"),
    (_block(model="toy2d"), r"model 'toy2d' is not in the grid; its models: toy2d\(time=flow\)"),
    (_block(values={"uniform": [1.0]}), r"uniform: 1 values for 2 NFEs"),
    (_block(differs=[{"method": "edm", "note": "x"}]), r"differs\[0\].method 'edm' has no published values"),
    (_block(paper=3), r"published.0.paper must be a string"),
])
def test_bad_published_values_are_one_line_naming_the_entry(study_file, block, message):
    path = study_file(block)
    with pytest.raises(UserError, match=message) as err:
        load_study(path)
    assert "\n" not in str(err.value)


def test_bad_study_in_the_cli_is_one_line_exit_2(study_file, capsys):
    path = study_file(_block(tolerance=-1))
    assert main(["check", "--study", str(path), "--results", str(path.parent / "r")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("bench: error:") and "tolerance must be a number >= 0" in err and "\n" not in err


def _frame(value, ci=None, method="uniform", nfe=3, samples=8):
    record = {"grid": "mini", "model": "toy2d(time=flow)", "solver": "euler", "method": method, "nfe": nfe,
              "seed": 0, "metric": "mse", "value": value, "floor": False, "samples_eval": samples,
              "model_spec": "{}"}
    if ci is not None:
        record.update(ci_low=ci[0], ci_high=ci[1])
    return pd.DataFrame([record])


def test_check_compares_the_interval_when_present_else_the_point(study_file):
    study = load_study(study_file(_block()))
    v = study.values[0]  # uniform NFE 3: 0.05 ± 0.01
    assert check_value(study, v, _frame(0.059)).status == "pass"
    assert check_value(study, v, _frame(0.0611)).status == "fail"
    assert check_value(study, v, _frame(0.039)).status == "fail"
    # the interval [0.062, 0.08] misses [0.04, 0.06]; [0.059, 0.08] reaches it
    assert check_value(study, v, _frame(0.07, ci=(0.062, 0.08))).status == "fail"
    result = check_value(study, v, _frame(0.07, ci=(0.059, 0.08)))
    assert (result.status, result.low, result.high) == ("pass", 0.059, 0.08)
    assert "[0.059, 0.08]" in result.line()
    both = load_study(study_file(_block(tolerance_covers="both")))
    assert check_value(both, both.values[0], _frame(0.07, ci=(0.059, 0.08))).status == "fail"  # the point
    assert check_value(study, v, None).status == "not run"
    assert check_value(study, v, _frame(0.05, method="god(shifts=False)")).status == "not run"


def test_check_reports_differs_untoleranced_and_incomparable_values(study_file):
    block = _block(tolerance=None, tolerance_from=None, samples=100,
                   differs=[{"method": "uniform", "nfe": 4, "note": "non-monotone in the paper"}])
    study = load_study(study_file(block))
    by = {(v.method, v.nfe): v for v in study.values}
    few = check_value(study, by[("uniform", 3)], _frame(0.05))
    assert (few.status, few.why) == ("not comparable", "8 samples; the paper used 100")
    assert check_value(study, by[("uniform", 4)], _frame(0.02, nfe=4, samples=100)).status == "differs"
    assert check_value(study, by[("uniform", 3)], _frame(0.05, samples=100)).status == "no tolerance"
    text = format_check(study, [few])
    assert text.splitlines()[0] == "study mini: 1 not comparable"


def test_check_cli_exits_1_on_a_fail_and_prints_one_line_per_value(study_file, tmp_path, capsys, tiny_grid):
    from bench.grid import parse_grid
    from bench.launch import run_local

    grid = dict(GRID, methods=["uniform"])
    path = study_file(_block(values={"uniform": [0.05, 0.02]}, tolerance=0.0, tolerance_from="exact",
                             tolerance_covers="both"), grid=grid)  # the point value: an interval may reach it
    run_local(parse_grid(grid, name="mini"), tmp_path / "r", quiet=True)
    code = main(["check", "--study", str(path), "--results", str(tmp_path / "r")])
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "study mini: 2 fail" and len(out) == 3 and code == 1
    assert all(line.startswith("fail") and "[P Table 1]" in line for line in out[1:])
    # not run: an empty root is not a fail
    assert main(["check", "--study", str(path), "--results", str(tmp_path / "empty")]) == 0
    assert "2 not run" in capsys.readouterr().out


def test_report_puts_published_rows_and_differences_under_their_method(study_file):
    study = load_study(study_file(_block()))
    measured = pd.DataFrame([{**_frame(0.06).iloc[0].to_dict(), "heuristic": True, "paper_baseline": True,
                              "higher_is_better": False},
                             {**_frame(0.03, method="god(shifts=False)").iloc[0].to_dict(), "heuristic": False,
                              "paper_baseline": False, "higher_is_better": False}])
    tabs = with_published(report.tables(measured), [study])
    (key, table), = tabs.items()
    assert list(table.index) == ["uniform", "uniform: published (P, Table 1)", f"uniform: {DIFFERENCE}",
                                 "god(shifts=False)", "god(shifts=False): published (P, Table 1)",
                                 f"god(shifts=False): {DIFFERENCE}", report.BEST_HEURISTIC]
    assert table.loc[f"uniform: {DIFFERENCE}", "NFE=3"] == pytest.approx(0.01)
    assert table.loc["god(shifts=False): published (P, Table 1)", "NFE=3"] == 0.02  # NFE=4 was not run: no column
    assert all(is_extra_row(r) for r in table.index if ": " in r)
    # a published value never counts as the best method
    mask = report.best_rows(table)
    assert mask.loc["god(shifts=False)", "NFE=3"] and not mask.loc["god(shifts=False): published (P, Table 1)", "NFE=3"]
    long = long_form(measured, [study])
    assert set(long["source"]) == {"measured", "published"}
    pub = long[long["source"] == "published"]
    assert len(pub) == 3 and (pub["citation"] == "P (arXiv 0000.00000), Table 1").all()
    assert published_records(study)["value"].tolist() == [0.05, 0.02, 0.02]


# ------------------------------------------------------------------- every published value, with its source
def _shipped():
    return sorted(STUDIES_DIR.glob("*.yaml"))


def _number_forms(value: float) -> list[str]:
    """How a table prints a value: 0.0588 -> '0.0588'; 2.6 -> '2.60', '2.6'."""
    forms = {f"{value:g}", f"{value:.2f}", f"{value:.3f}", f"{value:.4f}", f"{value:.1f}"}
    return [f for f in forms if float(f) == value]


@pytest.mark.parametrize("path", _shipped(), ids=lambda p: p.stem)
def test_every_published_value_lists_its_source(path):
    """Prints (pytest -s) every published value of the study with its paper, arXiv id, table and setting,
    one line each, for a reviewer to compare with the papers line by line; each value whose paper's text
    is in ../shared/papers must appear there, printed as the table prints it."""
    study = load_study(path)
    assert study.values, f"{path.name} lists no published value"
    print(f"\n{path.name}: {len(study.values)} published values")
    for v in study.values:
        assert v.paper and re.fullmatch(r"\d{4}\.\d{4,5}", v.arxiv) and v.table and v.setting
        assert v.tolerance is None or v.tolerance_from
        print(f"  {v.paper} arXiv {v.arxiv} {v.table} | {v.cell} = {v.value:g}"
              + (f" ± {v.tolerance:g}" if v.tolerance is not None else "") + (" [differs]" if v.differs else ""))
        text_file = PAPERS / PAPER_TEXT.get(v.paper, "-")
        if text_file.is_file():
            text = text_file.read_text()
            assert any(re.search(rf"(?<![\d.]){re.escape(f)}(?!\d)", text) for f in _number_forms(v.value)), \
                f"{v.where}: {v.value} is not in {text_file.name}"


LD3_FULL_TABLES = {"Table 21": ("Table 21: Full FID comparison on LSUN-", "Table 22: Full FID comparison"),
                   "Table 22": ("Table 22: Full FID comparison", "F.5 ADDITIONAL SAMPLES")}
LD3_SOLVER_ORDER = ("dpmpp-3m", "ipndm-3m", "unipc-3m")  # the tables' solver sections, top to bottom
LD3_ROW_NAMES = {"logsnr": "Time LogSNR", "uniform": "Time Uniform", "quadratic": "Time Quadratic",
                 "edm": "Time EDM", "gits": "GITS", "dmn": "DMN", "ld3": "LD3"}


@pytest.mark.parametrize("name", ["ld3-table21", "ld3-table22"])
def test_ld3_latent_tables_match_the_papers_rows(name):
    """Each method's values of LD3 Tables 21-22 are one row of the paper's table, in the section of the
    block's solver (the text lists the DPM_Solver++, iPNDM and Uni_PC sections in that order, each
    starting with its Time LogSNR row)."""
    text_file = PAPERS / PAPER_TEXT["LD3"]
    if not text_file.is_file():
        pytest.skip(f"{text_file} is not here")
    text = text_file.read_text()
    study = load_study(STUDIES_DIR / f"{name}.yaml")
    rows = {}
    for v in study.values:
        rows.setdefault((v.table, v.solver, v.method), []).append(f"{v.value:.2f}")
    assert len(rows) == 3 * 7
    for (table, solver, method), values in rows.items():
        start, end = LD3_FULL_TABLES[table]
        section = text[text.index(start): text.index(end, text.index(start) + 1)]
        parts = section.split("Time LogSNR ")[1:]  # one part per solver section
        assert len(parts) == 3
        line = f"{LD3_ROW_NAMES[method]} {' '.join(values)}"
        part = parts[LD3_SOLVER_ORDER.index(solver)]
        assert (f"Time LogSNR {part}" if method == "logsnr" else part).count(line) == 1, f"{name}: {line!r}"
