"""The coverage of the report's intervals, measured (scripts/check_interval_coverage.py): 50 independent
sets of 2000 toy2d evaluation priors for one cell; each set's 95% interval must cover the mean over
100 times as many priors in at least 90% of the sets (at a true 95% coverage, fewer than 45 hits of
50 happens with probability ~4%)."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))


@pytest.mark.slow
def test_95_percent_intervals_cover_the_large_sample_mean():
    from check_interval_coverage import coverage

    rates = coverage(sets=50, n=2000, factor=100)
    print(rates)
    assert all(rate >= 0.90 for rate in rates.values()), rates
