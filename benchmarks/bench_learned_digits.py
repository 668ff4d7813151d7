"""LD3, GOD and INDIS against the closed-form heuristics on the exact class-conditional digits model.

The `digits` model (exact posterior mean of the 8x8 digits, class-conditional, VE time) with the
iPNDM solver; teacher: iPNDM with 30 steps on the EDM schedule in float64 (the issue's pixel-model
teacher). Learned methods use their defaults (l2 loss: the images are too small for LPIPS; the
timestep map in lambda, as for every VE model). The grid runs with `bench.grid.parse_grid` +
`bench.launch.run_local` into a results root (default: a temporary folder), then prints the report
tables and, per NFE, whether INDIS beats LD3 (mse).

    python benchmarks/bench_learned_digits.py [--nfe 4 6] [--root DIR] [--train 4000] [--eval 2000]
"""
from __future__ import annotations

import argparse
import json
import tempfile

import torch

from bench import report
from bench.grid import parse_grid
from bench.launch import run_local
from bench.store import ResultsRoot


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--nfe", type=int, nargs="+", default=[4, 6])
    parser.add_argument("--root", default=None)
    parser.add_argument("--train", type=int, default=4000)
    parser.add_argument("--eval", type=int, default=2000)
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--methods", nargs="*", default=None, help="override the method list (names)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    methods = args.methods or ["uniform", "logsnr", "polynomial", "edm", "ld3", "ld3-hard", "god", "indis"]
    grid = parse_grid({
        "name": "learned-digits",
        "models": [{"name": "digits"}],
        "solvers": ["ipndm"],
        "nfe": args.nfe,
        "methods": methods,
        "metrics": ["mse", "psnr"],
        "teacher": {"solver": "ipndm", "steps": 30, "method": "edm", "dtype": "float64"},
        "samples": {"train": args.train, "eval": args.eval, "batch": 1000},
    })
    root = ResultsRoot(args.root or tempfile.mkdtemp(prefix="bench-learned-digits-"))
    print(f"results root: {root.root}")
    run_local(grid, root.root, jobs=args.jobs)
    print(report.render(report.tables(report.load_rows(root.root, grid.name)), digits=4))

    rows = [json.loads(p.read_text()) for p in sorted(root.rows_dir(grid.name).glob("*.json"))]
    mse = {(r["method_label"], r["nfe"]): r["metrics"]["mse"] for r in rows}
    best_h = {nfe: min(v for (m, n), v in mse.items() if n == nfe and m in ("uniform", "logsnr", "polynomial", "edm"))
              for nfe in args.nfe}
    for nfe in args.nfe:
        i, l, g = mse.get(("indis", nfe)), mse.get(("ld3", nfe)), mse.get(("god", nfe))
        if None in (i, l, g):
            continue
        print(f"NFE={nfe}: indis {i:.4g} vs ld3 {l:.4g} ({'indis better' if i < l else 'ld3 better'}), "
              f"god {g:.4g}, best heuristic {best_h[nfe]:.4g}")
    for r in sorted(rows, key=lambda r: (r["method_label"], r["nfe"])):
        if r["fit_key"]:
            info = torch.load(root.fit_dir(r["fit_key"]) / "state.pt", map_location="cpu", weights_only=False)["info"]
            print(f"  {r['method_label']:<10} NFE={r['nfe']:<2} fit {r['fit']['fit_seconds']:6.1f} s"
                  f"  init {info.get('init')}"
                  f"  best val {info.get('best_val_loss', float('nan')):.4g}  phi params {info.get('phi_params', '-')}")


if __name__ == "__main__":
    main()
