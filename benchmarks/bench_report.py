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


def _timed(cmd: list[str]) -> tuple[float, float]:
    """(wall seconds, CPU seconds of the command and its children, user + system)."""
    import resource

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if done.returncode != 0:
        raise SystemExit(f"failed: {' '.join(cmd)}\n{done.stderr}")
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return time.perf_counter() - start, cpu


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
        seconds, cpu = _timed([py, "-m", "bench", "run", "--grid", args.grid, "--results", args.results, "--quiet"])
        print(f"run: {seconds:.0f} s wall, {cpu:.0f} s CPU ({len(grid.cells)} cells; ~0 when they were done)")
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
    print(f"load average when done: {' '.join(f'{x:.1f}' for x in __import__('os').getloadavg())} "
          f"(wall time counts other processes' load; CPU time does not)")
    print(f"report, cold (every figure drawn, {args.jobs} processes): {cold[0]:.1f} s wall, {cold[1]:.1f} s CPU")
    print(f"report, warm (unchanged figures skipped): {warm[0]:.1f} s wall, {warm[1]:.1f} s CPU")
    print(f"report --no-plots: {no_plots[0]:.1f} s wall, {no_plots[1]:.1f} s CPU")
    return 0


if __name__ == "__main__":
    sys.exit(main())
