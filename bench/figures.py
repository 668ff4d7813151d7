"""Figures for a paper, written by `bench report` as PNG and PDF (matplotlib, Agg backend).

* `plot_metrics`: one figure per (grid, model, solver, metric) table: the metric against NFE, one
  line per method. Every method keeps one style across all figures of a grid's report
  (`bench.figure_style.MethodStyles`: colour and marker from the method's position in the grid's
  method list; closed-form heuristics dashed, searched and learned methods solid; the best of the
  papers' heuristics and the best closed form grey bands behind the methods, the noise floor dotted
  black: derived rows, never listed among a figure's methods); a study's published
  values (`bench.studies`) are hollow markers of their method's colour and marker, without a line.
  Error bars show each point's interval (`bench.stats`: bootstrap over priors, t over seeds), else
  the standard deviation over seeds when there are several; NFE ticks are the integers run; the
  legend sits outside the axes; the y label carries the direction (↓ / ↑). Titles, axes and file
  names name a metric or model without its weights hash; the hash, and the full label of a
  shortened `manual` method, are in a footnote under the axes (and in the HTML report's caption).
* `plot_schedules`: per (grid, model, solver) and NFE, the timesteps of every global schedule as
  log(sigma) (the VE-equivalent noise level, comparable across time variables) against the step.
* Figures are drawn in parallel processes (joblib) and a figure whose data did not change since the
  last report (a SHA-256 per figure in `.figures.json` beside it) is not drawn again.
* `sample_panel`: per (grid, model, solver), the same evaluation priors as a labelled grid of
  images: the teacher's endpoints first, then one row per method and one column per NFE.
* File names are short shell-safe slugs (`bench.figure_style.stem`), made unique per folder.
  Each function appends a `Figure` (what it shows) to `catalog` when given one: the HTML report
  (`bench.html_report`) is built from it.
"""
from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .figure_style import MARKERS, MethodStyles, method_styles, split_hash, stem, unique_stems
from .report import arrow
from .studies import is_extra_row


@dataclass
class Figure:
    """One figure of a report, as the HTML report shows it."""
    kind: str  # "metric", "schedule" or "samples"
    png: Path
    title: str  # labels without weights hashes (those are in `notes`)
    notes: list[str] = field(default_factory=list)  # footnote lines
    methods: list[str] = field(default_factory=list)  # the method labels it shows


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _footnote(fig, notes: list[str]) -> None:
    """The notes as small grey text under the axes (kept in the saved figure by bbox_inches='tight')."""
    import textwrap

    if notes:
        text = "\n".join(line for note in notes for line in textwrap.wrap(note, 95))
        fig.text(0.01, -0.01, text, fontsize=5.5, color="0.3", va="top", ha="left")


def _save(fig, path: Path) -> list[Path]:
    from .store import atomic_write_bytes

    out = []
    for suffix in (".png", ".pdf"):
        buffer = io.BytesIO()
        fig.savefig(buffer, format=suffix[1:], dpi=150, bbox_inches="tight")
        out.append(atomic_write_bytes(path.with_suffix(suffix), buffer.getvalue()))
    return out


def _draw_all(specs: list[tuple], draw, out_dir, jobs: int) -> list[Path]:
    """Draw each (name, data) with `draw(data, path)` in `jobs` processes (joblib), skipping a figure
    whose data are unchanged since the last report (a SHA-256 of the data per name in
    `<out_dir>/.figures.json`, and both files present)."""
    import hashlib

    from joblib import Parallel, delayed

    from .store import atomic_write_json, read_json

    out_dir = Path(out_dir)
    manifest_path = out_dir / ".figures.json"
    try:
        manifest = read_json(manifest_path) if manifest_path.is_file() else {}
    except (OSError, ValueError):
        manifest = {}
    paths, todo, new = [], [], {}
    for name, data in specs:
        digest = hashlib.sha256(json_key(data).encode()).hexdigest()
        new[name] = digest
        files = [(out_dir / name).with_suffix(s) for s in (".png", ".pdf")]
        if manifest.get(name) == digest and all(f.is_file() for f in files):
            paths += files
        else:
            todo.append((name, data))
    if len(todo) > 1 and jobs > 1:
        drawn = Parallel(n_jobs=min(jobs, len(todo)))(delayed(draw)(data, out_dir / name) for name, data in todo)
    else:
        drawn = [draw(data, out_dir / name) for name, data in todo]
    for files in drawn:
        paths += files
    if specs:
        atomic_write_json(manifest_path, {**manifest, **new})
    return paths


def plot_metrics(tabs: dict, std: dict | None, df: pd.DataFrame, out_dir, summary: pd.DataFrame | None = None,
                 jobs: int = 1, styles: MethodStyles | None = None, catalog: list | None = None) -> list[Path]:
    """One figure per table; error bars: the interval of `summary` (`bench.report.summarize`) where it
    has one, else the standard deviation over seeds. `styles`: the grid's (default: from `df`'s
    methods, in sorted order)."""
    heuristics = set(df[df["heuristic"]]["method"])
    if styles is None:
        styles = MethodStyles(df["method"].unique(), heuristics)
    lookup = None if summary is None or summary.empty else \
        summary.set_index(["grid", "model", "solver", "metric", "method", "nfe"]).sort_index()
    stems = unique_stems({key: stem(key[1], key[2], key[3]) for key in tabs})
    specs = []
    for key, table in tabs.items():
        grid, model, solver, metric = key
        nfes = [int(c.split("=")[1]) for c in table.columns]
        spread = None if std is None else std.get(key)
        lines, shown = [], []
        published_of = table.attrs.get("published_of", {})
        for method, values in table.iterrows():
            y = values.to_numpy(dtype=float)
            if np.isnan(y).all():
                continue
            if is_extra_row(method):  # a study's published values: hollow markers of the method's colour
                if method in published_of:
                    style = styles.style(published_of[method])
                    hollow = {"color": style["color"], "linestyle": "none", "marker": style.get("marker") or "o",
                              "markersize": 6, "markerfacecolor": "none", "markeredgewidth": 1.2, "zorder": 3}
                    label = method.replace(published_of[method], styles.display(published_of[method]), 1)
                    lines.append((label, y.tolist(), None, hollow))
                continue
            err = None
            if lookup is not None:
                low = np.full(len(nfes), np.nan)
                high = np.full(len(nfes), np.nan)
                for i, n in enumerate(nfes):
                    k = (grid, model, solver, metric, method, n)
                    if k in lookup.index:
                        low[i], high[i] = lookup.loc[k, "ci_low"], lookup.loc[k, "ci_high"]
                if np.isfinite(low).any():
                    err = [np.nan_to_num(y - low).tolist(), np.nan_to_num(high - y).tolist()]
            if err is None and spread is not None and method in spread.index:
                err = spread.loc[method].to_numpy(dtype=float).tolist()
            lines.append((styles.display(method), y.tolist(), err, styles.style(method)))
            if styles.is_method(method):
                shown.append(method)
        metric_name, metric_note = split_hash(metric)
        model_name, model_note = split_hash(model)
        higher = bool(table.attrs.get("higher_is_better", False))
        notes = [n for n in (metric_note, model_note) if n] + styles.notes(shown)
        specs.append((stems[key],
                      {"nfes": nfes, "lines": lines, "metric": metric_name, "model": model_name, "solver": solver,
                       "higher": higher, "notes": notes}))
        if catalog is not None:
            catalog.append(Figure("metric", Path(out_dir) / f"{stems[key]}.png",
                                  f"{model_name} | {solver} | {metric_name} {arrow(higher)}", notes, shown))
    return _draw_all(specs, _draw_metric, out_dir, jobs)


def _draw_metric(data: dict, path: Path) -> list[Path]:
    plt = _pyplot()
    nfes = data["nfes"]
    fig, ax = plt.subplots(figsize=(5.2, 3.6))
    for method, y, err, style in data["lines"]:
        ax.errorbar(nfes, y, yerr=err, label=method, capsize=2 if err is not None else 0, **style)
    ax.set_xticks(nfes)
    ax.set_xlabel("NFE")
    ax.set_ylabel(f"{data['metric']} {arrow(data['higher'])}")
    finite = np.array([v for _, y, _, _ in data["lines"] for v in y], dtype=float)
    finite = finite[np.isfinite(finite)]
    if data["metric"].split(" ")[0] in ("mse", "kl", "wasserstein", "fid", "kid", "fd-digits") and len(finite) \
            and (finite > 0).all() and finite.max() / finite.min() > 20:
        ax.set_yscale("log")
    return _finish(fig, ax, f"{data['model']} | {data['solver']}", data, path)


def _finish(fig, ax, title: str, data: dict, path) -> list:
    """Title, grid, the legend right of the axes and the footnotes; saved as PNG and PDF, closed."""
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.25)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0), frameon=False)
    _footnote(fig, data.get("notes", []))
    paths = _save(fig, path)
    _pyplot().close(fig)
    return paths


_MODEL_CACHE: dict[str, object] = {}


def _sigma_of(model_spec: dict, t: np.ndarray) -> np.ndarray:
    import torch

    from .models import make_model
    from .registry import MODELS

    # the row holds the resolved spec: the declared parameters plus what `resolve` adds (version, file
    # hashes, digits-net's weights_sha256); the model is built from the declared ones, once per spec
    key = json_key(model_spec)
    if key not in _MODEL_CACHE:
        declared = MODELS.get(model_spec["name"]).Params.model_fields
        _MODEL_CACHE[key] = make_model({"name": model_spec["name"],
                                        **{k: v for k, v in model_spec.items() if k in declared}})
    return _MODEL_CACHE[key].schedule.sigma_ve(torch.as_tensor(t, dtype=torch.float64)).numpy()


def plot_schedules(rows: list[dict], out_dir, jobs: int = 1, styles: MethodStyles | None = None,
                   catalog: list | None = None) -> list[Path]:
    """log(sigma) against the step for every global schedule, one figure per (grid, model, solver)
    and NFE. Per-instance schedules (no single `schedule` in the row) are left out. `styles`: the
    grid's (default: from these rows' methods, in sorted order)."""
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        if row.get("schedule") and row["seed"] == min(r["seed"] for r in rows):
            groups.setdefault((row["grid"], row["model_label"], row["solver_label"], row["nfe"]), []).append(row)
    if styles is None:
        styles = MethodStyles({r["method_label"] for rs in groups.values() for r in rs},
                              {r["method_label"] for rs in groups.values() for r in rs if r["heuristic"]})
    stems = unique_stems({(model, solver): stem(model, solver) for _, model, solver, _ in groups})
    specs, sigma_cache = [], {}
    for (grid, model, solver, nfe), group in sorted(groups.items()):
        lines, shown = [], []
        for row in sorted(group, key=lambda r: r["method_label"]):
            t = np.asarray(row["schedule"]["t"][0], dtype=np.float64)
            key = (json_key(row["model"]), tuple(t))
            if key not in sigma_cache:
                sigma_cache[key] = _sigma_of(row["model"], t)
            method = row["method_label"]
            lines.append((styles.display(method), np.log(sigma_cache[key]).tolist(), styles.style(method)))
            shown.append(method)
        notes = _weights_notes(group) + styles.notes(shown)
        name = f"schedule_{stems[(model, solver)]}_nfe{nfe}"
        specs.append((name, {"lines": lines, "title": f"{model} | {solver} | NFE={nfe}", "notes": notes}))
        if catalog is not None:
            catalog.append(Figure("schedule", Path(out_dir) / f"{name}.png", f"{model} | {solver} | NFE={nfe}",
                                  notes, shown))
    return _draw_all(specs, _draw_schedule, out_dir, jobs)


def _weights_notes(group: list[dict]) -> list[str]:
    """The footnote naming the model's weights hash (rows of models that ship weights carry one)."""
    shas = sorted({r["model_weights_sha256"] for r in group if isinstance(r.get("model_weights_sha256"), str)})
    from .report_format import tag_note

    return [tag_note(group[0]["model_label"], f"weights {sha[:12]}") for sha in shas]


def _draw_schedule(data: dict, path: Path) -> list[Path]:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.2, 3.6))
    steps = 0
    for label, log_sigma, style in data["lines"]:
        ax.plot(range(len(log_sigma)), log_sigma, label=label, **style)
        steps = len(log_sigma)
    ax.set_xlabel("step")
    ax.set_ylabel("log sigma (VE)")
    ax.set_xticks(range(steps))
    return _finish(fig, ax, data["title"], data, path)


def json_key(value) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def sample_panel(rows: list[dict], previews: dict[str, dict], out_dir, per_cell: int = 6,
                 styles: MethodStyles | None = None, catalog: list | None = None) -> list[Path]:
    """Labelled panels of the same priors: the teacher first, then each method at each NFE.
    `previews` maps a cell hash to {"samples": [k, C, H, W], "teacher": [k, C, H, W]} in [-1, 1]."""
    plt = _pyplot()
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        if row["cell"] in previews and row["seed"] == min(r["seed"] for r in rows):
            groups.setdefault((row["grid"], row["model_label"], row["solver_label"]), []).append(row)
    if styles is None:
        styles = MethodStyles({r["method_label"] for r in rows}, {r["method_label"] for r in rows if r["heuristic"]})
    stems = unique_stems({(model, solver): stem(model, solver) for _, model, solver in groups})
    paths = []
    for (grid, model, solver), group in sorted(groups.items()):
        nfes = sorted({r["nfe"] for r in group})
        methods = sorted({r["method_label"] for r in group},
                         key=lambda m: (not any(r["heuristic"] for r in group if r["method_label"] == m), m))
        by = {(r["method_label"], r["nfe"]): previews[r["cell"]] for r in group}
        teacher = next(iter(by.values()))["teacher"]
        k = min(per_cell, teacher.shape[0])
        fig, axes = plt.subplots(len(methods) + 1, len(nfes), squeeze=False,
                                 figsize=(1.1 * k * len(nfes) / 2 + 1.5, 0.75 * (len(methods) + 1) + 0.5))
        for col, nfe in enumerate(nfes):
            axes[0, col].imshow(_strip(teacher[:k]), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
            axes[0, col].set_title(f"NFE={nfe}", fontsize=8)
            for row_i, method in enumerate(methods, start=1):
                ax = axes[row_i, col]
                if (method, nfe) in by:
                    ax.imshow(_strip(by[(method, nfe)]["samples"][:k]), cmap="gray", vmin=0, vmax=1,
                              interpolation="nearest")
        for row_i, label in enumerate(["teacher", *map(styles.display, methods)]):
            axes[row_i, 0].set_ylabel(label, rotation=0, ha="right", va="center", fontsize=7)
        for ax in axes.flat:
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_visible(False)
        fig.suptitle(f"{model} | {solver}: the same priors", fontsize=9)
        notes = _weights_notes(group) + styles.notes(methods)
        _footnote(fig, notes)
        path = Path(out_dir) / f"samples_{stems[(model, solver)]}"
        paths += _save(fig, path)
        plt.close(fig)
        if catalog is not None:
            catalog.append(Figure("samples", path.with_suffix(".png"), f"{model} | {solver}: the same priors",
                                  notes, list(methods)))
    return paths


def _strip(images) -> np.ndarray:
    """[k, C, H, W] in [-1, 1] -> one [H, k * (W + 1), C or -] array in [0, 1] (1-pixel gaps)."""
    x = np.clip((np.asarray(images, dtype=np.float32) + 1) / 2, 0, 1)
    k, c, h, w = x.shape
    out = np.ones((h, k * (w + 1) - 1, c), dtype=np.float32)
    for i in range(k):
        out[:, i * (w + 1): i * (w + 1) + w] = x[i].transpose(1, 2, 0)
    return out[..., 0] if c == 1 else out


__all__ = ["Figure", "MARKERS", "method_styles", "plot_metrics", "plot_schedules", "sample_panel"]
