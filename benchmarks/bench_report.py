"""What `bench report` costs on a large grid: tables and statistics, figures drawn, figures skipped.

Runs the grid into `--results` first when its rows are missing (benchmarks/grids/heuristics-1440.yaml
by default: 1440 cells of closed-form schedules on two toy2d models), then times three reports in
fresh processes, as a user runs them:
  1. cold: the report folder removed, every figure drawn (`--jobs` processes);
  2. warm: the same again, figures whose data did not change are skipped;
  3. `--no-plots`: tables, statistics and the long CSV/parquet only.
It prints each wall time, the number of files written and the size of the per-sample score files.

    python benchmarks/bench_report.py --results /tmp/h1440
    python benchmarks/bench_report.py --grid grids/pixel.yaml --results /tmp/pixel   # an existing root
"""
from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) if folder.is_dir() else 0


def _timed(cmd: list[str]) -> float:
    start = time.perf_counter()
    done = subprocess.run(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if done.returncode != 0:
        raise SystemExit(f"failed: {' '.join(cmd)}\n{done.stderr}")
    return time.perf_counter() - start


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--grid", default="benchmarks/grids/heuristics-1440.yaml")
    ap.add_argument("--results", required=True)
    ap.add_argument("--jobs", type=int, default=2, help="figure-drawing processes")
    ap.add_argument("--skip-run", action="store_true", help="report only (the rows must exist)")
    args = ap.parse_args(argv)
    sys.path.insert(0, str(REPO))
    from bench.grid import load_grid

    grid = load_grid(REPO / args.grid if not Path(args.grid).is_absolute() else args.grid, force=True)
    py = sys.executable
    if not args.skip_run:
        seconds = _timed([py, "-m", "bench", "run", "--grid", args.grid, "--results", args.results, "--quiet"])
        print(f"run: {seconds:.0f} s ({len(grid.cells)} cells; 0 s when they were done)")
    report_dir = Path(args.results) / grid.name / "report"
    shutil.rmtree(report_dir, ignore_errors=True)
    base = [py, "-m", "bench", "report", "--grid", args.grid, "--results", args.results, "--jobs", str(args.jobs)]
    cold = _timed(base)
    files = sum(1 for p in report_dir.rglob("*") if p.is_file())
    warm = _timed(base)
    no_plots = _timed(base + ["--no-plots"])
    scores = _size(Path(args.results) / grid.name / "scores")
    print(f"command: {' '.join(base[1:])}")
    print(f"cells: {len(grid.cells)}; report files: {files}; per-sample score files: {scores / 2**20:.1f} MiB")
    print(f"report, cold (every figure drawn, {args.jobs} processes): {cold:.1f} s")
    print(f"report, warm (unchanged figures skipped): {warm:.1f} s")
    print(f"report --no-plots: {no_plots:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
