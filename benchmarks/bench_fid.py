"""Throughput of the `fid` metric's pieces on the CPU: images per second, and the distance times.

Prints the command that reproduces its numbers, the torch version, threads and load average, then
one line per stage.

    python benchmarks/bench_fid.py [--n 100] [--batch 50] [--threads 1] [--device cpu]
                                   [--end-to-end N --refs-dir DIR]

Stages, each timed on `--n` digits samples (8x8, the harness's [-1, 1] range):
  * resize: 8-bit quantization + clean-fid's "clean" resizer (PIL bicubic to 299x299), per image;
  * inception: the TorchScript Inception on already-resized batches of `--batch`;
  * features: the whole `InceptionFeatures.from_samples` path (both of the above);
then the Frechet distance at 2048 dimensions for n samples against a 1797-image reference (the
reference's covariance root computed once, as the metric does, and the per-cell part alone, both by
the metric's route from the features and by the d x d statistics route), and KID
with clean-fid's defaults (100 subsets). With --end-to-end N, the `fid` metric runs on N samples drawn
from the `digits` model's data, reference statistics in --refs-dir (built there on first use: 1797
Inception evaluations, minutes on a CPU), and the wall time of the first and a second call is printed.
The Inception weights are found as the metric finds them (bench/metrics/inception.py). Run it on an
idle machine for clean numbers; the load average is printed.
"""
from __future__ import annotations

import argparse
import os
import shlex
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's `bench`, not an installed one

import numpy as np  # noqa: E402
import torch  # noqa: E402


def rate(n: int, seconds: float) -> str:
    return f"{n / seconds:8.2f} images/s ({seconds:.2f} s for {n})"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=100, help="images per stage (default: 100)")
    parser.add_argument("--batch", type=int, default=50, help="Inception batch size (default: 50)")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--end-to-end", type=int, default=0, metavar="N", help="also run the fid metric on N samples")
    parser.add_argument("--refs-dir", default=None, help="reference dir for --end-to-end (default: a temporary dir)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    from bench.images import to_uint8
    from bench.metrics import MetricContext, make_metric
    from bench.metrics.feature_distances import (feature_stats, frechet_distance, frechet_distance_features,
                                                 kernel_distance, psd_sqrt)
    from bench.metrics.inception import get_extractor, iter_hwc
    from bench.models import make_model

    load = ", ".join(f"{v:.2f}" for v in os.getloadavg())
    threads = "" if "OMP_NUM_THREADS" not in os.environ else f"OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']} "
    print(f"command: {threads}python {shlex.join(sys.argv)}")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads of {os.cpu_count()} cpus, load average {load}")
    model = make_model("digits")
    samples = model.sample_data(args.n, torch.Generator().manual_seed(0))

    t0 = time.perf_counter()
    ext = get_extractor(None, args.device, args.batch)
    print(f"Inception weights {ext.weights.short} ({ext.weights.source}: {ext.weights.path}), "
          f"loaded in {time.perf_counter() - t0:.2f} s")
    ext.from_samples(samples[: min(4, args.n)], progress=False)  # warm-up (TorchScript profiling runs)

    t0 = time.perf_counter()
    resized = np.stack([ext.resize(img) for img in iter_hwc(to_uint8(samples))])
    print(f"resize     {rate(args.n, time.perf_counter() - t0)}")

    batch = torch.from_numpy(resized).permute(0, 3, 1, 2).contiguous()
    t0 = time.perf_counter()
    with torch.no_grad():
        for start in range(0, args.n, args.batch):
            ext.model(batch[start : start + args.batch].to(ext.device))
    print(f"inception  {rate(args.n, time.perf_counter() - t0)}")

    t0 = time.perf_counter()
    feats = ext.from_samples(samples, progress=False)
    print(f"features   {rate(args.n, time.perf_counter() - t0)}")

    rng = np.random.default_rng(0)
    ref_feats = np.abs(rng.normal(size=(1797, feats.shape[1]))) * feats.std(0) + feats.mean(0)  # a stand-in reference
    mu_r, sigma_r = feature_stats(ref_feats)
    t0 = time.perf_counter()
    root = psd_sqrt(sigma_r)
    t_root = time.perf_counter() - t0
    t0 = time.perf_counter()
    frechet_distance(*feature_stats(feats), mu_r, sigma_r, sqrt_sigma2=root)
    t_fd = time.perf_counter() - t0
    t0 = time.perf_counter()
    frechet_distance_features(feats, mu_r, sigma_r, sqrt_sigma2=root)
    t_fdf = time.perf_counter() - t0
    print(f"frechet distance (2048-d, n={args.n} vs 1797): {t_fdf:.2f} s per cell from the features "
          f"({t_fd:.2f} s by the d x d route; + {t_root:.2f} s once per reference for its covariance root)")
    t0 = time.perf_counter()
    kernel_distance(feats, ref_feats, seed=0)
    print(f"kid (100 subsets of {min(args.n, 1000)}): {time.perf_counter() - t0:.2f} s")

    if args.end_to_end:
        refs = args.refs_dir or tempfile.mkdtemp(prefix="bench-fid-refs-")
        metric = make_metric({"name": "fid", "refs_dir": refs, "batch": args.batch})
        data = model.sample_data(args.end_to_end, torch.Generator().manual_seed(1))
        for label in ("first call (builds the reference if missing)", "second call"):
            ctx = MetricContext(teacher=None, model=model, generator=torch.Generator().manual_seed(0),
                                device=torch.device(args.device))
            t0 = time.perf_counter()
            out = metric.compute(data, ctx)
            seconds = time.perf_counter() - t0
            print(f"fid metric, {args.end_to_end} digits samples, {label}: {seconds:.1f} s -> "
                  + ", ".join(f"{k}={v:.5g}" if isinstance(v, float) else f"{k}={v}" for k, v in out.items()))
        print(f"references in {refs}")


if __name__ == "__main__":
    main()
