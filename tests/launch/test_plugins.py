"""Third-party plugins: entry-point groups for every kind, and a grid's `plugins:` list reaching the
parent, `--jobs N` worker processes and the commands that read the grid (`report`)."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from bench.__main__ import main
from bench.errors import GridError
from bench.grid import parse_grid
from bench.launch import plugin_modules
from bench.registry import ENTRY_POINT_GROUPS, METHODS, METRICS, MODELS, SCHEDULES, SOLVERS, Registry

REPO = Path(__file__).resolve().parents[2]

# Written by the tests into tmp_path: a method AND a solver, registered on import. Each records the
# process it ran in, so a test can tell that worker processes (not the parent) used them.
PLUGIN = '''
"""A third-party plugin module outside bench's packages: a method and a solver."""
import os

import torch

from bench.discretization import HeuristicMethod
from bench.registry import METHODS, SOLVERS
from bench.solvers.euler import Euler

PIDS = os.environ.get("BENCH_TEST_PIDS")


def _note(what):
    if PIDS:
        with open(PIDS, "a") as f:
            f.write(f"{what} {os.getpid()}\\n")


@METHODS.register("{prefix}-halfway")
class Halfway(HeuristicMethod):
    """Uniform in t, then each inner node moved a quarter step towards t_max."""

    def timesteps(self):
        _note("method")
        s = self.noise_schedule
        t = torch.linspace(s.t_max, s.t_min, self.steps + 1, dtype=torch.float64)
        h = (s.t_max - s.t_min) / self.steps
        t[1:-1] += h / 4
        return t


@SOLVERS.register("{prefix}-euler")
class PluginEuler(Euler):
    """Euler under another name, defined outside bench/solvers/."""

    def step(self, state, n, disc, denoise):
        if n == 0:
            _note("solver")
        return super().step(state, n, disc, denoise)
'''


# A listed module that registers nothing the cells use: only the `plugins:` list brings it to a worker.
EXTRA = """
import os

if os.environ.get("BENCH_TEST_PIDS"):
    with open(os.environ["BENCH_TEST_PIDS"], "a") as f:
        f.write(f"extra {os.getpid()}\\n")
"""


def write_plugin(folder: Path, module: str) -> str:
    prefix = module.replace("_", "-")
    (folder / f"{module}.py").write_text(textwrap.dedent(PLUGIN).replace("{prefix}", prefix))
    return prefix


def test_every_registry_kind_has_an_entry_point_group():
    assert {r.kind: r.entry_point_group for r in (METHODS, SOLVERS, MODELS, METRICS, SCHEDULES)} == ENTRY_POINT_GROUPS
    assert set(ENTRY_POINT_GROUPS.values()) == {"bench.methods", "bench.solvers", "bench.models", "bench.metrics",
                                                "bench.schedules"}


def test_a_solver_entry_point_of_an_installed_distribution_registers(tmp_path, monkeypatch):
    """A real (dist-info) distribution on sys.path declaring a `bench.solvers` entry point."""
    module = "ep_solver_plugin"
    prefix = write_plugin(tmp_path, module)
    dist = tmp_path / "ep_solver_plugin-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: ep-solver-plugin\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(f"[bench.solvers]\nmine = {module}\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    registry = Registry("solver", entry_point_group="bench.solvers")
    registry.names()  # loads the entry point: the module registers into bench's SOLVERS
    assert f"{prefix}-euler" in SOLVERS.names()
    assert module in sys.modules


def test_a_broken_entry_point_is_one_line_naming_it(tmp_path, monkeypatch):
    dist = tmp_path / "broken_plugin-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-plugin\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[bench.metrics]\nbroken = no_such_module_xyz\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    registry = Registry("metric", entry_point_group="bench.metrics")
    with pytest.raises(Exception, match=r"entry point broken = 'no_such_module_xyz' of group 'bench.metrics'"):
        registry.names()


def test_grid_plugins_are_imported_before_names_resolve(tiny_grid, tmp_path, monkeypatch):
    module = "grid_plugin_a"
    prefix = write_plugin(tmp_path, module)
    monkeypatch.syspath_prepend(str(tmp_path))
    tiny_grid.update(plugins=[module], methods=[f"{prefix}-halfway", "uniform"], solvers=[f"{prefix}-euler"])
    grid = parse_grid(tiny_grid)
    assert all(cell.plugins == (module,) for cell in grid.cells)
    # workers get the module with the folder it was found in
    assert (module, str(tmp_path.resolve())) in plugin_modules(grid.cells)


@pytest.mark.parametrize("plugins, match", [
    (["no_such_plugin_module_q"], r"grid\.plugins\[0\]: no module named 'no_such_plugin_module_q'"),
    ("not a module", r"grid\.plugins\[0\] must be an importable module name"),
    ({"a": 1}, r"grid\.plugins must be a list of module names"),
])
def test_bad_plugins_entry_is_one_grid_error(tiny_grid, plugins, match):
    tiny_grid["plugins"] = plugins
    with pytest.raises(GridError, match=match):
        parse_grid(tiny_grid)


def test_a_plugin_that_raises_on_import_is_named(tiny_grid, tmp_path, monkeypatch):
    (tmp_path / "raising_plugin_q.py").write_text("import no_such_dependency_q\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    tiny_grid["plugins"] = ["raising_plugin_q"]
    with pytest.raises(GridError, match=r"grid\.plugins\[0\]: importing 'raising_plugin_q' failed: .*no_such_dependency_q"):
        parse_grid(tiny_grid)


def test_a_plugin_reusing_a_built_in_name_is_named(tiny_grid, tmp_path, monkeypatch):
    (tmp_path / "clashing_plugin_q.py").write_text(
        "from bench.registry import METHODS\n\n\n@METHODS.register('edm')\nclass Mine:\n    pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    tiny_grid["plugins"] = ["clashing_plugin_q"]
    with pytest.raises(GridError, match=r"grid\.plugins\[0\]: importing 'clashing_plugin_q' raised ValueError: "
                                        r"method 'edm' is registered twice"):
        parse_grid(tiny_grid)
    assert METHODS.get("edm").__module__ == "bench.baselines.edm"


def test_unknown_plugin_module_in_the_cli_is_one_line(tiny_grid, tmp_path, capsys):
    tiny_grid["plugins"] = ["no_such_plugin_module_q"]
    path = tmp_path / "g.yaml"
    path.write_text(yaml.safe_dump(tiny_grid))
    assert main(["run", "--grid", str(path), "--results", str(tmp_path / "r"), "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("bench: error: grid.plugins[0]: no module named")


def _bench(args, env, cwd=REPO):
    return subprocess.run([sys.executable, "-m", "bench", *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=600)


@pytest.mark.slow
def test_plugin_module_reaches_two_worker_processes_and_report(tiny_grid, tmp_path):
    """A method and a solver defined in a module outside bench, listed in `plugins:`: a `--jobs 2` run
    computes every cell in worker processes, and a fresh `report` process reads the grid."""
    module = "grid_plugin_jobs"
    plugin_dir = tmp_path / "plugins"
    plugin_dir.mkdir()
    prefix = write_plugin(plugin_dir, module)
    (plugin_dir / "grid_plugin_extra.py").write_text(EXTRA)
    tiny_grid.update(plugins=[module, "grid_plugin_extra"], methods=[f"{prefix}-halfway", "uniform"], solvers=[f"{prefix}-euler"],
                     nfe=[3, 4])
    grid_path = tmp_path / "tiny.yaml"
    grid_path.write_text(yaml.safe_dump(tiny_grid))
    pids = tmp_path / "pids.txt"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "BENCH_TEST_PIDS": str(pids),
           "PYTHONPATH": os.pathsep.join([str(plugin_dir), str(REPO), os.environ.get("PYTHONPATH", "")])}
    results = tmp_path / "results"
    proc = subprocess.Popen([sys.executable, "-m", "bench", "run", "--grid", str(grid_path), "--results",
                             str(results), "--jobs", "2"], cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err
    assert len(list((results / "tiny" / "rows").glob("*.json"))) == 4
    used = [line.split() for line in pids.read_text().splitlines()]
    workers = {int(pid) for what, pid in used if what != "extra"}
    assert {what for what, _ in used} == {"method", "solver", "extra"}
    assert proc.pid not in workers and workers  # the cells ran in worker processes
    assert workers <= {int(pid) for what, pid in used if what == "extra"}  # each imported the whole list

    report = _bench(["report", "--grid", str(grid_path), "--results", str(results), "--no-plots"], env)
    assert report.returncode == 0, report.stderr
    assert f"{prefix}-halfway" in report.stdout
    # `report` without --grid reads the grid copy kept beside the rows, which lists the plugin too
    report = _bench(["report", "--results", str(results), "--no-plots"], env)
    assert report.returncode == 0, report.stderr
    assert f"{prefix}-halfway" in report.stdout
    # and the other commands that read the grid
    export = _bench(["export", "--grid", str(grid_path), "--results", str(results), "--out", str(tmp_path / "out")], env)
    assert export.returncode == 0, export.stderr
    assert export.stdout.startswith("4 schedules")
    status = _bench(["status", "--grid", str(grid_path), "--results", str(results)], env)
    assert status.returncode == 0, status.stderr


@pytest.mark.slow  # submitit-local starts a process per job
def test_plugin_module_reaches_submitit_jobs_without_pythonpath(tiny_grid, tmp_path, monkeypatch):
    """Jobs import the listed modules from the folder the parent found them in (no PYTHONPATH)."""
    from bench.launch import run_submitit
    from bench.launch_config import make_launch_config

    module = "grid_plugin_jobs_submitit"
    plugin_dir = tmp_path / "plugins"
    plugin_dir.mkdir()
    prefix = write_plugin(plugin_dir, module)
    (plugin_dir / "grid_plugin_extra_submitit.py").write_text(EXTRA)
    monkeypatch.syspath_prepend(str(plugin_dir))  # the parent's path only; the jobs' environment lacks it
    pids = tmp_path / "pids.txt"
    monkeypatch.setenv("BENCH_TEST_PIDS", str(pids))
    tiny_grid.update(plugins=[module, "grid_plugin_extra_submitit"], methods=[f"{prefix}-halfway"],
                     solvers=[f"{prefix}-euler"], nfe=[3])
    grid = parse_grid(tiny_grid)
    config = make_launch_config({}, executor="submitit-local", timeout_min=10)
    run_submitit(grid, tmp_path / "results", config, quiet=True)
    assert len(list((tmp_path / "results" / "tiny" / "rows").glob("*.json"))) == 1
    used = [line.split() for line in pids.read_text().splitlines()]
    job = {int(pid) for what, pid in used if what == "solver"}
    assert job and os.getpid() not in job
    assert job <= {int(pid) for what, pid in used if what == "extra"}
