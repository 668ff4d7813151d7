"""`fd-digits`: the Frechet distance in the penultimate layer of a small classifier of the 8x8 digits.

The FID recipe (Heusel et al. 2017: fit a Gaussian to the features of each set, take the Frechet
distance of the two Gaussians) with a feature network that fits the data: Inception features of 8x8
digits blown up to 299x299 say little about digits. It is named for what it is -- a Frechet distance
in a digits classifier's features -- and is never called FID; numbers from it are not comparable
with any published FID.

Classifier. An MLP 64 -> 256 -> ReLU -> 128 -> ReLU -> 10 on the flattened image in [-1, 1]; the
features are the 128 post-ReLU activations of the penultimate layer. Trained deterministically on the
CPU: the 1797 scikit-learn digits (`bench.models.digits.load_data`) are split by a permutation from
a generator seeded with 0 into 1437 training and 360 held-out images; the weights are initialised
under `torch.manual_seed(0)` (in a forked RNG, so the global RNG is untouched); 30 epochs of Adam (lr
1e-3, batches of 64 in an order drawn from a generator seeded with 1), cross-entropy, one torch
thread (so the float round-off, and thus the weights, do not depend on the machine's thread count).
An MLP rather than a CNN keeps the first use short while its features still separate the classes;
its held-out accuracy is written in every row (`fd-digits_classifier_acc`).

Cache. The classifier is trained once and stored in the folder of the FID reference statistics
(`bench.metrics.fid_references.ReferenceStore`: the metric parameter `refs_dir`, else the results
root's `ResultsRoot.references_dir()`) as
    <references folder>/fd-digits/classifier-<config hash>.pt    (state dict)
    <references folder>/fd-digits/classifier-<config hash>.json  (held-out accuracy, config, SHA-256 of the .pt)
written atomically under the store's common lock (a concurrent first use waits, then reads it); the
config hash covers the architecture and every training setting.
The reference statistics (mean, covariance of the 128-d features of all 1797 training images) are
cheap and recomputed when the classifier is loaded (once per process).

Columns (lower is better for `fd-digits`; needs no teacher; only for 8x8 one-channel images):
  * `fd-digits`: Frechet distance between the samples' features and the training set's, computed by
    `bench.metrics.feature_distances.frechet_distance_features` (the clean-fid formula, shared with
    `fid`). Samples are clamped to [-1, 1] (the data range, as an image would be) but not quantized.
    A non-finite sample gives NaN.
  * `fd-digits_floor`: the same for as many images drawn with replacement from the training set
    (an exact sampler of the digits model), drawn from a numpy generator seeded by one integer from
    `ctx.generator`; a value at the floor cannot be told from exact sampling.
  * `fd-digits_classifier_acc`: the classifier's held-out accuracy.
  * `fd-digits_weights`: the first 12 hex digits of the SHA-256 of the classifier's weights file.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
from pydantic import Field

from ..errors import UserError
from ..filehash import file_sha256
from ..params import Params
from ..registry import METRICS
from ..seeding import stable_hash
from ..store import atomic_write_json, atomic_write_torch, read_json
from .base import Metric, MetricContext
from .feature_distances import feature_stats, frechet_distance_features, psd_sqrt
from .fid_references import ReferenceStore

HASH_LEN = 12  # hex digits of the weights' SHA-256 in the `fd-digits_weights` column (as `fid_weights`)

IMAGE_SHAPE = (1, 8, 8)
CONFIG = {
    "version": 1,
    "arch": "mlp",
    "widths": [64, 256, 128, 10],
    "held_out": 360,
    "split_seed": 0,
    "init_seed": 0,
    "order_seed": 1,
    "epochs": 30,
    "batch": 64,
    "lr": 1e-3,
    "optimizer": "adam",
    "threads": 1,
}


class DigitsMLP(torch.nn.Module):
    def __init__(self, widths=tuple(CONFIG["widths"])):
        super().__init__()
        d_in, h1, h2, n_out = widths
        self.body = torch.nn.Sequential(
            torch.nn.Flatten(), torch.nn.Linear(d_in, h1), torch.nn.ReLU(), torch.nn.Linear(h1, h2), torch.nn.ReLU()
        )
        self.head = torch.nn.Linear(h2, n_out)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate (post-ReLU) activations [B, 128]."""
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def _split(n: int, config: dict) -> tuple[torch.Tensor, torch.Tensor]:
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(config["split_seed"]))
    return perm[: n - config["held_out"]], perm[n - config["held_out"]:]


def train_classifier(config: dict = CONFIG) -> tuple[DigitsMLP, float]:
    """Train the classifier as described in the module docstring; returns (net, held-out accuracy)."""
    from ..models.digits import load_data

    images, labels = load_data()
    x = images.to(torch.float32).reshape(-1, *IMAGE_SHAPE)
    train, held_out = _split(x.shape[0], config)
    threads = torch.get_num_threads()
    torch.set_num_threads(config["threads"])
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config["init_seed"])
            net = DigitsMLP(tuple(config["widths"]))
        opt = torch.optim.Adam(net.parameters(), lr=config["lr"])
        order_gen = torch.Generator().manual_seed(config["order_seed"])
        net.train()
        for _ in range(config["epochs"]):
            order = train[torch.randperm(train.shape[0], generator=order_gen)]
            for start in range(0, order.shape[0], config["batch"]):
                batch = order[start : start + config["batch"]]
                loss = torch.nn.functional.cross_entropy(net(x[batch]), labels[batch])
                opt.zero_grad()
                loss.backward()
                opt.step()
        net.eval()
        with torch.no_grad():
            accuracy = (net(x[held_out]).argmax(dim=1) == labels[held_out]).double().mean().item()
    finally:
        torch.set_num_threads(threads)
    return net, accuracy


def classifier_paths(refs_dir) -> tuple[Path, Path]:
    folder = refs_dir.folder if isinstance(refs_dir, ReferenceStore) else Path(refs_dir)
    stem = folder / "fd-digits" / f"classifier-{stable_hash(CONFIG, 12)}"
    return stem.with_suffix(".pt"), stem.with_suffix(".json")


@dataclass
class DigitsFeatures:
    net: DigitsMLP
    accuracy: float
    weights_sha256: str
    mu: np.ndarray
    sigma: np.ndarray
    feats: np.ndarray  # reference features of all 1797 training images
    sqrt_sigma: np.ndarray | None = None

    def __call__(self, x: torch.Tensor) -> np.ndarray:
        with torch.no_grad():
            x = x.detach().to("cpu", torch.float32).reshape(-1, *IMAGE_SHAPE).clamp(-1.0, 1.0)
            return self.net.features(x).double().numpy()


def ensure_classifier(refs_dir) -> tuple[Path, dict]:
    """Train and store the classifier once (`refs_dir`: a `ReferenceStore` or a folder); returns (weights
    path, info). Concurrent first uses: one trains, the others wait on the store's lock and read it."""
    store = refs_dir if isinstance(refs_dir, ReferenceStore) else ReferenceStore.of_folder(refs_dir)
    weights, info_path = classifier_paths(store)
    if not info_path.exists():
        with store.lock(weights):
            if not info_path.exists():
                net, accuracy = train_classifier(CONFIG)
                atomic_write_torch(weights, net.state_dict())
                atomic_write_json(info_path, {  # written last: marks the classifier done
                    "held_out_accuracy": accuracy, "config": CONFIG, "torch": torch.__version__,
                    "weights_sha256": file_sha256(weights),
                })
    return weights, read_json(info_path)


@functools.lru_cache(maxsize=4)
def _load(weights: str, sha256: str, accuracy: float) -> DigitsFeatures:
    from ..models.digits import load_data

    net = DigitsMLP(tuple(CONFIG["widths"]))
    net.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    net.eval()
    probe = DigitsFeatures(net, accuracy, sha256, None, None, None)
    feats = probe(load_data()[0])
    mu, sigma = feature_stats(feats)
    return DigitsFeatures(net, accuracy, sha256, mu, sigma, feats, psd_sqrt(sigma))


def load_digits_features(refs_dir) -> DigitsFeatures:
    weights, info = ensure_classifier(refs_dir)
    sha = file_sha256(weights)
    if sha != info.get("weights_sha256"):
        raise UserError(f"fd-digits classifier {weights} does not match {weights.with_suffix('.json').name} "
                        f"(edited or half-copied); delete both files and rerun to retrain it")
    return _load(str(weights), sha, float(info["held_out_accuracy"]))


_FLOORS: dict[tuple, float] = {}


@METRICS.register("fd-digits")
class FDDigits(Metric):
    higher_is_better: ClassVar[bool] = False
    needs_teacher: ClassVar[bool] = False
    extra_columns: ClassVar[tuple[str, ...]] = ("floor", "classifier_acc", "weights")

    class Params(Params):
        refs_dir: str | None = Field(None, description="where the classifier lives (default: <results>/cache/fid-refs)")

    def check_model(self, model) -> None:
        if tuple(getattr(model, "image_shape", getattr(model, "data_shape", ()))) != IMAGE_SHAPE:
            raise UserError(f"metric 'fd-digits' scores 8x8 one-channel digit images; model {model.name!r} makes "
                            f"{tuple(model.data_shape)}: remove fd-digits from its grid")

    def compute(self, samples: torch.Tensor, ctx: MetricContext) -> dict:
        shape = tuple(getattr(ctx.model, "data_shape", ()))
        if shape != IMAGE_SHAPE or tuple(samples.shape[1:]) != IMAGE_SHAPE:
            name = getattr(ctx.model, "name", type(ctx.model).__name__)
            raise UserError(f"metric 'fd-digits' scores 8x8 one-channel digit images (model 'digits'); model {name!r} "
                            f"makes {tuple(samples.shape[1:])}: remove fd-digits from its grid")
        count = samples.shape[0]
        if count < 2:
            raise ValueError("metric 'fd-digits' needs at least 2 samples")
        model = load_digits_features(ReferenceStore.for_metric(self.params.refs_dir, ctx))
        seed = int(torch.randint(0, 2**31 - 1, (1,), generator=ctx.generator, device=ctx.generator.device).item())
        if bool(torch.isfinite(samples).all()):
            value = frechet_distance_features(model(samples), model.mu, model.sigma, model.sqrt_sigma)
        else:
            value = float("nan")
        key = (model.weights_sha256, count, seed)
        if key not in _FLOORS:
            pick = np.random.default_rng(seed).integers(0, model.feats.shape[0], size=count)
            _FLOORS[key] = frechet_distance_features(model.feats[pick], model.mu, model.sigma, model.sqrt_sigma)
        return {
            self.name: value,
            f"{self.name}_floor": _FLOORS[key],
            f"{self.name}_classifier_acc": model.accuracy,
            f"{self.name}_weights": model.weights_sha256[:HASH_LEN],
        }


__all__ = ["CONFIG", "DigitsMLP", "FDDigits", "classifier_paths", "ensure_classifier", "load_digits_features",
           "train_classifier"]
