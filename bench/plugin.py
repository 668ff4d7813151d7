"""The shared base of every plugin (model, noise schedule, solver, method, metric).

A plugin declares its parameters once, as a nested `Params` class (`bench.params.Params`, a pydantic
model: type, default, bounds, description per field), and a `version` integer that its author bumps
whenever a change of code changes its numbers. The grid passes parameters as keyword arguments;
`self.params` is the validated `Params` model with every default filled in (attribute access,
`self.params.rho`); `resolve()` gives its plain dict.

`resolved_spec(context)` is what determines a plugin's results, for cache keys and rows: its name,
its version, every parameter with its default filled in, and every `auto` replaced by what it
chose for `context` (the model it will run on; plugins with `auto` parameters override `resolve`).

A plugin written before typed parameters may still list `defaults = {name: value}`: it gets an
untyped `Params` (any value accepted, unknown names refused) built from that dict.
"""
from __future__ import annotations

from typing import Any, ClassVar

from pydantic import Field, create_model

from .params import Params, validate


class NoParams(Params):
    pass


class Plugin:
    name: ClassVar[str] = "?"  # set by Registry.register
    kind: ClassVar[str] = "plugin"
    Params: ClassVar[type[Params]] = NoParams
    version: ClassVar[int] = 1

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        legacy = cls.__dict__.get("defaults")
        if isinstance(legacy, dict):  # an untyped plugin written before typed parameters: any value
            fields = {k: (Any, Field(v)) for k, v in legacy.items()}
            cls.Params = create_model(f"{cls.__name__}Params", __base__=Params, **fields)

    def __init__(self, **params):
        # the validated, typed parameters: attribute access (`self.params.rho`)
        self.params: Params = validate(self.Params, params, f"{self.kind} {self.name!r}")

    def resolve(self, context=None) -> dict[str, Any]:
        """The parameters with every `auto` resolved to what this plugin will do in `context`."""
        return dict(self.params)

    def resolved_spec(self, context=None) -> dict[str, Any]:
        return {"name": self.name, "version": self.version, **self.resolve(context)}

    def spec(self) -> dict:
        return {"name": self.name, **dict(self.params)}

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in dict(self.params).items())
        return f"{self.name}({args})"
