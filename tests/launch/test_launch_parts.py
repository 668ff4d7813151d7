"""The launch package's parts: the job ledger (local failures as entries, old and newer record
formats), the launch flags generated from the settings model, the submitit sweep's second round as
a bounded loop, and the results root as the one place that names row and fit files."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from bench import status as st
from bench.__main__ import build_parser, main
from bench.discretization import HeuristicMethod
from bench.grid import parse_grid
from bench.launch import SweepFailed, ledger, run_local
from bench.launch import submit as submit_mod
from bench.launch.plan import Plan, plan
from bench.launch_config import LaunchConfig, LaunchSettings, launch_overrides, make_launch_config
from bench.registry import METHODS
from bench.store import ResultsRoot

REPO = Path(__file__).resolve().parents[2]


@METHODS.register("test-ledger-raises")
class Raises(HeuristicMethod):
    """Test plugin: a method whose schedule always raises."""

    heuristic = False

    def timesteps(self):
        raise ValueError("no schedule here")


def test_local_failures_are_ledger_entries_with_their_outcome(tiny_grid, tmp_path):
    tiny_grid["methods"] = ["uniform", "test-ledger-raises"]
    grid = parse_grid(tiny_grid)
    with pytest.raises(SweepFailed, match="2 of 4 fits and cells failed"):
        run_local(grid, root=tmp_path, quiet=True)
    (sub,) = ledger.load_submissions(ResultsRoot(tmp_path), "tiny")
    record = json.loads((sub.path / "submission.json").read_text())
    assert record["format"] == ledger.FORMAT and record["executor"] == "local"
    failed = {c.hash for c in grid.cells if c.method["name"] == "test-ledger-raises"}
    assert {h for t in record["tasks"] for h in t["cells"]} == failed
    for task in record["tasks"]:  # no pid posing as a job id: the outcome itself
        assert task["job_id"] is None and task["state"] == "failed"
        assert task["error"] == "ValueError: no schedule here"
        assert "Traceback" in Path(task["log"]).read_text()
    status = st.sweep_status(grid, tmp_path)
    assert status.counts() == {"done": 2, "failed": 2}
    for item in status.cells:
        if item.state == "failed":
            assert item.error == "ValueError: no schedule here" and item.job_id is None and item.log.is_file()
    assert {c.hash for c in plan(grid, ResultsRoot(tmp_path)).pending} == failed  # what a rerun takes


def _format1_local_record(root: ResultsRoot, grid, cell, fit_hash=None) -> Path:
    """A `local` record as the format-1 launcher wrote it: the pid as job id, the error in failures/."""
    path = root.jobs_dir(grid.name) / "20260101-000000-local-abcdef"
    (path / "logs").mkdir(parents=True)
    (path / "logs" / f"{cell.hash}.log").write_text("Traceback ...\nValueError: diverged\n")
    tasks = [{"kind": "cells", "job_id": "4242", "cells": [cell.hash], "fit": None}]
    if fit_hash:
        tasks.insert(0, {"kind": "fit", "job_id": "4242", "cells": [cell.hash], "fit": fit_hash})
    (path / "submission.json").write_text(json.dumps({
        "id": path.name, "executor": "local", "created": "2026-01-01T00:00:00+00:00", "host": "h", "user": "u",
        "command": ["bench"], "log_folder": "logs", "tasks": tasks}))
    ledger.write_failure(path / "failures", cell.hash, "ValueError: diverged", "tb", "4242",
                         str(path / "logs" / f"{cell.hash}.log"))
    return path


def test_format1_local_records_still_read(tiny_grid, tmp_path):
    from ..plugins.fit_plugins import StepsFit  # noqa: F401  (registers `test-steps`)

    tiny_grid.update(methods=["uniform", "test-steps"], nfe=[3])
    grid = parse_grid(tiny_grid)
    (cell,) = [c for c in grid.cells if c.fit_hash]
    _format1_local_record(ResultsRoot(tmp_path), grid, cell, cell.fit_hash)
    status = st.sweep_status(grid, tmp_path)
    (item,) = [i for i in status.cells if i.key == cell.hash]
    assert item.state == "failed" and item.error == "ValueError: diverged" and item.job_id is None
    assert item.log.read_text().startswith("Traceback")
    (fit,) = status.fits
    assert fit.state == "failed" and fit.error == "ValueError: diverged"  # not "ended without a result"
    assert status.counts() == {"failed": 1, "pending": 1}


def test_a_record_of_a_newer_format_is_one_line(tiny_grid, write_grid, tmp_path, capsys):
    grid = parse_grid(tiny_grid)
    sub = ledger.new_submission(ResultsRoot(tmp_path), grid.name, "slurm", ["test"])
    record = json.loads((sub.path / "submission.json").read_text())
    (sub.path / "submission.json").write_text(json.dumps({**record, "format": ledger.FORMAT + 1}))
    path = write_grid(tiny_grid)
    assert main(["status", "--grid", path, "--results", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "newer than this bench reads" in err and str(sub.path) in err


def test_launch_flags_are_generated_from_the_settings_model():
    parser = build_parser()
    flags = {a.dest: a for a in parser._subparsers._group_actions[0].choices["run"]._actions}
    for name in LaunchConfig.model_fields:  # every setting has its flag, with its description as help
        assert name in flags and flags[name].option_strings == ["--" + name.replace("_", "-")]
        assert flags[name].help.startswith(LaunchConfig.model_fields[name].description)
    assert "detach" not in LaunchSettings.model_fields  # a command-line choice, not a grid's
    args = parser.parse_args(["run", "--grid", "g.yaml", "--executor", "slurm", "--cells-per-job", "2",
                              "--mem-gb", "16", "--sbatch", "qos=high", "--sbatch", "nice=10", "--detach"])
    config = make_launch_config({"sbatch": {"account": "a"}, "timeout_min": 5}, **launch_overrides(args))
    assert config == LaunchConfig(executor="slurm", cells_per_job=2, mem_gb=16.0, timeout_min=5, detach=True,
                                  sbatch={"account": "a", "qos": "high", "nice": 10})
    bare = parser.parse_args(["run", "--grid", "g.yaml"])
    assert make_launch_config({"jobs": 3}, **launch_overrides(bare)) == LaunchConfig(jobs=3)


def test_the_submitit_sweep_runs_at_most_two_rounds(tiny_grid, tmp_path, monkeypatch):
    """Cells that ran before their requeued fit are submitted once more, never in a loop."""
    grid = parse_grid(tiny_grid)
    rounds = []

    class Sweep(submit_mod.SubmititSweep):
        def submit_and_wait(self):
            rounds.append(len(rounds))
            return Plan(list(grid.cells), [], []), True

        def fits_done_late(self, final):
            return True  # every round would ask for another one

    failed = st.SweepStatus("tiny", [st.Item("cell", c.hash, "", "failed", error="FitMissing: x") for c in grid.cells],
                            [], [], {})
    monkeypatch.setattr(st, "sweep_status", lambda *a, **k: failed)
    config = make_launch_config({}, executor="submitit-local")
    with pytest.raises(SweepFailed, match="4 of 4 cells failed"):
        Sweep(grid, tmp_path, config, quiet=True).run()
    assert rounds == [0, 1]


def test_only_the_results_root_names_row_and_fit_files():
    """No module outside bench/store.py builds a row's or a fit's path or tests for its file by name."""
    patterns = [r'"fit\.json"', r'"state\.pt"', r'/ "rows"', r'/ "fits"', r'/ "jobs"', r'/ "scores"',
                r'glob\("\*\.json"\)', r'glob\("\*\.npz"\)']
    offenders = []
    for folder in ("bench", "methods", "baselines"):
        for path in sorted((REPO / folder).rglob("*.py")):
            if path == REPO / "bench" / "store.py":
                continue
            text = path.read_text()
            offenders += [f"{path.relative_to(REPO)}: {p}" for p in patterns if re.search(p, text)]
    assert not offenders, offenders
