"""Coverage of the report's intervals: do 95% intervals cover the true mean 95% of the time?

One cell of the toy2d study (the exact tree mixture, flow time, class A; Euler; a closed-form
schedule; mse and psnr against the 100-step float64 Euler teacher of grids/toy2d.yaml) is evaluated on
`--sets` independent sets of `--n` evaluation priors (seeds 1.., disjoint from the reference's), and
each set's interval is computed exactly as `bench report` computes it (`bench.stats.paired_bootstrap`:
percentile bootstrap, `--bootstrap` resamples, the report's seeding). The "true" mean is the mean over
`--factor` times as many priors (a separate seed). The benchmark prints, per metric, the share of
sets whose interval covers it, and fails (exit 1) when a share is below `--min-rate`.

    python scripts/check_interval_coverage.py                      # 50 sets of 2000 priors, 100x reference
    python scripts/check_interval_coverage.py --sets 20 --n 500    # quicker look

tests/report/test_uncertainty_coverage.py runs it in the slow suite.
"""
from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import stats  # noqa: E402
from bench.metrics.distance import per_sample_squared_error  # noqa: E402
from bench.models import make_model  # noqa: E402
from bench.registry import METHODS  # noqa: E402
from bench.solvers import make_solver  # noqa: E402
from bench.teacher import priors, run_teacher  # noqa: E402

MODEL = {"name": "toy2d", "time": "flow", "classes": "A"}
TEACHER = {"solver": "euler", "steps": 100, "method": "uniform", "dtype": "float64"}


def scores(model, solver, method_name: str, nfe: int, seed: int, n: int) -> dict[str, np.ndarray]:
    """Per-sample mse and psnr of one cell on the first `n` priors of evaluation seed `seed`."""
    _, x_T, cond = priors(model, "eval", seed, n)
    x0_star = run_teacher(model, TEACHER, x_T, cond, 50_000)
    method = METHODS.create(method_name).bind(model.schedule, solver.steps_for_nfe(nfe), solver)
    with torch.no_grad():
        x0 = torch.cat([solver.sample(model, x_T[i:i + 50_000], method.discretize(x_T[i:i + 50_000]))
                        for i in range(0, n, 50_000)])
    mse = per_sample_squared_error(x0, x0_star)
    psnr = 10.0 * torch.log10(float(model.data_range) ** 2 / (mse / math.prod(x0.shape[1:])))
    return {"mse": mse.numpy(), "psnr": psnr.clamp(max=100.0).numpy()}


def coverage(sets: int = 50, n: int = 2000, factor: int = 100, method: str = "uniform", nfe: int = 4,
             level: float = 0.95, n_resamples: int = 2000) -> dict[str, float]:
    torch.set_num_threads(1)
    model = make_model(dict(MODEL))
    solver = make_solver({"name": "euler"})
    truth = scores(model, solver, method, nfe, 10_000, n * factor)
    hits = {k: 0 for k in truth}
    for s in range(1, sets + 1):
        sample = scores(model, solver, method, nfe, s, n)
        vectors = np.vstack([sample[k] for k in truth])
        low, high = stats.paired_bootstrap(vectors, level, n_resamples, stats.column_seed("coverage", s))
        for i, k in enumerate(truth):
            hits[k] += int(low[i] <= truth[k].mean() <= high[i])
    return {k: v / sets for k, v in hits.items()}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sets", type=int, default=50)
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--factor", type=int, default=100)
    ap.add_argument("--method", default="uniform")
    ap.add_argument("--nfe", type=int, default=4)
    ap.add_argument("--level", type=float, default=0.95)
    ap.add_argument("--bootstrap", type=int, default=2000)
    ap.add_argument("--min-rate", type=float, default=0.90)
    args = ap.parse_args(argv)
    start = time.perf_counter()
    rates = coverage(args.sets, args.n, args.factor, args.method, args.nfe, args.level, args.bootstrap)
    print(f"command: python scripts/check_interval_coverage.py --sets {args.sets} --n {args.n} --factor {args.factor} "
          f"--method {args.method} --nfe {args.nfe} --level {args.level} --bootstrap {args.bootstrap}")
    for metric, rate in rates.items():
        print(f"{metric}: {100 * args.level:g}% interval covers the mean over {args.n * args.factor} priors in "
              f"{100 * rate:.0f}% of {args.sets} sets of {args.n} priors")
    print(f"({time.perf_counter() - start:.0f} s)")
    return 0 if all(r >= args.min_rate for r in rates.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
