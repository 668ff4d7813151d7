"""Metrics that score a set of samples; one module per family, each metric registered in `METRICS`.

`mse`, `psnr` (distance.py) compare each sample with its teacher endpoint x0* from the same prior;
`wasserstein`, `kl` (toy2d.py) compare the sample distribution with the exact toy data distribution.
"""

from .base import Metric, MetricContext, make_metric

__all__ = ["Metric", "MetricContext", "make_metric"]
