"""`bench report --only KEY=V1,V2`: keep the result lines whose KEY is one of the values.

KEY is a column of the report's long form: `grid`, `model`, `solver`, `method`, `nfe`, `metric` or
`seed`; the values are the labels the tables show (a method's label, e.g. `gits(metric=l2)`; a
metric or model with a weights hash also matches by its short name: `metric=fd-digits`). Values are
separated by commas outside brackets and parentheses, so `method=gits(space=model, metric=l2),edm`
names two methods. `--only` may be given several times: a line is kept when it passes every one
(same key twice: either list). The statistics (best set, paired tests) are computed among the lines
kept, as if the grid held only those cells. A value that matches nothing is an error that lists the
values there are, so a typo never prints an empty report.
"""
from __future__ import annotations

import pandas as pd

from . import overrides
from .errors import UserError
from .report_format import split_tag

KEYS = ("grid", "model", "solver", "method", "nfe", "metric", "seed")


def split_values(text: str) -> list[str]:
    """`a(x=1, y=2),b` -> ['a(x=1, y=2)', 'b']: commas inside brackets or parentheses stay; empty
    values are dropped."""
    return [v for v in overrides.split_values(text) if v]


def parse(only: list[str] | None) -> dict[str, set[str]]:
    """{key: values} from the `--only` arguments; one UserError naming a bad one."""
    wanted: dict[str, set[str]] = {}
    for item in only or []:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or key not in KEYS or not split_values(text):
            raise UserError(f"--only {item!r}: write KEY=V1,V2 with KEY one of {', '.join(KEYS)}, "
                            "e.g. --only method=edm,uniform")
        wanted.setdefault(key, set()).update(split_values(text))
    return wanted


def _names(value) -> set[str]:
    """What a value answers to: its label and, for a label with a weights hash, its short name."""
    text = str(value)
    return {text, split_tag(text)[0]}


def apply(df: pd.DataFrame, wanted: dict[str, set[str]]) -> pd.DataFrame:
    """The lines of `df` that pass every filter of `wanted` (`parse`)."""
    keep = pd.Series(True, index=df.index)
    for key, values in wanted.items():
        names = df[key].map(_names)
        hit = names.map(lambda n: bool(n & values))
        matched = set().union(*names[hit]) if hit.any() else set()
        unknown = sorted(v for v in values if v not in matched)
        if unknown:
            there = sorted({str(v) for v in df[key].unique()})
            raise UserError(f"--only {key}={','.join(unknown)} matches no result line; the {key} values are: "
                            f"{', '.join(there)}")
        keep &= hit
    return df[keep]


__all__ = ["KEYS", "parse", "apply", "split_values"]
