"""The README's and docs/extending.md's Python examples run as written: every fenced block whose info
string is `python` is executed, in order (one interpreter per file), in a fresh interpreter whose working folder is a temporary directory (so the
examples' `results` root is a temporary one). Blocks marked `python fragment` are excerpts (a solver
class body, a loader for a file a long run writes) and are only checked to parse."""
from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FENCE = re.compile(r"^```([^\n]*)\n(.*?)^```", re.S | re.M)


def blocks(info: str, doc: str = "README.md") -> list[str]:
    text = (ROOT / doc).read_text()
    return [body for tag, body in FENCE.findall(text) if tag.strip() == info]


def run_blocks(doc: str, folder: Path) -> subprocess.CompletedProcess:
    script = folder / "doc_blocks.py"
    script.write_text("\n".join(
        [f"exec(compile({body!r}, '{doc} block {i}', 'exec'), {{'__name__': '__main__'}})"
         for i, body in enumerate(blocks("python", doc))]))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    env.pop("BENCH_RESULTS", None)
    return subprocess.run([sys.executable, str(script)], cwd=folder, env=env, capture_output=True, text=True,
                          timeout=600)


def test_readme_python_blocks_run(tmp_path):
    assert len(blocks("python")) >= 2  # the fitted schedule and the results table of "Python API"
    run = run_blocks("README.md", tmp_path)
    assert run.returncode == 0, run.stderr[-4000:]
    assert (tmp_path / "results" / "demo" / "rows").is_dir()  # the examples wrote into the temporary root
    assert "uniform" in run.stdout and "edm" in run.stdout


def test_readme_fragments_parse():
    for body in blocks("python fragment"):
        ast.parse(body)


def test_extending_examples_run(tmp_path):
    """docs/extending.md's minimal method, fitted method and solver register and run."""
    assert len(blocks("python", "docs/extending.md")) == 3
    run = run_blocks("docs/extending.md", tmp_path)
    assert run.returncode == 0, run.stderr[-4000:]
    assert (tmp_path / "results" / "cache").is_dir()  # the fitted example went through the fit cache


def test_readme_grid_example_is_a_valid_grid():
    import yaml

    from bench.grid import parse_grid

    (text,) = blocks("yaml")
    grid = parse_grid(yaml.safe_load(text))
    assert len(grid.cells) == 2 * 3 * 4


def test_readme_report_sample_is_what_report_prints(tmp_path):
    """The table under "Two commands" is the smoke grid's euler/mse table as `bench report` prints it."""
    (sample,) = blocks("text")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    root = str(tmp_path / "results")
    grid = str(ROOT / "grids" / "smoke.yaml")
    subprocess.run([sys.executable, "-m", "bench", "run", "--grid", grid, "--results", root, "--quiet"],
                   env=env, check=True, capture_output=True, timeout=600)
    report = subprocess.run([sys.executable, "-m", "bench", "report", "--grid", grid, "--results", root,
                             "--no-plots", "--only", "solver=euler", "--only", "metric=mse"],
                            env=env, check=True, capture_output=True, text=True, timeout=600)
    assert report.stdout.startswith(sample.rstrip("\n") + "\n"), report.stdout
