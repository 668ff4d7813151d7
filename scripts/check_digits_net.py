"""Quality of the trained `digits-net`: fd-digits of its teacher samples against the data's own floor.

The 1797 digits are split into two disjoint halves A and B by a permutation from a generator seeded
with 0 (A: 898 images, B: 899). The floor is the Frechet distance, in the fd-digits classifier's
features (`bench.metrics.fd_digits`), between A and B: what two independent draws of the data score.
The network's score is the same distance between |A| = 898 samples and B, the samples drawn with the
labels of A (so the class mix matches) by the pixel grids' teacher: 100 iPNDM steps on the EDM
(rho = 7) schedule, in float64, from the priors of the "eval" split. Bar: net / floor <= 2 (the
quality the shipped weights were trained to). A panel of samples (10 per class, one class
per column) is written as a PNG with `bench.images.save_sample_grid`. It also prints the median
distance from a sample to its nearest training image beside that of half A to half B (a network
that copied its training images would sit near 0).

    .venv/bin/python scripts/check_digits_net.py [--weights PATH] [--steps 100] [--out results/digits-net-panel.png]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's `bench`, not an installed one

import torch  # noqa: E402

from bench.images import save_sample_grid  # noqa: E402
from bench.metrics.fd_digits import load_digits_features  # noqa: E402
from bench.metrics.feature_distances import feature_stats, frechet_distance_features, psd_sqrt  # noqa: E402
from bench.models import make_model  # noqa: E402
from bench.models.digits import load_data  # noqa: E402
from bench.registry import METHODS  # noqa: E402
from bench.seeding import noise_from_seeds, sample_seeds  # noqa: E402
from bench.solvers import make_solver  # noqa: E402

BAR = 2.0


def halves(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(0))
    return perm[: n // 2], perm[n // 2:]


def teacher_samples(model, labels: torch.Tensor, steps: int, batch: int = 1000) -> torch.Tensor:
    solver = make_solver("ipndm")
    method = METHODS.create("edm").bind(model.schedule, steps, solver)
    n = labels.shape[0]
    x_T = model.prior(noise_from_seeds(sample_seeds("eval", 0, n), model.data_shape)).to(torch.float64)
    out = []
    with torch.no_grad():
        for i in range(0, n, batch):
            xb, cb = x_T[i : i + batch], labels[i : i + batch]
            out.append(solver.sample(model, xb, method.discretize(xb, cb), cb))
    return torch.cat(out)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", default=None, help="a weights file (default: the shipped one)")
    parser.add_argument("--steps", type=int, default=100, help="teacher steps (iPNDM, EDM schedule)")
    parser.add_argument("--refs-dir", default="results/cache/fid-refs", help="where the fd-digits classifier is cached")
    parser.add_argument("--out", default="results/digits-net-panel.png", help="sample panel PNG")
    args = parser.parse_args(argv)

    images, labels = load_data()
    a, b = halves(images.shape[0])
    features = load_digits_features(args.refs_dir)
    feats_b = features(images[b])
    mu_b, sigma_b = feature_stats(feats_b)
    root_b = psd_sqrt(sigma_b)
    floor = frechet_distance_features(features(images[a]), mu_b, sigma_b, root_b)

    model = make_model({"name": "digits-net", "weights": args.weights})
    start = time.perf_counter()
    samples = teacher_samples(model, labels[a], args.steps)
    seconds = time.perf_counter() - start
    finite = bool(torch.isfinite(samples).all())
    score = frechet_distance_features(features(samples), mu_b, sigma_b, root_b) if finite else float("nan")
    ratio = score / floor
    print(f"digits-net weights sha256 {model.weights_sha256[:12]}; teacher: ipndm, {args.steps} steps, edm schedule, "
          f"float64; {len(a)} samples in {seconds:.1f}s")
    print(f"fd-digits(half A, half B) floor = {floor:.3f}")
    print(f"fd-digits(net samples, half B)  = {score:.3f}   ratio {ratio:.2f} (bar <= {BAR}: "
          f"{'met' if ratio <= BAR else 'NOT met'})")
    print(f"samples in [-1, 1]: {float((samples.abs() <= 1.0).double().mean()):.3f}; "
          f"min {float(samples.min()):.2f}, max {float(samples.max()):.2f}")

    # Memorisation check: an exact sampler of the training set sits at distance 0 from it.
    nearest = model.nearest_distance(samples.float()).median().item()
    across = torch.cdist(images[a].float(), images[b].float()).amin(dim=1).median().item()
    print(f"median L2 distance to the nearest training image: samples {nearest:.3f} "
          f"(half A to its nearest image in half B: {across:.3f})")

    # Panel: 10 rows x 10 columns, column c shows class c.
    per_class = [samples[labels[a] == c][:10] for c in range(10)]
    panel = torch.stack([per_class[c][r] for r in range(10) for c in range(10)])
    path = save_sample_grid(panel.float(), Path(args.out), nrow=10, max_images=100)
    print(f"sample panel: {path}")
    return 0 if ratio <= BAR else 1


if __name__ == "__main__":
    raise SystemExit(main())
