"""The README's Python examples run as written: every fenced block whose info string is `python` is
executed, in order, in a fresh interpreter whose working folder is a temporary directory (so the
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


def blocks(info: str) -> list[str]:
    text = (ROOT / "README.md").read_text()
    return [body for tag, body in FENCE.findall(text) if tag.strip() == info]


def test_readme_python_blocks_run(tmp_path):
    runnable = blocks("python")
    assert len(runnable) >= 2  # the fitted schedule and the results table of "Python API"
    script = tmp_path / "readme_blocks.py"
    script.write_text("\n".join(
        [f"exec(compile({body!r}, 'README.md block {i}', 'exec'), {{'__name__': '__main__'}})"
         for i, body in enumerate(runnable)]))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    env.pop("BENCH_RESULTS", None)
    run = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=600)
    assert run.returncode == 0, run.stderr[-4000:]
    assert (tmp_path / "results" / "demo" / "rows").is_dir()  # the examples wrote into the temporary root
    assert "uniform" in run.stdout and "edm" in run.stdout


def test_readme_fragments_parse():
    for body in blocks("python fragment"):
        ast.parse(body)
