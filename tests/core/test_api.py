"""`bench.api`: plugins from specs, and `discretize` / `fitted` sharing `run`'s fit keys and cache."""
from __future__ import annotations

import pytest
import torch

import bench
from bench import api
from bench.errors import UserError
from bench.grid import parse_grid
from bench.registry import METHODS, SOLVERS
from bench.runner import fit_cell
from bench.spec import PluginSpec
from bench.store import ResultsRoot

GRID = {"name": "api", "models": [{"name": "toy2d", "time": "flow"}], "solvers": ["euler"], "nfe": [4],
        "methods": [{"name": "gits", "teacher_steps": 12, "warmup": 16}], "metrics": ["mse"], "seeds": [3],
        "samples": {"train": 32, "eval": 16, "batch": 16}, "teacher": {"steps": 20}}


def test_plugin_spec_parses_names_mappings_and_labels():
    spec = PluginSpec.parse({"name": "edm", "rho": 5, "label": "EDM 5"})
    assert (spec.name, dict(spec.params), spec.label) == ("edm", {"rho": 5}, "EDM 5")
    assert spec.as_dict() == {"name": "edm", "rho": 5, "label": "EDM 5"}
    assert PluginSpec.parse("edm").as_dict() == {"name": "edm"}
    assert METHODS.build(spec).params.rho == 5  # the label never reaches the plugin
    with pytest.raises(UserError, match="must be a name or a mapping"):
        PluginSpec.parse(3, "method")
    with pytest.raises(UserError, match="unknown solver"):
        SOLVERS.build("nope")


def test_discretize_shares_the_fit_of_run(tmp_path):
    grid_cell = parse_grid(GRID).cells[0]
    cell = api.cell(GRID["models"][0], "euler", GRID["methods"][0], 4, grid=GRID)
    assert cell.fit_key() == grid_cell.fit_key() and cell.fit_hash == grid_cell.fit_hash
    root = ResultsRoot(tmp_path)
    method, info = fit_cell(grid_cell, root)  # as `run` fits it
    assert not info["cached"]
    disc = bench.discretize(GRID["models"][0], "euler", GRID["methods"][0], 4, results=tmp_path, grid=GRID)
    again, info2 = bench.fitted(GRID["models"][0], "euler", GRID["methods"][0], 4, results=tmp_path, grid=GRID)
    assert info2["cached"]  # loaded, not refitted
    x_T, cond = api.first_prior(method.model)
    assert torch.equal(disc.t, method.discretize(x_T, cond).t)


def test_closed_forms_need_no_root_and_sample(tmp_path):
    disc = bench.discretize("toy2d", "heun", {"name": "edm", "rho": 7}, 4, results=tmp_path / "unused")
    assert disc.t.shape == (1, 3)  # heun: 2 steps for 4 evaluations
    assert not (tmp_path / "unused").exists()
    x0 = bench.sample("toy2d", "euler", "uniform", 3, n=5, results=tmp_path)
    assert x0.shape == (5, 2) and torch.isfinite(x0).all()
    with pytest.raises(UserError, match="cannot spend exactly nfe=5"):
        bench.discretize("toy2d", "heun", "edm", 5)


def test_no_generic_top_level_packages(tmp_path):
    """The plugin packages live under `bench` (`bench.methods`, `bench.baselines`): outside the checkout,
    `import methods` / `import baselines` find nothing of this project."""
    import subprocess
    import sys

    for name in ("methods", "baselines"):
        proc = subprocess.run([sys.executable, "-c", f"import {name}"], cwd=tmp_path, capture_output=True, text=True)
        assert proc.returncode != 0 and "No module named" in proc.stderr, (name, proc.stderr)
    proc = subprocess.run([sys.executable, "-c", "import bench.methods.gits, bench.baselines.edm"], cwd=tmp_path,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
