"""The INDIS toy study (grids/indis-toy.yaml) through the harness, with the issue's acceptance checks.

Runs the grid's cells for the chosen NFEs (default 3..6, the acceptance range) with
`bench.grid.parse_grid` + `bench.launch.run_local` into a results root (default: a temporary folder;
pass --root to keep and resume it), prints the `bench.report` tables, then checks, per NFE and for
both variants (timesteps only / with the shift factors):
    mse(indis) < mse(god) < mse(uniform)      and      mse(oracle) <= mse(indis)
and prints every learned method's fit time, phi's parameter count and per-sample cost (from the
cached fit's info) and the oracle's network evaluations per sample spent inside `schedule`.

    python benchmarks/bench_learned_toy.py [--nfe 3 4 5 6] [--root DIR] [--jobs 1] [--threads 1]
"""
from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import torch
import yaml

from bench import report
from bench.grid import parse_grid
from bench.launch import run_local
from bench.store import ResultsRoot

GRID = Path(__file__).resolve().parent.parent / "grids" / "indis-toy.yaml"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--nfe", type=int, nargs="+", default=[3, 4, 5, 6])
    parser.add_argument("--root", default=None)
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1, help="torch threads in this process (jobs=1)")
    parser.add_argument("--methods", nargs="*", default=None, help="restrict to these method names")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    raw = yaml.safe_load(GRID.read_text())
    raw["nfe"] = args.nfe
    if args.methods:
        raw["methods"] = [m for m in raw["methods"] if (m if isinstance(m, str) else m["name"]) in args.methods]
    grid = parse_grid(raw, name=raw["name"])
    root = ResultsRoot(args.root or tempfile.mkdtemp(prefix="bench-indis-toy-"))
    print(f"results root: {root.root}")
    run_local(grid, root.root, jobs=args.jobs)

    df = report.load_rows(root.root, grid.name)
    print(report.render(report.tables(df), digits=4))

    rows = [json.loads(p.read_text()) for p in sorted(root.rows_dir(grid.name).glob("*.json"))]
    mse = {(r["method_label"], r["nfe"]): r["metrics"]["mse"] for r in rows}
    print("acceptance (mse):")
    ok_all = True
    for nfe in args.nfe:
        for suffix, variant in (("(shifts=False)", "timesteps only"), ("", "with shifts")):
            u, g, i, o = (mse.get((name, nfe)) for name in
                          ("uniform", f"god{suffix}", f"indis{suffix}", f"oracle{suffix}"))
            if None in (u, g, i, o):
                continue
            ok1, ok2 = i < g < u, o <= i
            ok_all &= ok1 and ok2
            print(f"  NFE={nfe:<2} {variant:<15} indis {i:.4g} < god {g:.4g} < uniform {u:.4g}: "
                  f"{'yes' if ok1 else 'NO'};  oracle {o:.4g} <= indis: {'yes' if ok2 else 'NO'}")
    print(f"  all checks pass: {ok_all}")

    print("fits (seconds; phi parameters; phi / one model evaluation, per sample):")
    for r in sorted(rows, key=lambda r: (r["method_label"], r["nfe"])):
        if not r["fit_key"]:
            continue
        state = torch.load(root.fit_dir(r["fit_key"]) / "state.pt", map_location="cpu", weights_only=False)
        info = state.get("info", {})
        ratio = info.get("phi_cost_in_model_evals")
        print(f"  {r['method_label']:<22} NFE={r['nfe']:<2} fit {r['fit']['fit_seconds']:7.1f} s  "
              f"phi params {info.get('phi_params', '-')!s:>5}  "
              f"phi cost {'-' if ratio is None else f'{ratio:.3f}'} model evals  "
              f"init {info.get('init')}  evaluations/sample inside schedule {r['schedule_nfe']:.0f}")


if __name__ == "__main__":
    main()
