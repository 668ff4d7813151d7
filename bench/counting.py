"""The one network-evaluation counter: the runner's sampling NFE and the searches' fit cost.

`NetworkCounter(model)` passes calls to a denoiser and counts `calls` (batched calls: the NFE of a
sampling pass, the papers' unit, where a guided evaluation counts once), `network_evals` (calls x
`evals_per_call`) and `rows` (single-sample network evaluations, calls' batch rows x
`evals_per_call`: the unit of a fit's cost, `fit_nfe`). A denoiser whose one call runs the network
more than once says so with `evals_per_call` (classifier-free guidance: 2, `bench.guidance`), so
every count is honest about the network work. Searches that evaluate a shared state once for many
candidates (`bench/methods/search/student_step.py`) count the rows they actually evaluate, with the same
`evals_per_call`.
"""
from __future__ import annotations


def evals_per_call(model) -> int:
    """Network evaluations one call of `model` makes (1 unless it declares more)."""
    return int(getattr(model, "evals_per_call", 1))


class NetworkCounter:
    """Wraps a denoiser and counts its evaluations: `calls`, `network_evals` and `rows` (module docstring)."""

    def __init__(self, model):
        self.model = model
        self.schedule = model.schedule
        self.evals_per_call = evals_per_call(model)
        self.calls = 0
        self.network_evals = 0
        self.rows = 0

    def __call__(self, x, t, cond=None):
        self.calls += 1
        self.network_evals += self.evals_per_call
        self.rows += x.shape[0] * self.evals_per_call
        return self.model(x, t, cond)

    def __getattr__(self, name):
        return getattr(self.model, name)


__all__ = ["NetworkCounter", "evals_per_call"]
