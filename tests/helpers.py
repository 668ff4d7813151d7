"""Helpers shared by test modules (fixtures are in tests/conftest.py).

`fitted_method` is "a fitted method" the way a library user gets one: `bench.api.bind` then
`bench.api.fit`, here on a teacher set the test supplies."""
from __future__ import annotations

from bench import api


def fitted_method(spec, model, solver, teacher, *, steps: int, **fit_options):
    """(method, its `FitContext`): `spec` (a method spec) bound to `model` for `steps` steps of `solver`
    and fitted on `teacher(split, n) -> TeacherSet`; `fit_options` go to `api.fit` (nfe, train_size, ...)."""
    method = api.bind(spec, model, solver, steps=steps)
    ctx = api.fit(method, teacher=teacher, **fit_options)
    return method, ctx
