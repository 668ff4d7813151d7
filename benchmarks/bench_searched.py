"""Searched schedules (DMN, GITS, OSS) against the closed-form heuristics, on toy2d and digits.

    python benchmarks/bench_searched.py [--results DIR] [--only toy2d|digits] [--no-instance]
                                        [--eval 2000] [--train 256] [--threads 1]

Two grids, built here programmatically and run with `bench.launch.run_local` into --results (default:
a fresh temporary folder), then reported with `bench.report`:
  * toy2d: the exact 2D tree mixture in flow-matching OT time, Euler, NFE 3, 4, 5; teacher = 100
    uniform Euler steps in float64 (as grids/toy2d.yaml).
  * digits: the exact empirical 8x8 digits denoiser (EDM's VE, class-conditional), iPNDM, NFE 3, 4, 5;
    teacher = 100 iPNDM steps on EDM's rho = 7 grid in float64.
Methods: the heuristics (uniform, logsnr, polynomial, edm; the report's "best heuristic" row is their
per-NFE minimum), dmn, gits (paper defaults, metric 'dev'), gits with the reference's 'l2' metric,
oss (OSS-ave, paper defaults) and, on toy2d, per-instance oss (instance: true; its network cost per
sample is printed as schedule_nfe). Sizes: --train training priors (GITS warm-up and OSS search
batch use 256 of them by default), --eval evaluation priors in one batch.

After the tables, the fitted schedules and each fit's cost (fit_nfe = network evaluations per sample
row, fit seconds) are printed. torch runs single-threaded (--threads) since the machine is shared.
"""
from __future__ import annotations

import argparse
import glob
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

from bench.grid import parse_grid
from bench.launch import run_local
from bench.report import load_rows, render, tables

HEURISTICS = ["uniform", "logsnr", "polynomial", "edm"]


def grids(train: int, eval_: int, instance: bool) -> dict:
    searched = ["dmn", "gits", {"name": "gits", "metric": "l2"}, "oss"]
    samples = {"train": train, "eval": eval_, "batch": eval_}
    return {
        "toy2d": {
            "name": "searched-toy2d",
            "models": [{"name": "toy2d", "time": "flow"}],
            "solvers": ["euler"],
            "nfe": [3, 4, 5],
            "methods": HEURISTICS + searched + ([{"name": "oss", "instance": True}] if instance else []),
            "metrics": ["mse"],
            "teacher": {"solver": "euler", "steps": 100, "method": "uniform", "dtype": "float64"},
            "samples": samples,
        },
        "digits": {
            "name": "searched-digits",
            "models": [{"name": "digits"}],
            "solvers": ["ipndm"],
            "nfe": [3, 4, 5],
            "methods": HEURISTICS + searched,
            "metrics": ["mse"],
            "teacher": {"solver": "ipndm", "steps": 100, "method": "edm", "dtype": "float64"},
            "samples": samples,
        },
    }


def fits_summary(root: Path, grid: str) -> str:
    lines = []
    for path in sorted(glob.glob(str(root / grid / "rows" / "*.json"))):
        row = json.loads(Path(path).read_text())
        if row["heuristic"]:
            continue
        sched = row["schedule"]
        t = "per-sample" if sched is None else "[" + ", ".join(f"{x:.4g}" for x in sched["t"][0]) + "]"
        lines.append((row["method_label"], row["nfe"], row["fit"]["fit_nfe"], row["fit"]["fit_seconds"],
                      row["schedule_nfe"], t))
    lines.sort()
    out = [f"{'method':36} {'nfe':>3} {'fit_nfe':>9} {'fit_s':>7} {'sched_nfe':>9}  schedule (t)"]
    for label, nfe, fit_nfe, secs, sched_nfe, t in lines:
        out.append(f"{label:36} {nfe:3d} {fit_nfe:9d} {secs:7.1f} {sched_nfe:9.0f}  {t}")
    return "\n".join(out)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--results", default=None, help="results root (default: a new temporary folder)")
    parser.add_argument("--only", choices=["toy2d", "digits"], default=None)
    parser.add_argument("--train", type=int, default=256)
    parser.add_argument("--eval", type=int, default=2000)
    parser.add_argument("--no-instance", action="store_true", help="skip per-instance OSS on toy2d")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    root = Path(args.results or tempfile.mkdtemp(prefix="bench-searched-"))
    print(f"results root: {root}", file=sys.stderr)
    for key, raw in grids(args.train, args.eval, not args.no_instance).items():
        if args.only and key != args.only:
            continue
        start = time.perf_counter()
        run_local(parse_grid(raw), root=root)
        print(f"\n## {key} ({time.perf_counter() - start:.0f} s)\n")
        print(render(tables(load_rows(root, raw["name"]))))
        print(fits_summary(root, raw["name"]))


if __name__ == "__main__":
    main()
