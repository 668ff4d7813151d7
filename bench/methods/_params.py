"""Parameter types shared by the searched and learned methods (see `bench.params`).

Each is an annotated type whose check raises a `ValueError` with the reason, which `bench.params`
turns into the one-line "method 'x': <field>: <reason>" error:
* `HeuristicSpec`: a closed-form schedule, by name (`edm`) or as `{name: edm, rho: 7}` (fine grids of
  GITS and OSS, DMN's initialisation);
* `InitHeuristic`: "auto" (the heuristic with the lowest validation loss) or a heuristic's name;
* `SolverSpec`: a registered solver, by name or with parameters (teacher solvers of searches);
* `Toggle`: true, false or "auto" (gradient checkpointing).
"""
from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, Field

from bench.params import Params

from bench.errors import UserError
from bench.registry import METHODS


def heuristic_spec(spec):
    if isinstance(spec, str):
        spec_dict = {"name": spec}
    elif isinstance(spec, dict) and isinstance(spec.get("name"), str):
        spec_dict = dict(spec)
    else:
        raise ValueError(f"must be a heuristic's name such as 'edm' or {{name: edm, rho: 7}}, got {spec!r}")
    try:
        cls = METHODS.get(spec_dict["name"])
        if not cls.heuristic:
            raise ValueError(f"must be a closed-form heuristic ({', '.join(heuristic_names())}), "
                             f"got {spec_dict['name']!r}")
        cls(**{k: v for k, v in spec_dict.items() if k != "name"})
    except UserError as err:
        raise ValueError(str(err)) from None
    return spec


def heuristic_names() -> list[str]:
    """Every registered closed-form schedule (fine grids may use any of them)."""
    return [name for name, cls in METHODS.items() if cls.heuristic and not cls.needs_fit]


def init_heuristics() -> list[str]:
    """The closed forms a learned method may start from: the papers' four (`paper_baseline`), so that
    registering another heuristic never changes an existing fit."""
    return [name for name, cls in METHODS.items()
            if cls.heuristic and not cls.needs_fit and getattr(cls, "paper_baseline", False)]


def _init_heuristic(value):
    names = init_heuristics()
    if value != "auto" and value not in names:
        raise ValueError(f"must be 'auto' or a heuristic ({', '.join(names)}), got {value!r}")
    return value


def _solver_spec(spec):
    from bench.solvers import make_solver

    try:
        make_solver(spec)
    except (UserError, TypeError, AttributeError) as err:
        raise ValueError(str(err) if isinstance(err, UserError) else f"must be a solver name, got {spec!r}") from None
    return spec


def _toggle(value):
    if value == "auto" or isinstance(value, bool):
        return value
    raise ValueError(f"must be auto, true or false, got {value!r}")


def accepts(text: str):
    """What a union field accepts, for its one-line error (`bench.params`) when no member takes a value."""
    return Field(json_schema_extra={"accepts": text})


HeuristicSpec = Annotated[str | dict, AfterValidator(heuristic_spec),
                          accepts("a heuristic's name such as 'edm' or {name: edm, rho: 7}")]
InitHeuristic = Annotated[str, AfterValidator(_init_heuristic)]
SolverSpec = Annotated[str | dict, AfterValidator(_solver_spec), accepts("a solver name or {name: ..., **params}")]
Toggle = Annotated[bool | Literal["auto"], AfterValidator(_toggle), accepts("auto, true or false")]


class LearnedParams(Params):
    """What every learned method (LD3, INDIS, GOD, the oracle) shares; see `bench.methods._learned`."""

    space: Literal["auto", "t", "lambda"] = Field(
        "auto", description="the timestep parametrisation: auto = lambda for VE models, else t")
    loss: Literal["auto", "l2", "lpips"] = Field(
        "auto", description="auto = LPIPS for 1- or 3-channel images when its weights load, else l2")
    init: InitHeuristic = Field("auto", description="the starting schedule: auto = the heuristic with the "
                                                    "lowest validation loss, or a heuristic's name")
    grad_checkpointing: Toggle = Field("auto", description="recompute network calls in the backward pass "
                                                           "(auto: for neural-network models)")

__all__ = ["HeuristicSpec", "InitHeuristic", "LearnedParams", "SolverSpec", "Toggle", "heuristic_names", "init_heuristics",
           "heuristic_spec"]
