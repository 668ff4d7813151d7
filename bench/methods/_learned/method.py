"""The base of every learned method (LD3, LD3-hard, GOD, INDIS, the oracle): its `auto` parameters
resolved for the model on this machine (`losses.resolve_learned`: space, loss, gradient
checkpointing) and the time map (`time_map.TimeMap`, LD3's cumulative-softmax parametrisation in the
method's `space`) bound with the noise schedule."""
from __future__ import annotations

from bench.discretization import DiscretizationMethod

from .losses import resolve_learned
from .time_map import TimeMap


class LearnedMethod(DiscretizationMethod):
    def resolve(self, context=None) -> dict:
        return dict(self.params) if context is None else resolve_learned(self.params, context)

    def bind(self, schedule, steps, solver=None, model=None):
        super().bind(schedule, steps, solver, model)
        self.map = TimeMap(schedule, self.params.space)
        return self


__all__ = ["LearnedMethod"]
