"""The silent failures of issue 26, each reproduced (by fault injection where it is a fault): files
copied under another key, a full disk, a file where a lock folder belongs, exclude rules and axes
that list what the grid does not have, and messages that leak internals. Every case must end in
one line (exit 2) or in a quarantine and a recomputation whose rows equal a clean run's."""
from __future__ import annotations

import copy
import errno
import shutil
from pathlib import Path

import pytest
import torch
import yaml

from bench.__main__ import main
from bench.errors import GridError, UserError
from bench.grid import parse_grid
from bench.launch import run_local
from bench.rows import read_row
from bench.store import CorruptArtifact, HOST, ResultsRoot, verify_key

from ..plugins import store_plugins  # noqa: F401  (registers the test plugins)
from .test_store_faults import clean_run, computed, make_grid, metrics_by_cell


@pytest.fixture
def setup(tmp_path):
    weights = tmp_path / "weights.bin"
    weights.write_bytes(b"weights v1")
    return tmp_path, tmp_path / "computed.log", weights


def tiny(**changes) -> dict:
    grid = {
        "name": "tiny",
        "models": [{"name": "toy2d", "time": "flow"}],
        "solvers": ["euler"],
        "nfe": [3, 4],
        "methods": ["uniform", "edm"],
        "metrics": ["mse"],
        "teacher": {"solver": "euler", "steps": 10, "method": "uniform", "dtype": "float64"},
        "samples": {"train": 16, "eval": 16, "batch": 16},
    }
    grid.update(changes)
    return grid


def write_grid(path: Path, grid: dict) -> Path:
    path.write_text(yaml.safe_dump(grid))
    return path


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith("bench: error: ") and "Traceback" not in err[0]
    return err[0]


# --------------------------------------------------------------------------- 1. a row under another cell's name

def test_a_row_file_holding_another_cells_row_is_quarantined_and_recomputed(setup):
    tmp_path, log, weights = setup
    raw = make_grid(log, weights)
    clean = clean_run(tmp_path, raw)
    root = tmp_path / "r"
    grid = parse_grid(copy.deepcopy(raw))
    run_local(grid, root, quiet=True)
    results = ResultsRoot(root)
    a, b = grid.cells[0], grid.cells[1]
    shutil.copy(results.row_path(grid.name, a.hash), results.row_path(grid.name, b.hash))  # cp rows/A rows/B

    with pytest.raises(CorruptArtifact, match="belongs to key"):
        read_row(results.row_path(grid.name, b.hash))
    from bench.status import sweep_status

    assert sum(1 for i in sweep_status(grid, root).cells if i.state == "done") == len(grid.cells) - 1
    before = computed(log)
    run_local(parse_grid(copy.deepcopy(raw)), root, quiet=True)
    assert computed(log) == before + 1  # B, and only B, recomputed
    assert metrics_by_cell(root, grid) == clean
    assert list((root / "quarantine").rglob(f"{b.hash}.json.*"))


# --------------------------------------------------------------------------- 2. a fit folder holding another fit

def test_a_fit_folder_holding_another_fit_is_quarantined_and_refitted(setup):
    tmp_path, log, weights = setup
    # two fits of the same number of steps, whose fitted schedules differ
    raw = make_grid(log, weights, nfe=[4], methods=[{"name": "test-steps", "rho0": 1.0},
                                                    {"name": "test-steps", "rho0": 3.0}])
    clean = clean_run(tmp_path, raw)
    root = tmp_path / "r"
    grid = parse_grid(copy.deepcopy(raw))
    run_local(grid, root, quiet=True)
    results = ResultsRoot(root)
    victim, other = grid.cells
    assert victim.fit_hash != other.fit_hash
    shutil.rmtree(results.fit_dir(victim.fit_hash))
    shutil.copytree(results.fit_dir(other.fit_hash), results.fit_dir(victim.fit_hash))
    results.row_path(grid.name, victim.hash).unlink()

    run_local(parse_grid(copy.deepcopy(raw)), root, quiet=True)
    assert metrics_by_cell(root, grid) == clean  # refitted, not the other fit's schedule
    assert list((root / "quarantine" / "cache" / "fits").glob(f"{victim.fit_hash}.*"))
    assert read_row(results.row_path(grid.name, victim.hash))["fit"]["cached"] is False


def test_a_checkpoint_of_another_fit_is_not_resumed(tmp_path):
    from bench.discretization import FitContext

    quarantined = []
    a, b = tmp_path / "fit-a", tmp_path / "fit-b"
    FitContext(model=None, schedule=None, solver=None, nfe=3, steps=3, teacher=None, generator=torch.Generator(),
               artifact_dir=a).save_checkpoint({"step": 2})
    b.mkdir()
    shutil.copy(a / "checkpoint.pt", b / "checkpoint.pt")
    ctx = FitContext(model=None, schedule=None, solver=None, nfe=3, steps=3, teacher=None,
                     generator=torch.Generator(), artifact_dir=b,
                     quarantine=lambda path, reason: quarantined.append(reason))
    assert ctx.load_checkpoint() is None
    assert "belongs to key" in quarantined[0]


def test_a_teacher_set_under_another_key_is_quarantined_and_recomputed(setup):
    tmp_path, log, weights = setup
    raw = make_grid(log, weights, nfe=[3], methods=["uniform"], seeds=[0, 1])
    clean = clean_run(tmp_path, raw)
    root = tmp_path / "r"
    grid = parse_grid(copy.deepcopy(raw))
    run_local(grid, root, quiet=True)
    teachers = sorted((root / "cache" / "teachers").glob("*.pt"))
    assert len(teachers) == 2
    shutil.copy(teachers[0], teachers[1])  # one seed's endpoints under the other seed's key
    for cell in grid.cells:
        ResultsRoot(root).row_path(grid.name, cell.hash).unlink()
    run_local(parse_grid(copy.deepcopy(raw)), root, quiet=True)
    assert metrics_by_cell(root, grid) == clean
    assert list((root / "quarantine" / "cache" / "teachers").glob(f"{teachers[1].name}.*"))


def test_an_fid_reference_under_another_name_is_refused_and_set_aside(tmp_path):
    import numpy as np

    from bench.metrics import fid_references as fid
    from bench.metrics.inception import MODE

    refs = tmp_path / "cache" / "fid-refs"
    meta = {"dataset": "cifar10", "resolution": [32, 32], "weights_sha256": "ab" * 32, "mode": MODE}
    source = fid.save_reference(fid.reference_path(refs, "cifar10", (32, 32), "inception-" + "ab" * 6),
                                np.random.default_rng(0).normal(size=(4, 3)), meta)
    fid.load_reference(source)  # its own name: fine
    swapped = fid.reference_path(refs, "digits", (32, 32), "inception-" + "ab" * 6)
    shutil.copy(source, swapped)
    with pytest.raises(UserError, match="belongs to key"):
        fid.load_reference(swapped)
    assert not swapped.exists() and list((tmp_path / "quarantine").rglob(f"{swapped.name}.*"))


def test_verify_key_is_the_hook_for_every_keyed_artifact(tmp_path):
    key = {"cell": "abc", "n": 3}
    verify_key(tmp_path / "x", key, dict(key))
    with pytest.raises(CorruptArtifact, match="belongs to key"):
        verify_key(tmp_path / "x", key, {**key, "n": 4})
    with pytest.raises(CorruptArtifact, match="carries no key"):
        verify_key(tmp_path / "x", key, None)


# --------------------------------------------------------------------------- 3. a full disk mid-sweep

def test_a_full_disk_mid_sweep_is_one_line_and_the_rows_before_it_stay(setup, monkeypatch, capsys):
    tmp_path, log, weights = setup
    raw = make_grid(log, weights, methods=["uniform", "test-versioned", "edm"])
    clean = clean_run(tmp_path, raw)
    path = write_grid(tmp_path / "faults.yaml", raw)
    root = tmp_path / "full"
    import bench.store as store

    real = store._atomic
    rows_written = {"n": 0}

    def disk_fills_after_two_rows(target, write):
        if rows_written["n"] >= 2:  # no space left: the temporary is begun, then the write fails
            def failing(f):
                f.write(b"{")
                raise OSError(errno.ENOSPC, "No space left on device")
            return real(target, failing)
        if Path(target).parent.name == "rows":
            rows_written["n"] += 1
        return real(target, write)

    monkeypatch.setattr(store, "_atomic", disk_fills_after_two_rows)
    assert main(["run", "--grid", str(path), "--results", str(root), "--quiet"]) == 2
    line = one_error_line(capsys)
    assert f"results root {root} is full: " in line and "bytes free; rows written so far are kept" in line
    rows = {p: p.read_bytes() for p in ResultsRoot(root).rows_dir("faults").glob("*.json")}
    assert len(rows) == 2
    assert not list(root.rglob(".*.tmp"))  # the failed writes left no temporaries

    assert main(["run", "--grid", str(path), "--results", str(root), "--quiet"]) == 2  # still full: at once
    assert "is full" in one_error_line(capsys)

    monkeypatch.setattr(store, "_atomic", real)  # space is freed
    assert main(["run", "--grid", str(path), "--results", str(root), "--quiet"]) == 0
    grid = parse_grid(copy.deepcopy(raw))
    assert metrics_by_cell(root, grid) == clean
    for p, data in rows.items():
        assert p.read_bytes() == data  # the rows written before the fault were kept as they were


def test_oserror_from_the_results_root_maps_to_one_line(tmp_path):
    from bench.store import is_root_fault, root_error

    err = OSError(errno.EACCES, "Permission denied", str(tmp_path / "toy" / "rows" / "x.json"))
    assert is_root_fault(err, tmp_path)
    assert not is_root_fault(OSError(errno.EACCES, "Permission denied", "/elsewhere/weights.pt"), tmp_path)
    message = str(root_error(err, tmp_path))
    assert "\n" not in message and "x.json" in message and "Permission denied" in message


# --------------------------------------------------------------------------- 4. an exclude rule that matches nothing

@pytest.mark.parametrize("rule,message", [
    ({"method": "unifrom"}, "grid.exclude[0].method: 'unifrom' is not a value of the grid's method axis (edm, uniform)"),
    ({"nfe": 7}, "grid.exclude[0].nfe: 7 is not a value of the grid's nfe axis (3, 4)"),
    ({"method": ["edm", "oss"], "nfe": 3}, "'oss' is not a value of the grid's method axis"),
    ({"solver": {"name": "euler", "order": 2}}, "is not a value of the grid's solver axis"),
    ({"seed": 1}, "grid.exclude[0].seed: 1 is not a value of the grid's seed axis (0)"),
])
def test_an_exclude_value_that_no_entry_has_is_an_error(rule, message):
    with pytest.raises(GridError) as err:
        parse_grid(tiny(exclude=[rule]))
    assert message in str(err.value)


def test_an_exclude_rule_with_known_values_still_drops_its_cells():
    grid = parse_grid(tiny(exclude=[{"method": "edm", "nfe": 3}]))
    assert len(grid.cells) == 3


# --------------------------------------------------------------------------- 5. --results ""

@pytest.mark.parametrize("command", ["run", "status", "report", "gc"])
def test_an_empty_results_root_is_refused(tmp_path, monkeypatch, capsys, command):
    path = write_grid(tmp_path / "tiny.yaml", tiny())
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)
    assert main([command, "--grid", str(path), "--results", ""]) == 2
    assert "--results is empty" in one_error_line(capsys)
    assert not list(work.iterdir())  # nothing written into the current folder


# --------------------------------------------------------------------------- 6. --digits < 1

@pytest.mark.parametrize("digits", ["-3", "0"])
def test_report_digits_below_one_is_one_line(tmp_path, capsys, digits):
    assert main(["report", "--results", str(tmp_path), "--digits", digits, "--no-plots"]) == 2
    assert "--digits must be an integer >= 1" in one_error_line(capsys)


# --------------------------------------------------------------------------- 7. an unreadable grid file

def test_an_unreadable_grid_file_is_one_line(tmp_path, monkeypatch, capsys):
    path = write_grid(tmp_path / "tiny.yaml", tiny())
    real = Path.read_text

    def denied(self, *args, **kwargs):  # what a file without read permission gives a non-root user
        if self == path:
            raise PermissionError(errno.EACCES, "Permission denied", str(self))
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Path, "read_text", denied)
    assert main(["run", "--grid", str(path), "--results", str(tmp_path / "r")]) == 2
    line = one_error_line(capsys)
    assert f"cannot read {path} (Permission denied)" in line and "chmod" in line
    assert not (tmp_path / "r").exists()


# --------------------------------------------------------------------------- 8. duplicates

@pytest.mark.parametrize("changes,message", [
    ({"nfe": [3, 4, 3]}, "grid.nfe lists 3 twice (entries 0 and 2)"),
    ({"seeds": [0, 0]}, "grid.seeds lists 0 twice"),
    ({"methods": ["uniform", {"name": "uniform"}]}, "grid.methods lists 'uniform' twice"),
    ({"methods": [{"name": "edm", "label": "a"}, {"name": "edm", "label": "b"}]}, "labels aside"),
    ({"metrics": ["mse", "mse"]}, "grid.metrics lists 'mse' twice"),
    ({"solvers": ["euler", "euler"]}, "grid.solvers lists 'euler' twice"),
])
def test_an_axis_listing_one_entry_twice_is_refused(changes, message):
    with pytest.raises(GridError) as err:
        parse_grid(tiny(**changes))
    assert message in str(err.value) and "keep one" in str(err.value)


def test_two_spellings_of_one_entry_stay_two_cells():
    grid = parse_grid(tiny(methods=["edm", {"name": "edm", "rho": 7.0}], nfe=[3]))
    assert len({c.hash for c in grid.cells}) == 2


# --------------------------------------------------------------------------- 9. batch larger than train

@pytest.mark.parametrize("method", [
    {"name": "ld3", "train": 4, "val": 4, "batch": 9, "rounds1": 1, "rounds2": 1, "loss": "l2", "bound": 20.0},
    {"name": "indis", "iterations": 2, "val": 4, "val_every": 2, "batch": 9, "train": 4},
])
def test_a_learned_batch_larger_than_train_records_the_batch_that_ran(tmp_path, method):
    grid = parse_grid(tiny(nfe=[3], methods=[method]))
    run_local(grid, tmp_path, quiet=True)
    row = read_row(ResultsRoot(tmp_path).row_path(grid.name, grid.cells[0].hash))
    assert row["method"]["batch"] == 9  # as asked
    assert row["fit"]["batch"] == 4 and row["fit"]["train_size"] == 4  # as it ran


# --------------------------------------------------------------------------- 10. leftovers after kills

def test_gc_lists_and_removes_temporaries_and_orphaned_checkpoints(tmp_path, capsys):
    raw = tiny(nfe=[3], methods=["uniform", {"name": "test-steps"}])
    path = write_grid(tmp_path / "tiny.yaml", raw)
    root = tmp_path / "r"
    assert main(["run", "--grid", str(path), "--results", str(root), "--quiet"]) == 0
    grid = parse_grid(copy.deepcopy(raw))
    fit_dir = ResultsRoot(root).fit_dir(grid.cells[1].fit_hash)
    dead = f"{HOST}.999999.dead.tmp"  # a writer killed mid-write (pid 999999 is not running)
    leftovers = [root / "cache" / "teachers" / f".abc.pt.{dead}", fit_dir / f".state.pt.{dead}",
                 root / "cache" / "fits" / f".x.{dead}", root / "tiny" / "samples" / f".a.png.{dead}"]
    for p in leftovers:
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"partial")
    live = root / "cache" / "teachers" / ".live.pt.otherhost.1.x.tmp"  # another host's writer may be alive
    live.write_bytes(b"partial")
    checkpoint = fit_dir / "checkpoint.pt"  # a fit killed after it finished, before removing its checkpoint
    checkpoint.write_bytes(b"state")

    assert main(["gc", "--grid", str(path), "--results", str(root)]) == 0
    out = capsys.readouterr().out
    assert "4 temporaries, 1 checkpoints of finished fits" in out
    for p in [*leftovers, checkpoint]:
        assert str(p) in out and p.exists()
    assert str(live) not in out
    assert main(["gc", "--grid", str(path), "--results", str(root), "--delete"]) == 0
    assert not any(p.exists() for p in [*leftovers, checkpoint]) and live.exists()
    assert (fit_dir / "fit.json").exists() and (fit_dir / "state.pt").exists()


def test_a_run_removes_dead_writers_leftovers_anywhere_under_the_root(tmp_path):
    raw = tiny(nfe=[3], methods=[{"name": "test-steps"}])
    root = tmp_path / "r"
    run_local(parse_grid(copy.deepcopy(raw)), root, quiet=True)
    grid = parse_grid(copy.deepcopy(raw))
    fit_dir = ResultsRoot(root).fit_dir(grid.cells[0].fit_hash)
    leftovers = [root / "cache" / "teachers" / f".abc.pt.{HOST}.999999.dead.tmp", fit_dir / "checkpoint.pt"]
    for p in leftovers:
        p.write_bytes(b"partial")
    run_local(grid, root, quiet=True)
    assert not any(p.exists() for p in leftovers)


# --------------------------------------------------------------------------- 11. a file where a lock folder belongs

def test_a_file_where_a_lock_folder_belongs_is_one_line(tmp_path, capsys):
    path = write_grid(tmp_path / "tiny.yaml", tiny())
    root = tmp_path / "r"
    blocker = root / "locks" / "cells-tiny"
    blocker.parent.mkdir(parents=True)
    blocker.write_text("")
    assert main(["run", "--grid", str(path), "--results", str(root), "--quiet"]) == 2
    line = one_error_line(capsys)
    assert f"{blocker} is a file where bench keeps a folder; remove it (`rm {blocker}`)" in line
    assert not list((root / "tiny" / "jobs").rglob("*"))  # no cell recorded as failed
    blocker.unlink()
    assert main(["run", "--grid", str(path), "--results", str(root), "--quiet"]) == 0


# --------------------------------------------------------------------------- 12. messages without internals

@pytest.mark.parametrize("time", ["bad", 3, [1]])
def test_an_invalid_toy2d_time_names_the_forms_it_takes(time):
    with pytest.raises(GridError) as err:
        parse_grid(tiny(models=[{"name": "toy2d", "time": time}]))
    text = str(err.value)
    assert f"time must be ve, flow or {{name: flow, shift: s}}, got {time!r}" in text
    assert "literal" not in text and "dict[" not in text


def test_a_union_parameter_without_a_custom_message_names_its_forms():
    from typing import Literal

    from bench.params import Params, validate

    class Union(Params):
        x: Literal["a", "b"] | int = 1

    with pytest.raises(UserError) as err:
        validate(Union, {"x": "c"}, "plugin 'u'")
    assert str(err.value) == "plugin 'u': x must be one of a, b or an integer, got 'c'"


def test_a_garbage_teacher_file_is_quarantined_with_a_plain_reason(setup, capsys):
    tmp_path, log, weights = setup
    raw = make_grid(log, weights, nfe=[3], methods=["uniform"])
    root = tmp_path / "r"
    grid = parse_grid(copy.deepcopy(raw))
    run_local(grid, root, quiet=True)
    teacher = next((root / "cache" / "teachers").glob("*.pt"))
    teacher.write_bytes(b"\x80\x03garbage that is no torch file")
    ResultsRoot(root).row_path(grid.name, grid.cells[0].hash).unlink()
    capsys.readouterr()
    run_local(parse_grid(copy.deepcopy(raw)), root, quiet=True)
    err = capsys.readouterr().err
    assert "is corrupt (not a torch file written by bench" in err
    assert "Weights only" not in err and "weights_only" not in err
    assert ResultsRoot(root).row_done(grid.cells[0])


def test_a_sample_preview_of_another_cell_is_left_out_of_the_panels(tmp_path, monkeypatch):
    from bench import figures
    from bench.report_files import print_and_write_report

    grid = parse_grid({
        "name": "pv", "models": ["digits"], "solvers": ["euler"], "nfe": [3], "methods": ["uniform", "edm"],
        "metrics": ["mse"], "teacher": {"solver": "euler", "steps": 8, "method": "edm"},
        "samples": {"train": 8, "eval": 16, "batch": 16},
    })
    run_local(grid, tmp_path, quiet=True)
    a, b = grid.cells
    results = ResultsRoot(tmp_path)
    shutil.copy(results.preview_path("pv", a.hash), results.preview_path("pv", b.hash))
    seen = {}
    monkeypatch.setattr(figures, "sample_panel", lambda rows, previews, out, **kw: seen.update(previews) or [])
    print_and_write_report(tmp_path, grid, "text")
    assert set(seen) == {a.hash}  # b's file holds a's samples: no panel entry rather than a wrong one


def test_export_does_not_take_another_cells_row(tmp_path, capsys):
    """`bench export` reads rows through `read_row`: a row copied under another cell's name is named on
    stderr and not exported as that cell's schedule."""
    from bench.export import export_grid

    grid = parse_grid(tiny(methods=["uniform"]))
    root = tmp_path / "r"
    run_local(grid, root, quiet=True)
    results = ResultsRoot(root)
    a, b = grid.cells[0], grid.cells[1]
    shutil.copy(results.row_path(grid.name, a.hash), results.row_path(grid.name, b.hash))
    path = write_grid(tmp_path / "g.yaml", tiny(methods=["uniform"]))
    export_grid(path, root, tmp_path / "out")
    err = capsys.readouterr().err
    assert f"not exporting {results.row_path(grid.name, b.hash)}" in err and "belongs to key" in err
