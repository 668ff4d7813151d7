"""`manual`: a published or hand-made list of timesteps, benchmarked like any other method.

Give the list in the grid entry or in a file:
    {name: manual, sigmas: [80, 9.7, 1.6, 0.23, 0.002]}           # VE-equivalent noise levels
    {name: manual, t: [0.9877, 0.5, 0.1, 0.002]}                   # the model's own time t
    {name: manual, path: schedules/ays.json, entry: SD1, interpolate: true}
`sigmas` are VE noise levels sigma/alpha = exp(-lambda) (the k-diffusion / ComfyUI / AYS unit; for a
VP model this is diffusers' sqrt((1 - alphas_cumprod) / alphas_cumprod)), mapped to the model's time
at equal log-SNR; `t` is the model's time itself. Either list is decreasing, starts at the model's
t_max and ends at its t_min (the harness's N + 1 knots; no trailing 0: k-diffusion's appended zero
and ComfyUI's are dropped if present, with no other change).

Files (`path`, relative to the working directory, read when the method is built; the cell key
records the values read, so editing the file re-keys the cells that use it):
  * JSON: a list of numbers (taken as `kind`), or a mapping whose entry `entry` (or the only entry)
    is a list (taken as `kind`) or a mapping with a "sigmas"/"sigma" or a "t" list (the files
    `bench export` writes read back this way: their "sigma" list is used);
  * CSV: a header row naming a `sigma` (or `sigmas`) or a `t` column (`bench export`'s CSV works);
  * plain text: numbers separated by spaces, commas or newlines; `kind` (sigmas or t) says which.
`kind` (null) overrides the guess for JSON lists and is required for plain text.

Interpolation (`interpolate`, default false): a list of K + 1 knots runs at K steps; any other step
count is a one-line error unless `interpolate: true`, which resamples it as Align Your Steps does
(Sabour, Fidler, Kreis 2024, NVIDIA's "How to use AYS" page, `loglinear_interp`): log sigma is
interpolated linearly over the normalised knot index, from K + 1 to N + 1 knots (a `t` list is
converted to sigma first). At N = K it returns the list unchanged.

`interpolate_in` (sigma): where the log-linear rule applies -- `sigma`, the VE noise level (AYS's
lists are VE sigmas), or `list`, the listed values themselves (ComfyUI's OptimalSteps node interpolates
its flow lists, which are flow times t, in log t; only differs for `t` lists).

Tables per step count (ComfyUI's GITSScheduler ships one list per step count and DP weight): a JSON
entry {"t" or "sigmas": ..., } may instead be {"steps": {"2": [...], "3": [...], ...}, "kind": "sigmas"};
the cell's N steps take the list for N. A step count the table lacks is a one-line error unless
`interpolate: true`, which resamples the table's longest list (the node's rule beyond its table).

Endpoints (`ends`): the first and last sigma must match the model's sigma(t_max) and sigma(t_min)
to a relative `rtol` (1e-4: published lists are printed to 6-10 digits); within it, the two ends are
set to the model's exact t_max and t_min. Otherwise a one-line error names both ranges, unless
`ends: model`, the documented rule that replaces the list's first and last values by the model's
(the interior values are kept as given and must lie strictly inside the range). Nothing is ever
shifted or rescaled silently.

A `manual` list is training-free (`heuristic`) but is not one of the papers' four baselines, so it
never sets the report's "best heuristic" bar. Its length and range are checked for every cell of a
grid before a run starts (`check_cell`, called by `bench.preflight`), not when the cell samples.
"""
from __future__ import annotations

import csv
import json
import math
import re
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from pydantic import Field

from bench.discretization import HeuristicMethod
from bench.errors import UserError
from bench.params import Params
from bench.registry import METHODS



def loglinear_interp(values, num: int) -> np.ndarray:
    """AYS's log-linear interpolation of a decreasing positive list to `num` values."""
    values = np.asarray(values, dtype=np.float64)
    xs = np.linspace(0, 1, len(values))
    ys = np.log(values[::-1])
    return np.exp(np.interp(np.linspace(0, 1, num), xs, ys))[::-1].copy()


def _numbers(values, where: str) -> list[float]:
    if not isinstance(values, (list, tuple)) or len(values) < 2:
        raise UserError(f"method 'manual': {where} must be a list of at least 2 numbers, got {values!r}")
    out = []
    for v in values:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(float(v)):
            raise UserError(f"method 'manual': {where} must hold finite numbers, got {v!r}")
        out.append(float(v))
    return out


def read_list(path, entry=None, kind=None) -> tuple[str, list[float]]:
    """(kind, values) from a JSON, CSV or plain-text file (module docstring)."""
    p = Path(path)
    if not p.is_file():
        raise UserError(f"method 'manual': path: no file at {p}; give a JSON, CSV or text file of sigmas or t")
    text = p.read_text()
    if p.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise UserError(f"method 'manual': {p} is not valid JSON ({err.msg} at line {err.lineno})") from None
        if isinstance(data, dict) and not ({"sigmas", "sigma", "t"} & set(data)):
            lists = {k: v for k, v in data.items() if isinstance(v, (list, dict))}
            if entry is None and len(lists) != 1:
                raise UserError(f"method 'manual': {p} holds several lists ({', '.join(lists)}); choose one with entry: NAME")
            key = entry if entry is not None else next(iter(lists))
            if key not in lists:
                raise UserError(f"method 'manual': entry {key!r} is not in {p}; it has {', '.join(lists)}")
            data = lists[key]
        if isinstance(data, dict) and isinstance(data.get("steps"), dict):
            k = data.get("kind", kind or "sigmas")
            if k not in ("sigmas", "t"):
                raise UserError(f"method 'manual': {p}: a table's kind must be 'sigmas' or 't', got {k!r}")
            try:
                table = {int(n): _numbers(v, f"{p}: steps {n}") for n, v in data["steps"].items()}
            except ValueError:
                raise UserError(f"method 'manual': {p}: a table's keys must be step counts (integers)") from None
            for n, v in table.items():
                if len(v) != n + 1:
                    raise UserError(f"method 'manual': {p}: the list for {n} steps has {len(v)} values, not {n + 1}")
            return k, table
        if isinstance(data, dict):
            for name, k in (("sigmas", "sigmas"), ("sigma", "sigmas"), ("t", "t")):
                if name in data:
                    return k, _numbers(data[name], f"{p}: {name}")
            raise UserError(f"method 'manual': {p}: the entry has no 'sigmas', 'sigma' or 't' list")
        return kind or "sigmas", _numbers(data, str(p))
    if p.suffix.lower() == ".csv":
        rows = list(csv.DictReader(text.splitlines()))
        header = [h.strip() for h in (rows[0].keys() if rows else [])]
        for name, k in (("sigma", "sigmas"), ("sigmas", "sigmas"), ("t", "t")):
            if name in header:
                try:
                    return k, _numbers([float(r[name]) for r in rows if r[name].strip()], f"{p}: {name}")
                except ValueError:
                    raise UserError(f"method 'manual': {p}: column {name!r} holds a value that is not a number") from None
        raise UserError(f"method 'manual': {p}: the CSV needs a header with a 'sigma' or a 't' column")
    if kind is None:
        raise UserError(f"method 'manual': {p} is plain text; say what it holds with kind: sigmas or kind: t")
    try:
        values = [float(v) for v in re.split(r"[\s,;]+", text.strip()) if v]
    except ValueError:
        raise UserError(f"method 'manual': {p} must hold numbers separated by spaces, commas or newlines") from None
    return kind, _numbers(values, str(p))


@METHODS.register("manual")
class Manual(HeuristicMethod):
    class Params(Params):
        sigmas: list | None = Field(None, description="the list as VE sigmas, from high to low")
        t: list | None = Field(None, description="the list in the model's time t, from t_max to t_min")
        path: str | None = Field(None, description="a JSON, CSV or text file holding the list")
        entry: str | None = Field(None, description="which list of a JSON file with several")
        kind: Literal["sigmas", "t"] | None = Field(None, description="what a plain-text file holds")
        interpolate: bool = Field(False, description="log-linear interpolation to other NFEs (as AYS)")
        interpolate_in: Literal["sigma", "list"] = Field("sigma", description="interpolate log sigma, or the "
                                                         "log of the listed values (ComfyUI's OptimalSteps)")
        ends: Literal["error", "model"] = Field("error", description="endpoints off the model's range: "
                                                "error, or model (replace them by the model's)")
        rtol: float = Field(1e-4, ge=0, lt=1, description="tolerance of the endpoint match")

    def __init__(self, **params):
        super().__init__(**params)
        p = self.params
        given = [k for k in ("sigmas", "t", "path") if getattr(p, k) is not None]
        if len(given) != 1:
            raise UserError("method 'manual' needs exactly one of sigmas: [...], t: [...] or path: FILE"
                            + (f" (got {', '.join(given)})" if given else ""))
        if p.path is not None:
            kind, values = read_list(p.path, p.entry, p.kind)
        else:
            kind = "sigmas" if p.sigmas is not None else "t"
            values = _numbers(getattr(p, kind), kind)
        self.table = None
        if isinstance(values, dict):  # a table of lists per step count
            self.table = {n: self._check(kind, v) for n, v in sorted(values.items())}
            values = self.table[max(self.table)]
        values = self._check(kind, values)
        self.kind, self.values = kind, values

    @staticmethod
    def _check(kind: str, values: list) -> list:
        if kind == "sigmas" and values[-1] == 0:  # k-diffusion's / ComfyUI's terminal zero
            values = values[:-1]
        if len(values) < 2 or not all(b < a for a, b in zip(values, values[1:])) or values[-1] <= 0:
            raise UserError(f"method 'manual': the {kind} list must be positive and strictly decreasing "
                            f"(at least 2 values), got {values}")
        return values

    def resolve(self, context=None) -> dict:
        """A list read from a file enters the keys by content: the values themselves. `interpolate_in`
        enters only when it is not the default, so the keys of the cells written before it existed stay."""
        params = dict(self.params)
        if params.get("interpolate_in") == "sigma":
            del params["interpolate_in"]
        if self.table is not None:
            return {**params, "values_table": {str(n): list(v) for n, v in self.table.items()},
                    "values_kind": self.kind}
        return {**params, "values": list(self.values), "values_kind": self.kind}

    def check_cell(self) -> None:
        """The pre-run check (`bench.preflight`): the list fits this model's range and this step count."""
        self.timesteps()

    @property
    def native_steps(self) -> int:
        return len(self.values) - 1

    def sigmas(self, values=None) -> np.ndarray:
        """The list as VE sigmas (float64), before interpolation and the endpoint rule."""
        values = self.values if values is None else values
        if self.kind == "sigmas":
            return np.asarray(values, dtype=np.float64)
        s = self.noise_schedule
        return s.sigma_ve(torch.tensor(values, dtype=torch.float64)).numpy()

    def timesteps(self):
        s = self.noise_schedule
        n = self.steps
        values = self.values
        if self.table is not None and n in self.table:
            values = self.table[n]
        elif self.table is not None and not self.params.interpolate:
            raise UserError(f"method 'manual': the table has lists for {', '.join(map(str, self.table))} steps but this "
                            f"cell runs {n}; set interpolate: true (log-linear from its {max(self.table)}-step list) "
                            f"or use one of those NFEs")
        k = len(values) - 1
        if n != k and not self.params.interpolate:
            raise UserError(f"method 'manual': the list has {k + 1} values ({k} steps) but this cell runs {n} steps; "
                            f"set interpolate: true (AYS's log-linear rule) or use the NFE of {k} steps")
        if n != k and self.params.interpolate_in == "list":
            values = loglinear_interp(values, n + 1).tolist()
            k = n
        sig = self.sigmas(values)
        lo = float(s.sigma_ve(torch.tensor(s.t_min, dtype=torch.float64)))
        hi = float(s.sigma_ve(torch.tensor(s.t_max, dtype=torch.float64)))
        rtol = float(self.params.rtol)
        ends_ok = abs(sig[0] - hi) <= rtol * hi and abs(sig[-1] - lo) <= rtol * lo
        if not ends_ok and self.params.ends == "error":
            raise UserError(f"method 'manual': the list runs from sigma {sig[0]:.6g} to {sig[-1]:.6g} but the model "
                            f"spans sigma {hi:.6g} to {lo:.6g} (relative tolerance rtol={rtol:g}); give a list for "
                            f"this model or set ends: model to replace its first and last value by the model's")
        if not bool(((sig[1:-1] > lo) & (sig[1:-1] < hi)).all()):
            raise UserError(f"method 'manual': interior sigmas {sig[1:-1].tolist()} must lie strictly inside the "
                            f"model's range ({lo:.6g}, {hi:.6g})")
        sig[0], sig[-1] = hi, lo
        if n != k:
            sig = loglinear_interp(sig, n + 1)
        t = s.t_of_sigma_ve(torch.from_numpy(sig))
        t[0], t[-1] = s.t_max, s.t_min
        return t
