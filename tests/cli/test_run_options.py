"""`bench run --set / --only / --dry-run` (bench.overrides, bench.dry_run)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from bench.__main__ import main
from bench.discretization import HeuristicMethod
from bench.grid import load_grid
from bench.overrides import apply_sets, split_values
from bench.registry import METHODS


@METHODS.register("test-estimated-fit")
class EstimatedFit(HeuristicMethod):
    """A fitted method that estimates its fit's cost: 7 evaluations per training sample."""

    needs_fit = True
    heuristic = False

    def fit(self, ctx):
        pass

    def state_dict(self):
        return {}

    def load_state_dict(self, state):
        pass

    def estimate_fit_nfe(self, cell):
        return 7 * cell.samples["train"]

    def timesteps(self):
        return METHODS.create("uniform").bind(self.noise_schedule, self.steps).timesteps()


def write(tmp_path, grid, name="tiny.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(grid))
    return path


def row_keys(root, grid="tiny"):
    return {p.stem for p in (Path(root) / grid / "rows").glob("*.json")}


def test_set_gives_the_cells_of_a_grid_file_with_those_values(tiny_grid, tmp_path):
    """Rows written with --set land under the keys of a grid file that says the same."""
    path = write(tmp_path, tiny_grid)
    root = tmp_path / "r"
    assert main(["run", "--grid", str(path), "--results", str(root), "--quiet", "--set", "nfe=[5]",
                 "--set", "methods=[edm, {name: polynomial, rho: 2}]", "--set", "samples.eval=64"]) == 0
    edited = dict(tiny_grid, nfe=[5], methods=["edm", {"name": "polynomial", "rho": 2}],
                  samples={**tiny_grid["samples"], "eval": 64})
    other = tmp_path / "edited"
    other.mkdir()
    grid = load_grid(write(other, edited))
    assert row_keys(root) == {c.hash for c in grid.cells} and len(grid.cells) == 2
    assert {json.loads(p.read_text())["samples"]["eval"] for p in (root / "tiny" / "rows").glob("*.json")} == {64}
    # the copy beside the rows is the grid as run, so `report` shows these cells
    assert yaml.safe_load((root / "tiny" / "grid.yaml").read_text())["nfe"] == [5]


def test_apply_sets_does_not_touch_the_file_mapping(tiny_grid):
    out = apply_sets(tiny_grid, ["samples.eval=32", "teacher.steps=10", "nfe=4"])
    assert out["samples"]["eval"] == 32 and out["teacher"]["steps"] == 10 and out["nfe"] == 4
    assert tiny_grid["samples"]["eval"] == 128 and tiny_grid["teacher"]["steps"] == 20 and tiny_grid["nfe"] == [3, 4]


@pytest.mark.parametrize("item, message", [
    ("nfe=[4,x]", "bench: error: --set: grid.nfe[1] must be an integer >= 1, got 'x'"),
    ("nfez=[4]", "bench: error: --set nfez=[4]: grid.nfez is not a known field"),
    ("nfe=[4", "bench: error: --set nfe=[4: the value is not valid YAML"),
    ("samples.eval=0", "bench: error: --set: grid.samples.eval must be >= 1"),
    ("methods=[edn]", "bench: error: --set: grid.methods[0]: unknown method 'edn'"),
    ("nfe.x=3", "bench: error: --set nfe.x=3: grid.nfe is not a mapping"),
    ("nfe", "bench: error: --set expects KEY=YAML"),
])
def test_bad_set_is_one_line_naming_the_field(tiny_grid, tmp_path, capsys, item, message):
    path = write(tmp_path, tiny_grid)
    assert main(["run", "--grid", str(path), "--results", str(tmp_path / "r"), "--set", item, "--dry-run"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(message), err
    assert not (tmp_path / "r").exists()


def test_only_runs_the_selected_cells(tiny_grid, tmp_path, capsys):
    tiny_grid["methods"] = ["uniform", "edm", {"name": "polynomial", "rho": 2, "label": "poly, rho 2"}]
    path = write(tmp_path, tiny_grid)
    root = tmp_path / "r"
    assert main(["run", "--grid", str(path), "--results", str(root), "--only", "method=edm,poly, rho 2",
                 "--only", "nfe=4"]) == 0
    grid = load_grid(path)
    want = {c.hash for c in grid.cells if c.nfe == 4 and c.method["name"] in ("edm", "polynomial")}
    assert row_keys(root) == want and len(want) == 2
    err = capsys.readouterr().err
    assert "rows of other keys" not in err  # the cells --only left out are not "other keys"
    # the grid copy is the whole grid: --only selects, it does not change the grid
    assert yaml.safe_load((root / "tiny" / "grid.yaml").read_text())["nfe"] == [3, 4]
    assert main(["run", "--grid", str(path), "--results", str(root), "--only", "method=uniform"]) == 0
    err = capsys.readouterr().err
    assert "rows of other keys" not in err


@pytest.mark.parametrize("item, message", [
    ("method=edn", "--only method=edn: 'edn' is not a value of the grid's method axis (edm, uniform)"),
    ("nfe=7", "--only nfe=7: '7' is not a value of the grid's nfe axis (3, 4)"),
    ("step=3", "--only step=3: 'step' is not a grid axis"),
    ("method=", "--only method=: an empty value"),
])
def test_bad_only_is_one_line(tiny_grid, tmp_path, capsys, item, message):
    path = write(tmp_path, tiny_grid)
    assert main(["run", "--grid", str(path), "--results", str(tmp_path / "r"), "--only", item, "--dry-run"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"bench: error: {message}"] or (len(err) == 1 and err[0].startswith(f"bench: error: {message}"))


def test_only_that_matches_no_cell(tiny_grid, tmp_path, capsys):
    tiny_grid["exclude"] = [{"method": "edm", "nfe": 3}]
    path = write(tmp_path, tiny_grid)
    assert main(["run", "--grid", str(path), "--results", str(tmp_path / "r"), "--only", "method=edm",
                 "--only", "nfe=3", "--dry-run"]) == 2
    assert "no cell of the grid matches all of them" in capsys.readouterr().err


def test_split_values_keeps_commas_inside_labels():
    assert split_values("ld3(a=1, b=[2, 3]),edm") == ["ld3(a=1, b=[2, 3])", "edm"]


def test_dry_run_counts_cost_and_what_is_done(tiny_grid, tmp_path, capsys):
    tiny_grid.update(methods=["uniform", "test-estimated-fit"], nfe=[3, 4])
    path = write(tmp_path, tiny_grid)
    root = tmp_path / "r"
    assert main(["run", "--grid", str(path), "--results", str(root), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert not root.exists()  # nothing written
    lines = out.splitlines()
    assert lines[0].startswith("tiny (") and "4 cells (0 done, 4 to run); 2 fits (0 done, 2 to run); " \
                                                 "1 evaluation teacher sets for the cells to run (0 done, 1 to compute)" in lines[0]
    # sampling: NFE x eval samples; teacher: euler 20 steps x 128; fits: the method's estimate 7 x 64
    assert sum(" 3 x 128 = 384" in line for line in lines) == 2 and sum(" 4 x 128 = 512" in line for line in lines) == 2
    assert any(line.rstrip().endswith("20 x 128 = 2_560") for line in lines)
    assert sum(line.rstrip().endswith("about 448") for line in lines) == 2
    total = 2 * 384 + 2 * 512 + 2560 + 2 * 448
    assert f"network evaluations still to run: 1_792 sampling + 2_560 evaluation teacher sets + 896 fits (estimated) = " \
           f"{total:_}" in out

    assert main(["run", "--grid", str(path), "--results", str(root), "--quiet", "--only", "method=uniform",
                 "--only", "nfe=3"]) == 0
    capsys.readouterr()
    assert main(["run", "--grid", str(path), "--results", str(root), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "4 cells (1 done, 3 to run)" in out and "1 to compute" not in out
    assert sum(line.startswith("  done    ") for line in out.splitlines()) == 2  # the cell and its teacher set
    assert f"= {2 * 512 + 384 + 2 * 448:_}" in out


def test_dry_run_of_a_method_without_estimate_says_so(tiny_grid, tmp_path, capsys):
    from tests.core.test_runner import BestOfHeuristics  # noqa: F401 - registers test-best-of

    tiny_grid.update(methods=["test-best-of"], nfe=[3])
    path = write(tmp_path, tiny_grid)
    assert main(["run", "--grid", str(path), "--results", str(tmp_path / "r"), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "not estimated (test-best-of gives no estimate)" in out
    assert out.splitlines()[-2].endswith(", plus 1 fits whose method gives no estimate")
