"""Throughput of the exact `digits` denoiser: samples x evaluations per second.

    python benchmarks/bench_digits.py [--seconds 2] [--grad] [--threads N]

For batch 1000 and 4000, float32 and float64, unconditional and class-conditional, one evaluation is
model(x, t, cond) on x = x0 + sigma * noise with sigma log-uniform in [0.002, 80] (per sample), under
torch.no_grad (as in sampling); with --grad, under autograd with a backward pass to x and t (as in
fitting a learned schedule). Each configuration is timed repeatedly for --seconds; the best and the
median rate over repeats are printed (the machine may be shared, so the best is the cleaner figure).
--threads sets torch's intra-op threads (default: torch's default); on a loaded 2-core machine one
thread can be much faster than two, since OpenMP threads then wait on each other.
"""
from __future__ import annotations

import argparse
import os
import statistics
import time

import torch

from bench.models.base import make_model


def measure(model, x, t, cond, seconds: float, grad: bool):
    def once():
        if grad:
            xg, tg = x.clone().requires_grad_(True), t.clone().requires_grad_(True)
            model(xg, tg, cond).square().sum().backward()
        else:
            with torch.no_grad():
                model(x, t, cond)

    once()  # warm-up (casts the training set to this dtype)
    rates = []
    start = time.perf_counter()
    while time.perf_counter() - start < seconds or len(rates) < 3:
        t0 = time.perf_counter()
        once()
        rates.append(x.shape[0] / (time.perf_counter() - t0))
    return max(rates), statistics.median(rates), len(rates)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=2.0, help="time per configuration")
    parser.add_argument("--grad", action="store_true", help="include a backward pass")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    model = make_model("digits")
    g = torch.Generator().manual_seed(0)
    load = ", ".join(f"{v:.2f}" for v in os.getloadavg())
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads of {os.cpu_count()} cpus, "
          f"load average {load}, grad={args.grad}")
    print(f"{'dtype':8} {'batch':>6} {'cond':>5} {'best samples*evals/s':>21} {'median':>10} {'reps':>5}")
    for dtype in (torch.float32, torch.float64):
        for batch in (1000, 4000):
            x0, labels = model.sample_labeled(batch, g, dtype=dtype)
            sigma = torch.exp(torch.empty(batch, dtype=torch.float64).uniform_(
                torch.log(torch.tensor(0.002)).item(), torch.log(torch.tensor(80.0)).item(), generator=g)).to(dtype)
            x = x0 + sigma[:, None, None, None] * torch.randn(x0.shape, generator=g, dtype=dtype)
            for cond in (None, labels):
                best, median, reps = measure(model, x, sigma, cond, args.seconds, args.grad)
                name = str(dtype).replace("torch.", "")
                print(f"{name:8} {batch:6d} {'yes' if cond is not None else 'no':>5} {best:21,.0f} {median:10,.0f} {reps:5d}")


if __name__ == "__main__":
    main()
