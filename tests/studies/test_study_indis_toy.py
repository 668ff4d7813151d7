"""`bench check` on the INDIS toy study (studies/indis-toy.yaml, INDIS Table 6) from a clean results
root: the grid's cells that Table 6 compares (uniform, GOD and INDIS with timesteps only) and our
defaults beside them (GOD and INDIS with shifts), every NFE 3..10, at the grid's full prior counts;
the oracle rows of grids/indis-toy.yaml are not part of Table 6 and are not run here (a subset of a
grid's cells has the same cell keys, so the rows are the ones `bench run` writes)."""
from __future__ import annotations

import pytest

from bench.__main__ import main
from bench.launch import run_local
from bench.studies import STUDIES_DIR, load_study

pytestmark = pytest.mark.slow

TABLE6_AND_DEFAULTS = ["uniform", "god(shifts=False)", "god", "indis(shifts=False)", "indis"]


def test_indis_toy_study_checks_from_a_clean_root(tmp_path, capsys):
    from bench.grid import parse_grid
    from bench.studies import _labels

    study = load_study(STUDIES_DIR / "indis-toy.yaml")
    raw = dict(study.grid_raw)
    raw["methods"] = [m for m, label in zip(raw["methods"], _labels(raw["methods"])) if label in TABLE6_AND_DEFAULTS]
    assert len(raw["methods"]) == len(TABLE6_AND_DEFAULTS)
    grid = parse_grid(raw, name=study.grid_name)
    assert {c.hash for c in grid.cells} <= {c.hash for c in study.grid.cells}
    root = tmp_path / "results"
    run_local(grid, root, quiet=True)

    assert main(["check", "--study", str(STUDIES_DIR / "indis-toy.yaml"), "--results", str(root)]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert len(lines) == 1 + len(study.values)
    assert "fail" not in lines[0] and "not run" not in lines[0] and " pass" in lines[0]

    assert main(["report", "--study", str(STUDIES_DIR / "indis-toy.yaml"), "--results", str(root)]) == 0
    report = capsys.readouterr().out
    assert "indis(shifts=False): published (INDIS, Table 6)" in report
    assert "god(shifts=False): measured − published" in report
    long = (root / "indis-toy" / "report" / "results_long.csv").read_text()
    assert "INDIS (arXiv 2603.17671), Table 6" in long
