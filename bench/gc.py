"""`bench gc`: what a results root holds that no current cell uses, and what dead writers left.

A change of parameters, defaults, plugin versions or model files gives cells new keys; their old
rows and fits stay on disk (never tabled: `report` reads the current cells only). `collect` lists,
for one grid, its rows whose hash is not a current cell's (with their sample files), the per-sample
score files (`<root>/<grid>/scores/`) of no current row (those of the unused rows and any left
without a row), the fits under `cache/fits/` that no current cell of any grid run under the root
uses (the grid copies in `<root>/<grid>/grid.yaml`, and the given grid as it is now), and the
leftovers of killed writers anywhere under the root: temporaries of dead processes
(`.<name>.<host>.<pid>.<random>.tmp`, written by `bench.store`'s atomic writers under rows, teacher
sets, fits, references, reports and job records) and the `checkpoint.pt` of fits that finished
(`bench.store.orphaned_checkpoints`). A run removes the leftovers at start-up too. It also lists the
files of the root's FID/KID references folder that no current cell of any grid run under the root
reads (`bench.metrics.fid_references.unused_references`): other data sets, resolutions or Inception
weights, and fd-digits classifiers of another configuration. `remove` deletes everything listed,
except references built by `fid-ref` from the user's images (listed as kept: the harness cannot
rebuild them by itself). Teacher sets are left alone: they are cheap to keep and shared across grids.
"""
from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

from .grid import Grid
from .metrics.fid_references import unused_references
from .report import current_grids
from .store import ResultsRoot, orphaned_checkpoints, stale_temporaries


@dataclass
class Garbage:
    grid: str
    rows: list[Path] = field(default_factory=list)
    fits: list[Path] = field(default_factory=list)
    samples: list[Path] = field(default_factory=list)  # sample grids and previews of rows listed above
    temporaries: list[Path] = field(default_factory=list)
    checkpoints: list[Path] = field(default_factory=list)
    scores: list[Path] = field(default_factory=list)
    references: list[Path] = field(default_factory=list)  # FID references / fd-digits classifiers no cell reads
    kept_references: list[tuple[Path, str]] = field(default_factory=list)  # the same, built from user images


def collect(grid: Grid, root="results") -> Garbage:
    results = ResultsRoot(root)
    current = {c.hash for c in grid.cells}
    rows = [p for p in results.row_files(grid.name) if p.stem not in current]
    samples_dir = results.samples_dir(grid.name)
    samples = sorted(p for p in samples_dir.glob("*") if p.is_file() and p.suffix in (".png", ".pt")
                     and not p.name.startswith(".") and p.stem not in current) if samples_dir.is_dir() else []
    used = {c.fit_hash for c in grid.cells if c.fit_hash}
    grids = [grid]
    for other in current_grids(root):
        if other.name != grid.name:
            used |= {c.fit_hash for c in other.cells if c.fit_hash}
            grids.append(other)
    fits_dir = results.fits_dir()
    fits = sorted(p for p in fits_dir.iterdir() if p.is_dir() and p.name not in used) if fits_dir.is_dir() else []
    unused = set(fits)
    checkpoints = [p for p in orphaned_checkpoints(results.root) if p.parent not in unused]
    scores = [p for p in results.score_files(grid.name)
              if p.stem not in current or not results.row_exists(grid.name, p.stem)]
    refs = unused_references(results, grids)
    return Garbage(grid.name, rows, fits, samples, stale_temporaries(results.root), checkpoints, scores,
                   refs.removable, refs.kept)


def format_garbage(garbage: Garbage, deleted: bool = False) -> str:
    verb = "removed" if deleted else "unused"
    left = "removed" if deleted else "left by killed runs:"
    lines = [f"{garbage.grid}: {len(garbage.rows)} {verb} rows, {len(garbage.fits)} {verb} fits, "
             f"{len(garbage.samples)} {verb} sample files, {len(garbage.scores)} {verb} per-sample score files; "
             f"{left} {len(garbage.temporaries)} temporaries, {len(garbage.checkpoints)} checkpoints of finished fits"]
    lines += [f"  row {p}" for p in garbage.rows] + [f"  fit {p}" for p in garbage.fits]
    lines += [f"  sample {p}" for p in garbage.samples] + [f"  scores {p}" for p in garbage.scores]
    lines += [f"  temporary {p}" for p in garbage.temporaries] + [f"  checkpoint {p}" for p in garbage.checkpoints]
    if garbage.references or garbage.kept_references:
        lines.append(f"FID/KID references no current cell reads: {len(garbage.references)} {verb}, "
                     f"{len(garbage.kept_references)} kept (built from your images; delete them by hand if unneeded)")
    lines += [f"  reference {p}" for p in garbage.references]
    lines += [f"  kept reference {p} ({source})" for p, source in garbage.kept_references]
    if not deleted and any((garbage.rows, garbage.fits, garbage.samples, garbage.scores, garbage.temporaries,
                            garbage.checkpoints, garbage.references)):
        lines.append("rerun with --delete to remove them")
    return "\n".join(lines)


def remove(garbage: Garbage, root="results") -> None:
    for path in garbage.rows:
        path.unlink(missing_ok=True)
        ResultsRoot(root).samples_path(garbage.grid, path.stem).unlink(missing_ok=True)
        ResultsRoot(root).preview_path(garbage.grid, path.stem).unlink(missing_ok=True)
        ResultsRoot(root).scores_path(garbage.grid, path.stem).unlink(missing_ok=True)
    for path in garbage.fits:
        shutil.rmtree(path, ignore_errors=True)
    for path in [*garbage.samples, *garbage.scores, *garbage.temporaries, *garbage.checkpoints, *garbage.references]:
        path.unlink(missing_ok=True)


__all__ = ["Garbage", "collect", "format_garbage", "remove"]
