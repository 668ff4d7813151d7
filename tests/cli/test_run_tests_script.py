"""`./run-tests.sh`: its Slurm stage (which installs and starts daemons as root) can be skipped,
and CI (.ci/run) keeps it. The script runs with stand-ins for setup.sh, the venv's Python and
scripts/slurm-cluster.sh that only log how they were called."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def sandbox(tmp_path):
    shutil.copy2(REPO / "run-tests.sh", tmp_path / "run-tests.sh")
    (tmp_path / ".ci").mkdir()
    shutil.copy2(REPO / ".ci" / "run", tmp_path / ".ci" / "run")
    log = tmp_path / "calls.log"
    stubs = {
        "setup.sh": f'echo "setup" >> {log}',
        ".venv/bin/python": f'echo "python $* BENCH_SLURM=${{BENCH_SLURM:-}} BENCH_SKIP_SLURM=${{BENCH_SKIP_SLURM:-}}" >> {log}',
        "scripts/slurm-cluster.sh": f'echo "slurm $*" >> {log}',
    }
    for name, body in stubs.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"#!/usr/bin/env bash\n{body}\n")
        path.chmod(0o755)
    return tmp_path, log


def run(folder, *args, env=None, script="run-tests.sh"):
    env = {**{k: v for k, v in os.environ.items() if k not in ("CI", "BENCH_SKIP_SLURM", "BENCH_SLURM")}, **(env or {})}
    return subprocess.run(["bash", str(folder / script), *args], env=env, capture_output=True, text=True, timeout=60)


def test_default_runs_the_slurm_stage(sandbox):
    folder, log = sandbox
    out = run(folder)
    assert out.returncode == 0, out.stderr
    assert log.read_text().splitlines() == ["setup", "python -m pytest BENCH_SLURM= BENCH_SKIP_SLURM=", "slurm up",
                                            "python -m pytest -m slow BENCH_SLURM=1 BENCH_SKIP_SLURM=", "slurm down"]


@pytest.mark.parametrize("how", ["flag", "env"])
def test_the_slurm_stage_can_be_skipped(sandbox, how):
    folder, log = sandbox
    out = run(folder, "--no-slurm") if how == "flag" else run(folder, env={"BENCH_SKIP_SLURM": "1"})
    assert out.returncode == 0, out.stderr
    calls = log.read_text().splitlines()
    assert not [c for c in calls if c.startswith("slurm")]  # nothing installed or started
    assert calls == ["setup", "python -m pytest BENCH_SLURM= BENCH_SKIP_SLURM=1",
                     "python -m pytest -m slow BENCH_SLURM= BENCH_SKIP_SLURM=1"]
    assert "Slurm stage skipped" in out.stderr


def test_an_unknown_option_is_refused(sandbox):
    folder, log = sandbox
    out = run(folder, "--nope")
    assert out.returncode == 2 and "unknown option --nope" in out.stderr and not log.exists()


def test_ci_keeps_the_slurm_stage(sandbox):
    folder, log = sandbox
    out = run(folder, env={"BENCH_SKIP_SLURM": "1"}, script=".ci/run")
    assert out.returncode == 0, out.stderr
    assert "slurm up" in log.read_text().splitlines()


def test_slurm_tests_say_why_they_skip(tmp_path):
    env = {**os.environ, "BENCH_SKIP_SLURM": "1", "BENCH_SLURM": "1", "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-m", "pytest", "tests/launch/test_slurm.py", "-m", "slurm", "-rs", "-q",
                          "-p", "no:cacheprovider"], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "BENCH_SKIP_SLURM=1" in out.stdout and " passed" not in out.stdout and "failed" not in out.stdout
