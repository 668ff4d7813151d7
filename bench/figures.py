"""Figures for a paper, written by `bench report` as PNG and PDF (matplotlib, Agg backend).

* `plot_metrics`: one figure per (grid, model, solver, metric) table: the metric against NFE, one
  line per method. Every method keeps one colour and one marker across all figures of a report
  (assigned in sorted order from 18 non-grey colours and 10 markers); closed-form heuristics are
  dashed, searched and learned methods solid, the "best heuristic" and "noise floor" rows dotted
  grey; a study's published values (`bench.studies`) are hollow markers of their method's colour
  and marker, without a line. Error bars show the standard deviation over seeds when there are several; NFE ticks are the
  integers run; the legend sits outside the axes; the title carries the direction (↓ / ↑).
* `plot_schedules`: per (grid, model, solver) and NFE, the timesteps of every global schedule as
  log(sigma) (the VE-equivalent noise level, comparable across time variables) against the step.
* `sample_panel`: per (grid, model, solver), the same evaluation priors as a labelled grid of
  images: the teacher's endpoints first, then one row per method and one column per NFE.
"""
from __future__ import annotations

import io
import itertools
import json
from pathlib import Path

import numpy as np
import pandas as pd

from .report import BEST_HEURISTIC, NOISE_FLOOR, arrow
from .studies import is_extra_row

MARKERS = ("o", "s", "^", "D", "v", "P", "X", "<", ">", "*")
EXTRA_ROWS = (BEST_HEURISTIC, NOISE_FLOOR)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def method_styles(methods, heuristics) -> dict[str, dict]:
    """{method: matplotlib kwargs}: a distinct (colour, marker) per method, dashed for heuristics."""
    plt = _pyplot()
    # tab10's nine colours and then tab20's light ones, greys left out (grey marks the extra rows)
    tab20 = plt.get_cmap("tab20").colors
    colours = [tab20[2 * i] for i in range(10) if i != 7] + [tab20[2 * i + 1] for i in range(10) if i != 7]
    styles = {}
    pairs = zip(itertools.cycle(MARKERS), itertools.cycle(colours))  # 90 distinct (marker, colour) pairs
    ordered = sorted(m for m in set(methods) if m not in EXTRA_ROWS)
    for method, (marker, colour) in zip(ordered, pairs):
        styles[method] = {"color": colour, "marker": marker, "markersize": 4,
                          "linestyle": "--" if method in heuristics else "-", "linewidth": 1.3}
    for method in EXTRA_ROWS:
        styles[method] = {"color": "0.45", "marker": None, "linestyle": ":", "linewidth": 1.5}
    return styles


def _save(fig, path: Path) -> list[Path]:
    from .store import atomic_write_bytes

    out = []
    for suffix in (".png", ".pdf"):
        buffer = io.BytesIO()
        fig.savefig(buffer, format=suffix[1:], dpi=150, bbox_inches="tight")
        out.append(atomic_write_bytes(path.with_suffix(suffix), buffer.getvalue()))
    return out


def _safe(*parts) -> str:
    return "_".join(str(p).replace("/", "-").replace(" ", "").replace("|", "-") for p in parts)


def plot_metrics(tabs: dict, std: dict | None, df: pd.DataFrame, out_dir) -> list[Path]:
    plt = _pyplot()
    heuristics = set(df[df["heuristic"]]["method"])
    styles = method_styles(df["method"].unique(), heuristics)
    paths = []
    for key, table in tabs.items():
        grid, model, solver, metric = key
        nfes = [int(c.split("=")[1]) for c in table.columns]
        spread = None if std is None else std.get(key)
        fig, ax = plt.subplots(figsize=(5.2, 3.6))
        published_of = table.attrs.get("published_of", {})
        for method, values in table.iterrows():
            y = values.to_numpy(dtype=float)
            if np.isnan(y).all():
                continue
            if is_extra_row(method):  # a study's published values: hollow markers of the method's colour
                if method in published_of:
                    style = styles[published_of[method]]
                    ax.plot(nfes, y, linestyle="none", marker=style["marker"] or "o", markersize=6,
                            markerfacecolor="none", markeredgecolor=style["color"], markeredgewidth=1.2,
                            label=method)
                continue
            err = None
            if spread is not None and method in spread.index:
                err = spread.loc[method].to_numpy(dtype=float)
            ax.errorbar(nfes, y, yerr=err, label=method, capsize=2 if err is not None else 0, **styles[method])
        ax.set_xticks(nfes)
        ax.set_xlabel("NFE")
        ax.set_ylabel(f"{metric} {arrow(table.attrs.get('higher_is_better', False))}")
        finite = table.loc[[r for r in table.index if not is_extra_row(r) or r in published_of]].to_numpy(dtype=float)
        finite = finite[np.isfinite(finite)]
        if metric.split(" ")[0] in ("mse", "kl", "wasserstein", "fid", "kid", "fd-digits") and len(finite) \
                and (finite > 0).all() and finite.max() / finite.min() > 20:
            ax.set_yscale("log")
        ax.set_title(f"{model} | {solver}", fontsize=9)
        ax.grid(alpha=0.25)
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0), frameon=False)
        paths += _save(fig, Path(out_dir) / _safe(model, solver, metric))
        plt.close(fig)
    return paths


def _sigma_of(model_spec: dict, t: np.ndarray) -> np.ndarray:
    import torch

    from .models import make_model
    from .registry import MODELS

    # the row holds the resolved spec: the declared parameters plus what `resolve` adds (version, file
    # hashes, digits-net's weights_sha256); the model is built from the declared ones
    declared = MODELS.get(model_spec["name"]).Params.model_fields
    model = make_model({"name": model_spec["name"], **{k: v for k, v in model_spec.items() if k in declared}})
    return model.schedule.sigma_ve(torch.as_tensor(t, dtype=torch.float64)).numpy()


def plot_schedules(rows: list[dict], out_dir) -> list[Path]:
    """log(sigma) against the step for every global schedule, one figure per (grid, model, solver)
    and NFE. Per-instance schedules (no single `schedule` in the row) are left out."""
    plt = _pyplot()
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        if row.get("schedule") and row["seed"] == min(r["seed"] for r in rows):
            groups.setdefault((row["grid"], row["model_label"], row["solver_label"], row["nfe"]), []).append(row)
    methods = sorted({r["method_label"] for rs in groups.values() for r in rs})
    heuristics = {r["method_label"] for rs in groups.values() for r in rs if r["heuristic"]}
    styles = method_styles(methods, heuristics)
    paths, sigma_cache = [], {}
    for (grid, model, solver, nfe), group in sorted(groups.items()):
        fig, ax = plt.subplots(figsize=(5.2, 3.6))
        for row in sorted(group, key=lambda r: r["method_label"]):
            t = np.asarray(row["schedule"]["t"][0], dtype=np.float64)
            key = (json_key(row["model"]), tuple(t))
            if key not in sigma_cache:
                sigma_cache[key] = _sigma_of(row["model"], t)
            ax.plot(range(len(t)), np.log(sigma_cache[key]), label=row["method_label"], **styles[row["method_label"]])
        ax.set_xlabel("step")
        ax.set_ylabel("log sigma (VE)")
        ax.set_xticks(range(len(t)))
        ax.set_title(f"{model} | {solver} | NFE={nfe}", fontsize=9)
        ax.grid(alpha=0.25)
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0), frameon=False)
        paths += _save(fig, Path(out_dir) / f"schedule_{_safe(model, solver)}_nfe{nfe}")
        plt.close(fig)
    return paths


def json_key(value) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def sample_panel(rows: list[dict], previews: dict[str, dict], out_dir, per_cell: int = 6) -> list[Path]:
    """Labelled panels of the same priors: the teacher first, then each method at each NFE.
    `previews` maps a cell hash to {"samples": [k, C, H, W], "teacher": [k, C, H, W]} in [-1, 1]."""
    plt = _pyplot()
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        if row["cell"] in previews and row["seed"] == min(r["seed"] for r in rows):
            groups.setdefault((row["grid"], row["model_label"], row["solver_label"]), []).append(row)
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
        for row_i, label in enumerate(["teacher", *methods]):
            axes[row_i, 0].set_ylabel(label, rotation=0, ha="right", va="center", fontsize=7)
        for ax in axes.flat:
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_visible(False)
        fig.suptitle(f"{model} | {solver}: the same priors", fontsize=9)
        paths += _save(fig, Path(out_dir) / f"samples_{_safe(model, solver)}")
        plt.close(fig)
    return paths


def _strip(images) -> np.ndarray:
    """[k, C, H, W] in [-1, 1] -> one [H, k * (W + 1), C or -] array in [0, 1] (1-pixel gaps)."""
    x = np.clip((np.asarray(images, dtype=np.float32) + 1) / 2, 0, 1)
    k, c, h, w = x.shape
    out = np.ones((h, k * (w + 1) - 1, c), dtype=np.float32)
    for i in range(k):
        out[:, i * (w + 1): i * (w + 1) + w] = x[i].transpose(1, 2, 0)
    return out[..., 0] if c == 1 else out


__all__ = ["method_styles", "plot_metrics", "plot_schedules", "sample_panel"]
