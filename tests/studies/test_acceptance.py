"""Acceptance checks on the shipped grids (slow: full-size evaluation sets). Run with `pytest -m slow`."""
from __future__ import annotations

import dataclasses

import pytest

from bench import report
from bench.grid import load_grid
from bench.launch import run_local

pytestmark = pytest.mark.slow


def run_subset(path, root, keep, metrics=("mse",)):
    grid = load_grid(path)
    cells = [dataclasses.replace(c, metrics=tuple(m for m in c.metrics if m["name"] in metrics))
             for c in grid.cells if keep(c)]
    run_local(dataclasses.replace(grid, cells=cells), root=root, quiet=True)
    return report.tables(report.load_rows(root, grid.name))


def test_toy2d_uniform_euler_matches_the_known_value(tmp_path):
    """Uniform Euler on the class-A tree in flow time, against the 100-step teacher."""
    tabs = run_subset("grids/toy2d.yaml", tmp_path, lambda c: c.method["name"] == "uniform")
    (table,) = [t for key, t in tabs.items() if key[3] == "mse"]
    mse = table.loc["uniform"].tolist()
    assert all(a > b for a, b in zip(mse, mse[1:])), mse
    assert mse[0] == pytest.approx(0.057, rel=0.05)


def test_pixel_best_heuristic_beats_uniform_euler_at_nfe5(tmp_path):
    tabs = run_subset(
        "grids/pixel.yaml", tmp_path,
        lambda c: c.nfe == 5 and not c.needs_fit
        and (c.solver["name"] in ("ipndm", "dpmpp-3m") or c.method["name"] == "uniform"),
    )
    mse = {key[2]: t for key, t in tabs.items() if key[3] == "mse"}
    uniform_euler = mse["euler"].loc["uniform", "NFE=5"]
    best = min(mse[s].loc[report.BEST_HEURISTIC, "NFE=5"] for s in ("ipndm", "dpmpp-3m"))
    assert best < uniform_euler
