"""`bench compare ROOT_A ROOT_B` (bench.compare): rows matched by cell key, metrics within tolerances."""
from __future__ import annotations

import math
import shutil

import pytest
import yaml

from bench.__main__ import main
from bench.compare import agree
from bench.grid import parse_grid
from bench.launch import run_local
from bench.rows import read_row, write_row


@pytest.fixture(scope="module")
def root_a(tmp_path_factory):
    grid = {
        "name": "tiny", "models": [{"name": "toy2d", "time": "flow"}], "solvers": ["euler"], "nfe": [3, 4],
        "methods": ["uniform", "edm"], "metrics": ["mse", "psnr"],
        "teacher": {"solver": "euler", "steps": 20, "method": "uniform", "dtype": "float64"},
        "samples": {"train": 64, "eval": 128, "batch": 64},
    }
    root = tmp_path_factory.mktemp("compare") / "a"
    run_local(parse_grid(grid), root=root, quiet=True)
    return root, grid


def copy_root(root_a, tmp_path):
    root_b = tmp_path / "b"
    shutil.copytree(root_a, root_b)
    return root_b


def rows_of(root):
    return sorted((root / "tiny" / "rows").glob("*.json"))


def edit_metric(path, metric, factor):
    row = read_row(path)
    row = {k: v for k, v in row.items() if k not in ("checksum", "schema_version")}
    row["metrics"][metric] *= factor
    write_row(path, row)
    return row


def run(capsys, *args):
    code = main(["compare", *map(str, args)])
    out, err = capsys.readouterr()
    return code, out, err


def test_identical_roots_agree(root_a, tmp_path, capsys):
    root, _ = root_a
    code, out, _ = run(capsys, root, copy_root(root, tmp_path))
    assert code == 0
    assert out.splitlines()[-1] == "summary: 4 cells in both roots, 0 past tolerance, 0 only in A, 0 only in B, 0 unreadable"


def test_a_metric_past_tolerance_is_one_line_and_exit_1(root_a, tmp_path, capsys):
    root, _ = root_a
    root_b = copy_root(root, tmp_path)
    path = rows_of(root_b)[0]
    row = edit_metric(path, "mse", 1 + 1e-6)
    code, out, _ = run(capsys, root, root_b)
    assert code == 1
    lines = [line for line in out.splitlines() if line.startswith("past tolerance:")]
    assert len(lines) == 1 and f"[{path.stem}]" in lines[0] and "mse " in lines[0] and "psnr" not in lines[0]
    assert f"nfe={row['nfe']}" in lines[0] and row["method_label"] in lines[0]
    assert "rel 1e-06" in lines[0]
    assert "1 past tolerance" in out.splitlines()[-1] and "largest relative difference 1e-06 (mse" in out
    # within a looser tolerance
    assert run(capsys, root, root_b, "--rtol", "1e-5")[0] == 0
    assert run(capsys, root, root_b, "--atol", "1")[0] == 0


def test_cells_in_one_root_only_are_listed(root_a, tmp_path, capsys):
    root, _ = root_a
    root_b = copy_root(root, tmp_path)
    gone = rows_of(root_b)[1]
    gone.unlink()
    code, out, _ = run(capsys, root, root_b)
    assert code == 0
    assert [line for line in out.splitlines() if line.startswith("only in")] == \
           [line for line in out.splitlines() if line.startswith("only in A: tiny: ") and gone.stem in line]
    assert "3 cells in both roots, 0 past tolerance, 1 only in A, 0 only in B" in out
    code, out, _ = run(capsys, root_b, root)
    assert "1 only in B" in out


def test_an_unreadable_row_fails(root_a, tmp_path, capsys):
    root, _ = root_a
    root_b = copy_root(root, tmp_path)
    path = rows_of(root_b)[2]
    path.write_text(path.read_text().replace('"mse": ', '"mse": 1', 1))  # checksum no longer matches
    code, out, _ = run(capsys, root, root_b)
    assert code == 1
    assert any(line.startswith("unreadable row in B: ") and path.name in line for line in out.splitlines())


def test_grid_restricts_to_its_cells(root_a, tmp_path, capsys):
    root, grid = root_a
    root_b = copy_root(root, tmp_path)
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(dict(grid, nfe=[3])))
    code, out, _ = run(capsys, root, root_b, "--grid", path)
    assert code == 0 and "summary: 2 cells in both roots" in out


@pytest.mark.parametrize("args, message", [
    (["{a}", "{missing}"], "bench: error: ROOT_B: {missing} is not a folder"),
    (["{a}", "{empty}"], "share no cell"),
    (["{a}", "{a}", "--rtol", "-1"], "bench: error: --rtol must be a finite number >= 0, got -1.0"),
])
def test_bad_input_exits_2_with_one_line(root_a, tmp_path, capsys, args, message):
    root, _ = root_a
    (tmp_path / "empty").mkdir()
    names = {"a": root, "missing": tmp_path / "nope", "empty": tmp_path / "empty"}
    args = [a.format(**names) for a in args]
    code, out, err = run(capsys, *args)
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and message.format(**names) in err


def test_agree_rules():
    assert agree(1.0, 1.0 + 1e-12, 1e-9, 0)
    assert not agree(1.0, 1.0 + 1e-6, 1e-9, 0)
    assert agree(0.0, 1e-12, 0, 1e-9)
    assert agree(math.nan, math.nan, 0, 0) and not agree(math.nan, 1.0, 1, 1)
    assert agree(math.inf, math.inf, 0, 0) and not agree(math.inf, -math.inf, 0, 0)
    assert not agree(None, 1.0, 1, 1) and agree(None, None, 0, 0)
