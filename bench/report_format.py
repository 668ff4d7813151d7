"""How `bench report` writes one value or one label: numbers, LaTeX escaping, label tags.

* `number(x, digits, latex)`: an integral value (a count: fit evaluations, parameters) prints as an
  integer; any other value with `digits` significant digits (Python's `g` format, so markdown, text
  and LaTeX show the same digits); where `g` switches to exponent notation, LaTeX gets
  `$m\\times10^{e}$` instead of `me+0e`.
* `latex_text(s)`: a label as LaTeX text: the ten characters LaTeX reserves (`& % $ # _ { } ~ ^ \\`)
  escaped once, and the few non-ASCII symbols labels use (arrows, minus, ±, †, the ellipsis)
  written as math, so the output compiles with pdflatex's default inputenc.
* `split_tag(label)`: a metric label `fd-digits [47e2a6f5f7ac]` (the feature network's weights
  hash) or a model label `digits-net [weights d51b50c7826d]` -> (`fd-digits`, `weights
  47e2a6f5f7ac`): titles show the short name, the hash goes into a caption line (`tag_note`, the
  same words under a table and in a figure). A bracket that
  holds anything but a hash (`schedule net cost [model evals]`, a unit) stays in the name.
* `short_label(label)`: a method label that spells out a long list of numbers (a `manual` list of
  timesteps: `manual(sigmas=[80, 9.7, 1.6, 0.23, 0.002])`) reads `manual(sigmas=[5 values, 3f2a1c])`
  (the count and the first six hex digits of the list's hash, so two lists never share a label).
  A `label:` in the grid entry names it as the user likes.
"""
from __future__ import annotations

import hashlib
import math
import re

# `g` formatting with 15+ integer digits is no longer exact: such values print in `g` form
LARGEST_INTEGER = 1e15
# a list parameter longer than this is shown by its length and hash
LONG_LIST = 4

_RESERVED = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
             "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
             # not reserved, but OT1 (pdflatex's default font encoding) prints other glyphs for them
             "|": r"\textbar{}", "<": r"\textless{}", ">": r"\textgreater{}"}
_SYMBOLS = {"↓": r"$\downarrow$", "↑": r"$\uparrow$", "−": r"$-$", "±": r"$\pm$", "†": r"$^\dagger$",
            "…": r"\ldots{}", "×": r"$\times$", "≤": r"$\leq$", "≥": r"$\geq$", "–": "--", "—": "---",
            "¹": r"$^{1}$", "²": r"$^{2}$", "³": r"$^{3}$", "⁴": r"$^{4}$", "⁵": r"$^{5}$", "⁶": r"$^{6}$",
            "⁷": r"$^{7}$", "⁸": r"$^{8}$", "⁹": r"$^{9}$", "’": "'", "‘": "`", "“": "``", "”": "''"}
_LIST = re.compile(r"\[([-+0-9.eE, ]*)\]")  # a flat list of numbers as Python prints it
_TAG = re.compile(r"^(?P<name>.*) \[(?P<tag>(?:weights )?[0-9a-f]{8,64})\]$")


def number(x, digits: int, latex: bool = False) -> str | None:
    """`x` with `digits` significant digits (an integral value as an integer); None for NaN."""
    if x is None:
        return None
    x = float(x)
    if math.isnan(x):
        return None
    if math.isinf(x):
        return (r"$\infty$" if x > 0 else r"$-\infty$") if latex else ("inf" if x > 0 else "-inf")
    if x.is_integer() and abs(x) < LARGEST_INTEGER:
        return str(int(x))
    text = f"{x:.{digits}g}"
    if latex and "e" in text:
        mantissa, exponent = text.split("e")
        return rf"${mantissa}\times10^{{{int(exponent)}}}$"
    return text


def latex_text(text) -> str:
    """`text` as LaTeX text, each reserved character escaped exactly once."""
    return "".join(_RESERVED.get(c, _SYMBOLS.get(c, c)) for c in str(text))


def latex_prose(text) -> str:
    """A legend or note line as LaTeX: `code` spans in \\texttt, the rest `latex_text`."""
    parts = str(text).split("`")
    if len(parts) % 2 == 0:  # an unpaired backtick: plain text
        return latex_text(text)
    return "".join(latex_text(p) if i % 2 == 0 else r"\texttt{" + latex_text(p) + "}" for i, p in enumerate(parts))


def split_tag(label: str) -> tuple[str, str | None]:
    """(`fd-digits`, `47e2a6f5f7ac`) from `fd-digits [47e2a6f5f7ac]`; (label, None) without a hash tag."""
    match = _TAG.match(str(label))
    return (match["name"], match["tag"]) if match else (str(label), None)


def tag_note(name: str, tag: str) -> str:
    """The line that names a weights hash `split_tag` took off a label (under a table, in a figure's
    footnote): `fd-digits: feature network weights 47e2a6f5f7ac (...)`, `digits-net: weights d51b50c7826d (...)`."""
    if tag.startswith("weights "):
        return f"{name}: {tag} (first hex digits of the weights file's SHA-256)"
    return f"{name}: feature network weights {tag} (first hex digits of its SHA-256)"


def short_label(label: str) -> str:
    """`label` with every bracketed list of more than `LONG_LIST` numbers (the way a grid entry's
    label writes a `manual` list) shown as its length and hash: `manual(sigmas=[5 values, 3f2a1c])`."""
    def short(match):
        items = match[1].split(",")
        if len(items) <= LONG_LIST:
            return match[0]
        digest = hashlib.sha256(match[1].replace(" ", "").encode()).hexdigest()[:6]
        return f"[{len(items)} values, {digest}]"

    return _LIST.sub(short, str(label))


def latex_label(parts, taken: set | None = None) -> str:
    """A `\\label` key from the table's (grid, model, solver, metric): lower case, every run of other
    characters than letters and digits one `-`; unique within `taken` (a suffix -2, -3, ...)."""
    key = "tab:" + "-".join(re.sub(r"[^a-z0-9]+", "-", str(p).lower()).strip("-") for p in parts)
    if taken is not None:
        base, i = key, 2
        while key in taken:
            key, i = f"{base}-{i}", i + 1
        taken.add(key)
    return key


__all__ = ["number", "latex_text", "latex_prose", "split_tag", "tag_note", "short_label", "latex_label", "LONG_LIST"]
