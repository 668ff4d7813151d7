"""`PluginSpec`: one plugin entry (model, noise schedule, solver, method, metric) parsed once.

A grid, the command line and the Python API name a plugin as a string (`"edm"`) or a mapping
(`{name: edm, rho: 5, label: "EDM rho 5"}`). `PluginSpec.parse` turns either into one value: the
registered `name`, the parameters as written, and the optional display `label` (which never reaches
the plugin). `Registry.build(spec)` constructs the plugin from it; `as_dict()` gives back the
mapping form that cells, rows and keys store.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from .errors import UserError


@dataclass(frozen=True)
class PluginSpec:
    name: str
    params: Mapping[str, Any] = field(default_factory=dict)
    label: str | None = None

    @classmethod
    def parse(cls, value, where: str = "plugin", error=UserError) -> "PluginSpec":
        """A name, a mapping `{name: ..., label: ..., **params}` or a `PluginSpec`; anything else is one
        `error` naming `where`."""
        if isinstance(value, PluginSpec):
            return value
        if isinstance(value, str):
            return cls(value)
        if not isinstance(value, Mapping) or not isinstance(value.get("name"), str):
            raise error(f"{where} must be a name or a mapping with a `name`, got {value!r}")
        if "label" in value and not isinstance(value["label"], str):
            raise error(f"{where}.label must be a string, got {value['label']!r}")
        params = {k: v for k, v in value.items() if k not in ("name", "label")}
        return cls(value["name"], params, value.get("label"))

    def as_dict(self, label: bool = True) -> dict:
        """`{name, **params}` (and `label` when set and asked for): the form cells and rows store."""
        out = {"name": self.name, **self.params}
        if label and self.label is not None:
            out["label"] = self.label
        return out


def as_spec_dict(value, label: bool = True) -> dict:
    """A name or mapping as the mapping `{name: ..., **params}` (`PluginSpec.parse(value).as_dict()`)."""
    return PluginSpec.parse(value).as_dict(label)


__all__ = ["PluginSpec", "as_spec_dict"]
