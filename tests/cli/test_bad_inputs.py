"""Every bad input a user can give `bench run` / `report` ends in ONE line on stderr, exit 2, and no file
written (the CLI runs in a subprocess, as a user runs it)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]


def tiny(**changes) -> dict:
    grid = {
        "name": "tiny",
        "models": [{"name": "toy2d", "time": "flow"}],
        "solvers": ["euler"],
        "nfe": [3],
        "methods": ["uniform"],
        "metrics": ["mse"],
        "teacher": {"solver": "euler", "steps": 10, "method": "uniform", "dtype": "float64"},
        "samples": {"train": 16, "eval": 16, "batch": 16},
    }
    grid.update(changes)
    return grid


def bench(*args, cwd) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "bench", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)


def files_under(folder: Path) -> set[Path]:
    return {p for p in folder.rglob("*") if p.is_file()}


def write(path: Path, grid: dict | str | bytes) -> Path:
    if isinstance(grid, bytes):
        path.write_bytes(grid)
    else:
        path.write_text(grid if isinstance(grid, str) else yaml.safe_dump(grid))
    return path


DUPLICATE_METHODS = """
name: dup
models: [{name: toy2d, time: flow}]
solvers: [euler]
nfe: [3]
methods: [uniform]
methods: [edm]
metrics: [mse]
"""

BAD_GRIDS = {
    "method rho abc": (tiny(methods=[{"name": "edm", "rho": "abc"}]), "rho must be a number, got 'abc'"),
    "teacher rho abc": (tiny(teacher={"method": {"name": "edm", "rho": "abc"}}), "grid.teacher.method"),
    "search grid rho abc": (tiny(methods=[{"name": "gits", "timestep_grid": {"name": "edm", "rho": "abc"}}]), "rho"),
    "kl on digits": (tiny(models=["digits"], metrics=["kl"]), "metric 'kl'"),
    "gits warmup 1e8": (tiny(methods=[{"name": "gits", "warmup": "1e8"}]), "warmup must be an integer"),
    "gits warmup huge": (tiny(methods=[{"name": "gits", "warmup": 10**8}]), "warmup must be <="),
    "name dot-dot": (tiny(name=".."), "grid.name must be a plain folder name"),
    "name with slash": (tiny(name="a/../b"), "grid.name must be a plain folder name"),
    "nfe 1e8 text": (tiny(nfe=["1e8"]), "grid.nfe[0] must be an integer"),
    "nfe huge": (tiny(nfe=[10**8]), "--force"),
    "teacher steps huge": (tiny(teacher={"steps": 10**9}), "--force"),
    "duplicate methods key": (DUPLICATE_METHODS, "appears twice"),
    "not utf-8": ("name: caf\xe9\n".encode("latin-1"), "not UTF-8"),
}


@pytest.mark.parametrize("case", sorted(BAD_GRIDS))
def test_bad_grid_is_one_line_exit_2_and_writes_nothing(tmp_path, case):
    grid, message = BAD_GRIDS[case]
    path = write(tmp_path / "grid.yaml", grid)
    results = tmp_path / "results"
    before = files_under(tmp_path)
    done = bench("run", "--grid", str(path), "--results", str(results), cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("bench: error: "), done.stderr
    assert message in lines[0]
    assert files_under(tmp_path) == before and not results.exists()


@pytest.mark.parametrize("device, message", [("banana", "not a torch device"), ("cuda", "no CUDA device")])
def test_bad_device(tmp_path, device, message):
    import torch

    if device == "cuda" and torch.cuda.is_available():
        pytest.skip("this machine has a CUDA device")
    path = write(tmp_path / "grid.yaml", tiny())
    done = bench("run", "--grid", str(path), "--results", str(tmp_path / "r"), "--device", device, cwd=tmp_path)
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1 and message in done.stderr
    assert not (tmp_path / "r").exists()


def test_results_that_is_a_file_or_below_one(tmp_path):
    path = write(tmp_path / "grid.yaml", tiny())
    blocker = tmp_path / "afile"
    blocker.write_text("x")
    for results in (blocker, blocker / "below"):
        done = bench("run", "--grid", str(path), "--results", str(results), cwd=tmp_path)
        assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1, done.stderr
        assert "is a file" in done.stderr
    assert blocker.read_text() == "x"


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_root(tmp_path):  # pragma: no cover - CI runs as root
    path = write(tmp_path / "grid.yaml", tiny())
    root = tmp_path / "ro"
    root.mkdir()
    root.chmod(0o555)
    done = bench("run", "--grid", str(path), "--results", str(root), cwd=tmp_path)
    assert done.returncode == 2 and "cannot write" in done.stderr


def test_read_only_root_is_refused_before_any_compute(tmp_path, monkeypatch):
    """As root the folder permissions do not stop a write, so the check is exercised directly."""
    from bench.errors import UserError
    from bench.store import check_writable

    monkeypatch.setattr(Path, "write_bytes", lambda self, data: (_ for _ in ()).throw(PermissionError(13, "Permission denied")))
    with pytest.raises(UserError, match="cannot write to"):
        check_writable(tmp_path / "root")


def test_report_on_a_read_only_root_names_the_fix(tmp_path, monkeypatch):
    from bench import __main__ as cli
    from bench.errors import UserError

    monkeypatch.setattr(os, "access", lambda path, mode: False)
    with pytest.raises(UserError, match="--no-plots"):
        cli._check_report_writable(tmp_path)
