"""Cost and noise floor of the toy metrics `wasserstein` and `kl` at their defaults (bench/metrics/toy2d.py).

    python benchmarks/bench_toy2d_metrics.py [--model toy2d] [--n 4000] [--n-ref 20000] [--repeats 2]

Exact samples of the toy's data stand in for a sampler's output, so each metric's value is its
noise floor at that size (what a perfect sampler scores); the wall time of one `compute` call (both
transport problems of `wasserstein`; both histograms of `kl`) is printed with the command, torch's
threads and the load average. The floor cache is cleared before every call so each one pays in full.
"""
from __future__ import annotations

import argparse
import os
import shlex
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's `bench`, not an installed one

import torch  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="toy2d")
    parser.add_argument("--n", type=int, default=4000, help="wasserstein's n (default: its default, 4000)")
    parser.add_argument("--n-ref", type=int, default=20000, help="kl's n_ref (default: its default, 20000)")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()

    from bench.metrics import MetricContext, make_metric
    from bench.metrics import toy2d
    from bench.models import make_model

    threads = "" if "OMP_NUM_THREADS" not in os.environ else f"OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']} "
    print(f"command: {threads}python {shlex.join(sys.argv)}")
    load = ", ".join(f"{v:.2f}" for v in os.getloadavg())
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads of {os.cpu_count()} cpus, load average {load}")
    model = make_model(args.model)
    samples = model.sample_data(args.n, torch.Generator().manual_seed(10_000))  # independent of the metric draws
    for spec in ({"name": "wasserstein", "n": args.n}, {"name": "kl", "n_ref": args.n_ref}):
        metric = make_metric(spec)
        for i in range(args.repeats):
            toy2d._FLOOR_CACHE.clear()
            ctx = MetricContext(teacher=None, model=model, generator=torch.Generator().manual_seed(i))
            t0 = time.perf_counter()
            out = metric.compute(samples, ctx)
            seconds = time.perf_counter() - t0
            print(f"{spec['name']:12s} {len(samples)} exact samples: {seconds:6.2f} s per call, "
                  + ", ".join(f"{k}={v:.4g}" for k, v in out.items()))


if __name__ == "__main__":
    main()
