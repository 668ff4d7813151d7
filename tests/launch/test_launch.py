"""The launcher without a cluster: launch settings, GPU placement, submitit-local sweeps (two phases,
fits resumed after a preemption, failures, status, reruns) and status from hand-made records."""
from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path

import pytest
import torch

from bench import status as st
from bench.launch import ledger, probes
from bench.__main__ import main
from bench.discretization import HeuristicMethod
from bench.errors import GridError, UserError
from bench.grid import load_grid, parse_grid
from bench.launch import plan, run_local, run_submitit, spread_devices
from bench.launch_config import LaunchConfig, make_launch_config, parse_launch_section, parse_sbatch_flags
from bench.registry import METHODS
from bench.store import ResultsRoot

from ..plugins.fit_plugins import StepsFit  # noqa: F401  (registers `test-steps`)



@METHODS.register("test-flaky")
class Flaky(HeuristicMethod):
    """Test plugin: the uniform schedule, except that it raises while the file `fail_file` exists."""

    heuristic = False
    defaults = {"fail_file": ""}

    def timesteps(self):
        if self.params.fail_file and Path(self.params.fail_file).exists():
            raise ValueError(f"boom: {self.params.fail_file} exists")
        return METHODS.create("uniform").bind(self.noise_schedule, self.steps).timesteps()


def rows(root, grid="tiny") -> dict:
    return {p.stem: json.loads(p.read_text()) for p in sorted((Path(root) / grid / "rows").glob("*.json"))}


# ---------------------------------------------------------------------------------------------
# launch settings


def test_launch_section_is_checked_when_the_grid_loads(tiny_grid):
    tiny_grid["launch"] = {"executor": "slurm", "partition": "gpu", "cells_per_job": 2,
                           "sbatch": {"qos": "high", "mail_type": "END"}}
    grid = parse_grid(tiny_grid)
    assert grid.launch == {"executor": "slurm", "partition": "gpu", "cells_per_job": 2,
                           "sbatch": {"qos": "high", "mail-type": "END"}}
    bad = [
        ({"cells_per_job": 0}, "grid.launch.cells_per_job must be a positive integer, got 0"),
        ({"executor": "kubernetes"}, "grid.launch.executor must be one of local, submitit-local, slurm"),
        ({"timeout": 5}, "grid.launch.timeout is not a known field; known: executor,"),
        ({"detach": True}, "grid.launch.detach is not a known field (--detach is a command-line flag)"),
        ({"sbatch": {"time": 5}}, "grid.launch.sbatch.time: sbatch option 'time' is managed by bench: set "
                                  "launch.timeout_min (--timeout-min) instead"),
        ({"sbatch": ["qos=high"]}, "grid.launch.sbatch must be a mapping of sbatch options"),
        ({"mem_gb": -1}, "grid.launch.mem_gb must be a positive number"),
    ]
    for launch, message in bad:
        tiny_grid["launch"] = launch
        with pytest.raises(GridError) as err:
            parse_grid(tiny_grid)
        assert str(err.value).startswith(message), str(err.value)
    tiny_grid["launch"] = "slurm"
    with pytest.raises(GridError, match="grid.launch must be a mapping"):
        parse_grid(tiny_grid)
    assert parse_launch_section(None) == {}


def test_command_line_overrides_the_grid():
    grid_launch = parse_launch_section({"executor": "slurm", "cpus_per_job": 4, "sbatch": {"qos": "low", "account": "a"}})
    config = make_launch_config(grid_launch, cpus_per_job=2, partition=None, sbatch={"qos": "high"}, detach=True)
    assert config == LaunchConfig(executor="slurm", cpus_per_job=2, sbatch={"qos": "high", "account": "a"}, detach=True)
    assert make_launch_config(grid_launch, executor="local").executor == "local"
    assert make_launch_config({}) == LaunchConfig()
    assert LaunchConfig().gpus("cuda") == 1 and LaunchConfig().gpus("cuda:1") == 1 and LaunchConfig().gpus("cpu") == 0
    assert LaunchConfig(gpus_per_job=2).gpus("cpu") == 2
    assert parse_sbatch_flags(["qos=high", "nice=10", "--exclusive=true"]) == {"qos": "high", "nice": 10, "exclusive": True}
    with pytest.raises(UserError, match=r"^--cells-per-job must be a positive integer, got 0$"):
        make_launch_config({}, cells_per_job=0)
    with pytest.raises(UserError, match="--detach needs --executor slurm"):
        make_launch_config({}, executor="submitit-local", detach=True)
    with pytest.raises(UserError, match="--sbatch expects KEY=VALUE"):
        parse_sbatch_flags(["qos"])
    with pytest.raises(UserError, match="--sbatch partition: sbatch option 'partition' is managed by bench"):
        make_launch_config({}, sbatch={"partition": "x"})


def test_cli_launch_errors_are_one_line(tiny_grid, write_grid, tmp_path, capsys):
    path = write_grid(tiny_grid)
    for argv, message in (
        (["--cells-per-job", "0"], "bench: error: --cells-per-job must be a positive integer, got 0\n"),
        (["--executor", "submitit-local", "--detach"], "bench: error: --detach needs --executor slurm"),
        (["--sbatch", "time=5"], "bench: error: --sbatch time: sbatch option 'time' is managed by bench"),
    ):
        assert main(["run", "--grid", path, "--results", str(tmp_path), *argv]) == 2
        err = capsys.readouterr().err
        assert err.startswith(message) and err.count("\n") == 1, err
    assert not (tmp_path / "tiny").exists()


def test_gpus_are_spread_round_robin_over_local_jobs():
    assert spread_devices("cuda", 5, jobs=2, count=2) == ["cuda:0", "cuda:1", "cuda:0", "cuda:1", "cuda:0"]
    assert spread_devices("cuda", 3, jobs=3, count=4) == ["cuda:0", "cuda:1", "cuda:2"]
    assert spread_devices("cuda", 3, jobs=1, count=4) == ["cuda"] * 3  # one process keeps its device
    assert spread_devices("cuda", 2, jobs=2, count=1) == ["cuda"] * 2
    assert spread_devices("cuda:1", 2, jobs=2, count=4) == ["cuda:1"] * 2  # an explicit device stays
    assert spread_devices("cpu", 2, jobs=2, count=4) == ["cpu"] * 2


# ---------------------------------------------------------------------------------------------
# submitit-local sweeps


def _fitted_grid(tiny_grid, **method):
    tiny_grid.update(methods=["uniform", {"name": "test-steps", **method}], nfe=[3, 4],
                     metrics=["mse", "psnr"], samples={"train": 32, "eval": 128, "batch": 64})
    return tiny_grid


@pytest.mark.slow  # submitit-local starts a process per job: 30-50 s
def test_submitit_local_runs_fits_then_cells_and_matches_local(tiny_grid, tmp_path):
    grid = parse_grid(_fitted_grid(tiny_grid))
    config = make_launch_config({}, executor="submitit-local", cells_per_job=3, timeout_min=10)
    todo = run_submitit(grid, tmp_path / "jobs", config, quiet=True)
    assert len(todo.fits) == 2 and len(todo.pending) == 4
    sub = todo.submission
    assert [t.kind for t in sub.tasks] == ["fit", "fit", "cells", "cells"]
    assert [len(t.cells) for t in sub.tasks if t.kind == "cells"] == [3, 1]
    # each fit ran once, in its fit job; the cell jobs loaded it
    for cell in todo.fits:
        log = (ResultsRoot(tmp_path / "jobs").fit_dir(cell.fit_hash) / "attempts.log").read_text().splitlines()
        assert len(log) == 1
    jobs = rows(tmp_path / "jobs")
    assert len(jobs) == 4 and all(r["fit"]["cached"] for r in jobs.values() if r["method"]["name"] == "test-steps")
    # the same rows as the local executor with the same threads per process (a job has one)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        run_local(grid, root=tmp_path / "local", quiet=True)
    finally:
        torch.set_num_threads(threads)
    local = rows(tmp_path / "local")
    assert local.keys() == jobs.keys()
    for key in jobs:
        assert jobs[key]["metrics"] == local[key]["metrics"]
        assert jobs[key]["schedule"] == local[key]["schedule"]
    # a rerun submits nothing
    again = run_submitit(grid, tmp_path / "jobs", config, quiet=True)
    assert again.submission is None and not again.pending and len(again.done) == 4
    assert len(ledger.load_submissions(ResultsRoot(tmp_path / "jobs"), "tiny")) == 1


def _children(pid: int) -> list[int]:
    kids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                kids.append(int(entry.name))
    return kids


@pytest.mark.slow  # submitit-local starts a process per job: 30-50 s
def test_a_preempted_fit_resumes_from_its_checkpoint(tiny_grid, tmp_path):
    """submitit's preemption signal (USR2) makes the fit job checkpoint and requeue itself; the
    requeued job resumes the method's own progress from FitContext's checkpoint file."""
    tiny_grid = _fitted_grid(tiny_grid)
    tiny_grid.update(nfe=[3], methods=[{"name": "test-steps", "steps": 8, "step_seconds": 0.5}])
    grid = parse_grid(tiny_grid)
    (cell,) = grid.cells
    fit_dir = ResultsRoot(tmp_path).fit_dir(cell.fit_hash)
    config = make_launch_config({}, executor="submitit-local", timeout_min=10)
    outcome = {}

    def launcher():  # in a thread of this process, which has the test plugins registered
        try:
            outcome["plan"] = run_submitit(grid, tmp_path, config, quiet=True)
        except BaseException as err:  # noqa: BLE001
            outcome["error"] = err

    thread = threading.Thread(target=launcher, daemon=True)
    thread.start()
    deadline, step = time.time() + 120, 0
    while time.time() < deadline and step < 2 and thread.is_alive():
        if (fit_dir / "checkpoint.pt").exists():
            step = torch.load(fit_dir / "checkpoint.pt", weights_only=False)["state"]["step"]
        time.sleep(0.1)
    assert step >= 2, f"the fit job did not start: {outcome}"
    (sub,) = ledger.load_submissions(ResultsRoot(tmp_path), "tiny")
    (fit_job,) = [t for t in sub.tasks if t.kind == "fit"]
    (task_pid,) = _children(int(fit_job.job_id))  # the controller's one task
    os.kill(task_pid, signal.SIGUSR2)
    thread.join(timeout=240)
    assert not thread.is_alive() and "error" not in outcome, outcome
    state = torch.load(fit_dir / "state.pt", weights_only=False)
    assert state["attempts"] == 2 and 2 <= state["resumed_from"] < 8, state
    assert state["rho"] == 1.0 + 8 * 0.25  # the same fit as an uninterrupted one
    assert len((fit_dir / "attempts.log").read_text().splitlines()) == 2
    paths = sub.paths(fit_job.job_id)
    log = paths.stdout.read_text() + paths.stderr.read_text()
    assert "Caught signal SIGUSR2" in log and "Calling checkpoint method" in log and "Requeued job" in log
    assert len(rows(tmp_path)) == 1


@pytest.mark.slow  # submitit-local starts a process per job: 30-50 s
def test_failed_cells_are_reported_and_rerun_completes_them(tiny_grid, write_grid, tmp_path, capsys):
    fail_file = tmp_path / "FAIL"
    fail_file.write_text("")
    tiny_grid.update(methods=["uniform", {"name": "test-flaky", "fail_file": str(fail_file)}], nfe=[3, 4])
    path = write_grid(tiny_grid)
    args = ["run", "--grid", path, "--results", str(tmp_path), "--executor", "submitit-local",
            "--cells-per-job", "2", "--quiet"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("bench: error: 2 of 4 cells failed; `python -m bench status --grid") and err.count("\n") == 1
    grid = load_grid(path)
    status = st.sweep_status(grid, tmp_path)
    assert status.counts() == {"done": 2, "failed": 2}
    for item in status.cells:
        if item.state == "failed":
            assert "test-flaky" in item.label
            assert item.error == f"ValueError: boom: {fail_file} exists"
            assert item.log.is_file() and "boom" in item.log.read_text()
            assert item.job_id
    assert main(["status", "--grid", path, "--results", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("tiny: 4 cells: 2 done, 2 failed, 0 pending")
    assert out.count("error: ValueError: boom") == 2 and out.count("log:") == 2
    assert "rerun the same `python -m bench run` command" in out
    # rerun: exactly the two failed cells are submitted, the done rows stay as they are
    done_rows = {p: p.stat().st_mtime_ns for p in (tmp_path / "tiny" / "rows").glob("*.json")}
    fail_file.unlink()
    assert main(args) == 0
    latest = ledger.load_submissions(ResultsRoot(tmp_path), "tiny")[-1]
    assert sorted(h for t in latest.tasks for h in t.cells) == sorted(i.key for i in status.cells if i.state == "failed")
    assert all(p.stat().st_mtime_ns == m for p, m in done_rows.items())
    assert st.sweep_status(grid, tmp_path).counts() == {"done": 4}
    assert main(["status", "--grid", path, "--results", str(tmp_path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["counts"] == {"done": 4}


# ---------------------------------------------------------------------------------------------
# status from hand-made records (no jobs run)


def _record(root, grid, executor, tasks, host=None):
    sub = ledger.new_submission(ResultsRoot(root), grid.name, executor, ["test"])
    if host:
        sub.host = host
    for t in tasks:
        sub.add(t)
    sub.save()
    return sub


def test_status_tells_running_queued_lost_and_pending_apart(tiny_grid, tmp_path, monkeypatch):
    grid = parse_grid(tiny_grid)
    c = [cell.hash for cell in grid.cells]
    sub = _record(tmp_path, grid, "slurm", [ledger.TaskRef("cells", "12_0", [c[0]]), ledger.TaskRef("cells", "12_1", [c[1]]),
                                            ledger.TaskRef("cells", "12_2", [c[2]])])
    stderr = sub.paths("12_2").stderr
    stderr.write_text("submitit INFO ...\nslurmstepd-vm: error: *** JOB 15 ON vm CANCELLED AT 2026-01-01T00:00:00 ***\n"
                      "srun: forcing job termination\n")
    monkeypatch.setattr(probes, "slurm_queue", lambda ids: {"12_0": "RUNNING", "12_1": "PENDING"})
    status = st.sweep_status(grid, tmp_path)
    by_hash = {i.key: i for i in status.cells}
    assert [by_hash[h].state for h in c] == ["running", "queued", "failed", "pending"]
    lost = by_hash[c[2]]
    assert lost.job_id == "12_2" and lost.log == stderr
    assert lost.error == ("the job ended without a result (cancelled, killed or out of time): "
                          "slurmstepd-vm: error: *** JOB 15 ON vm CANCELLED AT 2026-01-01T00:00:00 ***")
    text = st.format_status(status)
    assert "failed   " + c[2][:12] in text and "job 12_2" in text and "CANCELLED" in text
    # without squeue, Slurm jobs without a result are unknown, not failed
    monkeypatch.setattr(probes, "slurm_queue", lambda ids: None)
    assert st.sweep_status(grid, tmp_path).counts() == {"unknown": 3, "pending": 1}


def test_status_reads_results_and_local_processes(tiny_grid, tmp_path):
    import pickle

    grid = parse_grid(tiny_grid)
    c = [cell.hash for cell in grid.cells]
    sub = _record(tmp_path, grid, "submitit-local", [
        ledger.TaskRef("cells", "999999999", [c[0]]),  # no such process, no result: lost
        ledger.TaskRef("cells", "2", [c[1]]),  # finished with an error
        ledger.TaskRef("cells", str(os.getpid()), [c[2]]),  # a live process that is not a submitit job
    ])
    with open(sub.paths("2").result_pickle, "wb") as f:
        pickle.dump(("error", "Traceback (most recent call last):\n  ...\nRuntimeError: 1 of 1 cells failed"), f)
    other = _record(tmp_path, grid, "submitit-local", [ledger.TaskRef("cells", "1", [c[3]])], host="elsewhere")
    status = {i.key: i for i in st.sweep_status(grid, tmp_path).cells}
    assert status[c[0]].state == "failed" and status[c[0]].error.startswith("the job ended without a result")
    assert status[c[1]].state == "failed" and status[c[1]].error == "RuntimeError: 1 of 1 cells failed"
    assert status[c[2]].state == "failed"  # pid reuse is not mistaken for a running job
    assert status[c[3]].state == "unknown" and "elsewhere" in status[c[3]].error
    assert other.id != sub.id


def test_cells_in_running_jobs_are_left_alone(tiny_grid, tmp_path, monkeypatch):
    grid = parse_grid(tiny_grid)
    busy = grid.cells[1].hash
    _record(tmp_path, grid, "slurm", [ledger.TaskRef("cells", "40_0", [busy])])
    monkeypatch.setattr(probes, "slurm_queue", lambda ids: {"40_0": "RUNNING"})
    todo = run_local(grid, root=tmp_path, quiet=True)
    assert [c.hash for c in todo.in_flight] == [busy]
    assert set(rows(tmp_path)) == {c.hash for c in grid.cells} - {busy}
    monkeypatch.setattr(probes, "slurm_queue", lambda ids: {})  # the job is gone: the cell is failed now
    assert [c.hash for c in plan(grid, ResultsRoot(tmp_path)).pending] == [busy]
    assert st.sweep_status(grid, tmp_path).counts() == {"done": 3, "failed": 1}


def test_status_reports_failed_fits(tiny_grid, tmp_path):
    import pickle

    grid = parse_grid(_fitted_grid(tiny_grid))
    fitted = [c for c in grid.cells if c.fit_hash]
    sub = _record(tmp_path, grid, "submitit-local", [
        ledger.TaskRef("fit", "3", [fitted[0].hash], fitted[0].fit_hash),
        ledger.TaskRef("cells", "4", [fitted[0].hash]),
    ])
    with open(sub.paths("3").result_pickle, "wb") as f:
        pickle.dump(("error", "Traceback (most recent call last):\nValueError: diverged"), f)
    ledger.write_failure(sub.failures_dir, fitted[0].hash, RuntimeError("the fit abc is missing\nmore"), "tb", "4", None)
    status = st.sweep_status(grid, tmp_path)
    (fit,) = [i for i in status.fits if i.key == fitted[0].fit_hash]
    assert fit.state == "failed" and fit.error == "ValueError: diverged" and "steps=3" in fit.label
    (cell,) = [i for i in status.cells if i.key == fitted[0].hash]
    assert cell.state == "failed" and cell.error == "RuntimeError: the fit abc is missing"
    assert status.counts("fit") == {"failed": 1, "pending": 1}
    assert "fits: 2: 1 failed, 1 pending" in st.format_status(status)


def test_slurm_executor_needs_srun(tmp_path, monkeypatch):
    from bench.launch import make_executor

    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(UserError, match="--executor slurm: no `srun` on the PATH"):
        make_executor(LaunchConfig(executor="slurm"), tmp_path / "logs", "cpu", "bench-x")
