"""Harness overhead: sampling through the runner versus a bare loop over the same denoiser calls.

The runner path is what `run_cell` times: the method builds the `Discretization`, the solver
integrates through `predict`, and a `CountingModel` counts evaluations. The bare path is a plain
Python loop doing the same Euler/DDIM updates with the same network calls. The ratio of their
median wall times is the harness overhead; the target is at most 1.05.

    python benchmarks/bench_overhead.py [--model toy2d] [--nfe 10] [--n 10000] [--repeats 7]
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from bench.models import make_model
from bench.registry import METHODS
from bench.runner import CountingModel, sample
from bench.seeding import noise_from_seeds, sample_seeds
from bench.solvers import make_solver


def bare_loop(model, x, t):
    """Euler/DDIM written out with no harness: x <- alpha' (x/alpha + (s' - s) eps)."""
    sched = model.schedule
    with torch.no_grad():
        for i in range(t.numel() - 1):
            ti, tn = t[i], t[i + 1]
            a, s = sched.alpha(ti), sched.sigma(ti)
            an, sn = sched.alpha(tn), sched.sigma(tn)
            x0 = model(x, ti.expand(x.shape[0]))
            eps = (x - a * x0) / s
            x = an * (x / a + (sn / an - s / a) * eps)
    return x


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="toy2d")
    parser.add_argument("--time", default="flow")
    parser.add_argument("--nfe", type=int, default=10)
    parser.add_argument("--n", type=int, default=10000)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()

    model = make_model({"name": args.model, "time": args.time}).eval()
    solver = make_solver("euler")
    method = METHODS.create("uniform").bind(model.schedule, solver.steps_for_nfe(args.nfe), solver)
    x_T = model.prior(noise_from_seeds(sample_seeds("eval", 0, args.n), model.data_shape))
    t = method.discretize(x_T).t[0]

    harness, bare = [], []
    for _ in range(args.repeats):  # interleaved so that machine noise hits both alike
        start = time.perf_counter()
        out_h, _ = sample(CountingModel(model), solver, method, x_T, None, args.n)
        harness.append(time.perf_counter() - start)
        start = time.perf_counter()
        out_b = bare_loop(model, x_T, t)
        bare.append(time.perf_counter() - start)
    assert torch.allclose(out_h, out_b, rtol=1e-4, atol=1e-5), "the two paths must compute the same samples"
    h, b = statistics.median(harness), statistics.median(bare)
    print(f"model={args.model}({args.time}) nfe={args.nfe} n={args.n} threads={torch.get_num_threads()}")
    print(f"runner median {h * 1e3:.1f} ms, bare loop median {b * 1e3:.1f} ms, ratio {h / b:.3f} (target <= 1.05)")


if __name__ == "__main__":
    main()
