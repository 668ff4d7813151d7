"""Footnotes for table values that a solver's declared convention changes, read from the rows' solver spec.

A table holds one solver (its resolved parameters, as the rows store them) at several NFEs. Two
conventions of `bench.solvers` change numbers in ways a reader would otherwise blame on a schedule:

* `lower_order_final` (multistep solvers: DPM-Solver++, UniPC; `bench.solvers.base.lowering_rule`):
  the last steps drop to lower order only when the run has fewer steps than the rule's threshold
  (DPM-Solver's reference code: 10, diffusers' DPMSolverMultistepScheduler: 15; k-diffusion never
  lowers). Where the table's columns cross that threshold, the first column on the other side gets
  a mark and a note naming the rule and the references the solver's module lists (`REFERENCE_RULES`).
  The note is computed by the solver's own rule (`lowering_rule` / `lowered_order` on the solver
  built from the row's spec), never from values.
* `final_step: t_min` with Heun: every step, the last included, is a full Heun step whose corrector
  evaluates the network at t_min, where eps = (x - alpha x0) / sigma divides the denoiser's error by
  sigma(t_min); a long last step (uniform in t) multiplies it. EDM's sampler and k-diffusion's
  `sample_heun` take an Euler step to sigma = 0 instead (`final_step: zero`). The note goes under
  every Heun table that uses `t_min`.

`notes(spec, steps_by_column)` returns `Note`s: the text and the columns it marks (none: the whole
table). A solver that cannot be built from the spec (a plugin not installed here) gets no note.
"""
from __future__ import annotations

from dataclasses import dataclass, field

# superscript marks of a table's notes (markdown/text; LaTeX writes $^{k}$)
MARKS = "¹²³⁴⁵⁶⁷⁸⁹"


@dataclass
class Note:
    text: str
    columns: list = field(default_factory=list)  # the table columns it marks; empty: the whole table


def _solver(spec: dict):
    from .solvers.base import make_solver

    try:
        return make_solver({k: v for k, v in spec.items() if k != "version"})
    except Exception:  # noqa: BLE001 - a solver not registered here: no note, never a failed report
        return None


def _max_order(solver) -> int | None:
    order = getattr(solver, "max_order", None)
    return int(order) if order is not None else getattr(solver.params, "order", None)


def _lowered(solver, steps: int) -> bool:
    """Does `solver` (a multistep solver with a lowering rule) lower any step's order at `steps` steps?"""
    from .solvers.base import lowered_order

    order = _max_order(solver)
    return any(lowered_order(order, n, steps, solver.rule) < min(order, n + 1) for n in range(steps))


def lowering_note(spec: dict, steps_by_column: dict) -> Note | None:
    """The note for a table whose columns cross the solver's `lower_order_final` threshold."""
    solver = _solver(spec)
    if solver is None or getattr(solver, "rule", None) is None or _max_order(solver) in (None, 1):
        return None
    lowered = {col: _lowered(solver, steps) for col, steps in steps_by_column.items() if steps}
    columns = list(lowered)
    changed = [b for a, b in zip(columns, columns[1:]) if lowered[a] != lowered[b]]
    if not changed:
        return None
    rule = spec.get("lower_order_final")
    below = spec.get("lower_order_final_below")
    said = (f"`lower_order_final: {str(rule).lower()}`" + (f", `lower_order_final_below: {below}`"
                                                            if rule is True and below is not None else ""))
    on = [c for c in columns if lowered[c]]
    off = [c for c in columns if not lowered[c]]
    refs = _references(solver)
    return Note(
        f"{spec['name']} lowers the order of its last steps (the last step first order) only below a step "
        f"count ({said}{'; other references: ' + refs if refs else ''}): lowered at {_span(on, columns)}, not at "
        f"{_span(off, columns)}; values across the mark differ by this rule as well as by the schedule",
        changed)


def _span(chosen: list, columns: list) -> str:
    """`NFE=3 to NFE=9` for a run of adjacent columns, else the columns listed."""
    first = columns.index(chosen[0])
    if len(chosen) > 2 and columns[first:first + len(chosen)] == chosen:
        return f"{chosen[0]} to {chosen[-1]}"
    return ", ".join(chosen)


def _references(solver) -> str:
    """The reference rules the solver's module declares (`REFERENCE_RULES`), in words."""
    import math
    import sys

    rules = getattr(sys.modules.get(type(solver).__module__), "REFERENCE_RULES", None) or {}
    words = []
    for name, (below, warmup_first) in rules.items():
        when = "never" if below == 0 else "at any step count" if below == math.inf else f"below {below} steps"
        words.append(f"{name} {when}{' (warm-up steps first)' if warmup_first else ''}")
    return ", ".join(words)


def heun_final_note(spec: dict) -> Note | None:
    """The note for Heun with `final_step: t_min` (a corrector evaluation at t_min in the last step)."""
    from .solvers.heun import Heun

    solver = _solver(spec)
    if not isinstance(solver, Heun) or solver.params.final_step != "t_min":
        return None
    return Note(
        f"{spec['name']} with `final_step: t_min`: the last step is a full Heun step whose corrector evaluates "
        "the network at t_min, so the denoiser's error there is divided by sigma(t_min) and multiplied by the "
        "last step's length (large for schedules with a long last step, e.g. uniform in t); EDM's sampler and "
        "k-diffusion's sample_heun take an Euler step to sigma = 0 instead (`final_step: zero`)")


def notes(spec: dict | None, steps_by_column: dict) -> list[Note]:
    """Every convention note of a table of solver `spec` whose columns run `steps_by_column` steps."""
    if not isinstance(spec, dict) or "name" not in spec:
        return []
    found = [lowering_note(spec, steps_by_column), heun_final_note(spec)]
    return [n for n in found if n is not None][: len(MARKS)]


__all__ = ["Note", "notes", "lowering_note", "heun_final_note", "MARKS"]
