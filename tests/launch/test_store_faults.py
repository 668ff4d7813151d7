"""Fault injection on the results store: crashes at every write, corrupt artifacts, concurrent runs,
and changes of teacher, parameters, code versions and model files. After each rerun the rows must
equal a clean run's to 0.0, every cell must have been computed exactly once per version, and
`report` must show only the current values. The process-level parts (SIGKILL, concurrent `bench run`
processes) are `slow`."""
from __future__ import annotations

import copy
import multiprocessing
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench import report
from bench.grid import parse_grid
from bench.launch import SweepFailed, run_local
from bench.rows import read_row
from bench.store import ResultsRoot

from ..plugins import store_plugins  # noqa: F401  (registers the test plugins)

ROOT = Path(__file__).resolve().parents[2]


def make_grid(log: Path, weights: Path, **changes) -> dict:
    grid = {
        "name": "faults",
        "models": [{"name": "test-file-toy2d", "time": "flow", "path": str(weights)}],
        "solvers": ["euler"],
        "nfe": [3, 4],
        "methods": ["uniform", "test-versioned", {"name": "test-steps"}],
        "metrics": [{"name": "test-counted-mse", "log": str(log)}],
        "teacher": {"solver": "euler", "steps": 12, "method": "uniform", "dtype": "float64"},
        "samples": {"train": 16, "eval": 64, "batch": 32},
    }
    grid.update(changes)
    return grid


@pytest.fixture
def setup(tmp_path):
    weights = tmp_path / "weights.bin"
    weights.write_bytes(b"weights v1")
    log = tmp_path / "computed.log"
    return tmp_path, log, weights


def metrics_by_cell(root: Path, grid) -> dict:
    rows = ResultsRoot(root)
    return {c.hash: read_row(rows.row_path(grid.name, c.hash))["metrics"] for c in grid.cells}


def computed(log: Path) -> int:
    return len(log.read_text().splitlines()) if log.exists() else 0


def clean_run(tmp_path: Path, raw: dict) -> dict:
    root = tmp_path / "clean"
    grid = parse_grid(copy.deepcopy(raw))
    run_local(grid, root, quiet=True)
    return metrics_by_cell(root, grid)


def reported_values(root: Path, grid) -> set:
    df = report.load_rows(root, grid)
    return set(df[df["metric"] == "test-counted-mse"]["value"])


# --------------------------------------------------------------------------- crashes at every write

def test_a_crash_at_every_write_point_leaves_a_root_that_reruns_to_the_clean_rows(setup, monkeypatch):
    tmp_path, log, weights = setup
    raw = make_grid(log, weights)
    clean = clean_run(tmp_path, raw)
    import bench.store as store

    real = store._atomic
    writes = {"n": 0}

    def counting(path, write):
        writes["n"] += 1
        return real(path, write)

    monkeypatch.setattr(store, "_atomic", counting)
    run_local(parse_grid(copy.deepcopy(raw)), tmp_path / "count", quiet=True)
    total = writes["n"]
    assert total >= 6  # grid copy, teachers, fit state + record, rows

    class Killed(BaseException):
        pass

    for k in range(1, total + 1):
        root = tmp_path / f"crash{k}"
        calls = {"n": 0}

        def crashing(path, write, k=k):
            calls["n"] += 1
            if calls["n"] == k:  # die with the temporary written but not yet renamed
                tmp = Path(path).parent / f".{Path(path).name}.{store.HOST}.999999.dead.tmp"
                tmp.parent.mkdir(parents=True, exist_ok=True)
                with open(tmp, "wb") as f:
                    write(f)
                raise Killed()
            return real(path, write)

        monkeypatch.setattr(store, "_atomic", crashing)
        with pytest.raises(Killed):
            run_local(parse_grid(copy.deepcopy(raw)), root, quiet=True)
        monkeypatch.setattr(store, "_atomic", real)
        grid = parse_grid(copy.deepcopy(raw))
        run_local(grid, root, quiet=True)
        assert metrics_by_cell(root, grid) == clean, f"crash at write {k}"
        assert not list(ResultsRoot(root).rows_dir(grid.name).glob(".*.tmp"))  # a dead writer's temporary is gone


# --------------------------------------------------------------------------- corrupt artifacts

CORRUPTIONS = {"truncated": lambda b: b[: len(b) // 2], "garbage": lambda b: b"\x00\xffnot json at all",
               "empty object": lambda b: b"{}", "edited": lambda b: b.replace(b'"nfe": 3', b'"nfe": 30')}


@pytest.mark.parametrize("how", sorted(CORRUPTIONS))
def test_a_corrupt_row_is_quarantined_and_recomputed(setup, how):
    tmp_path, log, weights = setup
    raw = make_grid(log, weights)
    root = tmp_path / "r"
    grid = parse_grid(copy.deepcopy(raw))
    run_local(grid, root, quiet=True)
    clean = metrics_by_cell(root, grid)
    victim = next(c for c in grid.cells if c.nfe == 3)
    path = ResultsRoot(root).row_path(grid.name, victim.hash)
    path.write_bytes(CORRUPTIONS[how](path.read_bytes()))
    before = computed(log)

    from bench.status import sweep_status

    assert sweep_status(grid, root).counts()["done"] == len(grid.cells) - 1  # status does not count it
    assert len(report.load_rows(root, grid)["method"]) > 0  # report skips it with a warning, no traceback

    run_local(parse_grid(copy.deepcopy(raw)), root, quiet=True)
    assert computed(log) == before + 1
    assert metrics_by_cell(root, grid) == clean
    assert list((root / "quarantine").rglob(f"{victim.hash}.json.*"))


@pytest.mark.parametrize("artifact", ["fit.json", "state.pt", "checkpoint.pt", "teacher"])
def test_a_corrupt_cache_artifact_is_quarantined_and_recomputed(setup, artifact):
    tmp_path, log, weights = setup
    raw = make_grid(log, weights)
    clean = clean_run(tmp_path, raw)
    root = tmp_path / "r"
    grid = parse_grid(copy.deepcopy(raw))
    run_local(grid, root, quiet=True)
    results = ResultsRoot(root)
    fitted = [c for c in grid.cells if c.needs_fit]
    if artifact == "teacher":
        targets = list((root / "cache" / "teachers").glob("*.pt"))
    elif artifact == "checkpoint.pt":
        targets = [results.fit_dir(c.fit_hash) / "checkpoint.pt" for c in fitted]
        for c in fitted:  # an interrupted fit leaves a checkpoint and no fit.json
            (results.fit_dir(c.fit_hash) / "fit.json").unlink()
    else:
        targets = [results.fit_dir(c.fit_hash) / artifact for c in fitted]
    for path in targets:
        path.write_bytes(b"\x80garbage")
    for c in grid.cells:  # force recomputation of every row so that the artifacts are read again
        results.row_path(grid.name, c.hash).unlink()
    run_local(parse_grid(copy.deepcopy(raw)), root, quiet=True)
    assert metrics_by_cell(root, grid) == clean
    assert list((root / "quarantine").rglob("*")), "the corrupt artifact is kept for inspection"


# --------------------------------------------------------------------------- changes re-key what they change

def test_changes_recompute_exactly_what_they_touch_and_report_shows_current_values(setup):
    tmp_path, log, weights = setup
    root = tmp_path / "r"
    raw = make_grid(log, weights)
    n_cells = len(parse_grid(copy.deepcopy(raw)).cells)

    def run(raw) -> tuple:
        grid = parse_grid(copy.deepcopy(raw))
        before = computed(log)
        run_local(grid, root, quiet=True)
        return grid, computed(log) - before

    grid, n = run(raw)
    assert n == n_cells
    assert run(raw)[1] == 0  # nothing changed: nothing recomputed

    # a teacher field: every cell depends on the teacher
    raw["teacher"]["steps"] = 14
    grid, n = run(raw)
    assert n == n_cells
    assert reported_values(root, grid) == set(clean_run(tmp_path / "t1", raw)[c.hash]["test-counted-mse"]
                                              for c in grid.cells)

    # a method parameter: only that method's cells
    raw["methods"][2] = {"name": "test-steps", "steps": 3}
    grid, n = run(raw)
    assert n == 2

    # a code default of a plugin (its version and default change): only its cells
    from tests.plugins.store_plugins import Versioned

    old_version, old_params = Versioned.version, Versioned.Params
    try:
        Versioned.version = old_version + 1
        grid, n = run(raw)
        assert n == 2
        df = report.load_rows(root, grid)
        assert len(df[df["metric"] == "test-counted-mse"]) == n_cells  # old-version rows are not tabled
    finally:
        Versioned.version, Versioned.Params = old_version, old_params

    # the bytes of a checkpoint file (same path): every cell, and its teacher sets
    teachers = set((root / "cache" / "teachers").glob("*.pt"))
    time.sleep(0.01)
    weights.write_bytes(b"weights v2, same path")
    grid, n = run(raw)
    assert n == n_cells
    assert set((root / "cache" / "teachers").glob("*.pt")) - teachers

    # gc lists the rows and fits of the older keys and removes them
    from bench.gc import collect, remove

    garbage = collect(grid, root)
    assert garbage.rows and garbage.fits
    remove(garbage, root)
    assert {p.stem for p in ResultsRoot(root).rows_dir(grid.name).glob("*.json")} == {c.hash for c in grid.cells}


def test_a_failing_cell_does_not_stop_the_sweep(setup, tmp_path):
    _, log, weights = setup
    raw = make_grid(log, weights, methods=["test-raises", "uniform"])
    grid = parse_grid(copy.deepcopy(raw))
    root = tmp_path / "r"
    with pytest.raises(SweepFailed, match="2 of 4"):
        run_local(grid, root, quiet=True)
    done = [c for c in grid.cells if ResultsRoot(root).row_path(grid.name, c.hash).exists()]
    assert {c.method["name"] for c in done} == {"uniform"} and len(done) == 2

    from bench.status import sweep_status

    status = sweep_status(grid, root)
    assert status.counts()["failed"] == len(grid.cells) // 2
    assert all(i.error for i in status.cells if i.state == "failed")


def test_files_follow_the_umask(setup, monkeypatch):
    import bench.store as store

    tmp_path, log, weights = setup
    old = os.umask(0o002)
    try:
        # the umask bench.store read at import, as a process started under 0o002 reads it (no reload:
        # reloading the module would give its exception classes new identities mid-suite)
        monkeypatch.setattr(store, "UMASK", store._umask())
        path = store.atomic_write_json(tmp_path / "x.json", {"a": 1})
        assert path.stat().st_mode & 0o777 == 0o664
    finally:
        os.umask(old)


# --------------------------------------------------------------------------- processes (slow)

def _run_in_process(raw: dict, root: str) -> None:
    from bench.grid import parse_grid as parse
    from bench.launch import run_local as run

    from tests.plugins import store_plugins  # noqa: F401

    run(parse(raw), root, quiet=True)


@pytest.mark.slow
def test_concurrent_runs_compute_each_cell_once(setup):
    tmp_path, log, weights = setup
    raw = make_grid(log, weights, nfe=[3, 4, 5, 6, 7, 8])
    clean = clean_run(tmp_path, raw)
    log.unlink()
    root = str(tmp_path / "shared")
    ctx = multiprocessing.get_context("spawn")
    first = [ctx.Process(target=_run_in_process, args=(raw, root)) for _ in range(2)]
    for p in first:
        p.start()
    time.sleep(1.0)
    third = ctx.Process(target=_run_in_process, args=(raw, root))
    third.start()
    for p in [*first, third]:
        p.join(300)
        assert p.exitcode == 0
    grid = parse_grid(copy.deepcopy(raw))
    assert computed(log) == len(grid.cells)
    assert metrics_by_cell(Path(root), grid) == clean


@pytest.mark.slow
def test_sigkill_of_a_two_worker_run_then_rerun(setup):
    tmp_path, log, weights = setup
    raw = make_grid(log, weights, nfe=[3, 4, 5, 6, 7, 8], launch={"jobs": 2})
    clean = clean_run(tmp_path, raw)
    grid_file = tmp_path / "g.yaml"
    import yaml

    grid_file.write_text(yaml.safe_dump(raw))
    root = tmp_path / "killed"
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
           "OMP_NUM_THREADS": "1"}
    code = ("import sys; from tests.plugins import store_plugins; from bench.__main__ import main; "
            f"sys.exit(main(['run', '--grid', {str(grid_file)!r}, '--results', {str(root)!r}, '--quiet']))")
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, env=env, start_new_session=False)
    rows = ResultsRoot(root).rows_dir("faults")
    deadline = time.time() + 120
    while time.time() < deadline and len(list(rows.glob("*.json"))) < 2:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    time.sleep(2.0)  # the workers notice that their parent is gone
    count = computed(log)
    time.sleep(2.0)
    assert computed(log) == count, "workers went on computing after their parent was killed"
    grid = parse_grid(copy.deepcopy(raw))
    run_local(grid, root, quiet=True)
    assert metrics_by_cell(root, grid) == clean
