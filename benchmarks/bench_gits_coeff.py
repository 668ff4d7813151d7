"""GITS's DP weight `coeff` and its cost metric, on toy2d (2-D) and digits (64-D).

    python benchmarks/bench_gits_coeff.py [--results DIR] [--only toy2d|digits] [--threads 1]

Two parts, per model:
  1. A grid (run with `bench.launch.run_local` into --results, default a fresh temporary folder) of the
     closed-form heuristics and GITS with the paper's defaults (metric 'dev', coeff 1.15), with fixed
     coeffs 0.8 .. 1.2, with `coeff: sweep` (chosen on the warm-up priors), and with metric 'l2'. The
     cells are those of grids/toy2d.yaml (Euler, eval 10,000, teacher 100 uniform Euler steps) and
     grids/pixel.yaml (iPNDM, eval 5,000, teacher 100 iPNDM steps), NFE 3, 4, 5; the mse table is printed
     with the "best heuristic" row.
  2. A look at the cost matrices GITS builds (60-step iPNDM teacher on EDM's grid, 256 priors): the rank
     correlation (Spearman) of the 'dev' and 'l2' costs over all jumps i < j, and the mean fraction of a
     jump's error (norm) that is perpendicular to the x_T -> x_0 line, the only part 'dev' sees.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch
from scipy.stats import spearmanr

from bench.grid import parse_grid
from bench.launch import run_local
from bench.models import make_model
from bench.report import load_rows, render, tables
from bench.solvers import make_solver
from methods._dp import ddim_jumps, deviation, fine_grid, teacher_trajectory

HEURISTICS = ["uniform", "logsnr", "polynomial", "edm"]
COEFFS = [0.8, 0.9, 1.0, 1.1, 1.15, 1.2]

CELLS = {
    "toy2d": {
        "models": [{"name": "toy2d", "time": "flow", "classes": "A"}],
        "solvers": ["euler"],
        "teacher": {"solver": "euler", "steps": 100, "method": "uniform", "dtype": "float64"},
        "samples": {"train": 2000, "eval": 10000, "batch": 10000},
    },
    "digits": {
        "models": [{"name": "digits"}],
        "solvers": ["ipndm"],
        "teacher": {"solver": "ipndm", "steps": 100, "method": "edm", "dtype": "float64"},
        "samples": {"train": 2000, "eval": 5000, "batch": 5000},
    },
}


def grid(key: str) -> dict:
    gits = ([{"name": "gits", "coeff": c} for c in COEFFS] + [{"name": "gits", "coeff": "sweep"}]
            + [{"name": "gits", "metric": "l2"}, {"name": "gits", "metric": "l2", "coeff": "sweep"}])
    return {"name": f"gits-coeff-{key}", "nfe": [3, 4, 5], "methods": HEURISTICS + gits, "metrics": ["mse"],
            "seeds": [0], **CELLS[key]}


def cost_agreement(key: str, warmup: int = 256, teacher_steps: int = 60) -> str:
    spec = CELLS[key]["models"][0]
    model = make_model(spec).double()
    schedule = model.schedule
    g = torch.Generator().manual_seed(0)
    x_T = model.prior(torch.randn((warmup,) + tuple(model.data_shape), generator=g, dtype=torch.float64))
    cond = torch.arange(warmup) % 10 if key == "digits" else None
    t = fine_grid(schedule, "edm", teacher_steps)
    with torch.no_grad():
        traj, x0, _ = teacher_trajectory(make_solver("ipndm"), model, x_T, t, cond)
    start, end = traj[0], traj[-1]
    line = (end - start).flatten(1)
    line = line / line.norm(dim=1, keepdim=True)
    dev_teacher = deviation(traj, start, end).mean(-1)
    dev, l2, perp = [], [], []
    for i in range(teacher_steps):
        js = torch.arange(i + 1, teacher_steps + 1)
        jumped = ddim_jumps(schedule, traj[i], x0[i], t[i], t[js])
        dev.append(deviation(jumped, start, end).mean(-1) - dev_teacher[js])
        err = (jumped - traj[js]).flatten(2)  # [J, B, D]
        l2.append(err.norm(dim=-1).mean(-1))
        along = (err * line).sum(-1, keepdim=True) * line
        perp.append(((err - along).norm(dim=-1) / err.norm(dim=-1).clamp_min(1e-300)).flatten())
    rho = spearmanr(torch.cat(dev).numpy(), torch.cat(l2).numpy()).correlation
    return (f"{key} (D = {line.shape[1]}): Spearman(dev cost, l2 cost) over all jumps = {rho:.3f}; "
            f"perpendicular fraction of a jump's error = {float(torch.cat(perp).mean()):.3f}")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--results", default=None, help="results root (default: a new temporary folder)")
    parser.add_argument("--only", choices=sorted(CELLS), default=None)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    root = Path(args.results or tempfile.mkdtemp(prefix="bench-gits-coeff-"))
    print(f"results root: {root}", file=sys.stderr)
    for key in CELLS:
        if args.only and key != args.only:
            continue
        raw = grid(key)
        start = time.perf_counter()
        run_local(parse_grid(raw), root=root, quiet=True)
        print(f"\n## {key} ({time.perf_counter() - start:.0f} s)\n")
        print(render(tables(load_rows(root, raw["name"]))))
        print(cost_agreement(key))


if __name__ == "__main__":
    main()
