"""Typed parameter declarations (pydantic) and their one-line errors.

Every plugin (model, noise schedule, solver, method, metric) and every section of a grid file
(`teacher:`, `samples:`, `launch:`) declares its parameters once, as a subclass of `Params`: a
pydantic model whose fields carry the type, the default, the bounds and a one-line description.
Validation, coercion errors, `bench list` and the resolved specs that cache keys hash all come from
that one declaration.

Values are checked strictly (pydantic's strict mode): a YAML string such as `'7'` or `'1e8'` is not
taken for a number, a float is not silently truncated to an integer; an integer is accepted where a
number is expected. A failed check becomes ONE `UserError` that names the place, the field, what the
value must be and what it was, e.g. ``method 'edm': rho must be a number > 0, got 'abc'``.
"""
from __future__ import annotations

import types
import typing
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from .errors import UserError


class Params(BaseModel):
    """Base of every parameter declaration: unknown fields are errors, values are checked strictly."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)



def _bounds(ctx: dict) -> str:
    ops = {"gt": ">", "ge": ">=", "lt": "<", "le": "<="}
    return " and ".join(f"{ops[k]} {v:g}" if isinstance(v, float) else f"{ops[k]} {v}"
                        for k, v in ctx.items() if k in ops)


# pydantic error type -> what the value must be
_MUST = {
    "float_type": "a number", "float_parsing": "a number", "finite_number": "a finite number",
    "int_type": "an integer", "int_parsing": "an integer", "int_from_float": "an integer",
    "bool_type": "true or false", "bool_parsing": "true or false",
    "string_type": "a string", "list_type": "a list", "dict_type": "a mapping", "tuple_type": "a list",
    "model_type": "a mapping", "model_attributes_type": "a mapping", "none_required": "null",
}


def describe_error(error: dict, fields: dict | None = None) -> str:
    """`<field> must be ..., got <value>` for one pydantic error (the first of a union's members)."""
    loc = ".".join(str(p) for p in error["loc"] if not str(p).startswith(("function-", "union[")))
    kind, ctx, value = error["type"], error.get("ctx") or {}, error.get("input")
    field = str(error["loc"][0]) if error["loc"] else ""
    if kind == "extra_forbidden":
        known = ", ".join(sorted(fields or {})) or "none"
        return f"has no parameter {field!r}; its parameters are: {known}"
    if kind in ("greater_than", "greater_than_equal", "less_than", "less_than_equal"):
        return f"{loc} must be {_bounds(ctx)}, got {value!r}"
    if kind == "literal_error":
        expected = str(ctx.get("expected")).replace("'", "").replace(" or ", ", ")
        return f"{loc} must be one of {expected}, got {value!r}"
    if kind in ("value_error", "assertion_error"):
        text = str(ctx.get("error", error["msg"]))
        if not loc:
            return text
        return f"{loc} {text}" if text.startswith("must") else f"{loc}: {text}"
    if kind == "missing":
        return f"{loc} is required"
    must = _MUST.get(kind, error["msg"].lower())
    return f"{loc} must be {must}, got {value!r}"


def _union_message(errors: list[dict], model: type[Params]) -> str | None:
    """A field declared as a union fails once per member; say what the field accepts instead."""
    field = errors[0]["loc"][0] if errors[0]["loc"] else None
    if field is None or len(errors) < 2 or any(not e["loc"] or e["loc"][0] != field for e in errors):
        return None
    info = model.model_fields.get(field)
    accepts = (info.json_schema_extra or {}).get("accepts") if info and isinstance(info.json_schema_extra, dict) else None
    if accepts is None:
        if any(len(e["loc"]) != 2 for e in errors):
            return None  # a member failed inside (a mapping's field): its own message says more
        # one failure per member, each with its tag in `loc`: say what each member takes instead
        forms = []
        for e in errors:
            if e["type"] == "literal_error":
                forms.append("one of " + str((e.get("ctx") or {}).get("expected")).replace("'", "").replace(" or ", ", "))
            else:
                forms.append(_MUST.get(e["type"], e["msg"].lower()))
        accepts = " or ".join(dict.fromkeys(forms))
    return f"{field} must be {accepts}, got {errors[0].get('input')!r}"


def validate(model: type[Params], values: dict, where: str, error=UserError, section: bool = False) -> Params:
    """`model(**values)`, or one `error` "<where>: <field> must be ..., got ...". A `section` (of a grid
    file) names its fields as paths instead: "<where>.<field> must be ...", "<where>.<field> is not a
    known field; known: ..."; both are built from pydantic's structured errors (type, loc, ctx)."""
    try:
        return model(**values)
    except ValidationError as err:
        errors = err.errors(include_url=False)
        first = errors[0]
        if section and first["type"] == "extra_forbidden":
            raise error(f"{where}.{first['loc'][0]} is not a known field; known: "
                        f"{', '.join(sorted(model.model_fields))}") from None
        message = _union_message(errors, model) or describe_error(first, model.model_fields)
        if section and first["loc"]:
            raise error(f"{where}.{message}") from None
        joiner = " " if message.startswith("has no parameter") else ": "
        raise error(f"{where}{joiner}{message}") from None


def field_table(model: type[Params]) -> list[tuple[str, str, Any, str]]:
    """(name, type, default, description) of every declared field, for `bench list` and docs."""
    rows = []
    model.model_rebuild()  # resolve annotations that name what the module defines after the class
    for name, info in model.model_fields.items():
        rows.append((name, type_label(info.annotation), info.default, info.description or ""))
    return rows


def type_label(annotation) -> str:
    """A reader's name for a field's type: `int`, `'dev' | 'l1'`, `int | None`, `any` (a value its
    validator checks; the description says what it takes)."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if annotation is Any or isinstance(annotation, typing.ForwardRef):
        return "any"
    if origin is typing.Literal:
        return " | ".join(repr(a) for a in args)
    if origin is typing.Annotated:
        return type_label(args[0])
    if origin in (typing.Union, types.UnionType):
        return " | ".join("None" if a is type(None) else type_label(a) for a in args)
    if origin is not None:
        return f"{getattr(origin, '__name__', str(origin))}[{', '.join(type_label(a) for a in args)}]"
    return getattr(annotation, "__name__", None) or str(annotation).replace("typing.", "")


__all__ = ["Params", "describe_error", "field_table", "validate"]
