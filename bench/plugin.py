"""The shared base of every plugin (method, solver, model, metric): named, validated parameters.

A plugin class lists its parameters and their defaults in `defaults`; the grid passes overrides as
keyword arguments. `spec()` gives the full, plain-valued parameter set (defaults filled in), which
is what cache keys and result rows record, so changing a default changes the key.
"""
from __future__ import annotations

from typing import Any, ClassVar

from .errors import UserError


class Plugin:
    name: ClassVar[str] = "?"  # set by Registry.register
    kind: ClassVar[str] = "plugin"
    defaults: ClassVar[dict[str, Any]] = {}

    def __init__(self, **params):
        unknown = sorted(set(params) - set(self.defaults))
        if unknown:
            known = ", ".join(sorted(self.defaults)) or "none"
            raise UserError(
                f"{self.kind} {self.name!r} has no parameter {unknown[0]!r}; its parameters are: {known}"
            )
        self.params = {**self.defaults, **params}

    def spec(self) -> dict:
        return {"name": self.name, **self.params}

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.params.items())
        return f"{self.name}({args})"
