"""Inside GITS's dynamic program: what its cost matrices see, and how its paths rank (toy2d and digits).

    python scripts/gits_cost_analysis.py [--only toy2d|digits] [--threads 1]

For the cells of grids/gits-coeff-toy2d.yaml and grids/gits-coeff-digits.yaml (which compare the DP
weights and metrics by their samples: `python -m bench run --grid grids/gits-coeff-digits.yaml`), with
GITS's warm-up setting (60-step iPNDM teacher on EDM's grid, 256 priors):
  1. the rank correlation (Spearman) of the `dev` and `l2` costs over all jumps i < j, and the mean
     fraction of a jump's error (norm) that is perpendicular to the x_T -> x_0 line, the only part
     `dev` sees;
  2. at NFE 3, the cell's student solves the warm-up priors along every 3-step subset of the 60-step
     grid (1,711 paths, endpoints kept), and the `mse` metric of its endpoints against the teacher's is
     the true error of each path. Printed: the best path and its error, the rank of each coeff's DP
     path (`dev` metric) among all paths, and the rank correlation of the paper's DP objective (coeff
     1.15) with the true error. This separates "the grid holds no better schedule" from "the DP
     objective does not find it".
"""
from __future__ import annotations

import argparse
import itertools

import torch
from scipy.stats import spearmanr

from bench.discretization import Discretization
from bench.metrics.distance import per_sample_squared_error
from bench.models import make_model
from bench.solvers import make_solver
from bench.methods.search.gits_dp import deviation, gits_dp, gits_path_cost
from bench.methods.search.student_step import one_step_jumps
from bench.methods.search.teacher_path import teacher_trajectory
from bench.methods.search.timestep_grid import timestep_grid

COEFFS = [0.8, 0.9, 1.0, 1.1, 1.15, 1.2]

# The model and student solver of grids/gits-coeff-<key>.yaml.
CELLS = {
    "toy2d": {"models": [{"name": "toy2d", "time": "flow", "classes": "A"}], "solvers": ["euler"]},
    "digits": {"models": [{"name": "digits"}], "solvers": ["ipndm"]},
}


def warmup_costs(key: str, warmup: int = 256, teacher_steps: int = 60):
    """GITS's fit, by hand: the model, grid times, warm-up priors and labels, teacher trajectory, and the
    'dev' and 'l2' costs of every jump (lists over i of [J] tensors), plus the perpendicular fractions."""
    spec = CELLS[key]["models"][0]
    model = make_model(spec).double()
    schedule = model.schedule
    g = torch.Generator().manual_seed(0)
    x_T = model.prior(torch.randn((warmup,) + tuple(model.data_shape), generator=g, dtype=torch.float64))
    cond = torch.arange(warmup) % 10 if key == "digits" else None
    t = timestep_grid(schedule, "edm", teacher_steps)
    with torch.no_grad():
        traj, x0, _ = teacher_trajectory(make_solver("ipndm"), model, x_T, t, cond)
    start, end = traj[0], traj[-1]
    line = (end - start).flatten(1)
    line = line / line.norm(dim=1, keepdim=True)
    dev_teacher = deviation(traj, start, end).mean(-1)
    dev, l2, perp = [], [], []
    for i in range(teacher_steps):
        js = torch.arange(i + 1, teacher_steps + 1)
        jumped = one_step_jumps(make_solver("euler"), model, traj[i], x0[i], t[i], t[js])[0]
        dev.append(deviation(jumped, start, end).mean(-1) - dev_teacher[js])
        err = (jumped - traj[js]).flatten(2)  # [J, B, D]
        l2.append(err.norm(dim=-1).mean(-1))
        along = (err * line).sum(-1, keepdim=True) * line
        perp.append(((err - along).norm(dim=-1) / err.norm(dim=-1).clamp_min(1e-300)).flatten())
    return model, t, x_T, cond, traj, dev, l2, perp


def cost_agreement(key: str, costs) -> str:
    _, _, x_T, _, _, dev, l2, perp = costs
    rho = spearmanr(torch.cat(dev).numpy(), torch.cat(l2).numpy()).correlation
    return (f"{key} (D = {x_T[0].numel()}): Spearman(dev cost, l2 cost) over all jumps = {rho:.3f}; "
            f"perpendicular fraction of a jump's error = {float(torch.cat(perp).mean()):.3f}")


def grid_ceiling(key: str, costs, steps: int = 3) -> str:
    model, t, x_T, cond, traj, dev, _, _ = costs
    T = t.numel() - 1
    matrix = torch.full((T + 1, T + 1), float("inf"), dtype=torch.float64)
    for i, row in enumerate(dev):
        matrix[i, i + 1:] = row
    matrix = matrix.numpy()
    student = make_solver(CELLS[key]["solvers"][0])
    error = {}
    with torch.no_grad():
        for interior in itertools.combinations(range(1, T), steps - 1):
            path = (0, *interior, T)
            x = student.sample(model, x_T, Discretization(t[list(path)][None]), cond)
            error[path] = float(per_sample_squared_error(x, traj[-1]).mean())  # the `mse` metric
    ranked = sorted(error, key=error.__getitem__)
    rank = {path: n + 1 for n, path in enumerate(ranked)}
    paths = list(error)
    rho = spearmanr([error[p] for p in paths], [gits_path_cost(matrix, p, 1.15) for p in paths]).correlation
    fmt = lambda path: "[" + ", ".join(f"{float(t[n]):.3g}" for n in path) + "]"  # noqa: E731
    lines = [f"{key}, NFE {steps}, student {student.spec()['name']}: {len(paths)} paths on the grid; best "
             f"{fmt(ranked[0])} with warm-up mse {error[ranked[0]]:.4g}; Spearman(paper DP objective, true "
             f"error) = {rho:.3f}"]
    for c in COEFFS:
        path = tuple(gits_dp(matrix, steps, c))
        lines.append(f"  coeff {c:<4}: {fmt(path)} mse {error[path]:.4g}, rank {rank[path]} of {len(paths)}")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", choices=sorted(CELLS), default=None)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    for key in CELLS:
        if args.only and key != args.only:
            continue
        print(f"\n## {key}\n")
        costs = warmup_costs(key)
        print(cost_agreement(key, costs))
        print(grid_ceiling(key, costs))


if __name__ == "__main__":
    main()
