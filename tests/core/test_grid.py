"""Grid validation: every user mistake is one GridError naming the field and the fix."""
from __future__ import annotations

import copy

import pytest

from bench.errors import GridError, UserError
from bench.grid import load_grid, parse_grid


def parse(grid):
    return parse_grid(copy.deepcopy(grid), name="g")


def test_cartesian_product_and_exclude(tiny_grid):
    grid = parse(tiny_grid)
    assert len(grid.cells) == 1 * 1 * 2 * 2 * 1
    tiny_grid["exclude"] = [{"method": "edm", "nfe": 3}]
    cells = parse(tiny_grid).cells
    assert len(cells) == 3
    assert not any(c.method["name"] == "edm" and c.nfe == 3 for c in cells)


def test_exclude_lists_match_any_entry(tiny_grid):
    tiny_grid.update(methods=["uniform", "edm", {"name": "polynomial", "rho": 2}], nfe=[3, 4, 5])
    tiny_grid["exclude"] = [{"method": ["edm", {"name": "polynomial", "rho": 2}], "nfe": [4, 5]}]
    kept = {(c.method["name"], c.nfe) for c in parse(tiny_grid).cells}
    assert kept == {("uniform", 3), ("uniform", 4), ("uniform", 5), ("edm", 3), ("polynomial", 3)}


def test_cell_hashes_are_distinct_and_stable(tiny_grid):
    a = [c.hash for c in parse(tiny_grid).cells]
    b = [c.hash for c in parse(tiny_grid).cells]
    assert a == b and len(set(a)) == len(a)


def test_defaults_filled(tiny_grid):
    del tiny_grid["teacher"], tiny_grid["samples"]
    cell = parse(tiny_grid).cells[0]
    assert cell.teacher["steps"] == 100 and cell.samples["batch"] > 0 and cell.seed == 0


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda g: g.update(methods=["uniform", "nope"]), r"grid.methods\[1\]: unknown method 'nope'; known:"),
        (lambda g: g.update(methods=[{"name": "polynomial", "rh": 2}]), r"grid.methods\[0\]: .*no parameter 'rh'"),
        (lambda g: g.update(solvers=["rk45"]), r"grid.solvers\[0\]: unknown solver 'rk45'"),
        (lambda g: g.update(models=[{"name": "toy2d", "time": "vp"}]), r"grid.models\[0\]: .*time"),
        (lambda g: g.update(metrics=["fidd"]), r"grid.metrics\[0\]: unknown metric 'fidd'"),
        (lambda g: g.update(nfe=[3, 0]), r"grid.nfe\[1\] must be an integer >= 1"),
        (lambda g: g.update(nfe=["three"]), r"grid.nfe\[0\] must be an integer"),
        (lambda g: g.pop("methods"), r"grid.methods is missing"),
        (lambda g: g.update(methods=[]), r"grid.methods is empty"),
        (lambda g: g.update(modles=[]), r"grid.modles is not a known field"),
        (lambda g: g.update(samples={"eval": -1}), r"grid.samples.eval must be >= 1"),
        (lambda g: g.update(samples={"evals": 10}), r"grid.samples.evals is not a known field"),
        (lambda g: g.update(teacher={"steps": 0}), r"grid.teacher.steps must be >= 1"),
        (lambda g: g.update(teacher={"solver": "nope"}), r"grid.teacher.solver: unknown solver"),
        (lambda g: g.update(dtype="float16"), r"grid.dtype must be float32 or float64"),
        (lambda g: g.update(exclude=[{"methd": "edm"}]), r"grid.exclude\[0\].methd is not a grid axis"),
        (lambda g: g.update(exclude=[{"model": "toy2d"}]), r"removes every cell"),
        (lambda g: g.update(methods=[42]), r"grid.methods\[0\] must be a name or a mapping"),
    ],
)
def test_validation_errors(tiny_grid, mutate, message):
    mutate(tiny_grid)
    with pytest.raises(GridError, match=message) as info:
        parse(tiny_grid)
    assert "\n" not in str(info.value)


def test_unreachable_nfe_is_a_grid_error(tiny_grid, monkeypatch):
    from bench.solvers.euler import Euler

    monkeypatch.setattr(Euler, "nfe", lambda self, steps: 2 * steps)
    tiny_grid["nfe"] = [3]
    with pytest.raises(GridError, match=r"grid.nfe: solver 'euler' cannot spend exactly nfe=3.*exclude"):
        parse(tiny_grid)


def test_load_grid_file_errors(tmp_path):
    with pytest.raises(UserError, match="no grid file"):
        load_grid(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("models: [toy2d\nsolvers: euler")
    with pytest.raises(GridError, match="not valid YAML"):
        load_grid(bad)
    scalar = tmp_path / "scalar.yaml"
    scalar.write_text("42")
    with pytest.raises(GridError, match="must be a YAML mapping"):
        load_grid(scalar)


def test_shipped_grids_validate():
    for path in ("grids/smoke.yaml", "grids/toy2d.yaml"):
        assert load_grid(path).cells


def test_yaml_exponent_floats_without_a_dot_are_numbers(tmp_path):
    """YAML 1.1 (PyYAML's safe loader) reads `1e-1` as a string; a grid reads it as YAML 1.2 does."""
    from bench.grid import load_yaml

    assert load_yaml("[1e-1, 2E5, -3e+2, 1.e-3, .5e1, 1.5e-3, 7, 1_000, '1e-1', 1e-1x, 0x1f]") == [
        0.1, 2e5, -300.0, 1e-3, 5.0, 1.5e-3, 7, 1000, "1e-1", "1e-1x", 31]
    path = tmp_path / "g.yaml"
    path.write_text("models: [digits]\nsolvers: [euler]\nnfe: [4]\nmetrics: [mse]\n"
                    "methods: [{name: manual, sigmas: [80, 1e1, 2E0, 5e-1, 2e-3]}]\n")
    (cell,) = load_grid(path).cells
    assert cell.method["sigmas"] == [80, 10.0, 2.0, 0.5, 0.002]
    from bench.__main__ import _spec

    assert _spec("manual", ["sigmas=[80, 1e-1]"])["sigmas"] == [80, 0.1]
