"""How a method, a metric and a figure are named and drawn in `bench report`'s figures.

* `MethodStyles`: one matplotlib style per method, fixed for every figure of a grid's report. A
  method's colour and marker come from its position in the grid's method list (`grid_method_order`:
  the `methods:` of the grid file as run, then any other label, sorted), never from its position
  in one figure, so a figure that shows a subset of the methods (the schedule plots show global
  schedules only) draws each in the colour it has everywhere else. Methods are keyed by the label
  the report's tables give them (`MethodStyles.for_grid` reads it off `bench.report.rows_frame`), so
  figures and tables name a method alike. The palette is matplotlib's tab10 then tab20's light
  shades without the greys (18 colours) crossed with 10 markers: 90 distinct (colour, marker) pairs
  before one repeats. Closed-form heuristics are dashed, searched and learned methods solid. Rows a
  report derives rather than runs are drawn in grey/black only, so they never look like a method:
  `BEST_HEURISTIC` (the name lives in `bench.report`) is a wide translucent grey band drawn behind
  the methods, so the heuristic it follows stays visible on top of it; `BEST_CLOSED_FORM` a narrower,
  lighter band (drawn over the first where the two coincide, still under the methods); any other
  derived row is a band of another grey; `NOISE_FLOOR` is a thin dotted black line. A derived row
  never gets a filter entry in the HTML report (`is_method` is false for it).
* Display names: a metric or model label that carries a weights hash (`fd-digits [47e2a6f5f7ac]`,
  `digits-net [weights d51b50c7826d]`, written by `bench.report`) is shown by its name; the hash goes
  to the figure's footnote and the HTML caption (`split_hash`). A label that spells out a list of
  more than `LONG_LIST` numbers (a `manual` list without a `label:`) is shown by the plugin's name,
  `manual`, or `manual-1`, `manual-2`, ... in grid order when the grid has several; its full label
  goes to the footnote.
* File names: `slug` keeps letters, digits, `.`, `_` and `-` (lower case, so names differ on
  case-insensitive file systems too), no brackets, parentheses, spaces or hashes; `unique_stems`
  numbers stems that would otherwise coincide.
"""
from __future__ import annotations

import functools
import re
from pathlib import Path

from .report import BEST_CLOSED_FORM, BEST_HEURISTIC, NOISE_FLOOR

MARKERS = ("o", "s", "^", "D", "v", "P", "X", "<", ">", "*")
_LIST = re.compile(r"\[([-+0-9.eE, ]*)\]")  # a flat list of numbers as Python prints it
LONG_LIST = 4  # a label with a longer list is shown by a short name
_SLUG_PART_MAX = 60


@functools.cache
def _palette() -> tuple:
    import matplotlib

    tab20 = matplotlib.colormaps["tab20"].colors
    # tab10's colours are tab20's even entries; index 7 is grey, kept for the derived rows
    return tuple([tab20[2 * i] for i in range(10) if i != 7] + [tab20[2 * i + 1] for i in range(10) if i != 7])


REFERENCE_STYLES = {
    BEST_HEURISTIC: {"color": "0.35", "alpha": 0.3, "linestyle": "-", "linewidth": 7, "marker": None,
                     "solid_capstyle": "round", "zorder": 1.5},
    BEST_CLOSED_FORM: {"color": "0.6", "alpha": 0.45, "linestyle": "-", "linewidth": 4, "marker": None,
                       "solid_capstyle": "round", "zorder": 1.6},
    NOISE_FLOOR: {"color": "0.0", "linestyle": ":", "linewidth": 1.2, "marker": None, "zorder": 2.5},
}
# other derived rows: bands of these greys, in order of first use
_OTHER_BANDS = ("0.7", "0.55", "0.85")


def grid_method_order(root, grid_name: str) -> list[str]:
    """The method labels of the grid file kept under `root` (`<root>/<grid>/grid.yaml`), in the order
    its `methods:` lists them; [] when there is no readable copy."""
    from .grid import plugin_label, read_grid_file
    from .store import ResultsRoot

    try:
        raw = read_grid_file(ResultsRoot(root).grid_copy_path(grid_name))
        entries = raw.get("methods") or []
        if not isinstance(entries, list):
            entries = [entries]
        return [plugin_label({"name": e} if isinstance(e, str) else e) for e in entries]
    except Exception:  # noqa: BLE001 - no copy or an unreadable one: the labels' sorted order instead
        return []


class MethodStyles:
    """Styles and display names of the methods of one grid (see the module docstring).

    `aliases` maps a row's `method_label` to the label the report's tables give that method, when
    they differ; every method is keyed by its table label, and any of its labels may be passed."""

    def __init__(self, labels, heuristics=(), order=(), aliases=None):
        self._aliases = dict(aliases or {})
        canon = self._canon
        labels = {canon(m) for m in labels} - set(REFERENCE_STYLES)
        first = [m for m in dict.fromkeys(map(canon, order)) if m not in REFERENCE_STYLES]
        self.order = first + sorted(labels - set(first))
        self.heuristics = frozenset(map(canon, heuristics))
        self._index = {m: i for i, m in enumerate(self.order)}
        self._others: dict[str, str] = {}
        self._display: dict[str, str] = {}
        long = [m for m in self.order if _has_long_list(m)]
        taken = set(self.order) - set(long)
        for m in long:
            name = m.split("(")[0]
            same = [x for x in long if x.split("(")[0] == name]
            short = name if len(same) == 1 else f"{name}-{same.index(m) + 1}"
            while short in taken:  # a user's label that is already `manual-1` keeps it
                short += "'"
            self._display[m] = short
            taken.add(short)

    @classmethod
    def for_grid(cls, root, grid_name: str, rows: list[dict], df=None) -> "MethodStyles":
        """The styles of one grid's report: its rows' methods, in the order of the grid file kept
        under `root`, keyed by the labels of `df` (`bench.report.rows_frame`: the tables' labels)."""
        aliases = {}
        if df is not None and len(df):
            by_cell = dict(zip(df["cell"], df["method"]))
            aliases = {r["method_label"]: by_cell[r["cell"]] for r in rows
                       if r["cell"] in by_cell and by_cell[r["cell"]] != r["method_label"]}
        return cls({r["method_label"] for r in rows}, {r["method_label"] for r in rows if r["heuristic"]},
                   grid_method_order(root, grid_name), aliases)

    def _canon(self, label: str) -> str:
        return self._aliases.get(label, label)

    def is_method(self, label: str) -> bool:
        return self._canon(label) in self._index

    def position(self, label: str) -> int | None:
        """The method's position in the grid's method list (None for a derived row)."""
        return self._index.get(self._canon(label))

    def style(self, label: str) -> dict:
        """matplotlib keyword arguments for `label` (a method, or a row the report derives)."""
        label = self._canon(label)
        if label in REFERENCE_STYLES:
            return dict(REFERENCE_STYLES[label])
        if label not in self._index:  # a derived row of another kind
            colour = self._others.setdefault(label, _OTHER_BANDS[len(self._others) % len(_OTHER_BANDS)])
            return {**REFERENCE_STYLES[BEST_HEURISTIC], "color": colour}
        i = self._index[label]
        palette = _palette()
        # marker and colour advance together: (i mod 10, i mod 18) repeats only after lcm(10, 18) = 90
        return {"color": palette[i % len(palette)], "marker": MARKERS[i % len(MARKERS)], "markersize": 4,
                "linestyle": "--" if label in self.heuristics else "-", "linewidth": 1.3, "zorder": 3}

    def display(self, label: str) -> str:
        """The name shown in legends and panels: the tables' label, shortened where it spells out a
        long list of numbers (a `manual` list without a `label:`)."""
        label = self._canon(label)
        return self._display.get(label, label)

    def shorten(self, text: str) -> str:
        """`text` with every shortened label replaced by its display name (longest first)."""
        for label in sorted(self._display, key=len, reverse=True):
            text = text.replace(label, self._display[label])
        return text

    def notes(self, labels) -> list[str]:
        """Footnote lines for the shortened labels among `labels`: 'manual = manual(sigmas=[...])'."""
        shown = dict.fromkeys(map(self._canon, labels))
        return [f"{self._display[m]} = {m}" for m in shown if m in self._display]


def _has_long_list(label: str) -> bool:
    """Whether `label` spells out a list of more than `LONG_LIST` numbers (as a grid entry's
    parameters print: `manual(sigmas=[80.0, 12.0, ...])`)."""
    return any(len(m.split(",")) > LONG_LIST for m in _LIST.findall(str(label)))


def method_styles(methods, heuristics, order=()) -> dict[str, dict]:
    """{label: matplotlib kwargs} for `methods` and the derived rows (`MethodStyles`)."""
    styles = MethodStyles(methods, heuristics, order)
    return {m: styles.style(m) for m in [*styles.order, *REFERENCE_STYLES]}


def split_hash(label: str) -> tuple[str, str | None]:
    """('fd-digits', the note naming 47e2a6f5f7ac) for 'fd-digits [47e2a6f5f7ac]'; (label, None) for a
    label without a weights hash. The same parsing and words as the tables' (`bench.report_format`)."""
    from .report_format import split_tag, tag_note

    name, tag = split_tag(label)
    return name, None if tag is None else tag_note(name, tag)


def slug(text: str) -> str:
    """A short, shell-safe file-name part: lower case letters, digits, '.', '_' and '-' only."""
    text = re.sub(r"[^a-z0-9._-]+", "-", split_hash(text)[0].lower()).strip("-._")
    return text[:_SLUG_PART_MAX].rstrip("-._") or "x"


def stem(*parts) -> str:
    return "_".join(slug(str(p)) for p in parts)


def unique_stems(keys_to_stems: dict) -> dict:
    """{key: stem} with stems made distinct: the second, third, ... key (in sorted order of the keys'
    text) whose stem is taken gets `-2`, `-3`, ...; compared in lower case."""
    out, taken = {}, set()
    for key in sorted(keys_to_stems, key=lambda k: (keys_to_stems[k], str(k))):
        base = candidate = keys_to_stems[key]
        n = 1
        while candidate.lower() in taken:
            n += 1
            candidate = f"{base}-{n}"
        taken.add(candidate.lower())
        out[key] = candidate
    return out


def is_safe_name(name: str) -> bool:
    return bool(re.fullmatch(r"[a-z0-9][a-z0-9._-]*", Path(name).name))


__all__ = ["MARKERS", "MethodStyles", "REFERENCE_STYLES", "grid_method_order", "is_safe_name", "method_styles",
           "slug", "split_hash", "stem", "unique_stems"]
