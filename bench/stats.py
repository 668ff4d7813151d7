"""Uncertainty of every tabled number: intervals, paired comparisons, the best set, power.

The unit of a comparison is a *column*: one (grid, model, solver, metric, NFE). Every method of a
column was evaluated on the same evaluation priors (the teacher set is keyed by model, teacher and
seed, not by method), so two methods' per-sample scores (`bench.scores`) are paired sample by sample.
docs/uncertainty.md states the same with the formulas.

Intervals (level `level`, default 95%):
  * one seed, per-sample scores kept: the **percentile bootstrap** over the evaluation priors,
    `scipy.stats.bootstrap(method="percentile")`, `n_resamples` resamples (default 2000, `--bootstrap`).
    The resamples are *paired*: one draw of prior indices resamples every method and every metric of
    a (grid, model, solver, NFE) at once (scipy draws the indices; the statistic turns them into counts
    and takes the weighted means), so the interval of a difference is the percentile interval of the
    difference of the resampled means. Percentile, not BCa: BCa's jackknife costs O(n^2) per vector,
    and for a mean over thousands of priors the two agree (the coverage benchmark,
    scripts/check_interval_coverage.py, checks the level is kept).
  * several seeds: each seed has its own evaluation priors (and, for fitted methods, its own fit), so
    the seed is the unit: a seed's mean over its priors already carries its sampling noise, and the
    spread of the per-seed means carries both. The interval is Student's t interval of the per-seed
    means (S - 1 degrees of freedom); differences are paired by seed (the same seed's priors). A
    bootstrap over two to five values would be degenerate, so none is drawn at that level.
  * distribution distances (FID, fd-digits, Wasserstein, KL: no per-sample part): the t interval
    over seeds when there are >= 2, otherwise none ("single estimate"). KID with one seed: the
    percentile bootstrap over its per-subset values (clean-fid's subsets, kept beside the row;
    `UNITS`), paired across methods like per-sample scores.
  * rows written before per-sample scores were kept: no interval ("no per-sample scores").
The random stream of a column is seeded from its key (SHA-256 of grid, model, solver, NFE), so the
same rows always give the same report bytes, whatever else the report holds.

Paired tests: for each method, the difference of its scores and the reference's (the best heuristic:
the best of the four closed forms; and the column's best: the method with the best mean), per sample
(one seed) or per seed, with the interval above and the p-value of the paired t test
(`scipy.stats.ttest_1samp` on the differences, two-sided). Identical scores give a difference of
exactly 0 and p = 1. Each family (against the best heuristic, against the best) is corrected for the
number of methods compared with Holm's step-down procedure (`holm`; statsmodels' `multipletests(
method="holm")` computes the same, but statsmodels is not a dependency).

Best set: the best method and every method whose Holm-adjusted p against it is >= 1 - level (not
significantly different): these are "tied with the best". Without a test (single estimate, no
per-sample scores) the best set is the best method alone and ties are unknown (None).

Win rate (per-instance methods: a row without one global schedule, e.g. INDIS, OSS per instance, the
oracle): the share of priors where the method's score is better (strictly) than the best heuristic's.

Power: when the best set has more than one member, the number of evaluation priors that would tell
the top two apart with a two-sided paired test at level 1 - level and power 80%:
n = ((z_{1-a/2} + z_{0.8}) * sd(d) / |mean(d)|)^2, d the per-sample differences (the normal
approximation of the paired t test; Holm's correction is not included).
"""
from __future__ import annotations

import hashlib
import math
import warnings
from dataclasses import dataclass

import numpy as np
from scipy import stats as sps

from .errors import UserError

DEFAULT_LEVEL = 0.95
DEFAULT_RESAMPLES = 2000  # percentile intervals: >= 1000 resamples (Efron & Tibshirani 1993, ch. 13)
POWER = 0.8

NO_SCORES = "no per-sample scores (row written before they were kept)"
SINGLE = "single estimate"
# What a metric's kept vector holds, when it is not one value per evaluation prior: KID keeps its
# per-subset values (`bench.metrics.feature_distances.kernel_distance_subsets`; subset i is the same choice of
# priors for every method, so they pair). Their interval says how much KID moves with clean-fid's
# choice of subsets of these samples, not with another draw of samples; win rates and prior counts
# are not computed from them.
UNITS = {"kid": "KID subsets"}
PRIORS = "priors"


def check_settings(level: float, n_resamples: int) -> None:
    """One UserError for an interval level outside (0, 1) or a resample count below 1."""
    if not (isinstance(level, (int, float)) and 0 < level < 1):
        raise UserError(f"--ci-level must be between 0 and 1 (e.g. 0.95); got {level}")
    if not (isinstance(n_resamples, int) and n_resamples >= 1):
        raise UserError(f"--bootstrap must be a number of resamples >= 1 (e.g. 2000); got {n_resamples}")


def holm(pvalues) -> np.ndarray:
    """Holm's step-down adjusted p-values: sort ascending, p_(i) * (m - i + 1) (i from 1), running
    maximum, capped at 1 (Holm 1979); NaN entries are left out of m and stay NaN."""
    p = np.asarray(pvalues, dtype=float)
    out = np.full_like(p, np.nan)
    ok = np.flatnonzero(~np.isnan(p))
    m = len(ok)
    if m == 0:
        return out
    order = ok[np.argsort(p[ok], kind="stable")]
    adjusted = np.maximum.accumulate(p[order] * (m - np.arange(m)))
    out[order] = np.minimum(adjusted, 1.0)
    return out


def column_seed(*key) -> np.random.Generator:
    """A generator seeded from a column's key (not from its position in the report)."""
    digest = hashlib.sha256("\x1f".join(map(str, key)).encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def paired_bootstrap(vectors: np.ndarray, level: float, n_resamples: int, rng) -> tuple[np.ndarray, np.ndarray]:
    """Percentile intervals of the means of the rows of `vectors` [R, n], all rows resampled with the
    same prior indices (`scipy.stats.bootstrap`). Returns (low [R], high [R])."""
    vectors = np.asarray(vectors, dtype=np.float64)
    n = vectors.shape[1]

    def statistic(index, axis=-1):
        index = np.asarray(index)
        if index.ndim == 1:
            return vectors.mean(axis=1)
        batch = index.shape[0]
        flat = (index + n * np.arange(batch)[:, None]).ravel()
        counts = np.bincount(flat, minlength=batch * n).reshape(batch, n)
        return (counts @ vectors.T).T / n  # [R, batch]: the resampled means

    batch = max(1, min(n_resamples, 2_000_000 // max(n, 1)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = sps.bootstrap((np.arange(n),), statistic, n_resamples=n_resamples, method="percentile",
                            confidence_level=level, vectorized=True, batch=batch, rng=rng)
    return np.atleast_1d(res.confidence_interval.low), np.atleast_1d(res.confidence_interval.high)


def t_interval(values, level: float) -> tuple[float, float]:
    """Student's t interval of the mean of `values` (>= 2 of them)."""
    values = np.asarray(values, dtype=float)
    mean = values.mean()
    if np.all(values == values[0]):
        return float(mean), float(mean)
    half = sps.t.ppf(0.5 + level / 2, len(values) - 1) * values.std(ddof=1) / math.sqrt(len(values))
    return float(mean - half), float(mean + half)


def paired_p(differences) -> float:
    """Two-sided p of the paired t test of the differences against 0 (the same value as
    `scipy.stats.ttest_1samp(d, 0).pvalue`, computed from its formula t = mean / (sd / sqrt(n)) with
    `scipy.stats.t.sf`, which avoids the wrapper's per-call cost over thousands of columns); exactly 1
    when all are 0."""
    d = np.asarray(differences, dtype=float)
    if len(d) == 0 or not np.all(np.isfinite(d)):
        return float("nan")
    if np.all(d == 0):
        return 1.0
    if np.all(d == d[0]):
        return 0.0  # a constant nonzero difference: no noise at all
    if len(d) < 2:
        return float("nan")
    t = d.mean() / (d.std(ddof=1) / math.sqrt(len(d)))
    return float(min(1.0, 2.0 * sps.t.sf(abs(t), len(d) - 1)))


def priors_needed(differences, level: float, power: float = POWER) -> float | None:
    """Evaluation priors a two-sided paired test at level 1 - `level` needs to detect the observed
    mean difference with `power`: ((z_{1-a/2} + z_power) sd / |mean|)^2; None when the mean is 0."""
    d = np.asarray(differences, dtype=float)
    if len(d) < 2 or not np.all(np.isfinite(d)) or d.mean() == 0:
        return None
    z = sps.norm.ppf(0.5 + level / 2) + sps.norm.ppf(power)
    return float(math.ceil((z * d.std(ddof=1) / abs(d.mean())) ** 2))


@dataclass
class Entry:
    """One method of one column: its rows' values by seed and per-sample scores by seed (or None)."""
    method: str
    values: dict  # seed -> the row's value (the tabled mean)
    scores: dict  # seed -> per-sample vector, or None when the row has none
    paper_baseline: bool
    per_instance: bool
    old_rows: bool = False  # some row predates per-sample scores (no `scores_sha256`)
    unit: str = PRIORS  # what one entry of a scores vector is (`UNITS`)


def _better(higher: bool):
    return (lambda a, b: a > b) if higher else (lambda a, b: a < b)


def column_stats(entries: list[Entry], higher: bool, level: float, n_resamples: int,
                 key: tuple, vectors_ci=None) -> dict[str, dict]:
    """{method: statistics} for one column (see the module docstring). `vectors_ci`, when given,
    maps a per-sample vector's id to its precomputed (low, high) bootstrap interval."""
    out = {e.method: {} for e in entries}
    seeds = sorted({s for e in entries for s in e.values})
    means = {e.method: float(np.mean([e.values[s] for s in sorted(e.values)])) for e in entries}
    better = _better(higher)
    finite = [e for e in entries if np.isfinite(means[e.method])]
    best = None
    for e in finite:
        if best is None or better(means[e.method], means[best.method]):
            best = e
    baselines = [e for e in finite if e.paper_baseline]
    best_h = None
    for e in baselines:
        if best_h is None or better(means[e.method], means[best_h.method]):
            best_h = e
    multi = len(seeds) > 1

    def has_scores(e):
        return all(e.scores.get(s) is not None for s in e.values)

    def diff_units(e, ref):
        """Paired differences (per sample with one seed, per seed with several), or None."""
        common = sorted(set(e.values) & set(ref.values))
        if not common:
            return None
        if multi:
            return np.array([e.values[s] - ref.values[s] for s in common]) if len(common) >= 2 else None
        s = common[0]
        if e.scores.get(s) is None or ref.scores.get(s) is None or len(e.scores[s]) != len(ref.scores[s]):
            return None
        return e.scores[s] - ref.scores[s]

    for e in entries:
        stats = out[e.method]
        stats["mean"] = means[e.method]
        stats["n_seeds"] = len(e.values)
        stats["n"] = int(sum(len(e.scores[s]) for s in e.values if e.scores.get(s) is not None)) or None
        low = high = float("nan")
        if multi and len(e.values) >= 2:
            low, high = t_interval([e.values[s] for s in sorted(e.values)], level)
            kind = f"t over {len(e.values)} seeds"
        elif not multi and has_scores(e):
            vec = e.scores[next(iter(e.values))]
            if vectors_ci is not None and (e.method, "value") in vectors_ci:
                low, high = vectors_ci[(e.method, "value")]
            kind = (f"percentile bootstrap over {len(vec)} {e.unit}" if np.isfinite(low) and np.isfinite(high)
                    else "no interval (non-finite per-sample values)")
        else:
            kind = NO_SCORES if e.old_rows else SINGLE
        stats["ci_low"], stats["ci_high"], stats["interval"] = low, high, kind
        stats["is_best"] = best is not None and e.method == best.method

    for ref, tag in ((best_h, "best_heuristic"), (best, "best")):
        pvals = {}
        for e in entries:
            stats = out[e.method]
            stats[f"delta_vs_{tag}"] = stats[f"delta_vs_{tag}_low"] = stats[f"delta_vs_{tag}_high"] = float("nan")
            stats[f"p_vs_{tag}"] = float("nan")
            if ref is None:
                continue
            if e.method == ref.method:
                stats[f"delta_vs_{tag}"] = 0.0
                continue
            d = diff_units(e, ref)
            if d is None:
                continue
            stats[f"delta_vs_{tag}"] = float(d.mean())
            if multi:
                stats[f"delta_vs_{tag}_low"], stats[f"delta_vs_{tag}_high"] = t_interval(d, level)
            elif vectors_ci is not None and (e.method, tag) in vectors_ci:
                stats[f"delta_vs_{tag}_low"], stats[f"delta_vs_{tag}_high"] = vectors_ci[(e.method, tag)]
            pvals[e.method] = paired_p(d)
        names = list(pvals)
        for name, p in zip(names, holm([pvals[n] for n in names])):
            out[name][f"p_vs_{tag}"] = float(p)

    alpha = 1 - level
    for e in entries:
        stats = out[e.method]
        p = stats["p_vs_best"]
        if stats["is_best"]:
            stats["tied_with_best"] = False
        elif np.isnan(p):
            stats["tied_with_best"] = None  # no test: unknown
        else:
            stats["tied_with_best"] = bool(p >= alpha)
        stats["in_best_set"] = bool(stats["is_best"] or stats["tied_with_best"])
        stats["win_rate_vs_best_heuristic"] = float("nan")
        if e.per_instance and e.unit == PRIORS and best_h is not None and e.method != best_h.method:
            common = [s for s in sorted(e.values) if e.scores.get(s) is not None and best_h.scores.get(s) is not None
                      and len(e.scores[s]) == len(best_h.scores[s])]
            if common:
                a = np.concatenate([e.scores[s] for s in common])
                b = np.concatenate([best_h.scores[s] for s in common])
                stats["win_rate_vs_best_heuristic"] = float(np.mean(a > b if higher else a < b))

    # power: the two best members of a best set with more than one member
    members = sorted((e for e in entries if out[e.method]["in_best_set"]), key=lambda e: means[e.method],
                     reverse=higher)
    for e in entries:
        out[e.method]["priors_to_separate"] = None
    if best is not None and len(members) > 1 and best.unit == PRIORS:
        second = members[1]
        d = diff_units(second, best) if not multi else None
        if multi:
            common = [s for s in sorted(second.values) if second.scores.get(s) is not None
                      and best.scores.get(s) is not None]
            d = np.concatenate([second.scores[s] - best.scores[s] for s in common]) if common else None
        out[best.method]["priors_to_separate"] = priors_needed(d, level) if d is not None else None
        out[best.method]["runner_up"] = second.method
    return out


def column_vectors(entries: list[Entry], higher: bool) -> tuple[list, np.ndarray] | None:
    """For a one-seed column with per-sample scores: the labels and stacked vectors whose bootstrap
    intervals `column_stats` uses: each method's scores, and its differences with the best
    heuristic and the best (chosen by the rows' means, as `column_stats` chooses them)."""
    usable = [e for e in entries if len(e.values) == 1 and e.scores.get(next(iter(e.values))) is not None]
    if not usable:
        return None
    means = {e.method: next(iter(e.values.values())) for e in entries}
    better = _better(higher)
    finite = [e for e in entries if np.isfinite(means[e.method])]
    best = best_h = None
    for e in finite:
        if best is None or better(means[e.method], means[best.method]):
            best = e
        if e.paper_baseline and (best_h is None or better(means[e.method], means[best_h.method])):
            best_h = e
    labels, rows = [], []
    for e in usable:
        vec = e.scores[next(iter(e.values))]
        if not np.all(np.isfinite(vec)):
            continue
        labels.append((e.method, "value"))
        rows.append(vec)
        for ref, tag in ((best_h, "best_heuristic"), (best, "best")):
            if ref is None or ref.method == e.method or ref not in usable:
                continue
            other = ref.scores[next(iter(ref.values))]
            if len(other) != len(vec) or not np.all(np.isfinite(other)):
                continue
            labels.append((e.method, tag))
            rows.append(vec - other)
    if not rows:
        return None
    n = {len(r) for r in rows}
    if len(n) > 1:
        return None
    return labels, np.vstack(rows)


__all__ = ["DEFAULT_LEVEL", "DEFAULT_RESAMPLES", "Entry", "NO_SCORES", "SINGLE", "check_settings", "column_seed",
           "column_stats", "column_vectors", "holm", "paired_bootstrap", "paired_p", "priors_needed", "t_interval"]
