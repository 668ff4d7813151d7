"""One registry per plugin kind: methods, solvers, models, metrics, noise schedules.

Plugins register themselves with a decorator (`@METHODS.register("uniform")`). A registry imports
its built-in plugin packages the first time it is asked for a name, so importing `bench` stays
cheap. Third-party plugins of every kind are found through one entry-point group per registry
(`ENTRY_POINT_GROUPS`: `bench.methods`, `bench.solvers`, `bench.models`, `bench.metrics`,
`bench.schedules`; in a package's pyproject.toml `[project.entry-points."bench.solvers"]
name = "package.module"`), whose module registers itself when loaded. Every process loads them (the
parent and every worker or job), since the registry loads its groups on first use; a grid's
`plugins:` list (`bench.plugins`) covers modules that are not installed as packages.

Aliases (`METHODS.alias("karras", "edm", note)`): another tool's name for a plugin that already
exists (k-diffusion's `karras` is `edm`); `get` returns the same class, `bench list` shows the alias
beside its target, and nothing is implemented twice.
"""
from __future__ import annotations

import importlib
import pkgutil
from importlib import metadata

from .errors import UserError


class Registry:
    def __init__(self, kind: str, packages: tuple[str, ...] = (), entry_point_group: str | None = None):
        self.kind = kind
        self.packages = packages
        self.entry_point_group = entry_point_group
        self._items: dict[str, type] = {}
        self._aliases: dict[str, tuple[str, str]] = {}
        self._loaded = False

    def register(self, name: str):
        """Class decorator: register `cls` under `name` and set `cls.name`."""

        def decorator(cls):
            if name in self._items and self._items[name] is not cls:
                raise ValueError(f"{self.kind} {name!r} is registered twice ({self._items[name]} and {cls})")
            cls.name = name
            self._items[name] = cls
            return cls

        return decorator

    def alias(self, name: str, target: str, note: str = "") -> None:
        """Register `name` as another name of the plugin `target` (`note`: whose name it is)."""
        if name in self._items or self._aliases.get(name, (target,))[0] != target:
            raise ValueError(f"{self.kind} alias {name!r} clashes with a registered name")
        self._aliases[name] = (target, note)

    def aliases(self) -> list[tuple[str, str, str]]:
        """(alias, target, note) for every alias, sorted by alias."""
        self._load()
        return sorted((name, target, note) for name, (target, note) in self._aliases.items())

    def _load(self):
        if self._loaded:
            return
        self._loaded = True
        for package in self.packages:
            module = importlib.import_module(package)
            for info in pkgutil.iter_modules(getattr(module, "__path__", [])):
                if not info.name.startswith("_"):
                    importlib.import_module(f"{package}.{info.name}")
        if self.entry_point_group:
            for entry in metadata.entry_points(group=self.entry_point_group):
                try:
                    entry.load()
                except Exception as err:  # noqa: BLE001 - a broken third-party package: one line naming it
                    raise UserError(f"entry point {entry.name} = {entry.value!r} of group {self.entry_point_group!r} "
                                    f"failed to load ({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}); "
                                    "fix or uninstall the package that declares it") from None

    def names(self) -> list[str]:
        self._load()
        return sorted(self._items)

    def get(self, name: str) -> type:
        self._load()
        if name in self._aliases and name not in self._items:
            name = self._aliases[name][0]
        try:
            return self._items[name]
        except KeyError:
            raise UserError(f"unknown {self.kind} {name!r}; known: {', '.join(self.names())}") from None

    def __contains__(self, name: str) -> bool:
        self._load()
        return name in self._items or name in self._aliases

    def create(self, name: str, **params):
        return self.get(name)(**params)

    def build(self, spec, where: str | None = None):
        """The plugin of a spec: a name, a mapping `{name: ..., **params}` (its `label` is display
        only) or a `bench.spec.PluginSpec`. Every `make_<kind>(spec)` is this."""
        from .spec import PluginSpec

        spec = PluginSpec.parse(spec, where or self.kind)
        return self.get(spec.name)(**spec.params)

    def items(self):
        self._load()
        return sorted(self._items.items())


ENTRY_POINT_GROUPS = {"schedule": "bench.schedules", "method": "bench.methods", "solver": "bench.solvers",
                      "model": "bench.models", "metric": "bench.metrics"}

SCHEDULES = Registry("schedule", ("bench.schedules",), entry_point_group=ENTRY_POINT_GROUPS["schedule"])
METHODS = Registry("method", ("bench.baselines", "bench.methods"), entry_point_group=ENTRY_POINT_GROUPS["method"])
SOLVERS = Registry("solver", ("bench.solvers",), entry_point_group=ENTRY_POINT_GROUPS["solver"])
MODELS = Registry("model", ("bench.models",), entry_point_group=ENTRY_POINT_GROUPS["model"])
METRICS = Registry("metric", ("bench.metrics",), entry_point_group=ENTRY_POINT_GROUPS["metric"])
