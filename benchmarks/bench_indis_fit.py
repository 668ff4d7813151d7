"""Fit time (and quality) of INDIS on the 2D toy study (toy2d in flow time, Euler, 20,000 training priors,
100-step Euler teacher), printed beside
its bar: 5 minutes at NFE 3 on a 2-core CPU.

The teacher sets are generated first (cached under the results root) and not counted; the printed
time is `fit_seconds` of the runner's `fit_cell` (network construction, the heuristic start, training,
validation and the cost measurement). Then the cell is evaluated on the 10,000 evaluation priors.

    python benchmarks/bench_indis_fit.py [--nfe 3] [--threads 1] [--method indis] [--param lr=0.05 ...]
        [--root /tmp/bench-indis-fit] [--eval 10000]

`--digits` runs the same measurement on the class-conditional digits model with iPNDM and an iPNDM
30-step EDM teacher (default sizes train 4000, eval 2000).

`--threads 1` gives the single-thread time (torch.set_num_threads); the machine may be shared, so
the script also prints the load average. Extra method parameters: `--param key=value` (YAML values).
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

import torch
import yaml

from bench.grid import parse_grid
from bench.runner import cell_teacher, fit_cell, load_model, run_cell
from bench.store import ResultsRoot


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--nfe", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--method", default="indis")
    parser.add_argument("--param", action="append", default=[], help="method parameter key=value")
    parser.add_argument("--train", type=int, default=None, help="training priors (toy 20000, digits 4000)")
    parser.add_argument("--eval", type=int, default=None, help="evaluation priors (toy 10000, digits 2000)")
    parser.add_argument("--digits", action="store_true", help="the digits model with iPNDM instead of the toy")
    parser.add_argument("--root", default=None, help="results root (default: a temporary folder)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    method = {"name": args.method}
    for item in args.param:
        key, _, value = item.partition("=")
        method[key] = yaml.safe_load(value)
    if args.digits:
        setting = {"models": [{"name": "digits"}], "solvers": ["ipndm"],
                   "teacher": {"solver": "ipndm", "steps": 30, "method": "edm", "dtype": "float64"}}
        args.train, args.eval = args.train or 4000, args.eval or 2000
    else:
        setting = {"models": [{"name": "toy2d", "time": "flow"}], "solvers": ["euler"],
                   "teacher": {"solver": "euler", "steps": 100, "method": "uniform", "dtype": "float64"}}
        args.train, args.eval = args.train or 20000, args.eval or 10000
    grid = parse_grid({
        "name": "indis-fit", **setting, "nfe": [args.nfe], "methods": [method], "metrics": ["mse", "psnr"],
        "samples": {"train": args.train, "eval": args.eval, "batch": 10000 if not args.digits else 1000},
    })
    cell = grid.cells[0]
    root = ResultsRoot(args.root or tempfile.mkdtemp(prefix="bench-indis-fit-"))
    model = load_model(cell.model, "cpu")
    start = time.perf_counter()
    for split, n in (("train", args.train), ("val", 1000), ("val", 50), ("train", 50)):
        cell_teacher(cell, model, root, split, n, torch.device("cpu"))
    print(f"teacher sets: {time.perf_counter() - start:.1f} s (not counted)")

    load = os.getloadavg()
    method_obj, info = fit_cell(cell, root, "cpu")
    print(f"{cell.label()}")
    print(f"fit_seconds = {info['fit_seconds']:.1f} s (cached: {info['cached']}), threads = {args.threads}, "
          f"load average at start = {load[0]:.2f}")
    fit_info = method_obj.fit_info() if hasattr(method_obj, "fit_info") else {}
    print("fit_info =", json.dumps({k: v for k, v in fit_info.items() if k != "val_history"}, default=str))
    if "val_history" in fit_info:
        print("val_history =", [(i, round(v, 6)) for i, v in fit_info["val_history"]])
    row = json.loads(run_cell(cell, root, "cpu").read_text())
    print(f"eval mse ({args.eval} priors) = {row['metrics']['mse']:.6g}, psnr = {row['metrics']['psnr']:.4g}")


if __name__ == "__main__":
    main()
