"""What a searched schedule's fit costs beyond its network evaluations (OSS and GITS on toy2d).

    python benchmarks/bench_search_cost.py [--repeats 3] [--threads 1] [--oss-only | --gits-only]

Fits, on the exact toy2d tree (flow-matching OT time, float64, 256 training priors from the harness's
seeds), with the Euler student at NFE 5:
  * `oss` with the paper's settings: 200 Euler teacher steps on the uniform grid, OSS-ave over 256
    priors (`search_batch`), the paper's dynamic program (about 250k single-sample evaluations);
  * `gits` with the reference's settings: 60 iPNDM teacher steps on EDM's rho = 7 grid, 256 warm-up
    priors, the 'dev' metric.
For each it prints the fit's wall time, the wall time spent inside the denoiser's calls alone
(measured around every call of the model the fit is given), their ratio (the bar: at most 2), the
calls and the rows (single-sample evaluations) the fit made. The best of `--repeats` fits is shown
(noise only adds time). torch runs with `--threads` threads.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's `bench`, not an installed one

import torch  # noqa: E402

from bench import api  # noqa: E402
from bench.models import make_model  # noqa: E402
from bench.seeding import noise_from_seeds, sample_seeds  # noqa: E402
from bench.solvers import make_solver  # noqa: E402
from bench.teacher import TeacherSet  # noqa: E402

NFE = 5
PRIORS = 256
FITS = {
    "oss": {"name": "oss", "teacher_steps": 200, "search_batch": PRIORS},
    "gits": {"name": "gits", "warmup": PRIORS},
}


class TimedModel:
    """Passes calls to `model`; sums the wall time spent inside them, counts calls and rows."""

    def __init__(self, model):
        self.model, self.schedule = model, model.schedule
        self.seconds, self.calls, self.rows = 0.0, 0, 0

    def __call__(self, x, t, cond=None):
        start = time.perf_counter()
        out = self.model(x, t, cond)
        self.seconds += time.perf_counter() - start
        self.calls += 1
        self.rows += x.shape[0]
        return out


def fit_once(spec: dict) -> dict:
    model = make_model({"name": "toy2d", "time": "flow", "classes": "A"}).double()
    seeds = sample_seeds("train", 0, PRIORS)
    x_T = model.prior(noise_from_seeds(seeds, model.data_shape).double())
    timed = TimedModel(model)
    solver = make_solver("euler")
    method = api.bind(spec, timed, solver, NFE)

    def teacher(split, n):
        return TeacherSet(seeds[:n], x_T[:n], None, x_T[:n])  # the searches use x_T (and their own teacher)

    start = time.perf_counter()
    api.fit(method, nfe=NFE, teacher=teacher)
    wall = time.perf_counter() - start
    return {"wall": wall, "network": timed.seconds, "ratio": wall / timed.seconds, "calls": timed.calls,
            "rows": timed.rows, "t": [round(v, 5) for v in method.t.tolist()]}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    only = parser.add_mutually_exclusive_group()
    only.add_argument("--oss-only", action="store_true")
    only.add_argument("--gits-only", action="store_true")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    names = ["oss"] if args.oss_only else ["gits"] if args.gits_only else list(FITS)
    print(f"bench_search_cost: toy2d (flow, float64), Euler student, NFE {NFE}, {PRIORS} priors, "
          f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), best of {args.repeats}")
    print(f"command: python benchmarks/bench_search_cost.py --repeats {args.repeats} --threads {args.threads}")
    print(f"{'fit':<5} {'wall s':>8} {'network s':>10} {'ratio':>6} {'calls':>7} {'rows':>9}  schedule")
    for name in names:
        best = min((fit_once(FITS[name]) for _ in range(args.repeats)), key=lambda r: r["ratio"])
        print(f"{name:<5} {best['wall']:>8.3f} {best['network']:>10.3f} {best['ratio']:>6.2f} "
              f"{best['calls']:>7} {best['rows']:>9}  {best['t']}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
