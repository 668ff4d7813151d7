"""The engine end to end on small grids: rows, resume, fit caching, teacher cache, report, CLI."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

from bench import report
from bench.__main__ import main
from bench.discretization import HeuristicMethod
from bench.grid import load_grid, parse_grid
from bench.launch import run_local
from bench.models import make_model
from bench.registry import METHODS
from bench.runner import run_cell
from bench.store import ResultsRoot
from bench.teacher import teacher_set

REPO = Path(__file__).resolve().parents[2]


@METHODS.register("test-best-of")
class BestOfHeuristics(HeuristicMethod):
    """Test plugin: picks, on the training teacher set, the heuristic with the lowest MSE."""

    needs_fit = True
    heuristic = False
    defaults = {"candidates": ["uniform", "logsnr", "polynomial", "edm"]}
    fit_calls = 0

    def fit(self, ctx):
        type(self).fit_calls += 1
        train = ctx.teacher("train", ctx.train_size)
        losses = {}
        for name in self.params.candidates:
            disc = METHODS.create(name).bind(self.noise_schedule, self.steps).discretize(train.x_T)
            with torch.no_grad():
                out = ctx.solver.sample(ctx.model, train.x_T, disc)
            losses[name] = float(((out - train.x0) ** 2).sum(1).mean())
        self.choice = min(losses, key=losses.get)

    def state_dict(self):
        return {"choice": self.choice}

    def load_state_dict(self, state):
        self.choice = state["choice"]

    def timesteps(self):
        return METHODS.create(self.choice).bind(self.noise_schedule, self.steps).timesteps()


def rows(root, grid="tiny"):
    return [json.loads(p.read_text()) for p in sorted((Path(root) / grid / "rows").glob("*.json"))]


def test_run_writes_one_row_per_cell_and_skips_on_rerun(tiny_grid, tmp_path):
    grid = parse_grid(tiny_grid)
    run_local(grid, root=tmp_path, quiet=True)
    first = rows(tmp_path)
    assert len(first) == len(grid.cells) == 4
    assert {r["cell"] for r in first} == {c.hash for c in grid.cells}
    for r in first:
        assert r["nfe_measured"] == r["nfe_expected"] == r["nfe"]
        assert r["metrics"]["mse"] > 0 and r["metrics"]["psnr"] > 0
        assert r["schedule"]["t"][0][0] == pytest.approx(80 / 81)
        assert r["versions"]["torch"] == torch.__version__
    mtimes = {p: p.stat().st_mtime_ns for p in (tmp_path / "tiny" / "rows").glob("*.json")}
    plan = run_local(grid, root=tmp_path, quiet=True)
    assert not plan.pending and len(plan.done) == 4
    assert mtimes == {p: p.stat().st_mtime_ns for p in (tmp_path / "tiny" / "rows").glob("*.json")}


def test_uniform_euler_mse_decreases_with_nfe(tiny_grid, tmp_path):
    tiny_grid.update(nfe=[3, 5, 8], methods=["uniform"])
    run_local(parse_grid(tiny_grid), root=tmp_path, quiet=True)
    mse = [r["metrics"]["mse"] for r in sorted(rows(tmp_path), key=lambda r: r["nfe"])]
    assert mse[0] > mse[1] > mse[2]


def test_parallel_jobs_give_the_same_rows(tiny_grid, tmp_path):
    grid = parse_grid(tiny_grid)
    run_local(grid, root=tmp_path / "a", quiet=True)
    run_local(grid, root=tmp_path / "b", jobs=2, quiet=True)
    a = {r["cell"]: r["metrics"] for r in rows(tmp_path / "a")}
    b = {r["cell"]: r["metrics"] for r in rows(tmp_path / "b")}
    assert a.keys() == b.keys()
    for key in a:
        assert a[key] == pytest.approx(b[key], rel=1e-5)


def test_fit_is_cached_and_shared_by_cells(tiny_grid, tmp_path):
    tiny_grid.update(methods=["test-best-of"], nfe=[3], metrics=["mse", "psnr"])
    grid = parse_grid(tiny_grid)
    tiny_grid["metrics"] = ["mse"]  # a second cell with the same fit key
    other = parse_grid(tiny_grid)
    assert grid.cells[0].fit_hash == other.cells[0].fit_hash != None  # noqa: E711
    assert grid.cells[0].hash != other.cells[0].hash
    BestOfHeuristics.fit_calls = 0
    run_cell(grid.cells[0], tmp_path)
    run_cell(other.cells[0], tmp_path)
    assert BestOfHeuristics.fit_calls == 1
    first, second = sorted(rows(tmp_path), key=lambda r: len(r["metrics"]))
    assert not first["fit"]["cached"] or not second["fit"]["cached"]
    assert second["fit"]["cached"] or first["fit"]["cached"]
    assert first["schedule"] == second["schedule"]
    assert first["fit"]["fit_nfe"] > 0


def test_rows_and_report_carry_the_cost_of_fitting(tiny_grid, tmp_path):
    """Issue #4/#5: fit seconds and evaluations in every row; a schedule network's size and cost
    beside the model's; `report` tables them for the methods that fit, not for heuristics."""
    god = {"name": "god", "iterations": 4, "val": 16, "val_every": 2, "batch": 8, "train": 32, "loss": "l2"}
    tiny_grid.update(methods=["uniform", god], nfe=[3], metrics=["mse"])
    run_local(parse_grid(tiny_grid), root=tmp_path, quiet=True)
    (row,) = [r for r in rows(tmp_path) if r["method"]["name"] == "god"]
    fit = row["fit"]
    assert fit["fit_seconds"] > 0 and fit["fit_nfe"] > 0 and fit["fit_resumes"] == 0
    assert fit["phi_params"] == 9 and fit["phi_seconds_per_sample"] > 0 and fit["model_eval_seconds_per_sample"] > 0
    tabs = report.tables(report.load_rows(tmp_path))
    model = "toy2d(time=flow)"
    for label in ("fit seconds", "fit evaluations", "schedule net params", "schedule net cost [model evals]"):
        table = tabs[("tiny", model, "euler", label)]
        assert list(table.index) == [row["method_label"]]  # no heuristic, no "best heuristic" row
    assert tabs[("tiny", model, "euler", "schedule net params")].iloc[0, 0] == 9


def test_teacher_cache_regenerates_bit_identical(tmp_path):
    model = make_model({"name": "toy2d", "time": "flow"})
    teacher = {"solver": "euler", "steps": 10, "method": "uniform", "dtype": "float64"}
    root = ResultsRoot(tmp_path)
    a = teacher_set(model, teacher, "eval", 0, 100, root, batch_size=32)
    cached = teacher_set(model, teacher, "eval", 0, 100, root, batch_size=32)
    for path in (tmp_path / "cache" / "teachers").glob("*.pt"):
        path.unlink()
    regenerated = teacher_set(model, teacher, "eval", 0, 100, root, batch_size=32)
    assert torch.equal(a.x0, cached.x0) and torch.equal(a.x0, regenerated.x0)
    assert torch.equal(a.x_T, regenerated.x_T)
    # a prefix of a larger set has the same priors; the splits are disjoint
    larger = teacher_set(model, teacher, "eval", 0, 150, root, batch_size=32)
    assert torch.equal(larger.x_T[:100], a.x_T)
    train = teacher_set(model, teacher, "train", 0, 100, root, batch_size=32)
    assert not torch.equal(train.x_T, a.x_T)


def test_report_tables_and_formats(tiny_grid, tmp_path, capsys):
    run_local(parse_grid(tiny_grid), root=tmp_path, quiet=True)
    df = report.load_rows(tmp_path)
    tabs = report.tables(df)
    table = tabs[("tiny", "toy2d(time=flow)", "euler", "mse")]
    assert list(table.columns) == ["NFE=3", "NFE=4"]
    assert list(table.index) == ["edm", "uniform", report.BEST_HEURISTIC]
    assert (table.loc[report.BEST_HEURISTIC] == table.loc[["edm", "uniform"]].min()).all()
    psnr = tabs[("tiny", "toy2d(time=flow)", "euler", "psnr")]
    assert (psnr.loc[report.BEST_HEURISTIC] == psnr.loc[["edm", "uniform"]].max()).all()
    for fmt, marker in (("markdown", "|"), ("csv", ","), ("latex", "\\toprule"), ("text", report.BEST_HEURISTIC)):
        assert main(["report", "--results", str(tmp_path), "--format", fmt, "--no-plots"]) == 0
        assert marker in capsys.readouterr().out
    assert main(["report", "--results", str(tmp_path)]) == 0
    assert list((tmp_path / "tiny" / "report").rglob("*.png"))


def test_report_marks_cells_the_grid_does_not_run():
    table = pd.DataFrame({"NFE=3": [0.5, 0.25], "NFE=4": [0.125, float("nan")]}, index=["uniform", "gits"])
    table.index.name = "method"
    tabs = {("g", "m", "euler", "mse"): table}
    for fmt in ("text", "markdown", "latex"):
        out = report.render(tabs, fmt)
        assert "nan" not in out and "0.125" in out
        gits_line = next(line for line in out.splitlines() if line.lstrip("| ").startswith("gits"))
        assert gits_line.replace("|", " ").replace("&", " ").split()[2] == report.MISSING
    assert "gits,0.25,\n" in report.render(tabs, "csv")


def test_cli_user_errors_are_one_line(tmp_path, write_grid, tiny_grid, capsys):
    tiny_grid["methods"] = ["nope"]
    code = main(["run", "--grid", write_grid(tiny_grid), "--results", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("bench: error: grid.methods[0]: unknown method 'nope'") and err.count("\n") == 1
    assert main(["report", "--results", str(tmp_path / "empty")]) == 2
    assert "no result rows" in capsys.readouterr().err


def test_cli_list_and_show_schedule(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for name in ("toy2d", "euler", "ipndm", "uniform", "edm", "mse"):
        assert name in out
    assert main(["show-schedule", "--model", "toy2d", "--method", "edm", "--nfe", "4"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "t: the model's time" in lines[0] and "sigma: the VE noise level" in lines[0]
    assert lines[1] == "nfe=4 steps=4: t 80 17.5278 2.51522 0.169753 0.002"
    assert lines[2].split() == ["sigma", "80", "17.5278", "2.51522", "0.169753", "0.002"]
    # a flow model: t is the flow time, sigma the VE-equivalent noise level of the same knots
    assert main(["show-schedule", "--model", "toy2d", "--model-param", "time=flow", "--method", "edm", "--nfe", "4"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "(flow schedule, t_max=0.987654" in lines[0]
    assert lines[1].startswith("nfe=4 steps=4: t 0.987654 ") and lines[2].split()[:2] == ["sigma", "80"]


def test_resume_after_kill(tmp_path, write_grid, tiny_grid):
    """Kill a sweep mid-run: no partial row survives, and the rerun completes every cell once."""
    tiny_grid.update(nfe=[3, 4, 5, 6, 7, 8], methods=["uniform", "logsnr", "polynomial", "edm"],
                     samples={"train": 64, "eval": 2048, "batch": 256})
    path = write_grid(tiny_grid)
    cells = load_grid(path).cells
    rows_dir = tmp_path / "tiny" / "rows"
    cmd = [sys.executable, "-m", "bench", "run", "--grid", path, "--results", str(tmp_path), "--quiet"]
    proc = subprocess.Popen(cmd, cwd=REPO, start_new_session=True)
    deadline = time.time() + 120
    while time.time() < deadline and len(list(rows_dir.glob("*.json"))) < 2:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    done_at_kill = len(list(rows_dir.glob("*.json")))
    assert 0 < done_at_kill < len(cells), "the sweep must be killed mid-run"
    for p in rows_dir.glob("*.json"):
        json.loads(p.read_text())  # every row present is complete
    subprocess.run(cmd, cwd=REPO, check=True, timeout=300)
    names = sorted(p.name for p in rows_dir.glob("*.json"))
    assert names == sorted(f"{c.hash}.json" for c in cells)
    assert not list(rows_dir.glob(".*"))
