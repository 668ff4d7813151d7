"""Sweeps on a real Slurm cluster (`bash scripts/slurm-cluster.sh up` starts a one-node one here).

Skipped when no cluster answers `sinfo`, unless BENCH_SLURM=1 (CI), which makes that a failure;
skipped, saying so, when BENCH_SKIP_SLURM=1 (`./run-tests.sh --no-slurm`).
The launcher runs in this process (so the jobs can import this module's test plugins, which
`bench.launch.plugin_modules` hands them); the jobs run the venv's Python through submitit.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from bench import status as st
from bench.launch import ledger
from bench.__main__ import main
from bench.discretization import HeuristicMethod
from bench.grid import parse_grid
from bench.launch import run_local, run_submitit
from bench.launch_config import make_launch_config
from bench.registry import METHODS
from bench.store import ResultsRoot

from ..plugins.fit_plugins import StepsFit  # noqa: F401  (registers `test-steps`)

pytestmark = [pytest.mark.slurm, pytest.mark.slow]


@METHODS.register("slurm-test-sleep")
class Sleepy(HeuristicMethod):
    """Test plugin: the uniform schedule, after sleeping `seconds` (a cell slow enough to be killed)."""

    heuristic = False
    defaults = {"seconds": 0.0}

    def timesteps(self):
        if not getattr(self, "slept", False):
            time.sleep(self.params.seconds)
            self.slept = True
        return METHODS.create("uniform").bind(self.noise_schedule, self.steps).timesteps()


def _cluster_problem() -> str | None:
    if not (shutil.which("sinfo") and shutil.which("sbatch") and shutil.which("srun")):
        return "no Slurm commands (sinfo, sbatch, srun) on the PATH"
    try:
        out = subprocess.run(["sinfo", "--noheader", "--format=%T"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as err:
        return f"sinfo failed: {err}"
    if out.returncode != 0:
        lines = out.stderr.strip().splitlines()
        return f"sinfo failed: {lines[-1] if lines else f'exit code {out.returncode}'}"
    states = [s.rstrip("*~#$@^-+") for s in out.stdout.split()]
    if not any(s in ("idle", "mixed", "allocated", "completing") for s in states):
        return f"no node can run jobs (states: {', '.join(states) or 'none'})"
    return None


@pytest.fixture(scope="module")
def cluster():
    if os.environ.get("BENCH_SKIP_SLURM") == "1":
        pytest.skip("BENCH_SKIP_SLURM=1 (./run-tests.sh --no-slurm): the Slurm stage was skipped, no cluster "
                    "was set up")
    problem = _cluster_problem()
    if problem:
        if os.environ.get("BENCH_SLURM") == "1":
            pytest.fail(f"BENCH_SLURM=1 but {problem}; start one with `bash scripts/slurm-cluster.sh up`")
        pytest.skip(f"no Slurm cluster here ({problem}); `bash scripts/slurm-cluster.sh up` starts one")


def _grid(methods, nfe=(3, 4)) -> dict:
    return {
        "name": "slurmtest",
        "models": [{"name": "toy2d", "time": "flow"}],
        "solvers": ["euler"],
        "nfe": list(nfe),
        "methods": methods,
        "metrics": ["mse", "psnr"],
        "teacher": {"solver": "euler", "steps": 20, "method": "uniform", "dtype": "float64"},
        "samples": {"train": 32, "eval": 128, "batch": 64},
    }


def rows(root, grid="slurmtest") -> dict:
    return {p.stem: json.loads(p.read_text()) for p in sorted((Path(root) / grid / "rows").glob("*.json"))}


def squeue_state(job_id: str) -> tuple[str, str] | None:
    out = subprocess.run(["squeue", "--noheader", "--array", "--format=%i|%T|%r", "--jobs", job_id.split("_")[0]],
                         capture_output=True, text=True)
    for line in out.stdout.splitlines():
        jid, state, reason = line.strip().split("|")
        if jid == job_id:
            return state, reason
    return None


def wait_for(predicate, timeout: float, what: str, every: float = 0.25):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


def test_slurm_rows_equal_local_rows_and_a_requeued_fit_resumes(cluster, tmp_path):
    """Fits, then cells in array tasks; one fit is preempted (USR2), requeued by submitit and resumes
    from its checkpoint. The rows equal those of the local executor with one thread per process."""
    grid = parse_grid(_grid(["uniform", "edm", {"name": "test-steps", "steps": 10, "step_seconds": 0.4}]))
    root = tmp_path / "slurm"
    config = make_launch_config({}, executor="slurm", cells_per_job=3, timeout_min=15, detach=True)
    todo = run_submitit(grid, root, config, quiet=True)
    sub = todo.submission
    assert [t.kind for t in sub.tasks] == ["fit", "fit", "cells", "cells"]
    script = next(sub.log_folder.glob("*_submission.sh")).read_text()
    assert sys.executable in script  # the jobs run this venv's Python

    fit_job = sub.tasks[0]
    fit_dir = ResultsRoot(root).fit_dir(fit_job.fit)

    def fit_step():
        path = fit_dir / "checkpoint.pt"
        return path.exists() and torch.load(path, weights_only=False)["state"]["step"] >= 2

    wait_for(fit_step, 120, "the first fit to checkpoint twice")
    subprocess.run(["scancel", "--signal=USR2", fit_job.job_id], check=True)  # what a preemption sends
    # submitit requeues the job (scontrol requeue); Slurm holds a requeued job for a while
    # (BeginTime): release it now, so the test need not wait
    state = wait_for(lambda: (squeue_state(fit_job.job_id) or ("", ""))[0] == "PENDING", 60, "the requeue")
    assert state
    subprocess.run(["scontrol", "update", f"JobId={fit_job.job_id}", "StartTime=now"], check=True)

    # the same command again (waiting, this time): everything is in flight, nothing is resubmitted
    again = run_submitit(grid, root, make_launch_config({}, executor="slurm", cells_per_job=3), quiet=True)
    assert again.submission is None and len(again.in_flight) == 6
    # one submission; a second, of cells only, only when Slurm started a cells task in the moment the
    # preempted fit was being requeued (those cells fail with FitMissing and are submitted once more)
    subs = ledger.load_submissions(ResultsRoot(root), "slurmtest")
    assert subs[0].id == sub.id and all(t.kind == "cells" for s in subs[1:] for t in s.tasks) and len(subs) <= 2
    fitted = torch.load(fit_dir / "state.pt", weights_only=False)
    assert fitted["attempts"] == 2 and 2 <= fitted["resumed_from"] < 10 and fitted["rho"] == 1.0 + 10 * 0.25

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a job has one CPU, hence one thread
    try:
        run_local(grid, root=tmp_path / "local", quiet=True)
    finally:
        torch.set_num_threads(threads)
    slurm, local = rows(root), rows(tmp_path / "local")
    assert slurm.keys() == local.keys() == {c.hash for c in grid.cells}
    for key in slurm:
        assert slurm[key]["metrics"] == local[key]["metrics"], slurm[key]["method"]
        assert slurm[key]["schedule"] == local[key]["schedule"]
    assert st.sweep_status(grid, root).counts() == {"done": 6}


def test_a_cancelled_array_task_is_named_by_status_and_rerun_completes_it(cluster, tmp_path, capsys):
    grid = parse_grid(_grid(["uniform", {"name": "slurm-test-sleep", "seconds": 10}]))
    cells = grid.cells  # chunks of two: [nfe 3: uniform, sleep], [nfe 4: uniform, sleep]
    config = make_launch_config({}, executor="slurm", cells_per_job=2, detach=True)
    sub = run_submitit(grid, tmp_path, config, quiet=True).submission
    victim = sub.tasks[1]
    assert victim.cells == [cells[2].hash, cells[3].hash]
    rows_dir = tmp_path / "slurmtest" / "rows"
    wait_for(lambda: (rows_dir / f"{cells[2].hash}.json").exists(), 150, "the victim's first row")
    subprocess.run(["scancel", victim.job_id], check=True)  # while it sleeps in its second cell

    def settled():
        status = st.sweep_status(grid, tmp_path)
        return status if not any(i.state in st.ACTIVE for i in status.cells) else None

    status = wait_for(settled, 150, "the other jobs to end", every=1)
    assert status.counts() == {"done": 3, "failed": 1}
    (failed,) = [i for i in status.cells if i.state == "failed"]
    assert failed.key == cells[3].hash and failed.job_id == victim.job_id
    assert "ended without a result" in failed.error and "CANCELLED" in failed.error
    assert failed.log.is_file()
    assert not (rows_dir / f"{cells[3].hash}.json").exists()
    for path in rows_dir.glob("*.json"):
        json.loads(path.read_text())  # every row present is whole

    grid_file = tmp_path / "g.yaml"  # `bench status` reads the grid from a file: the same grid
    grid_file.write_text(yaml.safe_dump(_grid(["uniform", {"name": "slurm-test-sleep", "seconds": 10}])))
    assert main(["status", "--grid", str(grid_file), "--results", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("slurmtest: 4 cells: 3 done, 1 failed, 0 pending")
    assert f"failed   {cells[3].hash[:12]}" in out and f"job {victim.job_id}" in out and "CANCELLED" in out
    assert "log:   " in out and failed.log.name in out

    kept = {p: p.stat().st_mtime_ns for p in rows_dir.glob("*.json")}
    rerun = run_submitit(grid, tmp_path, make_launch_config({}, executor="slurm", cells_per_job=2), quiet=True)
    assert [c.hash for c in rerun.pending] == [cells[3].hash]
    assert [t.cells for t in rerun.submission.tasks] == [[cells[3].hash]]
    assert sorted(p.stem for p in rows_dir.glob("*.json")) == sorted(c.hash for c in cells)
    assert all(p.stat().st_mtime_ns == m for p, m in kept.items())
    assert st.sweep_status(grid, tmp_path).counts() == {"done": 4}


def test_the_command_line_runs_a_grid_on_slurm(cluster, tmp_path):
    """`python -m bench run --executor slurm` from a shell, then `python -m bench status`."""
    path = tmp_path / "g.yaml"
    raw = _grid(["uniform", "edm"], nfe=[3])
    raw["launch"] = {"executor": "submitit-local", "cells_per_job": 1}  # the flags below override it
    path.write_text(yaml.safe_dump(raw))
    repo = Path(__file__).resolve().parents[2]
    bench = [sys.executable, "-m", "bench"]
    run = subprocess.run([*bench, "run", "--grid", str(path), "--results", str(tmp_path), "--executor", "slurm",
                          "--cells-per-job", "2", "--timeout-min", "10", "--sbatch", "comment=bench-test"],
                         cwd=repo, capture_output=True, text=True, timeout=170)
    assert run.returncode == 0, run.stderr
    assert "submitting 0 fits and 2 cells in 1 jobs (slurm)" in run.stderr
    assert len(rows(tmp_path)) == 2
    (sub,) = ledger.load_submissions(ResultsRoot(tmp_path), "slurmtest")
    script = next(sub.log_folder.glob("*_submission.sh")).read_text()
    assert "#SBATCH --comment=bench-test" in script and "#SBATCH --time=10" in script
    assert sub.command[:3] == bench and "--executor" in sub.command
    status = subprocess.run([*bench, "status", "--grid", str(path), "--results", str(tmp_path)],
                            cwd=repo, capture_output=True, text=True, timeout=60)
    assert status.returncode == 0 and status.stdout.startswith("slurmtest: 2 cells: 2 done, 0 pending"), status
